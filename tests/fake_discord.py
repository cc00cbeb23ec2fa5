"""A fake Discord (REST v10 + gateway) on 127.0.0.1 that the real, unmodified discord.py talks to.

Tests drive the bot the way Discord does: users post messages, run commands, press buttons and
submit modals; the fake turns that into gateway events, answers the bot's REST calls like Discord
would, and records them.

Start it and point discord.py at it (Route.BASE and DiscordWebSocket.DEFAULT_GATEWAY, restored on exit):

    async with FakeDiscord() as fake:              # or the `fake_discord` pytest fixture
        guild = fake.add_guild("RP Server")        # the bot is a member of every guild
        rp = fake.add_channel(guild, "rp")
        alice = fake.add_member(guild, "alice")
        staff = fake.add_member(guild, "mod", permissions=["manage_guild"])
        async with run_client(XPBot(db, env="dev", guild_id=guild.id)) as bot:
            result = await fake.slash(guild, rp, alice, "xp_create", {"name": "Luna"})
            assert result.ephemeral and "Luna" in result.content

    A separate process (python tests/run_bot.py --api <fake.base_url> [bot args]), until it has a
    ready gateway session; SIGTERM on exit:

        async with bot_process(fake, env={"DISCORD_BOT_TOKEN": "t", "DATABASE_URL": url}) as bot:
            await bot.wait_for_output("is online")      # also bot.session, bot.stop(), bot.kill()

The world (synchronous; set it up before the bot connects, or `await fake.guild_create(g)` after):
    add_user(name, bot=False) -> User
    add_guild(name="Test Server", owner=None, id=None) -> Guild   (@everyone, the bot's role and member)
        id=n << 22 puts the guild on shard n % shard_count.
    add_role(guild, name, permissions=0) -> Role
    add_channel(guild, name="general", type=0, category=None) / add_category(guild, name) -> Channel
    add_thread(parent, name, owner=None, private=False) -> Channel
    add_member(guild, user_or_name, permissions=0, roles=(), bot=False, nick=None) -> Member
        permissions: int, discord.Permissions or names; kept in a role, so the interaction's
        `permissions` and discord.py's Member.guild_permissions agree.

Driving the bot (async). The interaction helpers wait for the bot's first answer (wait=False: don't;
timeout=: override FakeDiscord(timeout=5.0)) and fail with an AssertionError saying what happened:
    send_message(channel, author, content="", embeds=(), mentions=(), webhook_id=None, type=0,
                 edit=False, message_id=None, attachments=()) -> message dict
        MESSAGE_CREATE (MESSAGE_UPDATE with edit=True) with author, member, mentions (also parsed
        from <@id> in content), embeds (dicts or discord.Embed), timestamp, guild_id.
    slash(guild, channel, user, "name" or "group sub", options={...}) -> InteractionResult
        Option types and `resolved` data come from the synced command; strict=True (default) also
        requires the command to be synced for that guild or globally and checks required options,
        choices, min/max and channel types, as Discord's client does.
    autocomplete(guild, channel, user, "name", options={...}, focused="opt") -> InteractionResult
    click(message, custom_id, user)                              (message: a result, Reply, dict or id)
    select(message, custom_id, values, user, component_type=None)  (values: strings, or channels/
                                                                    users/roles for those selects)
    submit_modal(result_or_custom_id, {field_custom_id: value}, user)   (Label or action-row modals;
                                                                          missing fields keep defaults)
    dispatch(event, data, guild_id)   guild_create(guild, joined=True)
    drop(session=None, code=4000, resumable=True)   request_reconnect(session)   invalidate_session(s)

InteractionResult: the callback (type 4 message, 5 deferred, 6 deferred update, 7 update, 8 choices,
9 modal) read like a Reply, plus what came later for the same token:
    .type .content .embeds .embed .text() .components (custom_ids) .component(id) .ephemeral .flags
    .allowed_mentions .pings (mentions that would notify) .attachments .files {filename: bytes} .choices .modal .deferred
    .message -> Reply of the original response now      .rejections (answers the fake refused)
    await .followup() -> the next follow-up (Reply)      await .edited() -> original after next edit

What the bot did:
    fake.requests [RecordedRequest: method, path, route, query, json, files, headers, status, error]
    fake.unexpected (routes the fake does not serve; 404 like Discord)   fake.rejected (all 4xx)
    fake.assert_clean()   fake.commands(guild=None) -> {name: command}
    fake.command_syncs [(guild_id or None, [names])]   fake.posts(channel=None) -> [Reply]
    fake.message(id) -> Reply   fake.sessions [GatewaySession: shard, intents, seq, connected]
    await fake.wait_for_posts(n, channel)  wait_for_request(method, path_regex)  wait_for_sessions(n)
    await fake.wait_until(predicate, "what")

Discord behaviour the fake reproduces, so bugs show up in tests: message/embed/component/modal/
choice and command-definition limits (400 50035); one acknowledgement per interaction (400 40060);
follow-ups and edits only after it (404 10015); the bot's own non-ephemeral messages echoed back
to it; MESSAGE_CONTENT and GUILD_MESSAGES intents; members in GUILD_CREATE only with the presences
intent (else discord.py chunks them); ephemeral messages usable only by their owner; sessions that
RESUME get the events they missed; a close with 1000/1001 by the bot ends its session (discord.py's
close() actually sends 4000, so its sessions stay resumable, as on Discord).
Not reproduced: rate limits (429), the 3-second deadline for the first answer, permission
overwrites, DMs, voice, ETF encoding and zlib-compressed frames.
"""
from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import os
import re
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import discord
import discord.gateway
import discord.http
import pytest
import yarl
from aiohttp import WSMsgType, web

log = logging.getLogger("fake_discord")

DEFAULT_TIMEOUT = 5.0
DISCORD_EPOCH_MS = 1420070400000

# Gateway intents the fake honours.
INTENT_GUILD_PRESENCES = 1 << 8
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_MESSAGE_CONTENT = 1 << 15

EPHEMERAL = 1 << 6
LOADING = 1 << 7
COMPONENTS_V2 = 1 << 15

EVERYONE_PERMISSIONS = discord.Permissions(
    view_channel=True, send_messages=True, send_messages_in_threads=True, read_message_history=True,
    embed_links=True, attach_files=True, add_reactions=True, use_application_commands=True,
    create_public_threads=True, use_external_emojis=True,
).value
BOT_PERMISSIONS = EVERYONE_PERMISSIONS | discord.Permissions(manage_messages=True, manage_threads=True).value
ALL_PERMISSIONS = discord.Permissions.all().value


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------

_last_snowflake = 0


def snowflake() -> int:
    """A new Discord-style ID: milliseconds since the Discord epoch << 22, strictly increasing."""
    global _last_snowflake
    candidate = (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22
    _last_snowflake = max(candidate, _last_snowflake + 1)
    return _last_snowflake


def iso_now() -> str:
    return datetime.now(timezone.utc).isoformat()


def id_of(thing: Any) -> int:
    """The snowflake of a fake object, a discord.py object, a payload dict or a plain int/str."""
    if isinstance(thing, dict):
        return int(thing["id"])
    if hasattr(thing, "id"):
        return int(thing.id)
    return int(thing)


def permission_value(permissions: Any) -> int:
    """int, discord.Permissions, or permission names (["manage_guild", ...]) as an int."""
    if isinstance(permissions, discord.Permissions):
        return permissions.value
    if isinstance(permissions, int):
        return permissions
    return discord.Permissions(**{name: True for name in permissions}).value


def flatten_components(components: Iterable[dict]) -> list[dict]:
    """Every component in a (v1 or v2) component tree, depth first."""
    found: list[dict] = []
    for component in components or ():
        found.append(component)
        found.extend(flatten_components(component.get("components") or ()))
        for key in ("component", "accessory"):
            if component.get(key):
                found.extend(flatten_components([component[key]]))
    return found


class _Signal:
    """Wake every waiter when something changes; waiters re-check their own condition."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def until(self, predicate: Callable[[], Any], timeout: float, failure: Callable[[], str]) -> Any:
        """The predicate's first truthy value; re-checked on every change and every 50 ms (it may
        look at state outside the fake, such as the bot's), AssertionError(failure()) on timeout."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            value = predicate()
            if value:
                return value
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(failure())
            event = self._event
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(event.wait(), min(remaining, 0.05))


class DiscordError(Exception):
    """An error answer in Discord's shape: {"message", "code", "errors"?}."""

    def __init__(self, status: int, code: int, message: str, problems: Iterable[tuple[str, str]] = ()):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.problems = list(problems)

    def body(self) -> dict:
        body: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.problems:
            body["errors"] = {path: {"_errors": [{"code": "INVALID", "message": text}]} for path, text in self.problems}
        return body

    def __str__(self) -> str:
        details = "; ".join(f"{path}: {text}" for path, text in self.problems)
        return f"{self.status} {self.message} (code {self.code})" + (f" - {details}" if details else "")


def invalid_form(problems: list[tuple[str, str]]) -> DiscordError:
    return DiscordError(400, 50035, "Invalid Form Body", problems)


BODY = web.RequestKey("body", object)
FILES = web.RequestKey("files", list)
RECORD = web.RequestKey("record", object)


def json_response(data: Any, status: int = 200) -> web.Response:
    # discord.py only parses JSON when the content type is exactly application/json.
    return web.Response(status=status, body=json.dumps(data).encode(), headers={"Content-Type": "application/json"})


# ---------------------------------------------------------------------------------------------
# The world: users, guilds, roles, channels, members
# ---------------------------------------------------------------------------------------------

@dataclass(eq=False)
class User:
    id: int
    name: str
    bot: bool = False
    global_name: Optional[str] = None

    @property
    def mention(self) -> str:
        return f"<@{self.id}>"

    def payload(self) -> dict:
        return {"id": str(self.id), "username": self.name, "global_name": self.global_name or self.name,
                "discriminator": "0", "avatar": None, "bot": self.bot, "public_flags": 0, "flags": 0}


@dataclass(eq=False)
class Role:
    id: int
    guild_id: int
    name: str
    permissions: int = 0
    position: int = 0
    bot_id: Optional[int] = None

    @property
    def mention(self) -> str:
        return f"<@&{self.id}>"

    def payload(self) -> dict:
        data = {"id": str(self.id), "name": self.name, "permissions": str(self.permissions),
                "position": self.position, "color": 0, "colors": {"primary_color": 0}, "hoist": False,
                "managed": self.bot_id is not None, "mentionable": False, "flags": 0, "icon": None,
                "unicode_emoji": None}
        if self.bot_id is not None:
            data["tags"] = {"bot_id": str(self.bot_id)}
        return data


@dataclass(eq=False)
class Channel:
    id: int
    guild_id: int
    name: str
    type: int = 0                      # 0 text, 2 voice, 4 category, 5 news, 11/12 threads
    parent_id: Optional[int] = None    # category of a channel, channel of a thread
    position: int = 0
    owner_id: Optional[int] = None     # threads

    @property
    def mention(self) -> str:
        return f"<#{self.id}>"

    @property
    def is_thread(self) -> bool:
        return self.type in (10, 11, 12)

    def payload(self) -> dict:
        data: dict[str, Any] = {"id": str(self.id), "type": self.type, "guild_id": str(self.guild_id),
                                "name": self.name, "flags": 0}
        parent = str(self.parent_id) if self.parent_id else None
        if self.is_thread:
            data.update(parent_id=parent, owner_id=str(self.owner_id), message_count=0, member_count=1,
                        total_message_sent=0, rate_limit_per_user=0, last_message_id=None,
                        thread_metadata={"archived": False, "auto_archive_duration": 1440, "locked": False,
                                         "archive_timestamp": iso_now(), "create_timestamp": iso_now()})
            return data
        data.update(position=self.position, permission_overwrites=[], parent_id=parent)
        if self.type != 4:
            data.update(nsfw=False, topic=None, last_message_id=None, rate_limit_per_user=0)
        if self.type == 2:
            data.update(bitrate=64000, user_limit=0, rtc_region=None)
        return data


@dataclass(eq=False)
class Member:
    guild: "Guild" = field(repr=False)
    user: User
    role_ids: list[int] = field(default_factory=list)
    nick: Optional[str] = None
    joined_at: str = field(default_factory=iso_now)

    @property
    def id(self) -> int:
        return self.user.id

    @property
    def mention(self) -> str:
        return self.user.mention

    @property
    def permissions(self) -> int:
        return self.guild.permissions_of(self)

    def payload(self, *, with_user: bool = True, permissions: bool = False) -> dict:
        data: dict[str, Any] = {"roles": [str(r) for r in self.role_ids], "joined_at": self.joined_at,
                                "nick": self.nick, "avatar": None, "premium_since": None, "deaf": False,
                                "mute": False, "pending": False, "flags": 0, "communication_disabled_until": None}
        if with_user:
            data["user"] = self.user.payload()
        if permissions:
            data["permissions"] = str(self.permissions)
        return data


@dataclass(eq=False)
class Guild:
    id: int
    name: str
    owner_id: int
    roles: dict[int, Role] = field(default_factory=dict, repr=False)
    channels: dict[int, Channel] = field(default_factory=dict, repr=False)   # threads included
    members: dict[int, Member] = field(default_factory=dict, repr=False)
    joined_at: str = field(default_factory=iso_now, repr=False)

    def shard_id(self, shard_count: int) -> int:
        return (self.id >> 22) % shard_count

    def permissions_of(self, member: Member) -> int:
        if member.id == self.owner_id:
            return ALL_PERMISSIONS
        value = self.roles[self.id].permissions
        for role_id in member.role_ids:
            value |= self.roles[role_id].permissions
        return ALL_PERMISSIONS if value & discord.Permissions(administrator=True).value else value

    def payload(self, *, all_members: bool, bot_id: int) -> dict:
        members = [m.payload() for m in self.members.values() if all_members or m.id == bot_id]
        return {
            "id": str(self.id), "name": self.name, "owner_id": str(self.owner_id), "icon": None,
            "roles": [r.payload() for r in self.roles.values()], "emojis": [], "stickers": [], "features": [],
            "channels": [c.payload() for c in self.channels.values() if not c.is_thread],
            "threads": [c.payload() for c in self.channels.values() if c.is_thread],
            "members": members, "member_count": len(self.members), "large": False, "unavailable": False,
            "joined_at": self.joined_at, "voice_states": [], "presences": [], "stage_instances": [],
            "guild_scheduled_events": [], "soundboard_sounds": [], "preferred_locale": "en-US",
            "system_channel_id": None, "rules_channel_id": None, "public_updates_channel_id": None,
            "afk_channel_id": None, "afk_timeout": 300, "verification_level": 0, "mfa_level": 0,
            "default_message_notifications": 0, "explicit_content_filter": 0, "nsfw_level": 0,
            "premium_tier": 0, "premium_progress_bar_enabled": False, "description": None, "banner": None,
            "splash": None, "discovery_splash": None, "vanity_url_code": None, "application_id": None,
            "max_members": 500000, "lazy": True,
        }


# ---------------------------------------------------------------------------------------------
# What the bot sent
# ---------------------------------------------------------------------------------------------

@dataclass
class UploadedFile:
    field: str
    filename: str
    content_type: str
    data: bytes


@dataclass
class RecordedRequest:
    method: str
    path: str                     # below /api/v10, e.g. "/channels/123/messages"
    route: str                    # the route template, e.g. "/channels/{channel_id}/messages"
    query: dict
    json: Any
    files: list[UploadedFile]
    headers: dict
    status: int = 0
    error: Optional[str] = None

    def __str__(self) -> str:
        return f"{self.method} {self.path} -> {self.status}" + (f" ({self.error})" if self.error else "")


class Reply:
    """A message (or callback data) the bot produced, with the fields tests look at."""

    def __init__(self, data: dict, *, files: Optional[dict[str, bytes]] = None, allowed_mentions: Any = None):
        self.raw = data
        self.id: Optional[int] = int(data["id"]) if "id" in data else None
        self._files = files or {}
        self._allowed_mentions = allowed_mentions

    def __repr__(self) -> str:
        return f"<Reply content={self.content!r} embeds={len(self.embeds)} components={self.components}>"

    @property
    def content(self) -> str:
        return self.raw.get("content") or ""

    @property
    def embeds(self) -> list[dict]:
        return self.raw.get("embeds") or []

    @property
    def embed(self) -> Optional[dict]:
        return self.embeds[0] if self.embeds else None

    def text(self) -> str:
        """Content plus every embed's title, description, fields and footer, for `in` checks."""
        parts = [self.content]
        for embed in self.embeds:
            parts += [embed.get("title") or "", embed.get("description") or ""]
            parts += [f"{f.get('name')}\n{f.get('value')}" for f in embed.get("fields") or ()]
            parts.append((embed.get("footer") or {}).get("text") or "")
        return "\n".join(p for p in parts if p)

    @property
    def flags(self) -> int:
        return int(self.raw.get("flags") or 0)

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & EPHEMERAL)

    @property
    def all_components(self) -> list[dict]:
        return flatten_components(self.raw.get("components") or ())

    @property
    def components(self) -> list[str]:
        """custom_ids of every interactive component, in order."""
        return [c["custom_id"] for c in self.all_components if c.get("custom_id")]

    def component(self, custom_id: str) -> dict:
        for component in self.all_components:
            if component.get("custom_id") == custom_id:
                return component
        raise AssertionError(f"no component with custom_id {custom_id!r}; the message has {self.components}")

    @property
    def allowed_mentions(self) -> Any:
        return self._allowed_mentions if self._allowed_mentions is not None else self.raw.get("allowed_mentions")

    @property
    def pings(self) -> list[str]:
        """Mentions in the content that would notify someone under the message's allowed_mentions
        (without allowed_mentions Discord notifies every mention). Embeds never ping."""
        allowed = self.allowed_mentions
        parse = {"users", "roles", "everyone"} if allowed is None else set(allowed.get("parse") or ())
        users = {str(u) for u in (allowed or {}).get("users") or ()}
        roles = {str(r) for r in (allowed or {}).get("roles") or ()}
        found = []
        for match in re.finditer(r"@(everyone|here)|<@!?(\d+)>|<@&(\d+)>", self.content):
            everyone, user, role = match.groups()
            if (everyone and "everyone" in parse) or (user and ("users" in parse or user in users)) or (
                    role and ("roles" in parse or role in roles)):
                found.append(match.group(0))
        return found

    @property
    def attachments(self) -> list[dict]:
        return self.raw.get("attachments") or []

    @property
    def files(self) -> dict[str, bytes]:
        return dict(self._files)


class InteractionResult(Reply):
    """One interaction the fake sent and everything the bot answered for its token."""

    def __init__(self, fake: "FakeDiscord", payload: dict, *, label: str):
        super().__init__({})
        self.fake, self.payload, self.label = fake, payload, label
        self.id = int(payload["id"])
        self.token: str = payload["token"]
        self.user_id = int((payload.get("member") or {}).get("user", payload.get("user", {}))["id"])
        self.callback: Optional[dict] = None
        self.original_id: Optional[int] = None
        self.followups: list[Reply] = []
        self.edits: list[Reply] = []
        self.rejections: list[str] = []
        self._followups_read = 0
        self._edits_read = 0
        self._signal = _Signal()

    def __repr__(self) -> str:
        return f"<InteractionResult {self.label} type={self.type} content={self.content!r}>"

    # Reply fields read the callback's data.
    @property
    def raw(self) -> dict:
        return (self.callback or {}).get("data") or {}

    @raw.setter
    def raw(self, value: dict) -> None:
        pass

    @property
    def type(self) -> Optional[int]:
        return self.callback["type"] if self.callback else None

    @property
    def deferred(self) -> bool:
        return self.type in (5, 6)

    @property
    def choices(self) -> list[dict]:
        assert self.type == 8, f"{self.label} was answered with type {self.type}, not autocomplete choices"
        return self.raw.get("choices") or []

    @property
    def modal(self) -> dict:
        assert self.type == 9, f"{self.label} was answered with type {self.type}, not a modal"
        return self.raw

    @property
    def message(self) -> Reply:
        """The original response as it is now (after any edits)."""
        assert self.original_id is not None, f"{self.label} has no original response message"
        return self.fake.message(self.original_id)

    def _changed(self) -> None:
        self._signal.notify()

    def _describe(self) -> str:
        lines = [f"REST calls for this interaction: {[str(r) for r in self.fake.requests if self.token in r.path]}"]
        if self.rejections:
            lines.append(f"the fake rejected the bot's answers: {self.rejections}")
        return "\n".join(lines)

    async def wait(self, timeout: Optional[float] = None) -> "InteractionResult":
        timeout = self.fake.timeout if timeout is None else timeout
        await self._signal.until(
            lambda: self.callback is not None, timeout,
            lambda: f"the bot never answered {self.label} within {timeout}s\n{self._describe()}")
        return self

    async def followup(self, timeout: Optional[float] = None) -> Reply:
        """The next follow-up message the bot sent for this interaction."""
        timeout = self.fake.timeout if timeout is None else timeout
        await self._signal.until(
            lambda: len(self.followups) > self._followups_read, timeout,
            lambda: f"no follow-up #{self._followups_read + 1} for {self.label} within {timeout}s\n{self._describe()}")
        self._followups_read += 1
        return self.followups[self._followups_read - 1]

    async def edited(self, timeout: Optional[float] = None) -> Reply:
        """The original response right after the bot's next edit of it."""
        timeout = self.fake.timeout if timeout is None else timeout
        await self._signal.until(
            lambda: len(self.edits) > self._edits_read, timeout,
            lambda: f"no edit #{self._edits_read + 1} of {self.label}'s response within {timeout}s\n{self._describe()}")
        self._edits_read += 1
        return self.edits[self._edits_read - 1]


# ---------------------------------------------------------------------------------------------
# Validation of what the bot sends (Discord's documented limits)
# ---------------------------------------------------------------------------------------------

def _too_long(problems: list, path: str, value: Any, limit: int, minimum: int = 0) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        problems.append((path, f"must be a string, got {type(value).__name__}"))
    elif not minimum <= len(value) <= limit:
        problems.append((path, f"must be between {minimum} and {limit} in length (got {len(value)})"))


def embed_problems(embeds: list, path: str = "embeds") -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    if len(embeds) > 10:
        problems.append((path, "must have 10 or fewer embeds"))
    total = 0
    for i, embed in enumerate(embeds):
        at = f"{path}.{i}"
        _too_long(problems, f"{at}.title", embed.get("title"), 256)
        _too_long(problems, f"{at}.description", embed.get("description"), 4096)
        _too_long(problems, f"{at}.footer.text", (embed.get("footer") or {}).get("text"), 2048)
        _too_long(problems, f"{at}.author.name", (embed.get("author") or {}).get("name"), 256)
        fields = embed.get("fields") or []
        if len(fields) > 25:
            problems.append((f"{at}.fields", "must have 25 or fewer fields"))
        for j, fld in enumerate(fields):
            _too_long(problems, f"{at}.fields.{j}.name", fld.get("name"), 256, 1)
            _too_long(problems, f"{at}.fields.{j}.value", fld.get("value"), 1024, 1)
        for key in ("url", "image", "thumbnail"):
            url = embed.get(key) if key == "url" else (embed.get(key) or {}).get("url")
            if url is not None and not re.match(r"(https?|attachment)://", str(url)):
                problems.append((f"{at}.{key}", f"Not a well formed URL: {url!r}"))
        total += sum(len(str(embed.get(k) or "")) for k in ("title", "description"))
        total += len((embed.get("footer") or {}).get("text") or "") + len((embed.get("author") or {}).get("name") or "")
        total += sum(len(str(f.get("name") or "")) + len(str(f.get("value") or "")) for f in fields)
    if total > 6000:
        problems.append((path, f"embeds must total 6000 or fewer characters (got {total})"))
    return problems


def component_problems(components: list, *, v2: bool, path: str = "components") -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    if not v2:
        if len(components) > 5:
            problems.append((path, "must have 5 or fewer action rows"))
        for i, row in enumerate(components):
            if row.get("type") != 1:
                problems.append((f"{path}.{i}", "top-level components must be action rows without IS_COMPONENTS_V2"))
                continue
            children = row.get("components") or []
            selects = [c for c in children if c.get("type") in (3, 5, 6, 7, 8)]
            if not children or len(children) > 5 or (selects and len(children) > 1):
                problems.append((f"{path}.{i}", "an action row holds 1-5 buttons or exactly one select"))
    seen: set[str] = set()
    for i, comp in enumerate(flatten_components(components)):
        at = f"{path}[{i}]"
        custom_id = comp.get("custom_id")
        if custom_id is not None:
            _too_long(problems, f"{at}.custom_id", custom_id, 100, 1)
            if custom_id in seen:
                problems.append((f"{at}.custom_id", f"custom_id {custom_id!r} is used twice"))
            seen.add(custom_id)
        if comp.get("type") == 2:
            _too_long(problems, f"{at}.label", comp.get("label"), 80)
            if comp.get("style") == 5:
                if not comp.get("url") or custom_id:
                    problems.append((at, "a link button needs a url and no custom_id"))
            elif comp.get("style") != 6 and not custom_id:
                problems.append((at, "a button needs a custom_id"))
        if comp.get("type") in (3, 5, 6, 7, 8):
            _too_long(problems, f"{at}.placeholder", comp.get("placeholder"), 150)
            if comp.get("type") == 3:
                options = comp.get("options") or []
                if not 1 <= len(options) <= 25:
                    problems.append((f"{at}.options", f"a select needs 1-25 options (got {len(options)})"))
                for j, option in enumerate(options):
                    _too_long(problems, f"{at}.options.{j}.label", option.get("label"), 100, 1)
                    _too_long(problems, f"{at}.options.{j}.value", option.get("value"), 100, 1)
                    _too_long(problems, f"{at}.options.{j}.description", option.get("description"), 100)
        if comp.get("type") == 10:
            _too_long(problems, f"{at}.content", comp.get("content"), 4000, 1)
    return problems


def message_problems(data: dict, *, creating: bool, has_files: bool = False) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    flags = int(data.get("flags") or 0)
    v2 = bool(flags & COMPONENTS_V2)
    if data.get("content") is not None:
        _too_long(problems, "content", data["content"], 2000)
    if v2 and (data.get("content") or data.get("embeds")):
        problems.append(("content", "IS_COMPONENTS_V2 messages cannot have content or embeds"))
    problems += embed_problems(data.get("embeds") or [])
    problems += component_problems(data.get("components") or [], v2=v2)
    if creating and not (data.get("content") or data.get("embeds") or data.get("components")
                         or data.get("poll") or has_files or data.get("sticker_ids")):
        problems.append(("content", "Cannot send an empty message (code 50006)"))
    return problems


def modal_problems(data: dict) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    _too_long(problems, "custom_id", data.get("custom_id"), 100, 1)
    _too_long(problems, "title", data.get("title"), 45, 1)
    components = data.get("components") or []
    if not 1 <= len(components) <= 5:
        problems.append(("components", f"a modal needs 1-5 components (got {len(components)})"))
    for i, comp in enumerate(components):
        if comp.get("type") == 18:
            _too_long(problems, f"components.{i}.label", comp.get("label"), 45, 1)
            _too_long(problems, f"components.{i}.description", comp.get("description"), 100)
            if not comp.get("component"):
                problems.append((f"components.{i}", "a label needs a component"))
        elif comp.get("type") == 1:
            if len(comp.get("components") or []) != 1:
                problems.append((f"components.{i}", "a modal action row holds exactly one text input"))
        elif comp.get("type") != 10:
            problems.append((f"components.{i}", f"component type {comp.get('type')} is not allowed in a modal"))
    for i, comp in enumerate(flatten_components(components)):
        if comp.get("type") == 4:
            _too_long(problems, f"text_input[{i}].custom_id", comp.get("custom_id"), 100, 1)
            _too_long(problems, f"text_input[{i}].label", comp.get("label"), 45)
            _too_long(problems, f"text_input[{i}].placeholder", comp.get("placeholder"), 100)
            _too_long(problems, f"text_input[{i}].value", comp.get("value"), 4000)
            for key in ("min_length", "max_length"):
                if comp.get(key) is not None and not 0 <= comp[key] <= 4000:
                    problems.append((f"text_input[{i}].{key}", "must be between 0 and 4000"))
    return problems


def choice_problems(data: dict) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    choices = data.get("choices") or []
    if len(choices) > 25:
        problems.append(("choices", f"must have 25 or fewer choices (got {len(choices)})"))
    for i, choice in enumerate(choices):
        _too_long(problems, f"choices.{i}.name", choice.get("name"), 100, 1)
        if isinstance(choice.get("value"), str):
            _too_long(problems, f"choices.{i}.value", choice["value"], 100)
    return problems


_COMMAND_NAME = re.compile(r"^[-_\w]{1,32}$")


def command_problems(commands: list, *, path: str = "") -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    names = set()
    for i, cmd in enumerate(commands):
        at = f"{path}{i}"
        name = cmd.get("name", "")
        ctype = cmd.get("type", 1)
        if (name, ctype) in names:
            problems.append((f"{at}.name", f"Application command names must be unique ({name!r})"))
        names.add((name, ctype))
        if ctype == 1:
            if not _COMMAND_NAME.match(name) or name != name.lower():
                problems.append((f"{at}.name", f"invalid slash command name {name!r}"))
            _too_long(problems, f"{at}.description", cmd.get("description"), 100, 1)
        problems += option_problems(cmd.get("options") or [], f"{at}.options")
    return problems


def option_problems(options: list, path: str) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    if len(options) > 25:
        problems.append((path, "must have 25 or fewer options"))
    optional_seen = False
    for i, opt in enumerate(options):
        at = f"{path}.{i}"
        if not _COMMAND_NAME.match(opt.get("name", "")) or opt.get("name") != opt.get("name", "").lower():
            problems.append((f"{at}.name", f"invalid option name {opt.get('name')!r}"))
        _too_long(problems, f"{at}.description", opt.get("description"), 100, 1)
        if opt.get("required"):
            if optional_seen:
                problems.append((f"{at}.required", "required options must be placed before non-required options"))
        elif opt.get("type") not in (1, 2):
            optional_seen = True
        if len(opt.get("choices") or []) > 25:
            problems.append((f"{at}.choices", "must have 25 or fewer choices"))
        if opt.get("choices") and opt.get("autocomplete"):
            problems.append((f"{at}.autocomplete", "cannot have both choices and autocomplete"))
        problems += option_problems(opt.get("options") or [], f"{at}.options")
    return problems


# ---------------------------------------------------------------------------------------------
# Gateway sessions
# ---------------------------------------------------------------------------------------------

class GatewaySession:
    """One IDENTIFY: its shard, intents, sequence, and the events kept for RESUME."""

    BUFFER = 2000

    def __init__(self, shard: Optional[tuple[int, int]], intents: int):
        self.id = uuid.uuid4().hex
        self.shard = shard
        self.intents = intents
        self.seq = 0
        self.ws: Optional[web.WebSocketResponse] = None
        self.sent: list[dict] = []
        self.resumable = True
        self.ready = False
        self.lock = asyncio.Lock()

    def __repr__(self) -> str:
        state = "connected" if self.ws is not None else ("resumable" if self.resumable else "dead")
        return f"<GatewaySession shard={self.shard} seq={self.seq} {state}>"

    @property
    def connected(self) -> bool:
        return self.ws is not None and not self.ws.closed

    def handles(self, guild_id: Optional[int]) -> bool:
        if guild_id is None or self.shard is None:
            return True
        shard_id, count = self.shard
        return (guild_id >> 22) % count == shard_id

    async def dispatch(self, event: str, data: Any) -> None:
        """Send (or, while disconnected, keep for RESUME) one numbered event."""
        async with self.lock:
            self.seq += 1
            payload = {"op": 0, "t": event, "s": self.seq, "d": data}
            self.sent.append(payload)
            del self.sent[:-self.BUFFER]
            if self.connected:
                await self.ws.send_str(json.dumps(payload))


# ---------------------------------------------------------------------------------------------
# The fake
# ---------------------------------------------------------------------------------------------

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


class FakeDiscord:
    """See the module docstring. Use as `async with FakeDiscord() as fake:`."""

    current: Optional["FakeDiscord"] = None

    def __init__(self, *, token: Optional[str] = None, bot_name: str = "XP Bot", timeout: float = DEFAULT_TIMEOUT,
                 heartbeat_interval_ms: int = 2000, echo_bot_messages: bool = True,
                 recommended_shards: int = 1, port: int = 0):
        self.token = token                        # when set, other tokens get 401 / close 4004
        self.timeout = timeout
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.echo_bot_messages = echo_bot_messages  # Discord echoes the bot's own messages to it
        self.recommended_shards = recommended_shards
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
        self._interactions: dict[str, InteractionResult] = {}
        self._modals: dict[str, InteractionResult] = {}      # modal custom_id -> result that showed it
        self._sockets: set[web.WebSocketResponse] = set()
        self._closed_by_fake: set[web.WebSocketResponse] = set()
        self._signal = _Signal()
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

    def add_user(self, name: str, *, bot: bool = False, id: Optional[int] = None) -> User:
        user = User(id or snowflake(), name, bot=bot)
        self.users[user.id] = user
        return user

    def add_guild(self, name: str = "Test Server", *, owner: Optional[User] = None, id: Optional[int] = None) -> Guild:
        """A guild the bot is in: an @everyone role, the bot's managed role and bot member, the owner."""
        owner = owner or self.add_user(f"{name} owner")
        guild = Guild(id or snowflake(), name, owner.id)
        guild.roles[guild.id] = Role(guild.id, guild.id, "@everyone", EVERYONE_PERMISSIONS)
        self.guilds[guild.id] = guild
        bot_role = Role(snowflake(), guild.id, self.bot_user.name, BOT_PERMISSIONS, position=1, bot_id=self.bot_user.id)
        guild.roles[bot_role.id] = bot_role
        guild.members[self.bot_user.id] = Member(guild, self.bot_user, [bot_role.id])
        guild.members[owner.id] = Member(guild, owner)
        return guild

    def add_role(self, guild: Guild, name: str, permissions: Any = 0) -> Role:
        role = Role(snowflake(), guild.id, name, permission_value(permissions), position=len(guild.roles))
        guild.roles[role.id] = role
        return role

    def add_channel(self, guild: Guild, name: str = "general", *, type: int = 0,
                    category: Optional[Channel] = None) -> Channel:
        channel = Channel(snowflake(), guild.id, name, type, category.id if category else None,
                          position=len(guild.channels))
        guild.channels[channel.id] = channel
        return channel

    def add_category(self, guild: Guild, name: str) -> Channel:
        return self.add_channel(guild, name, type=4)

    def add_thread(self, parent: Channel, name: str, *, owner: Optional[User] = None, private: bool = False) -> Channel:
        guild = self.guilds[parent.guild_id]
        thread = Channel(snowflake(), guild.id, name, 12 if private else 11, parent.id,
                         owner_id=(owner or self.bot_user).id)
        guild.channels[thread.id] = thread
        return thread

    def add_member(self, guild: Guild, user: Any, *, permissions: Any = 0, roles: Iterable[Role] = (),
                   bot: bool = False, nick: Optional[str] = None) -> Member:
        if isinstance(user, str):
            user = self.add_user(user, bot=bot)
        user = user.user if isinstance(user, Member) else user
        self.users.setdefault(user.id, user)
        role_ids = [id_of(r) for r in roles]
        value = permission_value(permissions)
        if value:
            existing = next((r for r in guild.roles.values() if r.name == f"perms {value:#x}"), None)
            role_ids.append((existing or self.add_role(guild, f"perms {value:#x}", value)).id)
        member = Member(guild, user, role_ids, nick)
        guild.members[user.id] = member
        return member

    def member(self, guild: Guild, user: Any) -> Member:
        """The user's membership of the guild (added with no roles if missing)."""
        user = user.user if isinstance(user, Member) else user
        return guild.members.get(user.id) or self.add_member(guild, user)

    def channel(self, channel_id: Any) -> Channel:
        cid = id_of(channel_id)
        for guild in self.guilds.values():
            if cid in guild.channels:
                return guild.channels[cid]
        raise DiscordError(404, 10003, "Unknown Channel")

    def shard_guilds(self, shard: Optional[tuple[int, int]]) -> list[Guild]:
        return [g for g in self.guilds.values() if shard is None or g.shard_id(shard[1]) == shard[0]]

    # -- what the bot did ----------------------------------------------------------------------

    @property
    def unexpected(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.route == "(unknown)"]

    @property
    def rejected(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.status >= 400]

    def assert_clean(self) -> None:
        """No call to an unknown route and no answer the fake had to refuse."""
        problems = [str(r) for r in self.rejected]
        assert not problems, "the bot made calls Discord would refuse:\n" + "\n".join(problems)

    def commands(self, guild: Any = None) -> dict[str, dict]:
        """Commands synced globally (guild=None) or to one guild, by name."""
        scope = None if guild is None else id_of(guild)
        return {name: cmd for (name, _), cmd in self._commands.get(scope, {}).items()}

    def message(self, message_id: Any) -> Reply:
        mid = id_of(message_id)
        return Reply(copy.deepcopy(self._messages[mid]), files=self._files.get(mid))

    def posts(self, channel: Any = None) -> list[Reply]:
        """Messages the bot posted with POST /channels/{id}/messages, oldest first (current state)."""
        return [self.message(mid) for mid in self._posts
                if mid in self._messages and (channel is None or self._messages[mid]["channel_id"] == str(id_of(channel)))]

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

    # -- gateway: driving ----------------------------------------------------------------------

    async def dispatch(self, event: str, data: Any, guild_id: Optional[int] = None) -> int:
        """Send an event to every session handling the guild; returns how many got it (or will, on resume)."""
        targets = [s for s in self.sessions if s.resumable and s.handles(guild_id)]
        for session in targets:
            payload = data
            if event in ("MESSAGE_CREATE", "MESSAGE_UPDATE"):
                if guild_id is not None and not session.intents & INTENT_GUILD_MESSAGES:
                    continue
                payload = self._content_for(session, data)
            await session.dispatch(event, payload)
        return len(targets)

    def _content_for(self, session: GatewaySession, message: dict) -> dict:
        """Without MESSAGE_CONTENT, Discord blanks content unless the bot wrote or is mentioned in it."""
        if session.intents & INTENT_MESSAGE_CONTENT:
            return message
        if message["author"]["id"] == str(self.bot_user.id) or any(
                m["id"] == str(self.bot_user.id) for m in message.get("mentions", [])):
            return message
        return {**message, "content": "", "embeds": [], "attachments": [], "components": []}

    async def _dispatch_required(self, event: str, data: Any, guild_id: int) -> None:
        if not await self.dispatch(event, data, guild_id):
            raise AssertionError(f"no bot gateway session handles guild {guild_id} (sessions: {self.sessions})")

    async def guild_create(self, guild: Guild, *, joined: bool = True) -> None:
        """GUILD_CREATE to connected bots: the bot joined the guild (on_guild_join) or, with
        joined=False, an outage ended (on_guild_available)."""
        for session in self.sessions:
            if session.resumable and session.handles(guild.id):
                payload = self._guild_payload(guild, session)
                if joined:
                    del payload["unavailable"]  # discord.py tells a join by the missing key
                await session.dispatch("GUILD_CREATE", payload)

    def _guild_payload(self, guild: Guild, session: GatewaySession) -> dict:
        return guild.payload(all_members=bool(session.intents & INTENT_GUILD_PRESENCES), bot_id=self.bot_user.id)

    async def drop(self, session: Optional[GatewaySession] = None, *, code: int = 4000,
                   resumable: bool = True) -> None:
        """Close gateway connections (all by default) like Discord does; the bot reconnects/resumes."""
        for target in [session] if session else list(self.sessions):
            ws = target.ws
            target.resumable = target.resumable and resumable
            if ws is not None and not ws.closed:
                self._closed_by_fake.add(ws)
                await ws.close(code=code, message=b"dropped by fake discord")

    async def request_reconnect(self, session: GatewaySession) -> None:
        """Op 7 RECONNECT: the bot closes and resumes."""
        if session.connected:
            await session.ws.send_str(json.dumps({"op": 7, "d": None}))

    async def invalidate_session(self, session: GatewaySession) -> None:
        """Op 9 INVALID_SESSION (not resumable): the bot identifies again (discord.py waits 5s first)."""
        session.resumable = False
        if session.connected:
            await session.ws.send_str(json.dumps({"op": 9, "d": False}))

    # -- gateway: messages ---------------------------------------------------------------------

    def _message_payload(self, channel: Channel, author: Any, content: str, *, embeds: Iterable = (),
                         mentions: Iterable = (), webhook_id: Optional[int] = None, type: int = 0,
                         message_id: Optional[int] = None, attachments: Iterable = ()) -> dict:
        guild = self.guilds[channel.guild_id]
        user = author.user if isinstance(author, Member) else author
        mentioned = {id_of(m): m for m in mentions}
        for match in re.finditer(r"<@!?(\d+)>", content or ""):
            if int(match.group(1)) in self.users:
                mentioned.setdefault(int(match.group(1)), self.users[int(match.group(1))])
        mention_payloads = []
        for uid, who in mentioned.items():
            who = who.user if isinstance(who, Member) else self.users.get(uid, who)
            data = who.payload()
            if uid in guild.members:
                data["member"] = guild.members[uid].payload(with_user=False)
            mention_payloads.append(data)
        message = {
            "id": str(message_id or snowflake()), "channel_id": str(channel.id), "guild_id": str(guild.id),
            "author": user.payload(), "content": content or "", "timestamp": iso_now(), "edited_timestamp": None,
            "tts": False, "mention_everyone": "@everyone" in (content or "") or "@here" in (content or ""),
            "mentions": mention_payloads,
            "mention_roles": [m.group(1) for m in re.finditer(r"<@&(\d+)>", content or "")],
            "attachments": [self._attachment(channel.id, name, data) for name, data in attachments],
            "embeds": [e.to_dict() if isinstance(e, discord.Embed) else dict(e) for e in embeds],
            "components": [], "pinned": False, "type": type, "flags": 0,
        }
        if webhook_id is not None:
            message["webhook_id"] = str(webhook_id)
            message["author"] = {**user.payload(), "id": str(webhook_id), "bot": True}
        else:
            message["member"] = self.member(guild, user).payload(with_user=False)
        return message

    async def send_message(self, channel: Channel, author: Any, content: str = "", *, embeds: Iterable = (),
                           mentions: Iterable = (), webhook_id: Optional[int] = None, type: int = 0,
                           edit: bool = False, message_id: Optional[int] = None,
                           attachments: Iterable[tuple[str, bytes]] = ()) -> dict:
        """A user (or another bot, or a webhook) posts in a channel: MESSAGE_CREATE, or MESSAGE_UPDATE with edit=True."""
        assert not edit or message_id, "edit=True needs the message_id of the message being edited"
        message = self._message_payload(channel, author, content, embeds=embeds, mentions=mentions,
                                        webhook_id=webhook_id, type=type, message_id=message_id,
                                        attachments=attachments)
        if edit:
            message["edited_timestamp"] = iso_now()
        self._messages[int(message["id"])] = message
        await self._dispatch_required("MESSAGE_UPDATE" if edit else "MESSAGE_CREATE", message, channel.guild_id)
        return message

    # -- gateway: interactions -----------------------------------------------------------------

    def _where(self, guild: Guild, channel: Channel, user: Any) -> tuple[Guild, Channel, Member]:
        assert channel.guild_id == guild.id, f"channel {channel.name} is not in guild {guild.name}"
        return guild, channel, self.member(guild, user)

    def _interaction_payload(self, itype: int, guild: Guild, channel: Channel, member: Member, data: dict,
                             message: Optional[dict] = None) -> dict:
        payload = {
            "id": str(snowflake()), "application_id": str(self.application_id), "type": itype, "data": data,
            "guild_id": str(guild.id), "guild": {"id": str(guild.id), "locale": "en-US", "features": []},
            "channel_id": str(channel.id), "channel": {**channel.payload(), "permissions": str(member.permissions)},
            "member": member.payload(permissions=True), "token": f"tok-{uuid.uuid4().hex}", "version": 1,
            "app_permissions": str(guild.members[self.bot_user.id].permissions), "locale": "en-US",
            "guild_locale": "en-US", "entitlements": [], "authorizing_integration_owners": {"0": str(guild.id)},
            "context": 0, "attachment_size_limit": 10 * 1024 * 1024,
        }
        if message is not None:
            payload["message"] = message
        return payload

    async def _interact(self, payload: dict, label: str, wait: bool, timeout: Optional[float]) -> InteractionResult:
        result = InteractionResult(self, payload, label=label)
        self._interactions[result.token] = result
        await self._dispatch_required("INTERACTION_CREATE", payload, int(payload["guild_id"]))
        if wait:
            await result.wait(timeout)
        return result

    def _find_command(self, guild: Guild, name: str) -> tuple[Optional[dict], Optional[int]]:
        for scope in (guild.id, None):
            command = self._commands.get(scope, {}).get((name, 1))
            if command is not None:
                return command, scope
        return None, None

    def _resolve(self, resolved: dict, opt_type: int, value: Any, guild: Guild, member: Member) -> str:
        """Record a user/channel/role/attachment in `resolved` as Discord does; returns the option value."""
        if opt_type in (6, 9) and not isinstance(value, Role) and id_of(value) in self.users:
            user = self.users[id_of(value)]
            resolved.setdefault("users", {})[str(user.id)] = user.payload()
            if user.id in guild.members:
                resolved.setdefault("members", {})[str(user.id)] = guild.members[user.id].payload(
                    with_user=False, permissions=True)
            return str(user.id)
        if opt_type in (8, 9):
            role = guild.roles[id_of(value)]
            resolved.setdefault("roles", {})[str(role.id)] = role.payload()
            return str(role.id)
        if opt_type == 7:
            channel = self.channel(value)
            resolved.setdefault("channels", {})[str(channel.id)] = {**channel.payload(),
                                                                    "permissions": str(member.permissions)}
            return str(channel.id)
        if opt_type == 11:
            filename, data = value
            attachment = self._attachment(0, filename, data)
            resolved.setdefault("attachments", {})[attachment["id"]] = attachment
            return attachment["id"]
        raise AssertionError(f"cannot resolve {value!r} as option type {opt_type}")

    def _option_value(self, definition: dict, value: Any, resolved: dict, guild: Guild, member: Member,
                      strict: bool) -> Any:
        opt_type, name = definition["type"], definition["name"]
        if opt_type in (6, 7, 8, 9, 11):
            if opt_type == 7 and strict and definition.get("channel_types"):
                assert self.channel(value).type in definition["channel_types"], (
                    f"option {name!r} accepts channel types {definition['channel_types']}, "
                    f"not {self.channel(value).type}")
            return self._resolve(resolved, opt_type, value, guild, member)
        expected = {3: str, 4: int, 5: bool, 10: (int, float)}[opt_type]
        if strict:
            assert isinstance(value, expected) and not (opt_type in (4, 10) and isinstance(value, bool)), (
                f"option {name!r} is type {opt_type}; Discord's client cannot send {value!r}")
            choices = [c["value"] for c in definition.get("choices") or ()]
            assert not choices or value in choices, f"option {name!r} must be one of {choices}, not {value!r}"
            low, high = definition.get("min_value"), definition.get("max_value")
            assert low is None or value >= low, f"option {name!r} must be >= {low} (Discord's client enforces it)"
            assert high is None or value <= high, f"option {name!r} must be <= {high} (Discord's client enforces it)"
            if opt_type == 3:
                assert definition.get("min_length", 0) <= len(value) <= definition.get("max_length", 6000), (
                    f"option {name!r} length must be within its min_length/max_length")
        return value

    def _build_options(self, definitions: list[dict], values: dict, resolved: dict, guild: Guild, member: Member,
                       strict: bool, focused: Optional[str] = None) -> list[dict]:
        by_name = {d["name"]: d for d in definitions}
        unknown = set(values) - set(by_name)
        assert not (strict and unknown), f"unknown option(s) {sorted(unknown)}; the command has {sorted(by_name)}"
        if strict and focused is None:
            missing = [d["name"] for d in definitions if d.get("required") and d["name"] not in values]
            assert not missing, f"required option(s) {missing} missing (Discord's client requires them)"
        options = []
        for name, value in values.items():
            definition = by_name.get(name) or {"name": name, "type": _guess_type(value)}
            if name == focused:
                options.append({"name": name, "type": definition["type"], "value": str(value), "focused": True})
            else:
                options.append({"name": name, "type": definition["type"], "value": self._option_value(
                    definition, value, resolved, guild, member, strict and focused is None)})
        return options

    def _command_data(self, guild: Guild, member: Member, name: str, options: Optional[dict], strict: bool,
                      focused: Optional[str] = None) -> dict:
        root, *path = name.split()
        command, scope = self._find_command(guild, root)
        assert command or not strict, (
            f"/{root} was never synced (globally or to guild {guild.id}), so Discord would not offer it; "
            f"synced: global {sorted(self.commands())}, guild {sorted(self.commands(guild))}")
        resolved: dict = {}
        definitions = (command or {}).get("options") or []
        data: dict[str, Any] = {"id": (command or {}).get("id", str(snowflake())), "name": root, "type": 1}
        nest = data
        for sub in path:  # subcommand groups and subcommands
            definition = next((d for d in definitions if d["name"] == sub), None)
            assert definition or not strict, f"/{root} has no subcommand {sub!r}"
            child = {"name": sub, "type": (definition or {}).get("type", 1), "options": []}
            nest.setdefault("options", []).append(child)
            nest, definitions = child, (definition or {}).get("options") or []
        nest["options"] = self._build_options(definitions, options or {}, resolved, guild, member, strict, focused)
        if resolved:
            data["resolved"] = resolved
        if scope is not None:
            data["guild_id"] = str(scope)
        return data

    async def slash(self, guild: Guild, channel: Channel, user: Any, name: str, options: Optional[dict] = None, *,
                    strict: bool = True, wait: bool = True, timeout: Optional[float] = None) -> InteractionResult:
        """A user runs /name (or "/group sub") with options: INTERACTION_CREATE type 2."""
        guild, channel, member = self._where(guild, channel, user)
        data = self._command_data(guild, member, name, options, strict)
        payload = self._interaction_payload(2, guild, channel, member, data)
        return await self._interact(payload, f"/{name}", wait, timeout)

    async def autocomplete(self, guild: Guild, channel: Channel, user: Any, name: str, options: dict, focused: str, *,
                           strict: bool = True, wait: bool = True, timeout: Optional[float] = None) -> InteractionResult:
        """A user types into option `focused` of /name: INTERACTION_CREATE type 4."""
        guild, channel, member = self._where(guild, channel, user)
        assert focused in options, f"the focused option {focused!r} needs a (partial) value in options"
        data = self._command_data(guild, member, name, options, strict, focused=focused)
        payload = self._interaction_payload(4, guild, channel, member, data)
        return await self._interact(payload, f"autocomplete /{name} {focused}={options[focused]!r}", wait, timeout)

    def _clickable(self, source: Any, user: Any, custom_id: str) -> tuple[dict, Guild, Channel, Member, dict]:
        mid = source.original_id if isinstance(source, InteractionResult) else id_of(source)
        assert mid is not None, f"{source!r} has no message to click (its answer was type {source.type})"
        assert mid in self._messages, f"message {mid} is not known to the fake (deleted?)"
        message = copy.deepcopy(self._messages[mid])
        channel = self.channel(message["channel_id"])
        guild = self.guilds[channel.guild_id]
        member = self.member(guild, user)
        owner = self._message_owner.get(mid)
        assert owner is None or owner == member.id, (
            f"message {mid} is ephemeral: only user {owner} sees it, so {member.user.name} cannot use it")
        component = Reply(message).component(custom_id)
        assert not component.get("disabled"), f"component {custom_id!r} is disabled"
        return message, guild, channel, member, component

    async def click(self, source: Any, custom_id: str, user: Any, *, wait: bool = True,
                    timeout: Optional[float] = None) -> InteractionResult:
        """A user presses a button on a message (an InteractionResult, a Reply, a message dict or id)."""
        message, guild, channel, member, component = self._clickable(source, user, custom_id)
        assert component["type"] == 2, f"{custom_id!r} is a type {component['type']} component, not a button"
        data = {"custom_id": custom_id, "component_type": 2}
        payload = self._interaction_payload(3, guild, channel, member, data, message)
        return await self._interact(payload, f"click {custom_id!r}", wait, timeout)

    async def select(self, source: Any, custom_id: str, values: Iterable, user: Any, *,
                     component_type: Optional[int] = None, wait: bool = True,
                     timeout: Optional[float] = None) -> InteractionResult:
        """A user picks values in a select menu (string, user, role, mentionable or channel select)."""
        message, guild, channel, member, component = self._clickable(source, user, custom_id)
        ctype = component_type or component["type"]
        values = list(values)
        low, high = component.get("min_values", 1), component.get("max_values", 1)
        assert low <= len(values) <= high, f"select {custom_id!r} takes {low}-{high} values, not {len(values)}"
        data, resolved = {"custom_id": custom_id, "component_type": ctype}, {}
        if ctype == 3:
            allowed = [o["value"] for o in component.get("options") or ()]
            assert all(v in allowed for v in values), f"select {custom_id!r} offers {allowed}, not {values}"
            data["values"] = values
        else:
            option_type = {5: 6, 6: 8, 7: 9, 8: 7}[ctype]
            if ctype == 8 and component.get("channel_types"):
                assert all(self.channel(v).type in component["channel_types"] for v in values), (
                    f"select {custom_id!r} accepts channel types {component['channel_types']}")
            data["values"] = [self._resolve(resolved, option_type, v, guild, member) for v in values]
            data["resolved"] = resolved
        payload = self._interaction_payload(3, guild, channel, member, data, message)
        return await self._interact(payload, f"select {custom_id!r}={values}", wait, timeout)

    async def submit_modal(self, modal: Any, values: dict, user: Any, *, strict: bool = True, wait: bool = True,
                           timeout: Optional[float] = None) -> InteractionResult:
        """A user submits a modal the bot showed (its InteractionResult, or the modal's custom_id)."""
        shown_by = modal if isinstance(modal, InteractionResult) else self._modals.get(modal)
        assert shown_by is not None and shown_by.type == 9, (
            f"the bot never showed modal {modal!r}; shown: {sorted(self._modals)}")
        origin = shown_by.payload
        guild = self.guilds[int(origin["guild_id"])]
        channel = self.channel(origin["channel_id"])
        member = self.member(guild, user)
        assert member.id == shown_by.user_id, "only the user the modal was shown to can submit it"
        definition = shown_by.modal
        resolved: dict = {}
        fields = {c["custom_id"] for c in flatten_components(definition["components"]) if c.get("custom_id")}
        unknown = set(values) - fields
        assert not unknown, f"modal {definition['custom_id']!r} has no field(s) {sorted(unknown)}; it has {sorted(fields)}"

        def answer(comp: dict) -> dict:
            cid, ctype = comp.get("custom_id"), comp["type"]
            if ctype == 10 or cid is None:
                return {"type": ctype, "id": comp.get("id", 0)}
            value = values.get(cid, comp.get("value"))
            out: dict[str, Any] = {"type": ctype, "id": comp.get("id", 0), "custom_id": cid}
            if ctype == 4:
                value = value or ""
                if strict:
                    assert value or not comp.get("required", True), f"modal field {cid!r} is required"
                    assert comp.get("min_length", 0) <= len(value) <= comp.get("max_length", 4000) or not value, (
                        f"modal field {cid!r} must be {comp.get('min_length', 0)}-{comp.get('max_length', 4000)} "
                        f"characters (Discord's client enforces it)")
                out["value"] = value
            elif ctype in (3, 22):
                out["values"] = list(value or [])
            elif ctype in (5, 6, 7, 8):
                option_type = {5: 6, 6: 8, 7: 9, 8: 7}[ctype]
                out["values"] = [self._resolve(resolved, option_type, v, guild, member) for v in value or []]
            elif ctype in (21, 23):
                out["value"] = value if ctype == 21 else bool(value)
            else:
                raise AssertionError(f"the fake cannot submit modal component type {ctype}")
            return out

        def rebuild(components: list[dict]) -> list[dict]:
            rows = []
            for comp in components:
                if comp["type"] == 1:
                    rows.append({"type": 1, "id": comp.get("id", 0), "components": [answer(c) for c in comp["components"]]})
                elif comp["type"] == 18:
                    rows.append({"type": 18, "id": comp.get("id", 0), "component": answer(comp["component"])})
                else:
                    rows.append(answer(comp))
            return rows

        data = {"custom_id": definition["custom_id"], "components": rebuild(definition["components"])}
        if resolved:
            data["resolved"] = resolved
        payload = self._interaction_payload(5, guild, channel, member, data, origin.get("message"))
        return await self._interact(payload, f"modal {definition['custom_id']!r}", wait, timeout)

    # -- gateway: server -----------------------------------------------------------------------

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        if request.query.get("encoding", "json") != "json":
            raise web.HTTPBadRequest(text="the fake gateway speaks encoding=json only")
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        self._sockets.add(ws)
        session: Optional[GatewaySession] = None
        bot_close_code = None  # the code of the bot's own close frame (aiohttp may report a later one)
        try:
            await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": self.heartbeat_interval_ms}}))
            while True:
                msg = await ws.receive()
                if msg.type == WSMsgType.TEXT:
                    session = await self._gateway_frame(ws, session, json.loads(msg.data)) or session
                elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                    bot_close_code = msg.data if msg.type == WSMsgType.CLOSE else None
                    break
        finally:
            self._sockets.discard(ws)
            if session is not None and session.ws is ws:
                session.ws = None
                if bot_close_code in (1000, 1001) and ws not in self._closed_by_fake:
                    session.resumable = False  # the bot closed normally: Discord ends the session
            self._closed_by_fake.discard(ws)
            self._signal.notify()
        return ws

    async def _close(self, ws: web.WebSocketResponse, code: int, reason: str) -> None:
        log.warning("fake gateway closes with %s: %s", code, reason)
        await ws.close(code=code, message=reason.encode())

    async def _gateway_frame(self, ws: web.WebSocketResponse, session: Optional[GatewaySession],
                             frame: dict) -> Optional[GatewaySession]:
        op, d = frame.get("op"), frame.get("d")
        if op == 1:
            await ws.send_str(json.dumps({"op": 11}))
        elif op == 2:
            return await self._identify(ws, d)
        elif op == 6:
            return await self._resume(ws, d)
        elif op == 3:
            self.presence_updates.append(d)
        elif op == 8 and session is not None:
            await self._chunk(session, d)
        return None

    async def _identify(self, ws: web.WebSocketResponse, d: dict) -> Optional[GatewaySession]:
        if self.token is not None and d.get("token") != self.token:
            await self._close(ws, 4004, "Authentication failed.")
            return None
        shard = tuple(d["shard"]) if d.get("shard") else None
        if shard is not None and not 0 <= shard[0] < shard[1]:
            await self._close(ws, 4010, "Invalid shard.")
            return None
        session = GatewaySession(shard, int(d.get("intents", 0)))  # type: ignore[arg-type]
        session.ws = ws
        self.sessions.append(session)
        guilds = self.shard_guilds(shard)  # type: ignore[arg-type]
        ready = {
            "v": 10, "user": {**self.bot_user.payload(), "verified": True, "mfa_enabled": False},
            "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds], "session_id": session.id,
            "resume_gateway_url": self.gateway_url, "application": {"id": str(self.application_id), "flags": 0},
            "private_channels": [], "relationships": [], "presences": [], "geo_ordered_rtc_regions": [],
            "session_type": "normal", "auth": {}, "user_settings": {}, "_trace": ["fake-discord"],
        }
        if shard is not None:
            ready["shard"] = list(shard)
        await session.dispatch("READY", ready)
        for guild in guilds:
            await session.dispatch("GUILD_CREATE", self._guild_payload(guild, session))
        session.ready = True
        self._signal.notify()
        return session

    async def _resume(self, ws: web.WebSocketResponse, d: dict) -> Optional[GatewaySession]:
        session = next((s for s in self.sessions if s.id == d.get("session_id")), None)
        if session is None or not session.resumable or (self.token is not None and d.get("token") != self.token):
            await ws.send_str(json.dumps({"op": 9, "d": False}))
            return None
        async with session.lock:
            for payload in session.sent:
                if payload["s"] > (d.get("seq") or 0):
                    await ws.send_str(json.dumps(payload))
            session.ws = ws
        await session.dispatch("RESUMED", {"_trace": ["fake-discord"]})
        self._signal.notify()
        return session

    async def _chunk(self, session: GatewaySession, d: dict) -> None:
        guild = self.guilds.get(int(d["guild_id"]))
        if guild is None:
            return
        members = list(guild.members.values())
        if d.get("user_ids"):
            wanted = {int(u) for u in (d["user_ids"] if isinstance(d["user_ids"], list) else [d["user_ids"]])}
            members = [m for m in members if m.id in wanted]
        elif d.get("query"):
            members = [m for m in members if m.user.name.lower().startswith(d["query"].lower())]
        if d.get("limit"):
            members = members[: d["limit"]]
        await session.dispatch("GUILD_MEMBERS_CHUNK", {
            "guild_id": str(guild.id), "members": [m.payload() for m in members], "chunk_index": 0,
            "chunk_count": 1, "nonce": d.get("nonce"), "not_found": []})

    # -- REST: plumbing ------------------------------------------------------------------------

    def _add_routes(self, app: web.Application) -> None:
        api = "/api/v10"
        routes = [
            ("GET", "/users/@me", self._me), ("GET", "/users/{user_id}", self._get_user),
            ("GET", "/oauth2/applications/@me", self._app_info), ("GET", "/applications/@me", self._app_info),
            ("GET", "/gateway", self._gateway_info), ("GET", "/gateway/bot", self._gateway_info),
            ("GET", "/applications/{app_id}/commands", self._commands_get),
            ("PUT", "/applications/{app_id}/commands", self._commands_put),
            ("POST", "/applications/{app_id}/commands", self._command_post),
            ("GET", "/applications/{app_id}/commands/{command_id}", self._command_get),
            ("PATCH", "/applications/{app_id}/commands/{command_id}", self._command_patch),
            ("DELETE", "/applications/{app_id}/commands/{command_id}", self._command_delete),
            ("GET", "/applications/{app_id}/guilds/{guild_id}/commands", self._commands_get),
            ("PUT", "/applications/{app_id}/guilds/{guild_id}/commands", self._commands_put),
            ("POST", "/applications/{app_id}/guilds/{guild_id}/commands", self._command_post),
            ("GET", "/applications/{app_id}/guilds/{guild_id}/commands/{command_id}", self._command_get),
            ("PATCH", "/applications/{app_id}/guilds/{guild_id}/commands/{command_id}", self._command_patch),
            ("DELETE", "/applications/{app_id}/guilds/{guild_id}/commands/{command_id}", self._command_delete),
            ("POST", "/interactions/{interaction_id}/{token}/callback", self._callback),
            ("POST", "/webhooks/{app_id}/{token}", self._followup),
            ("GET", "/webhooks/{app_id}/{token}/messages/{message_id}", self._webhook_message_get),
            ("PATCH", "/webhooks/{app_id}/{token}/messages/{message_id}", self._webhook_message_edit),
            ("DELETE", "/webhooks/{app_id}/{token}/messages/{message_id}", self._webhook_message_delete),
            ("GET", "/channels/{channel_id}", self._channel_get),
            ("POST", "/channels/{channel_id}/messages", self._channel_post),
            ("GET", "/channels/{channel_id}/messages/{message_id}", self._channel_message_get),
            ("PATCH", "/channels/{channel_id}/messages/{message_id}", self._channel_message_edit),
            ("DELETE", "/channels/{channel_id}/messages/{message_id}", self._channel_message_delete),
            ("POST", "/channels/{channel_id}/typing", self._typing),
            ("GET", "/guilds/{guild_id}", self._guild_get),
            ("GET", "/guilds/{guild_id}/channels", self._guild_channels),
            ("GET", "/guilds/{guild_id}/roles", self._guild_roles),
            ("GET", "/guilds/{guild_id}/members/{user_id}", self._member_get),
        ]
        for method, path, handler in routes:
            app.router.add_route(method, api + path, handler)
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/gateway/", self._gateway)
        app.router.add_get("/attachments/{attachment_id}/{filename}", self._attachment_get)
        self._catch_all = app.router.add_route("*", "/{tail:.*}", self._unknown).resource

    async def _read_body(self, request: web.Request) -> tuple[Any, list[UploadedFile]]:
        if request.content_type.startswith("multipart/"):
            body, files = None, []
            reader = await request.multipart()
            async for part in reader:
                data = await part.read(decode=False)  # type: ignore[union-attr]
                if part.name == "payload_json":  # type: ignore[union-attr]
                    body = json.loads(data)
                else:
                    files.append(UploadedFile(part.name or "", part.filename or "",  # type: ignore[union-attr]
                                              part.headers.get("Content-Type", ""), bytes(data)))  # type: ignore[union-attr]
            return body, files
        raw = await request.read()
        return (json.loads(raw) if raw else None), []

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        if not request.path.startswith("/api/"):
            return await handler(request)
        resource = request.match_info.route.resource
        known = resource is not None and resource is not self._catch_all
        route = resource.canonical.removeprefix("/api/v10") if known else "(unknown)"
        body, files = await self._read_body(request)
        record = RecordedRequest(
            request.method, request.path.removeprefix("/api/v10"), route, dict(request.query), body, files,
            {k: v for k, v in request.headers.items() if k.lower() != "authorization"})
        self.requests.append(record)
        request[BODY], request[FILES], request[RECORD] = body, files, record
        try:
            self._check_token(request)
            response = await handler(request)
        except DiscordError as error:
            record.error = str(error)
            response = json_response(error.body(), error.status)
        except Exception as error:  # a bug in the fake: answer 400 so discord.py does not retry, and remember it
            log.exception("fake discord failed on %s %s", request.method, request.path)
            record.error = f"fake discord internal error: {error!r}"
            self.internal_errors.append(f"{request.method} {request.path}: {error!r}")
            response = json_response({"message": record.error, "code": 0}, 400)
        record.status = response.status
        self._signal.notify()
        return response

    def _check_token(self, request: web.Request) -> None:
        route = request[RECORD].route
        if self.token is None or route.startswith(("/interactions/", "/webhooks/")):
            return
        if request.headers.get("Authorization") != f"Bot {self.token}":
            raise DiscordError(401, 0, "401: Unauthorized")

    async def _unknown(self, request: web.Request) -> web.Response:
        raise DiscordError(404, 0, "404: Not Found")

    # -- REST: identity ------------------------------------------------------------------------

    async def _me(self, request: web.Request) -> web.Response:
        return json_response({**self.bot_user.payload(), "verified": True, "mfa_enabled": False})

    async def _get_user(self, request: web.Request) -> web.Response:
        user = self.users.get(int(request.match_info["user_id"]))
        if user is None:
            raise DiscordError(404, 10013, "Unknown User")
        return json_response(user.payload())

    async def _app_info(self, request: web.Request) -> web.Response:
        return json_response({
            "id": str(self.application_id), "name": self.bot_user.name, "description": "", "icon": None,
            "bot_public": True, "bot_require_code_grant": False, "owner": self.owner.payload(), "team": None,
            "verify_key": "0" * 64, "flags": 0, "summary": "", "bot": self.bot_user.payload(),
            "interactions_endpoint_url": None, "redirect_uris": [], "approximate_guild_count": len(self.guilds),
        })

    async def _gateway_info(self, request: web.Request) -> web.Response:
        data: dict[str, Any] = {"url": self.gateway_url}
        if request.path.endswith("/bot"):
            data.update(shards=self.recommended_shards, session_start_limit={
                "total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1})
        return json_response(data)

    # -- REST: application commands ------------------------------------------------------------

    def _command_scope(self, request: web.Request) -> Optional[int]:
        if int(request.match_info["app_id"]) != self.application_id:
            raise DiscordError(403, 20012, "You are not authorized to perform this action on this application")
        guild_id = request.match_info.get("guild_id")
        if guild_id is not None and int(guild_id) not in self.guilds:
            raise DiscordError(403, 50001, "Missing Access")
        return None if guild_id is None else int(guild_id)

    def _stored_command(self, scope: Optional[int], data: dict, old: Optional[dict]) -> dict:
        command = {
            "type": 1, "options": [], "default_member_permissions": None, "dm_permission": True, "nsfw": False,
            "contexts": None, "integration_types": [0], "name_localizations": None,
            "description_localizations": None, **data,
            "id": old["id"] if old else str(snowflake()), "application_id": str(self.application_id),
            "version": str(snowflake()),
        }
        if scope is not None:
            command["guild_id"] = str(scope)
        return command

    async def _commands_get(self, request: web.Request) -> web.Response:
        return json_response(list(self._commands.get(self._command_scope(request), {}).values()))

    async def _commands_put(self, request: web.Request) -> web.Response:
        scope = self._command_scope(request)
        body = request[BODY] or []
        problems = command_problems(body)
        if scope is None and len(body) > 100:
            problems.append(("", "at most 100 global commands"))
        if problems:
            raise invalid_form(problems)
        old = self._commands.get(scope, {})
        stored = {}
        for data in body:
            key = (data["name"], data.get("type", 1))
            stored[key] = self._stored_command(scope, data, old.get(key))
        self._commands[scope] = stored
        self.command_syncs.append((scope, [name for name, _ in stored]))
        return json_response(list(stored.values()))

    async def _command_post(self, request: web.Request) -> web.Response:
        scope = self._command_scope(request)
        data = request[BODY]
        problems = command_problems([data])
        if problems:
            raise invalid_form(problems)
        commands = self._commands.setdefault(scope, {})
        key = (data["name"], data.get("type", 1))
        commands[key] = self._stored_command(scope, data, commands.get(key))
        return json_response(commands[key], 201)

    def _command_by_id(self, request: web.Request) -> tuple[dict, tuple[str, int]]:
        commands = self._commands.get(self._command_scope(request), {})
        for key, command in commands.items():
            if command["id"] == request.match_info["command_id"]:
                return commands, key
        raise DiscordError(404, 10063, "Unknown application command")

    async def _command_get(self, request: web.Request) -> web.Response:
        commands, key = self._command_by_id(request)
        return json_response(commands[key])

    async def _command_patch(self, request: web.Request) -> web.Response:
        commands, key = self._command_by_id(request)
        commands[key] = {**commands[key], **(request[BODY] or {}), "version": str(snowflake())}
        return json_response(commands[key])

    async def _command_delete(self, request: web.Request) -> web.Response:
        commands, key = self._command_by_id(request)
        del commands[key]
        return web.Response(status=204)

    # -- REST: messages ------------------------------------------------------------------------

    def _attachment(self, channel_id: int, filename: str, data: bytes, description: Optional[str] = None) -> dict:
        attachment_id = snowflake()
        self._attachments[attachment_id] = data
        url = f"{self.base_url}/attachments/{attachment_id}/{filename}"
        return {"id": str(attachment_id), "filename": filename, "size": len(data), "url": url, "proxy_url": url,
                "content_type": "application/octet-stream", "description": description}

    async def _attachment_get(self, request: web.Request) -> web.Response:
        data = self._attachments.get(int(request.match_info["attachment_id"]))
        if data is None:
            raise web.HTTPNotFound()
        return web.Response(body=data)

    def _apply_files(self, message: dict, body: dict, files: list[UploadedFile], *, editing: bool) -> None:
        """Attachments: keep those listed by id (on edits), add uploaded files."""
        mid = int(message["id"])
        kept = message.get("attachments", []) if not editing or "attachments" not in body else [
            a for a in message.get("attachments", []) if any(str(k.get("id")) == a["id"] for k in body["attachments"])]
        described = {str(a.get("id")): a for a in body.get("attachments") or ()}
        store = self._files.setdefault(mid, {})
        if editing:
            kept_names = {a["filename"] for a in kept}
            for name in [n for n in store if n not in kept_names]:
                del store[name]
        for index, upload in enumerate(files):
            info = described.get(str(index), {})
            filename = info.get("filename") or upload.filename
            kept.append(self._attachment(int(message["channel_id"]), filename, upload.data, info.get("description")))
            store[filename] = upload.data
        message["attachments"] = kept

    def _create_message(self, channel_id: int, body: dict, files: list[UploadedFile], *,
                        webhook: bool = False, token: Optional[str] = None, flags: int = 0,
                        msg_type: int = 0) -> dict:
        problems = message_problems(body, creating=not flags & LOADING, has_files=bool(files))
        if problems:
            raise invalid_form(problems)
        message = {
            "id": str(snowflake()), "channel_id": str(channel_id), "author": self.bot_user.payload(),
            "content": body.get("content") or "", "timestamp": iso_now(), "edited_timestamp": None,
            "tts": bool(body.get("tts")), "mention_everyone": False, "mentions": [], "mention_roles": [],
            "attachments": [], "embeds": body.get("embeds") or [], "components": body.get("components") or [],
            "pinned": False, "type": msg_type,
            "flags": (int(body.get("flags") or 0) & (EPHEMERAL | COMPONENTS_V2 | 4 | 4096)) | flags,
        }
        if "allowed_mentions" in body:
            message["allowed_mentions"] = body["allowed_mentions"]  # kept for tests; Discord does not echo it
        if webhook:
            message["webhook_id"] = str(self.application_id)
            message["application_id"] = str(self.application_id)
        if body.get("message_reference"):
            message["message_reference"] = body["message_reference"]
            message["type"] = 19
        mid = int(message["id"])
        self._messages[mid] = message
        self._apply_files(message, body, files, editing=False)
        if token is not None:
            self._message_token[mid] = token
            result = self._interactions[token]
            message["interaction_metadata"] = {
                "id": str(result.id), "type": result.payload["type"],
                "user": result.payload["member"]["user"], "authorizing_integration_owners": {}}
            if message["flags"] & EPHEMERAL:
                self._message_owner[mid] = result.user_id
        return message

    def _edit_message(self, message: dict, body: dict, files: list[UploadedFile]) -> dict:
        problems = message_problems({**message, **body}, creating=False)
        if problems:
            raise invalid_form(problems)
        for key in ("content", "embeds", "components", "allowed_mentions"):
            if key in body:
                message[key] = body[key] if body[key] is not None else ([] if key != "content" else "")
        if "flags" in body and body["flags"] is not None:
            message["flags"] = (message["flags"] & ~(4 | COMPONENTS_V2)) | (int(body["flags"]) & (4 | COMPONENTS_V2))
        message["flags"] &= ~LOADING
        message["edited_timestamp"] = iso_now()
        self._apply_files(message, body, files, editing=True)
        return message

    async def _echo(self, event: str, message: dict) -> None:
        """Discord sends the bot its own non-ephemeral messages too."""
        if not self.echo_bot_messages or message["flags"] & EPHEMERAL:
            return
        channel = self.channel(message["channel_id"])
        guild = self.guilds[channel.guild_id]
        data = {**message, "guild_id": str(guild.id), "member": guild.members[self.bot_user.id].payload(with_user=False)}
        data.pop("allowed_mentions", None)
        await self.dispatch(event, data, guild.id)

    def _channel_message(self, request: web.Request) -> dict:
        channel = self.channel(request.match_info["channel_id"])
        message = self._messages.get(int(request.match_info["message_id"]))
        if message is None or message["channel_id"] != str(channel.id):
            raise DiscordError(404, 10008, "Unknown Message")
        return message

    async def _channel_get(self, request: web.Request) -> web.Response:
        return json_response(self.channel(request.match_info["channel_id"]).payload())

    async def _channel_post(self, request: web.Request) -> web.Response:
        channel = self.channel(request.match_info["channel_id"])
        if channel.type in (2, 4):
            raise DiscordError(400, 50008, "Cannot send messages in a non-text channel")
        body = request[BODY] or {}
        if int(body.get("flags") or 0) & EPHEMERAL:
            raise invalid_form([("flags", "only interaction responses can be ephemeral")])
        message = self._create_message(channel.id, body, request[FILES])
        self._posts.append(int(message["id"]))
        await self._echo("MESSAGE_CREATE", message)
        return json_response(message)

    async def _channel_message_get(self, request: web.Request) -> web.Response:
        return json_response(self._channel_message(request))

    async def _channel_message_edit(self, request: web.Request) -> web.Response:
        message = self._channel_message(request)
        if message["author"]["id"] != str(self.bot_user.id):
            raise DiscordError(403, 50005, "Cannot edit a message authored by another user")
        self._edit_message(message, request[BODY] or {}, request[FILES])
        await self._echo("MESSAGE_UPDATE", message)
        return json_response(message)

    async def _channel_message_delete(self, request: web.Request) -> web.Response:
        message = self._channel_message(request)
        del self._messages[int(message["id"])]
        channel = self.channel(message["channel_id"])
        await self.dispatch("MESSAGE_DELETE", {"id": message["id"], "channel_id": message["channel_id"],
                                               "guild_id": str(channel.guild_id)}, channel.guild_id)
        return web.Response(status=204)

    async def _typing(self, request: web.Request) -> web.Response:
        self.channel(request.match_info["channel_id"])
        return web.Response(status=204)

    # -- REST: guilds --------------------------------------------------------------------------

    def _guild(self, request: web.Request) -> Guild:
        guild = self.guilds.get(int(request.match_info["guild_id"]))
        if guild is None:
            raise DiscordError(404, 10004, "Unknown Guild")
        return guild

    async def _guild_get(self, request: web.Request) -> web.Response:
        data = self._guild(request).payload(all_members=False, bot_id=self.bot_user.id)
        for key in ("channels", "threads", "members", "voice_states", "presences", "joined_at"):
            data.pop(key)
        return json_response(data)

    async def _guild_channels(self, request: web.Request) -> web.Response:
        guild = self._guild(request)
        return json_response([c.payload() for c in guild.channels.values() if not c.is_thread])

    async def _guild_roles(self, request: web.Request) -> web.Response:
        return json_response([r.payload() for r in self._guild(request).roles.values()])

    async def _member_get(self, request: web.Request) -> web.Response:
        member = self._guild(request).members.get(int(request.match_info["user_id"]))
        if member is None:
            raise DiscordError(404, 10007, "Unknown Member")
        return json_response(member.payload())

    # -- REST: interaction responses -----------------------------------------------------------

    _ALLOWED_CALLBACKS = {2: {4, 5, 9}, 3: {4, 5, 6, 7, 9}, 4: {8}, 5: {4, 5, 6, 7}}

    def _result(self, token: str, missing: DiscordError) -> InteractionResult:
        result = self._interactions.get(token)
        if result is None:
            raise missing
        return result

    async def _callback(self, request: web.Request) -> web.Response:
        result = self._result(request.match_info["token"], DiscordError(404, 10062, "Unknown interaction"))
        try:
            response = await self._acknowledge(request, result)
        except DiscordError as error:
            result.rejections.append(str(error))
            result._changed()
            raise
        result._changed()
        return response

    async def _acknowledge(self, request: web.Request, result: InteractionResult) -> web.Response:
        if str(result.id) != request.match_info["interaction_id"]:
            raise DiscordError(404, 10062, "Unknown interaction")
        if result.callback is not None:
            raise DiscordError(400, 40060, "Interaction has already been acknowledged.")
        body, files = request[BODY] or {}, request[FILES]
        ctype, data = body.get("type"), body.get("data") or {}
        itype = result.payload["type"]
        if ctype not in self._ALLOWED_CALLBACKS[itype] or (ctype in (6, 7) and "message" not in result.payload):
            raise invalid_form([("type", f"callback type {ctype} is not allowed for interaction type {itype}")])
        if ctype == 8:
            problems = choice_problems(data)
        elif ctype == 9:
            problems = modal_problems(data)
        else:
            problems = []
        if problems:
            raise invalid_form(problems)
        channel_id = int(result.payload["channel_id"])
        message = None
        if ctype == 4:
            message = self._create_message(channel_id, data, files, webhook=True, token=result.token,
                                           msg_type=20 if result.payload["type"] == 2 else 0)
            await self._echo("MESSAGE_CREATE", message)
        elif ctype == 5:
            message = self._create_message(channel_id, {"flags": data.get("flags", 0)}, [], webhook=True,
                                           token=result.token, flags=LOADING)
            await self._echo("MESSAGE_CREATE", message)
        elif ctype in (6, 7):
            message = self._messages[int(result.payload["message"]["id"])]
            if ctype == 7:
                self._edit_message(message, data, files)
                await self._echo("MESSAGE_UPDATE", message)
        elif ctype == 9:
            self._modals[data["custom_id"]] = result
        result.callback = {"type": ctype, "data": data}
        result._files = {f.filename: f.data for f in files}
        if message is not None:
            result.original_id = int(message["id"])
        if request.query.get("with_response", "false").lower() in ("false", "0"):
            return web.Response(status=204)
        answer: dict[str, Any] = {"interaction": {
            "id": str(result.id), "type": itype, "response_message_id": message["id"] if message else None,
            "response_message_loading": ctype == 5, "response_message_ephemeral": bool(
                message and message["flags"] & EPHEMERAL)}}
        if message is not None and ctype in (4, 5, 7):
            answer["resource"] = {"type": ctype, "message": message}
        return json_response(answer)

    def _webhook(self, request: web.Request) -> InteractionResult:
        unknown = DiscordError(404, 10015, "Unknown Webhook")
        if int(request.match_info["app_id"]) != self.application_id:
            raise unknown
        result = self._result(request.match_info["token"], unknown)
        if result.callback is None:
            raise unknown  # follow-ups and edits need the interaction to be acknowledged first
        return result

    def _webhook_target(self, request: web.Request, result: InteractionResult) -> dict:
        raw = request.match_info["message_id"]
        mid = result.original_id if raw == "@original" else int(raw)
        message = self._messages.get(mid) if mid is not None else None
        if message is None or (raw != "@original" and self._message_token.get(mid) != result.token):
            raise DiscordError(404, 10008, "Unknown Message")
        return message

    async def _followup(self, request: web.Request) -> web.Response:
        result = self._webhook(request)
        try:
            message = self._create_message(int(result.payload["channel_id"]), request[BODY] or {},
                                           request[FILES], webhook=True, token=result.token)
        except DiscordError as error:
            result.rejections.append(str(error))
            result._changed()
            raise
        await self._echo("MESSAGE_CREATE", message)
        result.followups.append(Reply(copy.deepcopy(message), files=self._files.get(int(message["id"]))))
        result._changed()
        if request.query.get("wait") in ("true", "True", "1"):
            return json_response(message)
        return web.Response(status=204)

    async def _webhook_message_get(self, request: web.Request) -> web.Response:
        return json_response(self._webhook_target(request, self._webhook(request)))

    async def _webhook_message_edit(self, request: web.Request) -> web.Response:
        result = self._webhook(request)
        message = self._webhook_target(request, result)
        try:
            self._edit_message(message, request[BODY] or {}, request[FILES])
        except DiscordError as error:
            result.rejections.append(str(error))
            result._changed()
            raise
        await self._echo("MESSAGE_UPDATE", message)
        snapshot = Reply(copy.deepcopy(message), files=self._files.get(int(message["id"])))
        if int(message["id"]) == result.original_id:
            result.edits.append(snapshot)
        else:
            result.followups[:] = [snapshot if f.id == snapshot.id else f for f in result.followups]
        result._changed()
        return json_response(message)

    async def _webhook_message_delete(self, request: web.Request) -> web.Response:
        result = self._webhook(request)
        message = self._webhook_target(request, result)
        del self._messages[int(message["id"])]
        result._changed()
        return web.Response(status=204)


def _guess_type(value: Any) -> int:
    """Option type for a value when the command was not synced (strict=False)."""
    if isinstance(value, bool):
        return 5
    if isinstance(value, int):
        return 4
    if isinstance(value, float):
        return 10
    if isinstance(value, (User, Member)):
        return 6
    if isinstance(value, Channel):
        return 7
    if isinstance(value, Role):
        return 8
    return 3


# ---------------------------------------------------------------------------------------------
# Running a client in-process
# ---------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------
# Running a bot as a separate process (tests/run_bot.py)
# ---------------------------------------------------------------------------------------------

RUN_BOT = Path(__file__).with_name("run_bot.py")


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


# ---------------------------------------------------------------------------------------------
# pytest fixture
# ---------------------------------------------------------------------------------------------

@pytest.fixture
async def fake_discord():
    """A running FakeDiscord with discord.py pointed at it; everything restored afterwards."""
    async with FakeDiscord() as fake:
        yield fake
    assert not fake.internal_errors, f"the fake Discord itself failed: {fake.internal_errors}"
