"""`make bench`: run every benchmark present, then write bench/RESULTS.md and results.json.

Benchmarks are not tests: nothing here asserts a duration. Each script writes its own figures
to bench/results/<name>.json; this collects them with the date, machine and versions.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Order matters a little: floors first, so the service figures have their references.
SCRIPTS = ["floors.py", "intake_webhook.py", "notifications.py", "booking.py", "history.py"]


def main() -> int:
    failed = []
    for script in SCRIPTS:
        path = HERE / script
        if not path.exists():
            continue
        print(f"== {script}", flush=True)
        if subprocess.run([sys.executable, str(path)], check=False).returncode != 0:
            failed.append(script)
    write_report()
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


def write_report() -> None:
    results = {p.stem: json.loads(p.read_text()) for p in sorted((HERE / "results").glob("*.json"))}
    versions = {
        name: metadata.version(name)
        for name in ("fastapi", "uvicorn", "sqlalchemy", "asyncpg", "arq")
    }
    summary = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "versions": versions,
        "results": results,
    }
    (HERE / "results.json").write_text(json.dumps(summary, indent=2))
    lines = [
        "# Benchmark results",
        "",
        f"Measured {summary['date']} on {os.cpu_count()} CPUs, {platform.platform()}, Python "
        f"{platform.python_version()}; " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".",
        "Regenerate with `make bench`. Figures are from one run on a shared machine:",
        "compare ratios measured in the same run, not absolute numbers across runs.",
        "",
    ]
    floors = results.get("floors", {})
    for name, figures in results.items():
        lines.append(f"## {name}")
        lines.append("")
        lines.append("```json")
        lines.append(json.dumps(figures, indent=2))
        lines.append("```")
        lines.append("")
    if floors and "intake_webhook" in results:
        rps = _find(results["intake_webhook"], "requests_per_second")
        if rps:
            lines.append("## Ratios")
            lines.append("")
            lines.append(
                "Caution: the floors are driven by wrk, intake by a Python (httpx) generator on"
                " the same cores, which is itself a limit; the ratio is a lower bound."
            )
            lines.append("")
            for floor in ("echo", "insert"):
                ref = floors.get(floor, {}).get("requests_per_second")
                if ref:
                    lines.append(f"- intake webhook / {floor} floor: {rps / ref:.2f}x")
            lines.append("")
    (HERE / "RESULTS.md").write_text("\n".join(lines))


def _find(tree: object, key: str) -> float | None:
    if isinstance(tree, dict):
        if key in tree and isinstance(tree[key], int | float):
            return float(tree[key])
        for value in tree.values():
            found = _find(value, key)
            if found:
                return found
    return None


if __name__ == "__main__":
    sys.exit(main())
