"""Production refuses example and guessable secrets, naming the variable, before it serves."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from services.callback.settings import CallbackSettings
from services.intake.settings import IntakeSettings
from shared.settings import CommonSettings
from tests.support.infra import ROOT

EXAMPLE_SECRET = ROOT / "deploy" / "k8s" / "base" / "secret.yaml"


def _strong() -> str:
    return secrets.token_urlsafe(32)


def _production(**values: Any) -> dict[str, Any]:
    return {
        "environment": "production",
        "database_url": "postgresql://ringback:s3cret-Pa55@db:5432/ringback",
        "internal_api_key": "rb_internal0000_" + _strong(),
        "self_service_secret": _strong(),
        **values,
    }


def test_generated_secrets_are_accepted() -> None:
    settings = IntakeSettings(**_production(webhook_secrets="whsec_" + _strong()))
    assert settings.environment == "production"
    CallbackSettings(**_production(smtp_password="an ordinary mail password"))


def test_the_example_manifest_values_are_refused_in_production() -> None:
    example = yaml.safe_load(EXAMPLE_SECRET.read_text())["stringData"]
    values = {key.removeprefix("RINGBACK_").lower(): value for key, value in example.items()}
    with pytest.raises(ValidationError) as refused:
        IntakeSettings(**values, environment="production")
    message = str(refused.value)
    for variable in (
        "RINGBACK_INTERNAL_API_KEY",
        "RINGBACK_SELF_SERVICE_SECRET",
        "RINGBACK_WEBHOOK_SECRETS",
        "RINGBACK_DATABASE_URL",
    ):
        assert variable in message
    # Never the secret itself in the message.
    assert "REPLACE-with-a-long-random-string" not in message


@pytest.mark.parametrize(
    "value",
    ["x", "hunter2", "a" * 64, "correct horse battery staple", secrets.token_hex(8)],
)
def test_a_short_or_repetitive_signing_key_is_refused(value: str) -> None:
    with pytest.raises(ValidationError, match="RINGBACK_SELF_SERVICE_SECRET is too weak"):
        CommonSettings(**_production(self_service_secret=value))
    with pytest.raises(ValidationError, match="RINGBACK_INTERNAL_API_KEY is too weak"):
        CommonSettings(**_production(internal_api_key=value))


def test_one_example_value_among_rotated_webhook_secrets_is_refused() -> None:
    both = f"whsec_{_strong()},REPLACE-with-whsec-secrets"
    with pytest.raises(ValidationError, match="RINGBACK_WEBHOOK_SECRETS"):
        IntakeSettings(**_production(webhook_secrets=both))


@pytest.mark.parametrize("weak", ["hunter2", "REPLACE-with-a-long-random-string", ""])
def test_each_of_several_internal_keys_is_judged_alone(weak: str) -> None:
    strong = "rb_internal0000_" + _strong()
    for keys in (f"{strong},{weak}", f"{weak},{strong}"):
        with pytest.raises(ValidationError, match="RINGBACK_INTERNAL_API_KEY") as refused:
            CommonSettings(**_production(internal_api_key=keys))
        if weak:
            assert weak not in str(refused.value)
    both = f"{strong},rb_internal0000_{_strong()}"
    assert len(CommonSettings(**_production(internal_api_key=both)).internal_api_keys()) == 2


@pytest.mark.parametrize("weak", ["hunter2", "REPLACE-with-a-long-random-string", "a" * 64])
def test_previous_self_service_secrets_are_held_to_the_same_bar(weak: str) -> None:
    with pytest.raises(ValidationError, match="RINGBACK_SELF_SERVICE_PREVIOUS_SECRETS") as refused:
        CallbackSettings(**_production(self_service_previous_secrets=f"{_strong()},{weak}"))
    assert weak not in str(refused.value)


@pytest.mark.parametrize("unset", [None, "", "  "])
def test_no_previous_self_service_secret_is_needed(unset: str | None) -> None:
    settings = CallbackSettings(**_production(self_service_previous_secrets=unset))
    assert settings.self_service_previous_secret_list() == ()
    rotated = CallbackSettings(**_production(self_service_previous_secrets=_strong()))
    assert len(rotated.self_service_previous_secret_list()) == 1


def test_development_keeps_its_convenient_defaults() -> None:
    assert CommonSettings(environment="development", self_service_secret="x").environment


def test_the_process_will_not_start_with_the_example_secrets(tmp_path: Path) -> None:
    example = yaml.safe_load(EXAMPLE_SECRET.read_text())["stringData"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RINGBACK_")}
    env.update(example, RINGBACK_ENVIRONMENT="production", RINGBACK_LOG_JSON="true")
    done = subprocess.run(
        [sys.executable, "-m", "services.cli.main", "serve", "intake", "--port", "1"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    said = done.stdout + done.stderr
    assert "RINGBACK_SELF_SERVICE_SECRET must be set to a real secret" in said
    # A plain refusal: no traceback, and none of the values it was given.
    assert "Traceback" not in said
    for value in example.values():
        assert value not in said
