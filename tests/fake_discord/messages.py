"""Messages: users posting (MESSAGE_CREATE/UPDATE), the bot's messages and attachments, channel message
routes, and DMs."""
from __future__ import annotations

import copy
import re
from typing import Any, Iterable, Optional

import discord
from aiohttp import web

from .limits import COMPONENTS_V2, EPHEMERAL, LOADING, DiscordError, invalid_form, message_problems
from .replies import Reply, UploadedFile
from .rest import BODY, FILES, json_response
from .world import Channel, Member, id_of, iso_now, snowflake

SEND_MESSAGES = discord.Permissions(send_messages=True).value
SEND_MESSAGES_IN_THREADS = discord.Permissions(send_messages_in_threads=True).value
ATTACH_FILES = discord.Permissions(attach_files=True).value
READ_MESSAGE_HISTORY = discord.Permissions(read_message_history=True).value


class MessagesMixin:
    """FakeDiscord's message store, and the routes that read and change it."""

    def message(self, message_id: Any) -> Reply:
        mid = id_of(message_id)
        return Reply(copy.deepcopy(self._messages[mid]), files=self._files.get(mid))

    def posts(self, channel: Any = None) -> list[Reply]:
        """Messages the bot posted with POST /channels/{id}/messages in guild channels, oldest first
        (current state; deleted ones left out). DMs: see dms()."""
        return [self.message(mid) for mid in self._posts
                if mid in self._messages and (channel is None or self._messages[mid]["channel_id"] == str(id_of(channel)))]

    # -- DMs -------------------------------------------------------------------------------------

    def dms(self, user: Any) -> list[Reply]:
        """Messages the bot sent the user in their DM channel, oldest first (current state)."""
        uid = id_of(user.user if isinstance(user, Member) else user)
        channel = self._dm_channels.get(uid)
        if channel is None:
            return []
        return [self.message(mid) for mid in self._dm_posts
                if mid in self._messages and self._messages[mid]["channel_id"] == str(channel.id)]

    async def wait_for_dms(self, user: Any, count: int = 1, timeout: Optional[float] = None) -> list[Reply]:
        """Wait until the bot has sent the user `count` DMs; returns them all."""
        timeout = self.timeout if timeout is None else timeout
        await self._signal.until(lambda: len(self.dms(user)) >= count, timeout,
                                 lambda: f"expected {count} DM(s) to {user}, got {len(self.dms(user))} within "
                                         f"{timeout}s; DM requests: {[str(r) for r in self._dm_requests()]}")
        return self.dms(user)

    def close_dms(self, user: Any, closed: bool = True) -> None:
        """The user does not accept DMs from the bot (closed=False: does again): sending them one answers
        403 50007 "Cannot send messages to this user", as Discord does (opening the channel still works)."""
        uid = id_of(user.user if isinstance(user, Member) else user)
        if closed:
            self._closed_dms.add(uid)
        else:
            self._closed_dms.discard(uid)

    def _dm_requests(self) -> list:
        prefixes = tuple(f"/channels/{c.id}/" for c in self._dm_channels.values())
        return [r for r in self.requests if r.route == "/users/@me/channels" or r.path.startswith(prefixes)]

    async def _dm_open(self, request: web.Request) -> web.Response:
        """POST /users/@me/channels {recipient_id}: the DM channel with a user (the same one every time)."""
        body = request[BODY] or {}
        user = self.users.get(int(body.get("recipient_id") or 0))
        if user is None or user.id == self.bot_user.id:
            raise DiscordError(400, 50033, "Invalid Recipient(s)")
        channel = self._dm_channels.get(user.id)
        if channel is None:
            channel = self._dm_channels[user.id] = Channel(snowflake(), None, "", type=1, recipient=user)
        return json_response(channel.payload())

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
        assert not channel.is_dm, "the fake does not send users' DMs to the bot"
        message = self._message_payload(channel, author, content, embeds=embeds, mentions=mentions,
                                        webhook_id=webhook_id, type=type, message_id=message_id,
                                        attachments=attachments)
        if edit:
            message["edited_timestamp"] = iso_now()
        self._messages[int(message["id"])] = message
        await self._dispatch_required("MESSAGE_UPDATE" if edit else "MESSAGE_CREATE", message, channel.guild_id)
        return message


    # -- the bot's messages ----------------------------------------------------------------------

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
        data = {k: v for k, v in message.items() if k != "allowed_mentions"}
        if channel.is_dm:
            await self._dispatch_dm(event, data)
            return
        guild = self.guilds[channel.guild_id]
        data.update(guild_id=str(guild.id), member=guild.members[self.bot_user.id].payload(with_user=False))
        await self.dispatch(event, data, guild.id)

    def _channel_message(self, request: web.Request) -> dict:
        """The message in the request's channel (404 10003 for a deleted channel, 10008 for a deleted,
        foreign or ephemeral message; 403 50001 if the bot cannot see the channel)."""
        channel = self.channel(request.match_info["channel_id"])
        self._require_channel_permissions(channel)
        message = self._messages.get(int(request.match_info["message_id"]))
        if message is None or message["channel_id"] != str(channel.id) or message["flags"] & EPHEMERAL:
            raise DiscordError(404, 10008, "Unknown Message")
        return message

    async def _channel_post(self, request: web.Request) -> web.Response:
        channel = self.channel(request.match_info["channel_id"])
        if channel.type in (2, 4):
            raise DiscordError(400, 50008, "Cannot send messages in a non-text channel")
        body, files = request[BODY] or {}, request[FILES]
        if channel.is_dm:
            if channel.recipient.id in self._closed_dms or channel.recipient.bot:
                raise DiscordError(403, 50007, "Cannot send messages to this user")
        else:
            needed = [SEND_MESSAGES_IN_THREADS if channel.is_thread else SEND_MESSAGES]
            needed += [ATTACH_FILES] if files else []
            needed += [READ_MESSAGE_HISTORY] if body.get("message_reference") else []
            self._require_channel_permissions(channel, *needed)
        if int(body.get("flags") or 0) & EPHEMERAL:
            raise invalid_form([("flags", "only interaction responses can be ephemeral")])
        message = self._create_message(channel.id, body, files)
        (self._dm_posts if channel.is_dm else self._posts).append(int(message["id"]))
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
        if channel.is_dm:
            await self._dispatch_dm("MESSAGE_DELETE", {"id": message["id"], "channel_id": message["channel_id"]})
        else:
            await self.dispatch("MESSAGE_DELETE", {"id": message["id"], "channel_id": message["channel_id"],
                                                   "guild_id": str(channel.guild_id)}, channel.guild_id)
        return web.Response(status=204)

    async def _typing(self, request: web.Request) -> web.Response:
        channel = self.channel(request.match_info["channel_id"])
        self._require_channel_permissions(channel, SEND_MESSAGES_IN_THREADS if channel.is_thread else SEND_MESSAGES)
        return web.Response(status=204)
