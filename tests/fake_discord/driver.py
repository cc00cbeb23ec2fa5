"""FakeDiscord: the fake as tests drive it (composed of the concern mixins), and the pytest fixture."""
from __future__ import annotations

import contextlib
import re
from typing import Any, Callable, Optional

import discord
import discord.gateway
import discord.http
import pytest
import yarl
from aiohttp import web

from .commands import CommandsMixin
from .gateway import GatewayMixin, GatewaySession
from .guilds import GuildsMixin
from .interactions import InteractionsMixin
from .messages import MessagesMixin
from .ratelimits import RateLimit, RateLimitsMixin
from .replies import InteractionResult, RecordedRequest, Reply
from .rest import RestMixin
from .waiting import Signal
from .world import Channel, Guild, User, snowflake

DEFAULT_TIMEOUT = 5.0


@contextlib.contextmanager
def pointed_at(api_url: str, gateway_url: str):
    """Point discord.py's REST base and default gateway elsewhere; restore them afterwards."""
    old_base, old_gateway = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    discord.http.Route.BASE = api_url.rstrip("/")
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)
    try:
        yield
    finally:
        discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = old_base, old_gateway


class FakeDiscord(GuildsMixin, MessagesMixin, InteractionsMixin, CommandsMixin, GatewayMixin, RateLimitsMixin,
                  RestMixin):
    """See the package docstring (fake_discord/__init__.py). Use as `async with FakeDiscord() as fake:`.

    Each concern lives in its own mixin module; this class holds the shared state and lifecycle."""

    current: Optional["FakeDiscord"] = None

    def __init__(self, *, token: Optional[str] = None, bot_name: str = "XP Bot", timeout: float = DEFAULT_TIMEOUT,
                 heartbeat_interval_ms: int = 2000, echo_bot_messages: bool = True,
                 recommended_shards: Optional[int] = None, port: int = 0):
        self.token = token                        # when set, other tokens get 401 / close 4004
        self.timeout = timeout
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.echo_bot_messages = echo_bot_messages  # Discord echoes the bot's own messages to it
        self.recommended_shards = recommended_shards  # None: one per 1,000 guilds, as Discord recommends
        self.bot_user = User(snowflake(), bot_name, bot=True)
        self.application_id = self.bot_user.id
        self.owner = User(snowflake(), "app-owner")
        self.users: dict[int, User] = {u.id: u for u in (self.bot_user, self.owner)}
        self.guilds: dict[int, Guild] = {}
        self.requests: list[RecordedRequest] = []
        self.sessions: list[GatewaySession] = []
        self.presence_updates: list[dict] = []
        self.command_syncs: list[tuple[Optional[int], list[str]]] = []
        self.internal_errors: list[str] = []
        self._commands: dict[Optional[int], dict[tuple[str, int], dict]] = {}
        self._messages: dict[int, dict] = {}
        self._files: dict[int, dict[str, bytes]] = {}        # message id -> filename -> bytes
        self._attachments: dict[int, bytes] = {}             # attachment id -> bytes
        self._message_owner: dict[int, int] = {}             # ephemeral message id -> user who sees it
        self._message_token: dict[int, str] = {}             # message id -> interaction that made it
        self._posts: list[int] = []                          # POST /channels/{id}/messages, in order
        self._dm_posts: list[int] = []                       # the same, in DM channels
        self._dm_channels: dict[int, Channel] = {}           # user id -> DM channel
        self._closed_dms: set[int] = set()                   # users who do not accept the bot's DMs
        self._rate_limits: list[RateLimit] = []
        self._interactions: dict[str, InteractionResult] = {}
        self._modals: dict[str, InteractionResult] = {}      # modal custom_id -> result that showed it
        self._sockets: set[web.WebSocketResponse] = set()
        self._closed_by_fake: set[web.WebSocketResponse] = set()
        self._signal = Signal()
        self._port = port
        self._runner: Optional[web.AppRunner] = None
        self._patch: Optional[contextlib.ExitStack] = None
        self._catch_all: Optional[web.AbstractResource] = None

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self._port}/gateway"

    async def start(self, *, patch: bool = True) -> "FakeDiscord":
        app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024 * 1024)
        self._add_routes(app)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self._port)
        await site.start()
        self._port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        if patch:
            self._patch = contextlib.ExitStack()
            self._patch.enter_context(pointed_at(self.api_url, self.gateway_url))
            previous, FakeDiscord.current = FakeDiscord.current, self
            self._patch.callback(setattr, FakeDiscord, "current", previous)
        return self

    async def stop(self) -> None:
        for ws in list(self._sockets):
            await ws.close(code=1001, message=b"fake discord stopping")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._patch is not None:
            self._patch.close()
            self._patch = None

    async def __aenter__(self) -> "FakeDiscord":
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    # -- the world -----------------------------------------------------------------------------
    # -- what the bot did ----------------------------------------------------------------------

    @property
    def unexpected(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.route == "(unknown)"]

    @property
    def rejected(self) -> list[RecordedRequest]:
        """Requests the fake refused (4xx), except rate limiting (429, see rate_limited): discord.py
        retries those by itself."""
        return [r for r in self.requests if r.status >= 400 and r.status != 429]

    def assert_clean(self) -> None:
        """No call to an unknown route and no answer the fake had to refuse."""
        problems = [str(r) for r in self.rejected]
        assert not problems, "the bot made calls Discord would refuse:\n" + "\n".join(problems)
    async def wait_for_posts(self, count: int = 1, channel: Any = None, timeout: Optional[float] = None) -> list[Reply]:
        timeout = self.timeout if timeout is None else timeout
        await self._signal.until(lambda: len(self.posts(channel)) >= count, timeout,
                                 lambda: f"expected {count} bot post(s) in {channel}, got {len(self.posts(channel))}"
                                         f" within {timeout}s")
        return self.posts(channel)

    async def wait_for_request(self, method: str, path_pattern: str, timeout: Optional[float] = None) -> RecordedRequest:
        """The first recorded request with this method whose path matches the regex."""
        timeout = self.timeout if timeout is None else timeout

        def find() -> Optional[RecordedRequest]:
            return next((r for r in self.requests if r.method == method and re.search(path_pattern, r.path)
                         and r.status), None)
        return await self._signal.until(find, timeout, lambda: f"no {method} {path_pattern} within {timeout}s; "
                                                               f"seen: {[str(r) for r in self.requests]}")

    async def wait_until(self, predicate: Callable[[], Any], what: str, timeout: Optional[float] = None) -> Any:
        """Wait for any condition (the fake's or the bot's); fails with "<what> within <timeout>s"."""
        timeout = self.timeout if timeout is None else timeout
        return await self._signal.until(predicate, timeout, lambda: f"{what} within {timeout}s")

    async def wait_for_sessions(self, count: int = 1, timeout: Optional[float] = None) -> list[GatewaySession]:
        """Wait until `count` gateway sessions are connected with their guilds sent."""
        timeout = self.timeout if timeout is None else timeout

        def live() -> list[GatewaySession]:
            sessions = [s for s in self.sessions if s.connected and s.ready]
            return sessions if len(sessions) >= count else []
        return await self._signal.until(live, timeout, lambda: f"expected {count} ready gateway session(s) within "
                                                               f"{timeout}s; have {self.sessions}")


@pytest.fixture
async def fake_discord():
    """A running FakeDiscord with discord.py pointed at it; everything restored afterwards."""
    async with FakeDiscord() as fake:
        yield fake
    assert not fake.internal_errors, f"the fake Discord itself failed: {fake.internal_errors}"
