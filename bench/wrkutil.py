"""Run `wrk` with a JSON POST body and read its throughput and latency percentiles."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}

_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
{extra}
local f = io.open("{body}", "rb")
wrk.body = f:read("*all")
f:close()
"""


def _ms(value: str) -> float:
    match = re.match(r"([\d.]+)(us|ms|s)", value)
    if not match:
        raise ValueError(value)
    return float(match.group(1)) * _UNITS[match.group(2)]


def run_wrk(
    url: str,
    *,
    body: str,
    seconds: int = 10,
    connections: int = 64,
    threads: int = 2,
    rate: int | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, float]:
    """Requests/s and p50/p90/p99 (ms) of POSTing `body` to `url`."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed (Debian package `wrk`)")
    with tempfile.TemporaryDirectory() as tmp:
        body_file = Path(tmp) / "body.json"
        body_file.write_text(body)
        extra = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in (headers or {}).items())
        script = Path(tmp) / "post.lua"
        script.write_text(_SCRIPT.format(extra=extra, body=body_file))
        argv = [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(script),
            url,
        ]
        output = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    latency = {p: _ms(v) for p, v in re.findall(r"^\s+(50|90|99)%\s+(\S+)", output, re.M)}
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    return {
        "requests_per_second": rps,
        "p50_ms": latency.get("50", float("nan")),
        "p90_ms": latency.get("90", float("nan")),
        "p99_ms": latency.get("99", float("nan")),
        "non_2xx": float(non_2xx.group(1)) if non_2xx else 0.0,
    }
