"""The migration on a generated large xp.json, next to a row-by-row baseline.

    python bench/bench_migration.py [--players 100000]

Generates a file of --players players with 1–5 characters each (about 3 per player), runs
`migrate_to_postgres.py` on it as an operator would (a subprocess: read, check, COPY,
upsert, verify) and, in the same run, a row-by-row import of the same data (one INSERT per
player and per character in one transaction) on a tenth of the players, scaled up.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, fresh_database, postgres_server, print_table

from database import Database
from helpers import drop_database
from migrate_to_postgres import plan_migration

GUILD = 1


def generate(players: int, seed: int = 1) -> dict:
    rnd = random.Random(seed)
    document = {"rp_channels": [111], "hf_channels": [222], "char_per_rp": 240, "daily_rp_cap": 5,
                "hf_attempt_xp": 1, "hf_success_xp": 5, "daily_hf_cap": 5}
    for i in range(players):
        names = [f"Char{i}-{j}" for j in range(rnd.randint(1, 5))]
        document[str(10**17 + i)] = {
            "active": names[0], "timezone": rnd.choice(["UTC", "Europe/Berlin", "America/New_York"]),
            "last_xp_reset": "2025-10-28",
            "characters": {n: {"xp": rnd.randint(0, 400000), "daily_xp": rnd.randint(0, 5),
                               "char_buffer": rnd.randint(0, 239), "daily_hf": 0,
                               "image_url": "https://example.com/a.png" if rnd.random() < 0.3 else None}
                           for n in names}}
    return document


async def row_by_row(url: str, document: dict) -> float:
    plan = plan_migration(document)
    async with Database(url, max_size=1) as db:
        start = time.perf_counter()
        async with db.pool.acquire() as con, con.transaction():
            for p in plan.players:
                await con.execute("INSERT INTO users (guild_id, user_id, timezone, last_xp_reset) "
                                  "VALUES ($1, $2, $3, $4)", GUILD, p.user_id, p.timezone, p.last_xp_reset)
                for c in p.characters:
                    cid = await con.fetchval(
                        "INSERT INTO characters (guild_id, user_id, name, xp, daily_xp, daily_hf, char_buffer, "
                        "image_url) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id", GUILD, p.user_id,
                        c.name, c.xp, c.daily_xp, c.daily_hf, c.char_buffer, c.image_url)
                    if c.name == p.active:
                        await con.execute("UPDATE users SET active_character_id = $3 WHERE guild_id = $1 "
                                          "AND user_id = $2", GUILD, p.user_id, cid)
        return time.perf_counter() - start


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--players", type=int, default=100_000)
    args = parser.parse_args()
    document = generate(args.players)
    characters = sum(len(v["characters"]) for k, v in document.items() if k.isdigit())
    work = Path(tempfile.mkdtemp(prefix="xpbot-migbench-"))
    path = work / "xp.json"
    path.write_text(json.dumps(document))
    print(f"{args.players:,} players, {characters:,} characters, {path.stat().st_size / 1e6:.1f} MB")
    with postgres_server() as server:
        url = await fresh_database(server)
        async with Database(url, max_size=1):
            pass  # schema in place, as after the bot's first start
        start = time.perf_counter()
        done = subprocess.run([sys.executable, str(ROOT / "migrate_to_postgres.py"), str(path),
                               "--guild-id", str(GUILD), "--database-url", url],
                              capture_output=True, text=True)
        bulk = time.perf_counter() - start
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        again = time.perf_counter()
        subprocess.run([sys.executable, str(ROOT / "migrate_to_postgres.py"), str(path), "--guild-id",
                        str(GUILD), "--database-url", url], capture_output=True, text=True, check=True)
        rerun = time.perf_counter() - again
        await drop_database(server, url)

        tenth = {k: v for i, (k, v) in enumerate(document.items()) if not k.isdigit() or i % 10 == 0}
        url = await fresh_database(server)
        slow = await row_by_row(url, tenth)
        await drop_database(server, url)
    share = sum(k.isdigit() for k in tenth) / args.players
    rows = [("migrate_to_postgres.py (COPY + set-based upserts, whole CLI run)", f"{bulk:.1f} s", ""),
            ("the same again (re-run: every row an update)", f"{rerun:.1f} s", ""),
            (f"row-by-row INSERTs, {share:.0%} of the players (measured)", f"{slow:.1f} s", ""),
            ("row-by-row INSERTs, all players (scaled)", f"{slow / share:.1f} s",
             f"{slow / share / bulk:.0f}× slower")]
    print_table("Migrating a large xp.json", rows, ("path", "time", ""))


if __name__ == "__main__":
    asyncio.run(main())
