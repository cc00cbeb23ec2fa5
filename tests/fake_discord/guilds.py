"""Building and changing the world (guilds, roles, channels, members) and the REST routes that read it."""
from __future__ import annotations

from typing import Any, Iterable, Optional

from aiohttp import web

from .limits import DiscordError
from .rest import json_response
from .world import (BOT_PERMISSIONS, EVERYONE_PERMISSIONS, Channel, Guild, Member, Role, User, id_of,
                    permission_value, snowflake)


class GuildsMixin:
    """FakeDiscord's world set-up helpers and guild routes."""

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

    async def _channel_get(self, request: web.Request) -> web.Response:
        return json_response(self.channel(request.match_info["channel_id"]).payload())
