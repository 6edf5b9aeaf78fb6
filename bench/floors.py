"""The floors ringback is measured against: a bare FastAPI JSON echo, and the echo plus one
asyncpg INSERT per request. Same server settings and load generator as the service benchmarks.

    .venv/bin/python bench/floors.py [--seconds 10] [--connections 64]

Writes bench/results/floors.json. Needs `wrk` on PATH and a PostgreSQL (RINGBACK_BENCH_DATABASE_URL,
default postgresql://postgres@127.0.0.1:5432/postgres).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from wrkutil import run_wrk

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
APP = """
import os, asyncpg
from fastapi import FastAPI, Request


app = FastAPI()
pool = None

@app.on_event("startup")
async def startup():
    global pool
    if os.environ.get("FLOOR_DSN"):
        pool = await asyncpg.create_pool(os.environ["FLOOR_DSN"], min_size=4, max_size=10)
        async with pool.acquire() as c:
            await c.execute(
                "CREATE TABLE IF NOT EXISTS bench_floor"
                " (id bigserial primary key, body jsonb, at timestamptz default now())"
            )

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


def serve(port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    app_file = RESULTS / "_floor_app.py"
    app_file.write_text(APP)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "_floor_app:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=RESULTS,
        env=env,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.post(f"http://127.0.0.1:{port}/echo", json={"id": "x"}, timeout=1)
            return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("floor app did not start")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    dsn = os.environ.get(
        "RINGBACK_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    env = dict(os.environ, FLOOR_DSN=dsn)
    body = json.dumps({"id": "evt_1", "call_id": "c1", "from": "+358401234567", "status": "missed"})
    results = {}
    process = serve(18999, env)
    try:
        for name in ("echo", "insert"):
            results[name] = run_wrk(
                f"http://127.0.0.1:18999/{name}",
                body=body,
                seconds=args.seconds,
                connections=args.connections,
            )
    finally:
        process.terminate()
        process.wait()
        (RESULTS / "_floor_app.py").unlink(missing_ok=True)
        asyncio.run(_drop(dsn))
    (RESULTS / "floors.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


async def _drop(dsn: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    await conn.execute("DROP TABLE IF EXISTS bench_floor")
    await conn.close()


if __name__ == "__main__":
    main()
