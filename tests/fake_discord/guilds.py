"""Building and changing the world (guilds, roles, channels, members, overwrites) with the gateway events
Discord sends for the changes, and the REST routes that read the world or change members' roles."""
from __future__ import annotations

from typing import Any, Iterable, Optional

import discord
from aiohttp import web

from .limits import DiscordError, invalid_form
from .rest import BODY, json_response
from .world import (BOT_PERMISSIONS, EVERYONE_PERMISSIONS, Channel, Guild, Member, Overwrite, Role, User, id_of,
                    permission_value, snowflake)

VIEW_CHANNEL = discord.Permissions(view_channel=True).value
MANAGE_ROLES = discord.Permissions(manage_roles=True).value
MANAGE_NICKNAMES = discord.Permissions(manage_nicknames=True).value
CHANGE_NICKNAME = discord.Permissions(change_nickname=True).value


def permission_bits(permissions: Iterable[Any]) -> int:
    """Permission names ("send_messages"), ints or discord.Permissions, combined into one int."""
    value = 0
    for item in permissions:
        value |= permission_value([item] if isinstance(item, str) else item)
    return value


def missing_permissions() -> DiscordError:
    return DiscordError(403, 50013, "Missing Permissions")


class GuildsMixin:
    """FakeDiscord's world: set-up helpers, live changes (with their events) and guild routes."""

    # -- set-up (synchronous; before the bot connects, or followed by `await fake.guild_create(g)`) --

    def add_user(self, name: str, *, bot: bool = False, id: Optional[int] = None) -> User:
        user = User(id or snowflake(), name, bot=bot)
        self.users[user.id] = user
        return user

    def add_guild(self, name: str = "Test Server", *, owner: Optional[User] = None, id: Optional[int] = None,
                  bot_permissions: Any = None) -> Guild:
        """A guild the bot is in: an @everyone role, the bot's managed role and bot member, the owner.
        bot_permissions: what the bot's role grants (default BOT_PERMISSIONS; @everyone's come on top)."""
        owner = owner or self.add_user(f"{name} owner")
        guild = Guild(id or snowflake(), name, owner.id)
        guild.roles[guild.id] = Role(guild.id, guild.id, "@everyone", EVERYONE_PERMISSIONS)
        self.guilds[guild.id] = guild
        permissions = BOT_PERMISSIONS if bot_permissions is None else permission_value(bot_permissions)
        bot_role = Role(snowflake(), guild.id, self.bot_user.name, permissions, position=1, bot_id=self.bot_user.id)
        guild.roles[bot_role.id] = bot_role
        guild.members[self.bot_user.id] = Member(guild, self.bot_user, [bot_role.id])
        guild.members[owner.id] = Member(guild, owner)
        return guild

    def add_role(self, guild: Guild, name: str, permissions: Any = 0, *, position: Optional[int] = None,
                 managed: bool = False) -> Role:
        """A role; by default placed right below the bot's role (which moves up), so the bot can assign it.
        position=n puts it at n (1 = lowest above @everyone), shifting the others up."""
        role = Role(snowflake(), guild.id, name, permission_value(permissions), managed=managed)
        guild.roles[role.id] = role
        guild.place_role(role, self.bot_role(guild).position if position is None else position)
        return role

    def bot_role(self, guild: Guild) -> Role:
        """The bot's own (managed) role in the guild."""
        return next(r for r in guild.roles.values() if r.bot_id == self.bot_user.id)

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
        """A guild channel, thread or DM channel by id (DiscordError 404 10003 if there is none)."""
        cid = id_of(channel_id)
        for guild in self.guilds.values():
            if cid in guild.channels:
                return guild.channels[cid]
        for dm in self._dm_channels.values():
            if dm.id == cid:
                return dm
        raise DiscordError(404, 10003, "Unknown Channel")

    def shard_guilds(self, shard: Optional[tuple[int, int]]) -> list[Guild]:
        return [g for g in self.guilds.values() if shard is None or g.shard_id(shard[1]) == shard[0]]

    # -- live changes (async: they send the gateway events Discord sends) --------------------------

    async def remove_member(self, guild: Guild, user: Any) -> None:
        """The user leaves (or is kicked from) the guild: GUILD_MEMBER_REMOVE (GUILD_MEMBERS intent)."""
        uid = id_of(user.user if isinstance(user, Member) else user)
        assert uid != self.bot_user.id, "the fake cannot make the bot leave a guild"
        member = guild.members.pop(uid, None)
        assert member is not None, f"user {uid} is not a member of {guild.name}"
        await self.dispatch("GUILD_MEMBER_REMOVE", {"guild_id": str(guild.id), "user": member.user.payload()},
                            guild.id)

    async def delete_role(self, role: Role) -> None:
        """Staff delete a role: it leaves every member and overwrite; GUILD_ROLE_DELETE (GUILDS intent)."""
        guild = self.guilds[role.guild_id]
        assert role.id != guild.id and role.bot_id is None, "@everyone and the bot's own role cannot be deleted"
        del guild.roles[role.id]
        for member in guild.members.values():
            if role.id in member.role_ids:
                member.role_ids.remove(role.id)
        for channel in guild.channels.values():
            channel.overwrites.pop(role.id, None)
        await self.dispatch("GUILD_ROLE_DELETE", {"guild_id": str(guild.id), "role_id": str(role.id)}, guild.id)

    async def update_role(self, role: Role, *, name: Optional[str] = None, permissions: Any = None,
                          position: Optional[int] = None) -> None:
        """Staff edit a role (a new position shifts the others): GUILD_ROLE_UPDATE for each changed role."""
        guild = self.guilds[role.guild_id]
        changed = [role]
        if name is not None:
            role.name = name
        if permissions is not None:
            role.permissions = permission_value(permissions)
        if position is not None:
            changed += [r for r in guild.place_role(role, position) if r is not role]
        for each in changed:
            await self.dispatch("GUILD_ROLE_UPDATE", {"guild_id": str(guild.id), "role": each.payload()}, guild.id)

    async def delete_channel(self, channel: Channel) -> None:
        """Staff delete a channel (with its threads; a category's channels lose their parent):
        CHANNEL_DELETE, or THREAD_DELETE for a thread (GUILDS intent). Its routes then answer 404 10003."""
        assert not channel.is_dm, "DM channels cannot be deleted by the fake"
        guild = self.guilds[channel.guild_id]
        del guild.channels[channel.id]
        if channel.is_thread:
            await self.dispatch("THREAD_DELETE", {"id": str(channel.id), "guild_id": str(guild.id),
                                                  "parent_id": str(channel.parent_id), "type": channel.type},
                                guild.id)
            return
        for child in [c for c in guild.channels.values() if c.parent_id == channel.id]:
            if child.is_thread:
                del guild.channels[child.id]
        await self.dispatch("CHANNEL_DELETE", channel.payload(), guild.id)
        for child in [c for c in guild.channels.values() if c.parent_id == channel.id]:
            child.parent_id = None
            await self.dispatch("CHANNEL_UPDATE", child.payload(), guild.id)

    async def set_overwrite(self, channel: Channel, target: Any, *, allow: Iterable[Any] = (),
                            deny: Iterable[Any] = ()) -> None:
        """Set (or, with nothing allowed or denied, remove) the channel's permission overwrite for a role,
        a member/user or the guild (@everyone): CHANNEL_UPDATE (GUILDS intent). Threads follow their parent."""
        assert not channel.is_thread and not channel.is_dm, "overwrites belong to guild channels, not threads or DMs"
        guild = self.guilds[channel.guild_id]
        target_id = id_of(target.user if isinstance(target, Member) else target)
        kind = 0 if isinstance(target, (Role, Guild)) or target_id in guild.roles else 1
        allow_bits, deny_bits = permission_bits(allow), permission_bits(deny)
        if allow_bits or deny_bits:
            channel.overwrites[target_id] = Overwrite(target_id, kind, allow_bits, deny_bits)
        else:
            channel.overwrites.pop(target_id, None)
        await self.dispatch("CHANNEL_UPDATE", channel.payload(), guild.id)

    async def deny_bot(self, channel: Channel, *permissions: Any) -> None:
        """Deny the bot permissions in a channel through its member overwrite, e.g.
        `await fake.deny_bot(rp, "send_messages")`: posting there then answers 403 50013."""
        existing = channel.overwrites.get(self.bot_user.id) or Overwrite(self.bot_user.id, 1)
        denied = permission_bits(permissions)
        await self.set_overwrite(channel, self.bot_user, allow=[existing.allow & ~denied],
                                 deny=[existing.deny | denied])

    # -- permission checks Discord makes on the bot's requests ------------------------------------

    def _bot_permissions_in(self, channel: Channel) -> int:
        guild = self.guilds[channel.guild_id]
        return guild.permissions_in(guild.members[self.bot_user.id], channel)

    def _require_channel_permissions(self, channel: Channel, *needed: int) -> None:
        """403 50001 without VIEW_CHANNEL, 403 50013 without any of `needed` (guild channels only)."""
        if channel.is_dm:
            return
        permissions = self._bot_permissions_in(channel)
        if not permissions & VIEW_CHANNEL:
            raise DiscordError(403, 50001, "Missing Access")
        if any(not permissions & bit for bit in needed):
            raise missing_permissions()

    def _require_assignable(self, guild: Guild, role: Role) -> None:
        """Discord's rules for the bot giving or taking a role: MANAGE_ROLES, not a managed role, and
        the role strictly below the bot's highest role (403 50013 otherwise)."""
        bot = guild.members[self.bot_user.id]
        if not guild.permissions_of(bot) & MANAGE_ROLES or role.is_managed:
            raise missing_permissions()
        if bot.id != guild.owner_id and role.position >= guild.top_position(bot):
            raise missing_permissions()

    async def _member_changed(self, guild: Guild, member: Member) -> None:
        await self.dispatch("GUILD_MEMBER_UPDATE", {"guild_id": str(guild.id), **member.payload()}, guild.id)

    # -- REST: guilds, roles, members, channels -------------------------------------------------

    def _guild(self, request: web.Request) -> Guild:
        guild = self.guilds.get(int(request.match_info["guild_id"]))
        if guild is None:
            raise DiscordError(404, 10004, "Unknown Guild")
        return guild

    def _guild_member(self, request: web.Request, guild: Guild) -> Member:
        raw = request.match_info["user_id"]
        member = guild.members.get(self.bot_user.id if raw == "@me" else int(raw))
        if member is None:
            raise DiscordError(404, 10007, "Unknown Member")
        return member

    def _guild_role(self, guild: Guild, role_id: Any) -> Role:
        role = guild.roles.get(int(role_id))
        if role is None or role.id == guild.id:  # @everyone cannot be given or taken
            raise DiscordError(404, 10011, "Unknown Role")
        return role

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

    async def _role_get(self, request: web.Request) -> web.Response:
        guild = self._guild(request)
        role = guild.roles.get(int(request.match_info["role_id"]))
        if role is None:
            raise DiscordError(404, 10011, "Unknown Role")
        return json_response(role.payload())

    async def _member_get(self, request: web.Request) -> web.Response:
        guild = self._guild(request)
        return json_response(self._guild_member(request, guild).payload())

    async def _members_list(self, request: web.Request) -> web.Response:
        """GET /guilds/{id}/members?limit=1..1000&after=user_id, by user id (discord.py's fetch_members)."""
        guild = self._guild(request)
        limit, after = int(request.query.get("limit", 1)), int(request.query.get("after", 0))
        if not 1 <= limit <= 1000:
            raise invalid_form([("limit", "must be between 1 and 1000")])
        members = sorted((m for m in guild.members.values() if m.id > after), key=lambda m: m.id)
        return json_response([m.payload() for m in members[:limit]])

    async def _member_role_add(self, request: web.Request) -> web.Response:
        return await self._member_role(request, add=True)

    async def _member_role_remove(self, request: web.Request) -> web.Response:
        return await self._member_role(request, add=False)

    async def _member_role(self, request: web.Request, *, add: bool) -> web.Response:
        guild = self._guild(request)
        member = self._guild_member(request, guild)
        role = self._guild_role(guild, request.match_info["role_id"])
        self._require_assignable(guild, role)
        if add != (role.id in member.role_ids):
            if add:
                member.role_ids.append(role.id)
            else:
                member.role_ids.remove(role.id)
            await self._member_changed(guild, member)
        return web.Response(status=204)

    async def _member_patch(self, request: web.Request) -> web.Response:
        """PATCH a member's roles (discord.py's Member.edit(roles=...)) or nick; other fields are not faked."""
        guild = self._guild(request)
        member = self._guild_member(request, guild)
        body = request[BODY] or {}
        unsupported = set(body) - {"roles", "nick"}
        if unsupported:
            raise NotImplementedError(f"the fake does not edit member fields {sorted(unsupported)}")
        bot = guild.members[self.bot_user.id]
        roles = member.role_ids
        if body.get("roles") is not None:
            roles = [self._guild_role(guild, r).id for r in body["roles"]]
            for role_id in set(roles) ^ set(member.role_ids):
                self._require_assignable(guild, guild.roles[role_id])
        if "nick" in body:
            permissions = guild.permissions_of(bot)
            if member is bot:
                allowed = permissions & (CHANGE_NICKNAME | MANAGE_NICKNAMES)
            else:
                allowed = permissions & MANAGE_NICKNAMES and member.id != guild.owner_id and (
                    guild.top_position(member) < guild.top_position(bot))
            if not allowed:
                raise missing_permissions()
            member.nick = body["nick"] or None
        member.role_ids = list(dict.fromkeys(roles))
        await self._member_changed(guild, member)
        return json_response(member.payload())

    async def _channel_get(self, request: web.Request) -> web.Response:
        channel = self.channel(request.match_info["channel_id"])
        self._require_channel_permissions(channel)
        return json_response(channel.payload())
