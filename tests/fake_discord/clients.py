"""Running bots against the fake: a discord.py client in-process (run_client) or a bot process
(bot_process, via tests/run_bot.py)."""
from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Optional

import discord

from .driver import FakeDiscord
from .gateway import GatewaySession


@contextlib.asynccontextmanager
async def run_client(client: discord.Client, token: str = "fake-token", *, fake: Optional[FakeDiscord] = None,
                     timeout: Optional[float] = None, guild_ready_timeout: float = 0.1):
    """Run `client.start(token)` as a task until READY and every GUILD_CREATE for its shard are processed
    and on_ready has fired; on exit close the client and re-raise whatever the task raised.

    guild_ready_timeout shortens discord.py's wait for further GUILD_CREATEs before on_ready (2s by
    default): the fake sends them all right after READY.
    """
    fake = fake or FakeDiscord.current
    assert fake is not None, "no FakeDiscord is running (use the fake_discord fixture)"
    timeout = fake.timeout if timeout is None else timeout
    client._connection.guild_ready_timeout = min(client._connection.guild_ready_timeout, guild_ready_timeout)
    task = asyncio.create_task(client.start(token), name=f"run_client {client!r}")
    shard = (client.shard_id, client.shard_count) if client.shard_id is not None and client.shard_count else None
    expected = {g.id for g in fake.shard_guilds(shard)}
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while not (client.is_ready() and expected <= {g.id for g in client.guilds if not g.unavailable}):
            if task.done():
                task.result()  # raises what start() raised
                raise AssertionError("client.start() returned before the client was ready")
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(
                    f"client not ready within {timeout}s: ready={client.is_ready()}, guilds "
                    f"{sorted(g.id for g in client.guilds)} of {sorted(expected)}; requests "
                    f"{[str(r) for r in fake.requests]}; sessions {fake.sessions}")
            await asyncio.sleep(0.01)
        yield client
    finally:
        await client.close()
        try:
            await asyncio.wait_for(task, timeout)
        except asyncio.CancelledError:
            if not task.cancelled():
                raise

RUN_BOT = Path(__file__).resolve().parent.parent / "run_bot.py"


class BotProcess:
    """A bot process started by `bot_process()`: its output so far, its gateway session, stop/kill."""

    def __init__(self, fake: FakeDiscord, process: asyncio.subprocess.Process):
        self.fake, self.process = fake, process
        self.lines: list[str] = []
        self.session: Optional[GatewaySession] = None
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            self.lines.append(line.decode(errors="replace").rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    @property
    def running(self) -> bool:
        return self.process.returncode is None

    async def wait_for_output(self, text: str, timeout: Optional[float] = None) -> str:
        """The first output line containing `text`."""
        def find() -> Optional[str]:
            line = next((line for line in self.lines if text in line), None)
            assert line or self.running or not self._reader.done(), (
                f"the bot exited ({self.process.returncode}) without printing {text!r}:\n{self.output}")
            return line
        return await self.fake.wait_until(find, f"{text!r} in the bot's output:\n{self.output}\n", timeout)

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Send `sig` (SIGTERM: how Docker and Fly stop it), wait for the exit, return the exit code."""
        if self.running:
            self.process.send_signal(sig)
        try:
            await asyncio.wait_for(self.process.wait(), timeout)
        except asyncio.TimeoutError:
            self.process.kill()
            await self.process.wait()
            raise AssertionError(f"the bot did not exit within {timeout}s of signal {sig}:\n{self.output}")
        finally:
            await self._reader
        return self.process.returncode  # type: ignore[return-value]

    async def kill(self) -> int:
        """SIGKILL: a crash, with no chance to clean up."""
        return await self.stop(signal.SIGKILL)


@contextlib.asynccontextmanager
async def bot_process(fake: FakeDiscord, *args: str, env: Optional[dict] = None, script: Optional[str] = None,
                      ready_timeout: float = 30.0):
    """Run `python tests/run_bot.py --api <fake> [--script S] args...` until it has a new ready gateway
    session; on exit stop it with SIGTERM (if still running). Output (stdout+stderr) is collected."""
    known = set(map(id, fake.sessions))
    command = [sys.executable, str(RUN_BOT), "--api", fake.base_url, *(["--script", script] if script else []), *args]
    process = await asyncio.create_subprocess_exec(
        *command, env={**os.environ, **(env or {})}, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    bot = BotProcess(fake, process)
    try:
        def new_session() -> Optional[GatewaySession]:
            assert bot.running, f"the bot exited ({process.returncode}) before connecting:\n{bot.output}"
            return next((s for s in fake.sessions if id(s) not in known and s.ready), None)
        bot.session = await fake.wait_until(new_session, "a gateway session from the bot process", ready_timeout)
        yield bot
    finally:
        if bot.running:
            await bot.stop()
        else:
            await bot._reader
