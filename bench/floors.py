"""The floors ringback is measured against: a bare FastAPI JSON echo, and the echo plus one
asyncpg INSERT per request, served by uvicorn (one process) like the services.

    .venv/bin/python bench/floors.py [--seconds 30] [--connections 64] [--threads 2]
        [--rate 1000] [--rate-seconds 30] [--out FILE]

Each floor is measured twice, with the same load generators as intake (bench/loadgen.py):
`saturation` by wrk with the same threads/connections over the same body (a real signed
webhook body), and `fixed_rate` by the paced open-loop generator at the same rate. Writes
bench/results/floors.json (or `--out`). Needs `wrk` for the saturation figures (without it
they are reported as skipped and the exit status is 2) and a PostgreSQL
(RINGBACK_BENCH_DATABASE_URL, default postgresql://postgres@127.0.0.1:5432/postgres).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from common import (
    free_port,
    new_secret,
    results_path,
    scratch_database,
    stop,
    write_results,
)
from loadgen import paced, presign, run_fast, run_wrk_body, wrk_available

APP = """
import os
from contextlib import asynccontextmanager

import asyncpg
from fastapi import FastAPI, Request

pool = None


@asynccontextmanager
async def lifespan(app):
    global pool
    pool = await asyncpg.create_pool(os.environ["FLOOR_DSN"], min_size=4, max_size=10)
    async with pool.acquire() as c:
        await c.execute(
            "CREATE TABLE IF NOT EXISTS bench_floor"
            " (id bigserial primary key, body jsonb, at timestamptz default now())"
        )
    yield
    await pool.close()


app = FastAPI(lifespan=lifespan)


@app.get("/readyz")
async def ready():
    return {"status": "ready"}


@app.post("/echo")
async def echo(request: Request):
    body = await request.json()
    return {"id": body.get("id"), "status": "accepted"}


@app.post("/insert")
async def insert(request: Request):
    raw = await request.body()
    async with pool.acquire() as c:
        await c.execute("INSERT INTO bench_floor (body) VALUES ($1::jsonb)", raw.decode())
    return {"status": "accepted"}
"""


def serve(directory: Path, port: int, dsn: str) -> Any:
    """The floor app under uvicorn in a process of its own, as the services are served."""
    import os
    import subprocess

    from common import SERVICE_PYTHON, wait_ready
    from sqlalchemy.engine import make_url

    (directory / "_floor_app.py").write_text(APP)
    env = dict(os.environ)
    env["FLOOR_DSN"] = make_url(dsn).set(drivername="postgresql").render_as_string(False)
    process = subprocess.Popen(
        [
            SERVICE_PYTHON,
            "-m",
            "uvicorn",
            "_floor_app:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
            "--no-server-header",
        ],
        cwd=directory,
        env=env,
    )
    wait_ready(process, f"http://127.0.0.1:{port}")
    return process


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--rate-seconds", type=float, default=30)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    # The same bytes intake gets: one signed missed call (the floors ignore the headers).
    sample = presign(new_secret(), 1, "floor")[0]
    results: dict[str, Any] = {}
    status = 0
    port = free_port()
    host = f"127.0.0.1:{port}"
    with scratch_database([]) as database, tempfile.TemporaryDirectory() as tmp:
        process = serve(Path(tmp), port, database)
        try:
            for name in ("echo", "insert"):
                path = f"/{name}"
                figures: dict[str, Any] = {}
                raw = sample.raw(host, path)
                run_fast(paced("127.0.0.1", port, [raw] * max(1, int(args.rate)), args.rate))
                count = int(args.rate * args.rate_seconds)
                figures["fixed_rate"] = run_fast(
                    paced("127.0.0.1", port, [raw] * count, args.rate)
                ).summary()
                if wrk_available():
                    url = f"http://{host}{path}"
                    body = sample.body.decode()
                    kwargs = {"connections": args.connections, "threads": args.threads}
                    run_wrk_body(url, body, seconds=args.warmup, **kwargs)
                    figures["saturation"] = run_wrk_body(url, body, seconds=args.seconds, **kwargs)
                else:
                    figures["saturation"] = {"skipped": "wrk is not installed"}
                    print("wrk is not installed (`apt-get install -y wrk`): saturation skipped")
                    status = 2
                results[name] = figures
        finally:
            stop(process)
    results["setup"] = {
        "server": "uvicorn, one process, FastAPI app (echo; echo + one asyncpg INSERT)",
        "saturation_client": f"wrk -t{args.threads} -c{args.connections}",
        "fixed_rate_client": "bench/loadgen.py paced open-loop generator",
    }
    write_results(results_path("floors", args.out), results)
    return status


if __name__ == "__main__":
    sys.exit(main())
