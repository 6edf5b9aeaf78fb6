"""All of intake's SQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake.models import Inbound
from shared.ids import new_id


async def insert_inbound(session: AsyncSession, values: dict[str, Any]) -> str | None:
    """Insert an inbound row; None when the provider's id was seen before (a duplicate)."""
    values = {"id": new_id(), **values}
    statement = (
        insert(Inbound)
        .values(**values)
        .on_conflict_do_nothing(
            index_elements=[Inbound.provider, Inbound.external_id],
            index_where=Inbound.external_id.is_not(None),
        )
        .returning(Inbound.id)
    )
    inserted: str | None = await session.scalar(statement)
    return inserted


async def find_by_external_id(session: AsyncSession, provider: str, external_id: str) -> str | None:
    found: str | None = await session.scalar(
        select(Inbound.id).where(Inbound.provider == provider, Inbound.external_id == external_id)
    )
    return found
