"""Shared pieces of the benchmarks: a PostgreSQL to run against, the pgbench ceiling,
the one-at-a-time model of RP XP, and a table printer."""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402

from local_postgres import LocalPostgres, find_postgres_bin  # noqa: E402


@contextlib.contextmanager
def postgres_server():
    """BENCH_DATABASE_URL / TEST_DATABASE_URL when set, else a throwaway local server."""
    url = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL")
    if url:
        yield url
        return
    work = Path(tempfile.mkdtemp(prefix="xpbot-bench-"))
    os.chmod(work, 0o755)
    server = LocalPostgres(work / "data", throwaway=True)
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


async def fresh_database(server_url: str) -> str:
    name = f"xpbot_bench_{uuid.uuid4().hex[:8]}"
    con = await asyncpg.connect(server_url)
    try:
        await con.execute(f'CREATE DATABASE "{name}"')
    finally:
        await con.close()
    return _with_db(server_url, name)


def _with_db(url: str, name: str) -> str:
    from urllib.parse import urlsplit, urlunsplit
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


async def drop_database(server_url: str, url: str) -> None:
    from urllib.parse import urlsplit
    name = urlsplit(url).path.lstrip("/")
    con = await asyncpg.connect(server_url)
    try:
        await con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await con.close()


def pgbench_tps(url: str, clients: int = 8, seconds: int = 5, rows: int = 100) -> float | None:
    """The database's ceiling: pgbench doing a single-row `xp = xp + 1` UPDATE like ours."""
    from urllib.parse import urlsplit
    try:
        exe = find_postgres_bin() / "pgbench"
    except RuntimeError:
        exe = None
    if not exe or not exe.exists():
        found = shutil.which("pgbench")
        if not found:
            return None
        exe = Path(found)
    parts = urlsplit(url)
    script = Path(tempfile.mkdtemp(prefix="xpbot-pgbench-")) / "update.sql"
    script.write_text(f"\\set u random(1, {rows})\n"
                      "UPDATE bench_ceiling SET xp = xp + 1 WHERE id = :u;\n")
    env = {**os.environ, "PGHOST": parts.hostname or "127.0.0.1", "PGPORT": str(parts.port or 5432),
           "PGUSER": parts.username or "postgres", "PGDATABASE": parts.path.lstrip("/")}
    if parts.password:
        env["PGPASSWORD"] = parts.password
    psql = exe.with_name("psql")
    setup = (f"DROP TABLE IF EXISTS bench_ceiling; CREATE TABLE bench_ceiling (id int PRIMARY KEY, xp bigint); "
             f"INSERT INTO bench_ceiling SELECT g, 0 FROM generate_series(1, {rows}) g;")
    subprocess.run([str(psql), "-q", "-c", setup], env=env, check=True, capture_output=True)
    out = subprocess.run([str(exe), "-n", "-M", "prepared", "-c", str(clients), "-j", "2",
                          "-T", str(seconds), "-f", str(script)], env=env, check=True,
                         capture_output=True, text=True).stdout
    shutil.rmtree(script.parent, ignore_errors=True)
    match = re.search(r"tps = ([\d.]+)", out)
    return float(match.group(1)) if match else None


class RPModel:
    """RP XP one message at a time, in plain Python (SPEC "RP XP"), for checking results."""

    def __init__(self, rate: int, cap: int):
        self.rate, self.cap = rate, cap
        self.state: dict[int, list[int]] = {}   # user -> [xp, daily_xp, char_buffer]

    def message(self, user: int, length: int) -> None:
        xp, daily, buffer = self.state.setdefault(user, [0, 0, 0])
        buffer += length
        gained = min(buffer // self.rate, max(self.cap - daily, 0))
        self.state[user] = [xp + gained, daily + gained, buffer % self.rate]


def print_table(title: str, rows: list[tuple], headers: tuple) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    print(f"\n{title}")
    print("  ".join(str(h).ljust(w) for h, w in zip(headers, widths)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)))
