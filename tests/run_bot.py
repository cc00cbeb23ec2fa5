"""Run the product's bot.py as a separate process against a fake Discord.

    python tests/run_bot.py --api http://127.0.0.1:PORT [bot.py arguments...]

discord.py's REST base and default gateway are pointed at the fake (the tests/fake_discord package), then
bot.py runs unmodified as __main__ with the remaining arguments. The token and database come from
the environment as usual (DISCORD_BOT_TOKEN, DATABASE_URL, ...). --script runs another file the
same way (the harness's own tests use it).
"""
from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--api", required=True, help="the fake's base URL, e.g. http://127.0.0.1:8123")
    parser.add_argument("--gateway", help="gateway URL (default: ws://<same host>/gateway)")
    parser.add_argument("--script", default=str(ROOT / "bot.py"), help="file to run (default: bot.py)")
    args, rest = parser.parse_known_args(argv)
    if rest[:1] == ["--"]:
        rest = rest[1:]

    base = args.api.rstrip("/").removesuffix("/api/v10")
    gateway = args.gateway or base.replace("http", "ws", 1) + "/gateway"

    sys.path[:0] = [str(TESTS), str(ROOT)]
    from fake_discord import pointed_at  # noqa: E402  (needs the path above)

    script = Path(args.script).resolve()
    sys.argv = [str(script), *rest]
    with pointed_at(base + "/api/v10", gateway):
        runpy.run_path(str(script), run_name="__main__")


if __name__ == "__main__":
    main()
