"""Shared pieces of the benchmarks: a PostgreSQL to run against and the pgbench ceiling, and a
table printer. What the tests share too (databases, polling, guild setup, the one-at-a-time
model) lives in tests/helpers.py, tests/world.py and tests/oracle.py: importing this module
puts the project root and tests/ on sys.path so the benchmarks import those directly."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import helpers  # noqa: E402
from local_postgres import find_postgres_bin  # noqa: E402


def postgres_server():
    """BENCH_DATABASE_URL / TEST_DATABASE_URL when set, else a throwaway local server."""
    url = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL")
    return helpers.postgres_server(url, prefix="xpbot-bench-")


async def fresh_database(server_url: str) -> str:
    """A new empty database on the server (drop it with helpers.drop_database)."""
    return await helpers.create_database(server_url, prefix="xpbot_bench_")


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
    from urllib.parse import parse_qs
    query = parse_qs(parts.query)
    for key, name in (("host", "PGHOST"), ("port", "PGPORT"), ("passfile", "PGPASSFILE")):
        if query.get(key):
            env[name] = query[key][-1]
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


def print_table(title: str, rows: list[tuple], headers: tuple) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    print(f"\n{title}")
    print("  ".join(str(h).ljust(w) for h, w in zip(headers, widths)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)))
