"""Every metric the alert rules and the autoscaler use is served by a process the manifests run.

Issue #23: the worker autoscaled on `ringback_queue_depth`, but its Deployment never turned the
worker's metrics server on, so the metric existed only in the code. Here the manifests are read
as Kubernetes runs them: each Deployment's command with its own environment, scraped on the port
its `prometheus.io/port` annotation names, reachable from the monitoring namespace, and found by
the Operator's PodMonitors. The rules file and the overlay's PrometheusRule hold the same rules.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.callback.settings import CallbackSettings
from services.history.settings import HistorySettings
from services.intake.settings import IntakeSettings
from shared.settings import CommonSettings
from tests.deploy.test_manifests import DEPLOY, documents
from tests.support.infra import free_port
from tests.support.stack import SERVICES, Stack, running_stack

BASE = DEPLOY / "k8s" / "base"
OVERLAY = DEPLOY / "k8s" / "overlays" / "example"
RULES = DEPLOY / "prometheus" / "ringback-rules.yaml"
COMPOSE_PROMETHEUS = DEPLOY / "prometheus" / "compose-prometheus.yml"
MONITORING = {"kubernetes.io/metadata.name": "monitoring"}
# Series a histogram or summary family serves under its own name plus a suffix.
SAMPLE_SUFFIXES = {"histogram": ("_bucket", "_count", "_sum"), "summary": ("_count", "_sum")}
# The readiness rule's selector: `up{job=~"..."}`, which Prometheus sets for each target.
UP_JOBS = re.compile(r'\bup\{job=~"([^"]+)"\}')


def base_documents(kind: str) -> list[dict[str, Any]]:
    return [
        doc
        for path in sorted(BASE.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in documents(path)
        if doc.get("kind") == kind
    ]


def rule_groups() -> list[dict[str, Any]]:
    [rules] = documents(RULES)
    groups: list[dict[str, Any]] = rules["groups"]
    return groups


def rule_expressions() -> list[str]:
    return [rule["expr"] for group in rule_groups() for rule in group["rules"]]


def metric_names(expr: str) -> set[str]:
    """The ringback series an expression reads (label values, in quotes, left out)."""
    unquoted = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    return set(re.findall(r"\b(ringback_[a-z0-9_]+)\b", unquoted))


def autoscaler_metrics() -> set[tuple[str, str]]:
    """(the Deployment an autoscaler scales, a metric it reads) for every non-resource metric."""
    found = set()
    for hpa in base_documents("HorizontalPodAutoscaler"):
        for metric in hpa["spec"]["metrics"]:
            source = metric.get(metric["type"].lower(), {})
            if "metric" in source:
                found.add((hpa["spec"]["scaleTargetRef"]["name"], source["metric"]["name"]))
    return found


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Kubernetes label-selector semantics (matchLabels and matchExpressions)."""
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator = expression["key"], expression["operator"]
        if operator in ("Exists", "DoesNotExist"):
            held = key in labels
        else:
            held = key in labels and labels[key] in expression["values"]
        if held != (operator in ("In", "Exists")):
            return False
    return True


def admits_monitoring(rule: dict[str, Any], port: int, port_name: str) -> bool:
    """Whether a NetworkPolicy ingress rule lets the monitoring namespace reach `port`."""
    # A peer that also names pods admits only those pods of the namespace, not Prometheus.
    from_monitoring = any(
        "namespaceSelector" in peer
        and "podSelector" not in peer
        and selects(peer["namespaceSelector"], MONITORING)
        for peer in rule.get("from", [{"namespaceSelector": {}}])
    )
    ports = rule.get("ports", [{"port": port}])
    return from_monitoring and any(entry["port"] in (port, port_name) for entry in ports)


@dataclass(frozen=True)
class Deployed:
    """One Deployment's process as the manifests run it, and where Prometheus scrapes it."""

    deployment: str
    process: str
    labels: dict[str, str]
    env: dict[str, str]
    ports: dict[str, int]
    scraped_port: int | None
    path: str

    @classmethod
    def of(cls, doc: dict[str, Any]) -> Deployed:
        template = doc["spec"]["template"]
        [container] = template["spec"]["containers"]
        args = container["args"]
        process = args[1] if args[0] == "serve" else {"intake-relay": "relay"}.get(args[0], args[0])
        annotations = template["metadata"].get("annotations", {})
        scraped = annotations.get("prometheus.io/scrape") == "true"
        return cls(
            deployment=doc["metadata"]["name"],
            process=process,
            labels=template["metadata"]["labels"],
            env={item["name"]: item["value"] for item in container.get("env", [])},
            ports={port["name"]: port["containerPort"] for port in container.get("ports", [])},
            scraped_port=int(annotations["prometheus.io/port"]) if scraped else None,
            path=annotations.get("prometheus.io/path", "/metrics"),
        )

    @property
    def scraped_port_name(self) -> str | None:
        return next((n for n, p in self.ports.items() if p == self.scraped_port), None)


def api_port(process: str) -> int | None:
    """The port `ringback serve <process>` listens on by default; None: not an API."""
    if process not in SERVICES:
        return None
    default: int = CommonSettings.model_fields[f"{process}_port"].default
    return default


def reachable_from_other_hosts(process: str, port_variable: str, env: dict[str, str]) -> bool:
    """Whether the server `RINGBACK_<X>_PORT` starts listens beyond loopback (its `<X>_HOST`)."""
    settings: dict[str, type[CommonSettings]] = {
        "intake": IntakeSettings,
        "relay": IntakeSettings,
        "history": HistorySettings,
    }
    fields = settings.get(process, CallbackSettings).model_fields
    host = port_variable.removeprefix("RINGBACK_").removesuffix("_PORT").lower() + "_host"
    if host not in fields:
        return True  # no setting: prometheus_client's server listens on every address
    address: str = env.get(f"RINGBACK_{host.upper()}", fields[host].default)
    return address == "0.0.0.0"


def deployed() -> list[Deployed]:
    return [Deployed.of(doc) for doc in base_documents("Deployment")]


def test_the_overlay_prometheus_rule_holds_the_rules_file() -> None:
    [rule] = documents(OVERLAY / "prometheusrule.yaml")
    assert (rule["apiVersion"], rule["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert rule["spec"]["groups"] == rule_groups(), (
        "prometheusrule.yaml differs from deploy/prometheus/ringback-rules.yaml: "
        "copy the groups over, indented under `spec:`"
    )
    [kustomization] = documents(OVERLAY / "kustomization.yaml")
    assert {"prometheusrule.yaml", "podmonitor.yaml"} <= set(kustomization["resources"])


def test_every_rule_reads_a_ringback_metric_or_the_scrape_itself() -> None:
    for expr in rule_expressions():
        assert metric_names(expr) or UP_JOBS.search(expr), expr


@pytest.mark.parametrize("process", deployed(), ids=lambda d: d.deployment)
def test_every_process_is_scraped_where_monitoring_may_reach_it(process: Deployed) -> None:
    assert process.scraped_port is not None, f"{process.deployment}: no prometheus.io/scrape"
    assert process.scraped_port_name, (
        f"{process.deployment}: prometheus.io/port {process.scraped_port} is not a port the "
        "container declares"
    )
    admitted = [
        policy["metadata"]["name"]
        for policy in base_documents("NetworkPolicy")
        if selects(policy["spec"]["podSelector"], process.labels)
        for rule in policy["spec"].get("ingress", [])
        if admits_monitoring(rule, process.scraped_port, process.scraped_port_name)
    ]
    assert admitted, f"no NetworkPolicy lets monitoring reach {process.deployment}'s metrics"
    for name, value in process.env.items():
        if name.endswith("_PORT") and value == str(process.scraped_port):
            assert reachable_from_other_hosts(process.process, name, process.env), (
                f"{process.deployment}: {name} serves on loopback only"
            )
    # The Prometheus Operator ignores the annotations: a PodMonitor must scrape the same port.
    monitors = [
        (monitor, endpoint)
        for monitor in documents(OVERLAY / "podmonitor.yaml")
        if selects(monitor["spec"]["selector"], process.labels)
        for endpoint in monitor["spec"]["podMetricsEndpoints"]
        if endpoint["port"] in process.ports
    ]
    assert [(endpoint["port"], endpoint["path"]) for _, endpoint in monitors] == [
        (process.scraped_port_name, process.path)
    ], f"{process.deployment}: PodMonitors scrape {monitors}"
    [(monitor, _)] = monitors
    job = process.labels[monitor["spec"]["jobLabel"]]
    for pattern in (m.group(1) for e in rule_expressions() for m in UP_JOBS.finditer(e)):
        assert re.fullmatch(pattern, job), f"the readiness rule misses job {job}"


def test_compose_scrapes_every_process_where_it_serves() -> None:
    [compose] = documents(DEPLOY / "compose.yaml")
    [config] = documents(COMPOSE_PROMETHEUS)
    targets = {
        job["job_name"]: target
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    }
    processes = {p.process for p in deployed()}
    assert {f"ringback-{name}" for name in processes} == set(targets)
    for name in processes:
        service = compose["services"][name]
        host, port = targets[f"ringback-{name}"].split(":")
        assert host == name
        env = {**compose["x-ringback"]["environment"], **service.get("environment", {})}
        # Callback and history serve theirs on the API port (RINGBACK_<SERVICE>_PORT, default).
        if port == str(api_port(name)):
            continue
        variable = f"RINGBACK_{name.upper()}_METRICS_PORT"
        assert env.get(variable) == port, f"compose's {name} serves nothing on {port}"
        assert reachable_from_other_hosts(name, variable, env), f"{name}: {variable} on loopback"
        assert port in service.get("expose", []), f"compose's {name} does not expose {port}"
    assert RULES.name in config["rule_files"]


def declared_types(exposition: str) -> dict[str, str]:
    """`# TYPE name type` lines: a labelled family declares itself before its first sample."""
    found = {}
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            found[name] = kind
    return found


def served(name: str, types: dict[str, str]) -> bool:
    if name in types:
        return True
    return any(
        name.endswith(suffix) and types.get(name.removesuffix(suffix)) == kind
        for kind, suffixes in SAMPLE_SUFFIXES.items()
        for suffix in suffixes
    )


@contextmanager
def as_deployed(base_env: dict[str, str], logs: Path) -> Iterator[dict[str, str]]:
    """Every Deployment's process, each with its own container environment; their scrape URLs.

    Ports the manifests set become free ports and `0.0.0.0` becomes loopback; every other
    setting is the manifest's. The ConfigMap and Secret name cluster hosts, so this run's
    database, Redis and peers stand in for them.
    """
    extra = {
        "RINGBACK_SINK_DIR": str(logs.parent / "sink"),
        # Five processes share PostgreSQL with other test runs.
        "RINGBACK_DB_POOL_SIZE": "2",
        "RINGBACK_DB_MAX_OVERFLOW": "2",
    }
    with running_stack(base_env, logs, extra, ()) as shared, ExitStack() as stops:
        urls = {}
        for process in deployed():
            env, moved = dict(shared.env), {}
            for name, value in process.env.items():
                if name.endswith("_PORT") and value.isdigit():
                    moved[int(value)] = free_port()
                    value = str(moved[int(value)])
                env[name] = "127.0.0.1" if value == "0.0.0.0" else value
            stack = Stack(env=env, logs=logs)
            stops.callback(stop_all, stack)
            stack.start(process.process)
            assert process.scraped_port is not None
            if process.scraped_port in moved:
                port = moved[process.scraped_port]
            else:
                # Otherwise only an API's own port can serve it: RINGBACK_<SERVICE>_PORT.
                assert process.scraped_port == api_port(process.process), (
                    f"{process.deployment}: nothing in its settings makes it listen on "
                    f"{process.scraped_port}, the port Prometheus scrapes"
                )
                port = int(env[f"RINGBACK_{process.process.upper()}_PORT"])
            urls[process.deployment] = f"http://127.0.0.1:{port}{process.path}"
            wait_for_scrape(stack, process.process, urls[process.deployment])
        yield urls


def stop_all(stack: Stack) -> None:
    for name in list(stack.processes):
        stack.stop(name)


def wait_for_scrape(stack: Stack, name: str, url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stack.processes[name].poll() is not None:
            raise AssertionError(f"{name} exited:\n{stack.tail(name)}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{name} serves nothing at {url} in {timeout}s:\n{stack.tail(name)}")


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_every_metric_the_rules_and_the_autoscaler_use_is_served(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    autoscaled = autoscaler_metrics()
    assert ("ringback-worker", "ringback_queue_depth") in autoscaled
    used = {name for expr in rule_expressions() for name in metric_names(expr)}
    used |= {name for _, name in autoscaled}

    with as_deployed(base_env, tmp_path / "logs") as urls:
        scraped = {}
        for deployment, url in urls.items():
            answer = httpx.get(url, timeout=5)
            assert answer.status_code == 200, f"{deployment}: {url} answered {answer.status_code}"
            scraped[deployment] = declared_types(answer.text)

    unserved = {name for name in used if not any(served(name, t) for t in scraped.values())}
    assert not unserved, f"used by the rules or the autoscaler, served by no process: {unserved}"
    # An autoscaler's signal must come from the pods it scales, not any process with the name.
    for deployment, name in autoscaled:
        assert served(name, scraped[deployment]), f"{deployment} does not serve {name}"
