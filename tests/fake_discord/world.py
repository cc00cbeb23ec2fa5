"""The fake's world: snowflakes, users, guilds, roles, channels, members, and their permissions."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Optional

import discord

DISCORD_EPOCH_MS = 1420070400000

EVERYONE_PERMISSIONS = discord.Permissions(
    view_channel=True, send_messages=True, send_messages_in_threads=True, read_message_history=True,
    embed_links=True, attach_files=True, add_reactions=True, use_application_commands=True,
    create_public_threads=True, use_external_emojis=True,
).value
BOT_PERMISSIONS = EVERYONE_PERMISSIONS | discord.Permissions(manage_messages=True, manage_threads=True).value
ALL_PERMISSIONS = discord.Permissions.all().value
ADMINISTRATOR = discord.Permissions(administrator=True).value


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
    bot_id: Optional[int] = None       # the bot's own role (managed by its integration)
    managed: bool = False              # an integration's role (boosters, other bots): nobody can assign it

    @property
    def mention(self) -> str:
        return f"<@&{self.id}>"

    @property
    def is_managed(self) -> bool:
        return self.managed or self.bot_id is not None

    def payload(self) -> dict:
        data = {"id": str(self.id), "name": self.name, "permissions": str(self.permissions),
                "position": self.position, "color": 0, "colors": {"primary_color": 0}, "hoist": False,
                "managed": self.is_managed, "mentionable": False, "flags": 0, "icon": None,
                "unicode_emoji": None}
        if self.bot_id is not None:
            data["tags"] = {"bot_id": str(self.bot_id)}
        return data


@dataclass
class Overwrite:
    """A channel's permission overwrite for one role (type 0) or member (type 1)."""
    id: int
    type: int
    allow: int = 0
    deny: int = 0

    def payload(self) -> dict:
        return {"id": str(self.id), "type": self.type, "allow": str(self.allow), "deny": str(self.deny)}


@dataclass(eq=False)
class Channel:
    id: int
    guild_id: Optional[int]            # None for DMs
    name: str
    type: int = 0                      # 0 text, 1 DM, 2 voice, 4 category, 5 news, 11/12 threads
    parent_id: Optional[int] = None    # category of a channel, channel of a thread
    position: int = 0
    owner_id: Optional[int] = None     # threads
    overwrites: dict[int, Overwrite] = field(default_factory=dict, repr=False)   # by role or user id
    recipient: Optional[User] = None   # DMs

    @property
    def mention(self) -> str:
        return f"<#{self.id}>"

    @property
    def is_thread(self) -> bool:
        return self.type in (10, 11, 12)

    @property
    def is_dm(self) -> bool:
        return self.type == 1

    def payload(self) -> dict:
        if self.is_dm:
            return {"id": str(self.id), "type": 1, "last_message_id": None, "flags": 0,
                    "recipients": [self.recipient.payload()] if self.recipient else []}
        data: dict[str, Any] = {"id": str(self.id), "type": self.type, "guild_id": str(self.guild_id),
                                "name": self.name, "flags": 0}
        parent = str(self.parent_id) if self.parent_id else None
        if self.is_thread:
            data.update(parent_id=parent, owner_id=str(self.owner_id), message_count=0, member_count=1,
                        total_message_sent=0, rate_limit_per_user=0, last_message_id=None,
                        thread_metadata={"archived": False, "auto_archive_duration": 1440, "locked": False,
                                         "archive_timestamp": iso_now(), "create_timestamp": iso_now()})
            return data
        data.update(position=self.position, parent_id=parent,
                    permission_overwrites=[o.payload() for o in self.overwrites.values()])
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
        """Guild-wide permissions: @everyone and the member's roles (everything for the owner or admins)."""
        if member.id == self.owner_id:
            return ALL_PERMISSIONS
        value = self.roles[self.id].permissions
        for role_id in member.role_ids:
            value |= self.roles[role_id].permissions
        return ALL_PERMISSIONS if value & ADMINISTRATOR else value

    def permissions_in(self, member: Member, channel: Channel) -> int:
        """Permissions in a channel, Discord's way: guild permissions, then the @everyone overwrite, the
        member's role overwrites together, the member's own overwrite. Threads use their parent's."""
        value = self.permissions_of(member)
        if value == ALL_PERMISSIONS:
            return value
        source = self.channels.get(channel.parent_id) if channel.is_thread and channel.parent_id else channel
        overwrites = source.overwrites if source is not None else {}
        everyone = overwrites.get(self.id)
        if everyone is not None:
            value = (value & ~everyone.deny) | everyone.allow
        allow = deny = 0
        for role_id in member.role_ids:
            if role_id in overwrites:
                allow, deny = allow | overwrites[role_id].allow, deny | overwrites[role_id].deny
        value = (value & ~deny) | allow
        own = overwrites.get(member.id)
        if own is not None:
            value = (value & ~own.deny) | own.allow
        return value

    def top_position(self, member: Member) -> int:
        """The position of the member's highest role (0: only @everyone)."""
        return max((self.roles[r].position for r in member.role_ids if r in self.roles), default=0)

    def place_role(self, role: Role, position: int) -> list[Role]:
        """Move a role to `position` (1 = just above @everyone), shifting the others so positions stay
        1..n without ties, as Discord keeps them; returns every role whose position changed."""
        before = {r.id: r.position for r in self.roles.values()}
        others = sorted((r for r in self.roles.values() if r.id not in (self.id, role.id)),
                        key=lambda r: (r.position, r.id))
        others.insert(max(0, min(position - 1, len(others))), role)
        for index, each in enumerate(others, start=1):
            each.position = index
        return [r for r in self.roles.values() if before.get(r.id) != r.position]

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
