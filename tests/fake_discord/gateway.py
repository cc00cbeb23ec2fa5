"""The gateway: sessions (IDENTIFY, RESUME with missed events, member chunks) and dispatching events."""
from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Any, Optional

from aiohttp import WSMsgType, web

from .world import Guild

log = logging.getLogger("fake_discord")

# Gateway intents the fake honours.
INTENT_GUILDS = 1 << 0
INTENT_GUILD_MEMBERS = 1 << 1
INTENT_GUILD_PRESENCES = 1 << 8
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_DIRECT_MESSAGES = 1 << 12
INTENT_MESSAGE_CONTENT = 1 << 15

# Sharding: a session may hold at most 2,500 guilds (more: close 4011), and GET /gateway/bot
# recommends one shard per 1,000 guilds.
MAX_GUILDS_PER_SESSION = 2500
GUILDS_PER_RECOMMENDED_SHARD = 1000

# The intent a session needs to receive each event (events not listed here are always sent).
EVENT_INTENTS = {
    **dict.fromkeys(("GUILD_MEMBER_ADD", "GUILD_MEMBER_UPDATE", "GUILD_MEMBER_REMOVE"), INTENT_GUILD_MEMBERS),
    **dict.fromkeys(("GUILD_ROLE_CREATE", "GUILD_ROLE_UPDATE", "GUILD_ROLE_DELETE", "CHANNEL_CREATE",
                     "CHANNEL_UPDATE", "CHANNEL_DELETE", "THREAD_CREATE", "THREAD_UPDATE", "THREAD_DELETE"),
                    INTENT_GUILDS),
}


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


class GatewayMixin:
    """FakeDiscord's gateway: the websocket server and sending events to sessions."""

    async def dispatch(self, event: str, data: Any, guild_id: Optional[int] = None) -> int:
        """Send an event to every session handling the guild, if its intents allow; returns how many
        sessions handle the guild (they got it, or will on resume, unless their intents exclude it)."""
        targets = [s for s in self.sessions if s.resumable and s.handles(guild_id)]
        for session in targets:
            payload = data
            if event in ("MESSAGE_CREATE", "MESSAGE_UPDATE"):
                if guild_id is not None and not session.intents & INTENT_GUILD_MESSAGES:
                    continue
                payload = self._content_for(session, data)
            elif event in EVENT_INTENTS and not session.intents & EVENT_INTENTS[event]:
                # Discord sends the bot's own member updates whatever its intents.
                if not (event == "GUILD_MEMBER_UPDATE" and data["user"]["id"] == str(self.bot_user.id)):
                    continue
            await session.dispatch(event, payload)
        return len(targets)

    async def _dispatch_dm(self, event: str, data: Any) -> int:
        """DM events go to shard 0 only, with the DIRECT_MESSAGES intent (content is never blanked)."""
        targets = [s for s in self.sessions if s.resumable and (s.shard is None or s.shard[0] == 0)]
        for session in targets:
            if session.intents & INTENT_DIRECT_MESSAGES:
                await session.dispatch(event, data)
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
        guilds = self.shard_guilds(shard)  # type: ignore[arg-type]
        if len(guilds) > MAX_GUILDS_PER_SESSION:
            await self._close(ws, 4011, "Sharding required.")
            return None
        session = GatewaySession(shard, int(d.get("intents", 0)))  # type: ignore[arg-type]
        session.ws = ws
        self.sessions.append(session)
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
