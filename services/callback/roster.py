"""Agents known to `/v1/agents` (§9): their queues and languages, and where they are.

An agent the roster does not know is served from every queue in every language, as in v1,
so a team can start without one; a known agent claims only while `available`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

import structlog
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy.ext.asyncio import AsyncSession

from services.callback import inputs, queues, repository
from services.callback.models import Agent
from shared.contracts import Language
from shared.db import utcnow
from shared.errors import Conflict, NotFound
from shared.phone import normalize
from shared.vocabulary import AgentPresence

log = structlog.get_logger("ringback.callback.roster")


# How a 409 says where the agent is.
_PRESENCE_WORDS = {
    AgentPresence.AVAILABLE: "available",
    AgentPresence.BREAK: "on a break",
    AgentPresence.WRAP_UP: "wrapping up",
    AgentPresence.OFFLINE: "offline",
}


class AgentProfile(BaseModel):
    """`PUT /v1/agents/{agent_id}`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(min_length=1, max_length=200)]
    queues: Annotated[list[Annotated[str, Field(max_length=40)]], Field(max_length=100)] = Field(
        default_factory=list
    )
    languages: Annotated[list[Language], Field(max_length=10)] = Field(default_factory=list)
    phone: Annotated[str, Field(max_length=16)] | None = None
    sip: Annotated[str, Field(max_length=200, pattern=r"^sips?:[^\s<>\"]+$")] | None = None

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        # The number the phone system rings for this agent's outbound leg: exactly E.164.
        if value is not None and normalize(value, "ZZ") != value:
            raise ValueError(f"{value!r} is not a valid number in E.164 form (+358401234567)")
        return value


class PresenceIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    status: AgentPresence


class AgentProfileOut(BaseModel):
    id: str
    name: str
    queues: list[str]
    languages: list[str]
    phone: str | None
    sip: str | None
    presence: AgentPresence
    presence_at: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Route:
    """What a claim may hand this agent: None for queues or languages means any."""

    agent_id: str
    queues: tuple[str, ...] | None
    languages: tuple[str, ...] | None


def _out(agent: Agent) -> AgentProfileOut:
    return AgentProfileOut.model_validate(agent, from_attributes=True)


def _check_id(agent_id: str) -> str:
    found = inputs.agent_id(agent_id, ["path", "agent_id"])
    assert found is not None
    return found


async def put_agent(
    *, session: AsyncSession, agent_id: str, body: AgentProfile
) -> tuple[bool, AgentProfileOut]:
    """Create or replace an agent (idempotent); their presence is kept. True when created."""
    _check_id(agent_id)
    known = {q.key for q in await repository.all_queues(session)} | {queues.DEFAULT}
    unknown = [q for q in body.queues if q not in known]
    if unknown:
        raise inputs.invalid(["body", "queues"], f"no such queue: {', '.join(unknown)}")
    now = utcnow()
    agent = await repository.get_agent(session, agent_id, lock=True)
    created = agent is None
    if agent is None:
        agent = Agent(id=agent_id, presence=AgentPresence.OFFLINE, created_at=now)
        session.add(agent)
    agent.name = body.name
    agent.queues = sorted(set(body.queues))
    agent.languages = sorted(set(body.languages))
    agent.phone = body.phone
    agent.sip = body.sip
    agent.updated_at = now
    await session.flush()
    log.info("callback.agent.put", agent_id=agent_id, created=created)
    return created, _out(agent)


async def get_agent(*, session: AsyncSession, agent_id: str) -> AgentProfileOut:
    agent = await repository.get_agent(session, agent_id)
    if agent is None:
        raise NotFound(f"No agent {agent_id!r} is known to /v1/agents.")
    return _out(agent)


async def list_agents(*, session: AsyncSession) -> list[AgentProfileOut]:
    return [_out(a) for a in await repository.all_agents(session)]


async def delete_agent(*, session: AsyncSession, agent_id: str) -> None:
    agent = await repository.get_agent(session, agent_id, lock=True)
    if agent is None:
        raise NotFound(f"No agent {agent_id!r} is known to /v1/agents.")
    await session.delete(agent)
    log.info("callback.agent.deleted", agent_id=agent_id)


async def set_presence(
    *, session: AsyncSession, agent_id: str, status: AgentPresence
) -> AgentProfileOut:
    agent = await repository.get_agent(session, agent_id, lock=True)
    if agent is None:
        raise NotFound(f"No agent {agent_id!r} is known to /v1/agents; PUT it there first.")
    now = utcnow()
    agent.presence = status
    agent.presence_at = agent.updated_at = now
    log.info("callback.agent.presence", agent_id=agent_id, presence=status)
    return _out(agent)


async def route_for(session: AsyncSession, agent_id: str) -> Route:
    """Where `agent_id` may claim from; 409 for a known agent who is not available."""
    agent = await repository.get_agent(session, agent_id)
    if agent is None:
        return Route(agent_id=agent_id, queues=None, languages=None)
    if agent.presence != AgentPresence.AVAILABLE:
        raise Conflict(
            f"Agent {agent_id} is {_PRESENCE_WORDS[AgentPresence(agent.presence)]}; set the "
            "presence to available to claim.",
            slug="agent-not-available",
            extra={"presence": agent.presence},
        )
    return Route(
        agent_id=agent_id,
        queues=tuple(agent.queues),
        # An agent who listed no languages has not said; they are not held to any.
        languages=tuple(agent.languages) or None,
    )
