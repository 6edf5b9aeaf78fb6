"""The deployment files agree with the code: every command they run is one `ringback` knows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from services.cli.main import build_parser
from tests.support.infra import ROOT

DEPLOY = ROOT / "deploy"


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def k8s_containers() -> list[tuple[str, list[str]]]:
    found = []
    for path in sorted((DEPLOY / "k8s" / "base").glob("*.yaml")):
        for doc in documents(path):
            if doc.get("kind") in {"Deployment", "Job"}:
                for container in doc["spec"]["template"]["spec"]["containers"]:
                    found.append((f"{path.name}:{container['name']}", container["args"]))
    return found


@pytest.mark.parametrize(("where", "args"), k8s_containers())
def test_every_kubernetes_container_runs_a_real_command(where: str, args: list[str]) -> None:
    parsed = build_parser().parse_args(args)
    assert parsed.handler is not None, where


def test_every_compose_service_of_ours_runs_a_real_command() -> None:
    [compose] = documents(DEPLOY / "compose.yaml")
    ours = {
        n: svc for n, svc in compose["services"].items() if svc.get("image") == "ringback:local"
    }
    assert {"migrate", "intake", "callback", "history", "worker", "relay"} <= set(ours)
    for name, service in ours.items():
        assert build_parser().parse_args(service["command"]).handler is not None, name


@pytest.mark.parametrize("folder", ["base", "overlays/example", "overlays/scale-out"])
def test_kustomizations_name_only_files_that_exist(folder: str) -> None:
    root = DEPLOY / "k8s" / folder
    [kustomization] = documents(root / "kustomization.yaml")
    listed = list(kustomization.get("resources", [])) + [
        patch["path"] for patch in kustomization.get("patches", [])
    ]
    assert listed
    for entry in listed:
        assert (root / entry).exists(), f"{folder}/kustomization.yaml names missing {entry}"


def test_every_base_manifest_is_in_the_kustomization() -> None:
    base = DEPLOY / "k8s" / "base"
    [kustomization] = documents(base / "kustomization.yaml")
    files = {p.name for p in base.glob("*.yaml")} - {"kustomization.yaml"}
    assert files == set(kustomization["resources"])


def test_api_probes_use_the_health_endpoints() -> None:
    for name in ("intake", "callback", "history"):
        [deployment, *_] = documents(DEPLOY / "k8s" / "base" / f"{name}.yaml")
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
