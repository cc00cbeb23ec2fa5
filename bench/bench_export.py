"""The xp.json export of a large guild: the whole document at once vs. the stream, side by side.

    python bench/bench_export.py [--characters 100000] [--chunk 1000] [--runs 1]

One guild is filled through COPY with --characters characters (fantasy names, as in
bench_scale.py) over a third as many players, plus players without characters; some
characters are retired, some have an image or a sheet link; the guild has channels, staff
roles and level roles. Then each path exports it in a fresh subprocess of its own, so that
their memory is measured apart:

- whole: `export_document` + `json.dumps`, what `/xp_export` and `--export` did before;
- stream: `write_export` (a cursor, `--chunk` rows per round trip, each chunk encoded with
  orjson between them), what they do now.

Each writes the file and reports its wall time, its peak RSS growth (VmHWM from
/proc/self/status after the export minus VmRSS before it, the peak reset through
/proc/self/clear_refs first), and the longest the event loop was blocked (a watchdog task
timing the gaps between its `asyncio.sleep(0)` turns). The two files must be identical.
Then `migrate_to_postgres.py` imports the file into a fresh database, timed as an operator
runs it (a subprocess: read, check, COPY, upsert, verify).
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import filecmp
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_scale import names
from common import ROOT, fresh_database, postgres_server, print_table

import migrate_to_postgres
from database import Database
from helpers import drop_database

GUILD = 1


async def fill(db: Database, characters: int) -> int:
    """The guild, through COPY; returns the number of players."""
    rng = random.Random(characters)
    players = characters // 3
    idle = players // 20  # players without characters
    zones = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo"]
    now = dt.datetime.now(dt.timezone.utc)
    await db.set_channels(GUILD, "rp", [111, 112])
    await db.set_channels(GUILD, "hf", [222])
    await db.add_staff_role(GUILD, 333)
    for level in (2, 5, 10, 20):
        await db.set_level_role(GUILD, level, 4000 + level)
    async with db.pool.acquire() as con:
        await con.copy_records_to_table(
            "users", records=[(GUILD, 10**17 + u, rng.choice(zones), dt.date(2026, 11, 1 + u % 20))
                              for u in range(players + idle)],
            columns=["guild_id", "user_id", "timezone", "last_xp_reset"])
        await con.copy_records_to_table(
            "characters", records=[
                (GUILD, 10**17 + i % players, name, rng.randint(0, 400_000), rng.randint(0, 5), rng.randint(0, 239),
                 f"https://img.example/{i}.png" if rng.random() < 0.3 else None,
                 f"https://sheets.example/{i}" if rng.random() < 0.2 else None,
                 now if rng.random() < 0.05 else None)
                for i, name in enumerate(names(characters, rng))],
            columns=["guild_id", "user_id", "name", "xp", "daily_xp", "char_buffer", "image_url", "sheet_url",
                     "retired_at"])
        await con.execute(
            """UPDATE users u SET active_character_id = c.id
                 FROM (SELECT user_id, min(id) AS id FROM characters
                        WHERE guild_id = $1 AND retired_at IS NULL GROUP BY user_id) c
                WHERE u.guild_id = $1 AND u.user_id = c.user_id""", GUILD)
        await con.execute("ANALYZE")
    return players + idle


# -- one export, in a process of its own -------------------------------------------------------------

def status(field: str) -> int:
    """A /proc/self/status memory field, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


async def export_once(url: str, path: str, out: str, chunk: int) -> dict:
    async with Database(url, max_size=2) as db:
        await migrate_to_postgres.export_settings(db, GUILD)  # connections open, config cached
        try:
            Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
        except OSError:
            pass
        before = status("VmRSS")
        blocked = 0.0
        done = False

        async def watchdog() -> None:
            nonlocal blocked
            while not done:
                turn = time.perf_counter()
                await asyncio.sleep(0)
                blocked = max(blocked, time.perf_counter() - turn)

        dog = asyncio.ensure_future(watchdog())
        await asyncio.sleep(0)
        start = time.perf_counter()
        with open(out, "wb") as file:
            if path == "whole":
                document = await migrate_to_postgres.export_document(db, GUILD)
                file.write((json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
            else:
                await migrate_to_postgres.write_export(db, GUILD, file, chunk=chunk)
        seconds = time.perf_counter() - start
        done = True
        await dog
        return {"seconds": seconds, "peak": status("VmHWM") - before, "blocked": blocked}


def run_child(url: str, path: str, out: Path, chunk: int) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", path, "--url", url, "--out", str(out),
                           "--chunk", str(chunk)], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


# -- the run --------------------------------------------------------------------------------------------

def timed_import(url: str, file: Path) -> float:
    env = {**os.environ, "DATABASE_URL": url}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, str(ROOT / "migrate_to_postgres.py"), str(file), "--guild-id", str(GUILD)],
                          env=env, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"the import failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return seconds


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--characters", type=int, default=100_000)
    parser.add_argument("--chunk", type=int, default=migrate_to_postgres.EXPORT_CHUNK)
    parser.add_argument("--runs", type=int, default=1, help="exports of each path (each a fresh process)")
    parser.add_argument("--child", choices=("whole", "stream"), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(await export_once(args.url, args.child, args.out, args.chunk)))
        return

    work = Path(tempfile.mkdtemp(prefix="xpbot-exportbench-"))
    files = {path: work / f"{path}.json" for path in ("whole", "stream")}
    rows = []
    with postgres_server() as server:
        url = await fresh_database(server)
        try:
            async with Database(url, max_size=2) as db:
                players = await fill(db, args.characters)
            print(f"{args.characters:,} characters, {players:,} players in one guild")
            for run in range(args.runs):
                for path, file in files.items():
                    got = run_child(url, path, file, args.chunk)
                    rows.append((path, f"{got['seconds']:.2f} s", f"{got['peak'] / 2**20:.1f} MiB",
                                 f"{got['blocked'] * 1000:.1f} ms", f"{file.stat().st_size / 2**20:.1f} MiB"))
                assert filecmp.cmp(files["whole"], files["stream"], shallow=False), "the two files differ"
        finally:
            await drop_database(server, url)
        target = await fresh_database(server)
        try:
            async with Database(target, max_size=1):
                pass  # schema in place, as after the bot's first start
            seconds = timed_import(target, files["stream"])
        finally:
            await drop_database(server, target)
    for file in files.values():
        file.unlink()
    work.rmdir()
    print_table(f"Export of {args.characters:,} characters (chunk {args.chunk:,}; the two files identical)", rows,
                ("path", "wall time", "peak RSS growth", "event loop blocked at most", "file"))
    print_table("Import of the exported file", [("migrate_to_postgres.py (whole CLI run)", f"{seconds:.2f} s")],
                ("path", "time"))


if __name__ == "__main__":
    asyncio.run(main())
