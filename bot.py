"""XP Bot: XP for role-play characters, earned by writing and by hunting/foraging results.

One discord.py client: the slash commands and the `on_message` XP listener, both calling
the `Database` in database.py. Run `python bot.py` (or `python bot.py --check`).
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import functools
import io
import json
import logging
import os
import re
import signal
import sys
import zoneinfo
from pathlib import Path
from typing import Any, Callable

import asyncpg
import discord
from discord import app_commands
from discord.utils import escape_markdown

import rules
from database import Award, Character, Database, DatabaseUnavailable, GuildConfig, RPMessage, is_unavailable
from local_postgres import LocalPostgres
from xp_queue import XPQueue
from rules import UserError

log = logging.getLogger("xpbot")

NO_PINGS = discord.AllowedMentions.none()
discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False  # no voice: no warnings about it
COLOUR = discord.Colour.from_rgb(88, 101, 242)
RP_MESSAGE_TYPES = (discord.MessageType.default, discord.MessageType.reply)
PRUNE_EVERY = 3600  # seconds between clean-ups of counted message ids
POPULAR_ZONES = ["UTC", "Europe/London", "Europe/Berlin", "Europe/Paris", "Europe/Moscow",
                 "America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles",
                 "America/Sao_Paulo", "America/Mexico_City", "America/Toronto", "Asia/Tokyo",
                 "Asia/Seoul", "Asia/Shanghai", "Asia/Kolkata", "Asia/Singapore", "Asia/Dubai",
                 "Australia/Sydney", "Pacific/Auckland", "Africa/Johannesburg", "Africa/Cairo"]


STAFF_ONLY = "Only staff (members with the **Manage Server** permission) can do that."


class NotStaff(app_commands.CheckFailure):
    """Raised by the staff check; its message is shown to the member."""


def shown(name: str) -> str:
    """A user-chosen name, safe to show: no markdown tricks (pings are off everywhere)."""
    return escape_markdown(name)


# -- replies -----------------------------------------------------------------------------

async def reply(interaction: discord.Interaction, content: str | None = None, *,
                embed: discord.Embed | None = None, view: discord.ui.View | None = None,
                file: discord.File | None = None, ephemeral: bool = True) -> None:
    """Answer an interaction whether or not it was deferred; never pings."""
    kwargs: dict[str, Any] = {"content": content, "ephemeral": ephemeral, "allowed_mentions": NO_PINGS}
    if embed is not None:
        kwargs["embed"] = embed
    if view is not None:
        kwargs["view"] = view
    if file is not None:
        kwargs["file"] = file
    if interaction.response.is_done():
        await interaction.followup.send(**kwargs)
    else:
        await interaction.response.send_message(**kwargs)


async def begin(interaction: discord.Interaction, *, ephemeral: bool = True) -> None:
    """Acknowledge at once (Discord allows 3 s), so a slow database never fails the command."""
    if not interaction.response.is_done():
        await interaction.response.defer(ephemeral=ephemeral, thinking=True)


def guild_id_of(interaction: discord.Interaction) -> int:
    if interaction.guild_id is None:
        raise UserError("This command only works in a server.")
    return interaction.guild_id


def is_staff(interaction: discord.Interaction) -> bool:
    perms = interaction.permissions
    return interaction.guild_id is not None and (perms.manage_guild or perms.administrator)


async def staff_check(interaction: discord.Interaction) -> bool:
    if not is_staff(interaction):
        raise NotStaff(STAFF_ONLY)
    return True


async def staff_gate(interaction: discord.Interaction) -> bool:
    """For buttons, selects and modals: refuse non-staff with a clear answer."""
    if is_staff(interaction):
        return True
    await reply(interaction, STAFF_ONLY)
    return False


def staff_command(func: Callable) -> Callable:
    """Hidden from members by default, and checked by the bot itself on every use."""
    return app_commands.default_permissions(manage_guild=True)(app_commands.check(staff_check)(func))


def guarded(callback: Callable) -> Callable:
    """Errors in a button, select or modal get the same answers as in commands."""
    @functools.wraps(callback)
    async def wrapper(self, interaction: discord.Interaction, *args: Any) -> None:
        try:
            await callback(self, interaction, *args)
        except Exception as e:
            await handle_error(interaction, e)
    return wrapper


# -- one error handler for everything ----------------------------------------------------------

async def handle_error(interaction: discord.Interaction, error: Exception) -> None:
    """A short, clear answer for the user; the details, if unexpected, for the log."""
    original = getattr(error, "original", error)
    if isinstance(original, (UserError, NotStaff)):
        message = str(original)
    elif isinstance(error, app_commands.TransformerError):
        message = ("That option's value isn't valid here. Pick from the list Discord offers "
                   "(for a channel: a text channel of this server).")
    elif isinstance(error, app_commands.NoPrivateMessage):
        message = "This command only works in a server."
    elif isinstance(error, app_commands.CheckFailure):
        message = "You can't use this command here."
    elif is_unavailable(original):
        message = str(DatabaseUnavailable())
        log.warning("Database unavailable while handling %s", what_was_used(interaction))
    else:
        message = "Something went wrong on my side; it has been logged. Please try again."
        log.error("Unexpected error in %s (guild %s, user %s, data %s)", what_was_used(interaction),
                  interaction.guild_id, interaction.user.id,
                  redact(json.dumps(interaction.data or {}, default=str))[:500], exc_info=original)
    try:
        await reply(interaction, message)
    except discord.HTTPException:
        log.warning("Could not tell user %s about an error", interaction.user.id)


def what_was_used(interaction: discord.Interaction) -> str:
    if interaction.command is not None:
        return f"/{interaction.command.qualified_name}"
    return f"component {(interaction.data or {}).get('custom_id', '?')}"


class XPTree(app_commands.CommandTree):
    async def on_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        await handle_error(interaction, error)


# -- the client -------------------------------------------------------------------------------

class XPBot(discord.AutoShardedClient):
    def __init__(self, database: Database, *, env: str = "dev", guild_id: int | None = None,
                 shard_count: int | None = None, shard_ids: list[int] | None = None,
                 sync_commands: bool = True, spool: str | os.PathLike | None = None):
        intents = discord.Intents.none()
        intents.guilds = True
        intents.guild_messages = True
        intents.message_content = True
        # No message cache: the bot never looks back at old messages (saves memory and time).
        super().__init__(intents=intents, allowed_mentions=NO_PINGS, shard_count=shard_count,
                         shard_ids=shard_ids, max_messages=None)
        self.db = database
        self.env = env
        self.dev_guild_id = guild_id
        self.sync_commands = sync_commands
        self.tree = XPTree(self)
        self.queue = XPQueue(database, spool=spool, on_award=self.on_award)
        self._announced_online = False
        self._background: set[asyncio.Task] = set()
        self._closing: asyncio.Future | None = None
        register_commands(self.tree)

    @property
    def holds_shard_zero(self) -> bool:
        return self.shard_ids is None or 0 in self.shard_ids

    async def setup_hook(self) -> None:
        await self.db.connect()
        self.add_dynamic_items(DeleteButton, LeaderboardButton, SettingsButton, ChannelPicker)
        if self.queue.load():
            log.info("Replaying %d XP event(s) kept from the last run", len(self.queue.pending))
        self._spawn(self._prune_loop())
        if self.sync_commands and self.holds_shard_zero:
            await self.sync_application_commands()

    async def sync_application_commands(self) -> str:
        """dev: copy the commands to GUILD_ID only; prod: global only. Never both."""
        if self.env == "dev":
            if not self.dev_guild_id:
                raise UserError("ENV=dev needs GUILD_ID to sync commands to.")
            guild = discord.Object(self.dev_guild_id)
            self.tree.copy_global_to(guild=guild)
            synced = await self.tree.sync(guild=guild)
            where = f"guild {self.dev_guild_id}"
        else:
            synced = await self.tree.sync()
            where = "all servers (global)"
        log.info("Synced %d commands to %s", len(synced), where)
        return f"Synced {len(synced)} commands to {where}."

    async def on_ready(self) -> None:
        if not self._announced_online:
            self._announced_online = True
            log.info("✅ %s is online", self.user.name if self.user else "XP Bot")

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _prune_loop(self) -> None:
        while True:
            await asyncio.sleep(PRUNE_EVERY)
            try:
                await self.db.prune_processed_messages()
            except Exception as e:  # a missed clean-up is retried next hour
                log.warning("Pruning counted message ids failed: %s", type(e).__name__)

    async def close(self) -> None:
        """Stop receiving, finish (or keep) every award already received, close the pool.
        Called by the signal handler and again by `async with`: the work runs once."""
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._shut_down())
        await asyncio.shield(self._closing)

    async def _shut_down(self) -> None:
        await super().close()  # no new events from here on
        for task in self._background:
            task.cancel()
        if not await self.queue.drain(timeout=10):
            log.warning("Database still unavailable at shutdown")
        self.queue.save()
        log.info("XP events this run: %d in %d database round trips", self.queue.events,
                 self.queue.round_trips)
        await self.db.close()

    # -- the XP listener --------------------------------------------------------------------

    async def on_message(self, message: discord.Message) -> None:
        if message.guild is None or message.webhook_id is not None:
            return
        if message.type not in RP_MESSAGE_TYPES or (self.user and message.author.id == self.user.id):
            return
        channel = message.channel
        parent_id = getattr(channel, "parent_id", None) if isinstance(channel, discord.Thread) else None
        try:
            rp, hf = await self.db.tracked_channels(message.guild.id)
        except Exception as e:
            if not is_unavailable(e):
                log.exception("Reading tracked channels failed")
                return
            rp = hf = None  # unknown: keep the event, the database decides when it returns
        try:
            if message.author.bot:
                if message.embeds and (hf is None or channel.id in hf or parent_id in hf):
                    await self._hunting_or_foraging(message, parent_id)
            elif rp is None or channel.id in rp or parent_id in rp:
                log.debug("RP message %s (%d chars)", message.id, len(message.content))
                await self.queue.rp(RPMessage(message.guild.id, channel.id, parent_id, message.author.id,
                                              len(message.content), message.id), at=message.created_at)
        except Exception:
            log.exception("XP for message %s in guild %s failed", message.id, message.guild.id)

    async def _hunting_or_foraging(self, message: discord.Message, parent_id: int | None) -> None:
        embed = message.embeds[0]
        parsed = rules.parse_hf(embed.title, embed.description,
                                 [(f.name, f.value) for f in embed.fields])
        if parsed is None:
            return
        name, success = parsed
        award = await self.queue.hf(
            at=message.created_at, guild_id=message.guild.id,
            channel_ids=[c for c in (message.channel.id, parent_id) if c], name=name,
            mentions=[u.id for u in message.mentions], success=success, message_id=message.id)
        if award is not None and award.status in ("unknown_character", "ambiguous"):
            why = ("no character has that name" if award.status == "unknown_character" else
                   "several players have a character of that name and the mentions don't pick one")
            log.info("HF result for %r in guild %s awarded nothing: %s", name, message.guild.id, why)

    async def on_award(self, kind: str, event: Any, award: Award) -> None:
        """Called once per award that changed XP: announce level-ups."""
        if award.leveled_up:
            channel_id = event.channel_id if kind == "rp" else event["channel_ids"][0]
            guild_id = event.guild_id if kind == "rp" else event["guild_id"]
            await self.announce_level_up(guild_id, channel_id, award)

    async def announce_level_up(self, guild_id: int, here: int | None, award: Award) -> None:
        if not award.leveled_up:
            return
        cfg = await self.db.get_config(guild_id)
        target = here if cfg.levelup_mode == "message" else cfg.levelup_channel
        if cfg.levelup_mode == "off" or target is None:
            return
        text = (f"🎉 **{shown(award.name)}** (<@{award.user_id}>) reached **level {award.level_after}**!")
        try:
            await self.get_partial_messageable(target, guild_id=guild_id).send(text, allowed_mentions=NO_PINGS)
        except discord.HTTPException as e:
            log.warning("Level-up announcement in channel %s failed: %s", target, e)


# -- what commands show --------------------------------------------------------------------------

def character_embed(character: Character, owner: discord.abc.User | None = None) -> discord.Embed:
    level = rules.level_for(character.xp)
    embed = discord.Embed(title=shown(character.name), colour=COLOUR)
    embed.add_field(name="Level", value=str(level))
    embed.add_field(name="XP", value=f"{character.xp:,}")
    step = rules.progress(character.xp)
    if step is None:
        embed.add_field(name="Progress", value="Maximum level reached", inline=False)
    else:
        done, span = step
        embed.add_field(name=f"Progress to level {level + 1}",
                        value=f"`{rules.progress_bar(character.xp)}` {done:,}/{span:,}", inline=False)
    if character.image_url:
        embed.set_thumbnail(url=character.image_url)
    footer = "Active character" if character.active else "Not active"
    if owner is not None:
        footer += f" · played by {owner.display_name}"
    embed.set_footer(text=footer)
    return embed


def tracking_embed(cfg: GuildConfig) -> discord.Embed:
    def channels(ids: tuple[int, ...]) -> str:
        return ", ".join(f"<#{c}>" for c in ids) if ids else "none"
    announce = {"message": "in the channel where it happens", "off": "off",
                "channel": f"in <#{cfg.levelup_channel}>"}[cfg.levelup_mode]
    embed = discord.Embed(title="XP tracking", colour=COLOUR)
    embed.add_field(name="RP channels", value=channels(cfg.rp_channels)[:1024], inline=False)
    embed.add_field(name="RP XP", value=f"1 XP per {cfg.char_per_rp:,} characters, "
                                        f"at most {cfg.daily_rp_cap:,} XP a day", inline=False)
    embed.add_field(name="HF channels", value=channels(cfg.hf_channels)[:1024], inline=False)
    embed.add_field(name="HF XP", value=f"{cfg.hf_attempt_xp:,} per attempt, +{cfg.hf_success_xp:,} "
                                        f"on success, at most {cfg.daily_hf_cap:,} XP a day", inline=False)
    embed.add_field(name="Level-up announcements", value=announce, inline=False)
    embed.set_footer(text="Daily caps reset at each player's own midnight (/xp_set_timezone).")
    return embed


# -- character options ---------------------------------------------------------------------------

_BY_ID = re.compile(r"^#(\d{1,19})$")


async def resolve_character(interaction: discord.Interaction, value: str, *, own: bool) -> Character:
    """The character an option names: an autocomplete pick (`#id`), or a typed name."""
    db: Database = interaction.client.db
    guild_id = guild_id_of(interaction)
    owner = interaction.user.id if own else None
    match = _BY_ID.match(value.strip()) if isinstance(value, str) else None
    if match:
        character = await db.get_character(guild_id, int(match.group(1)))
        if character is not None and (owner is None or character.user_id == owner):
            return character
    return await db.find_character(guild_id, value, owner_id=owner)


def _choices(characters: list[Character], with_owner: bool, guild: discord.Guild | None):
    out = []
    for c in characters:
        label = f"{c.name} · level {rules.level_for(c.xp)}"
        if with_owner:
            member = guild.get_member(c.user_id) if guild else None
            label += f" · {member.display_name if member else f'player {c.user_id}'}"
        elif c.active:
            label += " · active"
        out.append(app_commands.Choice(name=label[:100], value=f"#{c.id}"))
    return out


async def own_characters(interaction: discord.Interaction, current: str):
    characters = await interaction.client.db.character_choices(
        interaction.guild_id, current, owner_id=interaction.user.id)
    return _choices(characters, False, interaction.guild)


async def any_characters(interaction: discord.Interaction, current: str):
    characters = await interaction.client.db.character_choices(interaction.guild_id, current)
    return _choices(characters, True, interaction.guild)


async def characters_for_history(interaction: discord.Interaction, current: str):
    """Staff may look at any character's history; players at their own."""
    return await (any_characters if is_staff(interaction) else own_characters)(interaction, current)


async def timezones(interaction: discord.Interaction, current: str):
    typed = current.strip().lower().replace(" ", "_")
    if not typed:
        zones = POPULAR_ZONES
    else:
        every = rules.all_timezones()
        zones = ([z for z in every if z.lower().startswith(typed)] +
                 [z for z in every if typed in z.lower() and not z.lower().startswith(typed)])
    return [app_commands.Choice(name=z, value=z) for z in zones[:25]]


# -- persistent components (they keep working after a restart) --------------------------------------

class DeleteButton(discord.ui.DynamicItem[discord.ui.Button], template=r"xp:del:(?P<action>yes|no):(?P<owner>\d+):(?P<cid>\d+)"):
    def __init__(self, action: str, owner: int, character_id: int):
        style = discord.ButtonStyle.danger if action == "yes" else discord.ButtonStyle.secondary
        super().__init__(discord.ui.Button(label="Delete" if action == "yes" else "Cancel", style=style,
                                           custom_id=f"xp:del:{action}:{owner}:{character_id}"))
        self.action, self.owner, self.character_id = action, owner, character_id

    @classmethod
    async def from_custom_id(cls, interaction, item, match: re.Match):
        return cls(match["action"], int(match["owner"]), int(match["cid"]))

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        if interaction.user.id != self.owner:
            await reply(interaction, "Only the player who asked can confirm or cancel this.")
            return False
        return True

    @guarded
    async def callback(self, interaction: discord.Interaction) -> None:
        if self.action == "no":
            await interaction.response.edit_message(content="Nothing was deleted.", view=None)
            return
        try:
            deleted, active = await interaction.client.db.delete_character(
                guild_id_of(interaction), self.owner, self.character_id)
        except UserError as e:
            await interaction.response.edit_message(content=str(e), view=None)
            return
        text = f"Deleted **{shown(deleted.name)}** ({deleted.xp:,} XP)."
        if active is not None:
            text += f" Your active character is now **{shown(active.name)}**."
        await interaction.response.edit_message(content=text, view=None)


PAGE_SIZE = 10


class LeaderboardButton(discord.ui.DynamicItem[discord.ui.Button], template=r"xp:lb:(?P<page>\d+):(?P<dir>prev|next)"):
    def __init__(self, page: int, direction: str, disabled: bool = False):
        super().__init__(discord.ui.Button(label="◀ Previous" if direction == "prev" else "Next ▶",
                                           style=discord.ButtonStyle.secondary, disabled=disabled,
                                           custom_id=f"xp:lb:{page}:{direction}"))
        self.page = page

    @classmethod
    async def from_custom_id(cls, interaction, item, match: re.Match):
        return cls(int(match["page"]), match["dir"])

    @guarded
    async def callback(self, interaction: discord.Interaction) -> None:
        embed, view = await leaderboard_page(interaction, self.page)
        await interaction.response.edit_message(embed=embed, view=view)


async def leaderboard_page(interaction: discord.Interaction, page: int):
    guild_id = guild_id_of(interaction)
    characters, total = await interaction.client.db.leaderboard(guild_id, page=page, per_page=PAGE_SIZE)
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(page, pages - 1)
    if not characters and page > 0:
        characters, _ = await interaction.client.db.leaderboard(guild_id, page=page, per_page=PAGE_SIZE)
    lines = [f"**{page * PAGE_SIZE + i + 1}.** {shown(c.name)} · level {rules.level_for(c.xp)} · "
             f"{c.xp:,} XP · <@{c.user_id}>" for i, c in enumerate(characters)]
    embed = discord.Embed(title="Leaderboard", colour=COLOUR,
                          description="\n".join(lines) or "No characters yet: `/xp_create` makes one.")
    embed.set_footer(text=f"Page {page + 1} of {pages} · {total:,} characters")
    view = discord.ui.View(timeout=None)
    view.add_item(LeaderboardButton(max(page - 1, 0), "prev", disabled=page == 0))
    view.add_item(LeaderboardButton(min(page + 1, pages - 1), "next", disabled=page >= pages - 1))
    return embed, view


class RPModal(discord.ui.Modal, title="RP XP settings"):
    def __init__(self, cfg: GuildConfig):
        super().__init__(custom_id="xp:modal:rp")
        self.rate = discord.ui.TextInput(label="Characters of writing per XP", default=str(cfg.char_per_rp),
                                         max_length=7, custom_id="rate")
        self.cap = discord.ui.TextInput(label="Daily RP XP cap", default=str(cfg.daily_rp_cap), max_length=7,
                                        custom_id="cap")
        self.add_item(self.rate)
        self.add_item(self.cap)

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        return await staff_gate(interaction)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        db: Database = interaction.client.db
        rate = rules.clean_int(parse_number(self.rate.value, "Characters per XP"),
                                "Characters per XP", 1, rules.SETTING_MAX)
        cap = rules.clean_int(parse_number(self.cap.value, "The daily RP XP cap"),
                               "The daily RP XP cap", 1, rules.SETTING_MAX)
        await db.set_rp_rate(interaction.guild_id, rate, changed_by=interaction.user.id)
        await db.set_rp_cap(interaction.guild_id, cap, changed_by=interaction.user.id)
        await show_panel(interaction, "RP settings saved.")

    async def on_error(self, interaction: discord.Interaction, error: Exception) -> None:
        await handle_error(interaction, error)


class HFModal(discord.ui.Modal, title="HF XP settings"):
    def __init__(self, cfg: GuildConfig):
        super().__init__(custom_id="xp:modal:hf")
        self.attempt = discord.ui.TextInput(label="XP per attempt", default=str(cfg.hf_attempt_xp), max_length=7,
                                            custom_id="attempt")
        self.success = discord.ui.TextInput(label="Extra XP on success", default=str(cfg.hf_success_xp),
                                            max_length=7, custom_id="success")
        self.cap = discord.ui.TextInput(label="Daily HF XP cap", default=str(cfg.daily_hf_cap), max_length=7,
                                        custom_id="cap")
        for item in (self.attempt, self.success, self.cap):
            self.add_item(item)

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        return await staff_gate(interaction)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.client.db.set_hf(
            interaction.guild_id, attempt_xp=parse_number(self.attempt.value, "XP per attempt"),
            success_xp=parse_number(self.success.value, "Extra XP on success"),
            daily_cap=parse_number(self.cap.value, "The daily HF XP cap"), changed_by=interaction.user.id)
        await show_panel(interaction, "HF settings saved.")

    async def on_error(self, interaction: discord.Interaction, error: Exception) -> None:
        await handle_error(interaction, error)


def parse_number(text: str, what: str) -> int:
    try:
        return int(text.strip().replace(",", "").replace("_", ""))
    except ValueError:
        raise UserError(f"{what} must be a whole number like 240; you typed "
                        f"`{rules.escape_text(text.strip()[:20])}`.") from None


class SettingsButton(discord.ui.DynamicItem[discord.ui.Button], template=r"xp:set:(?P<what>rp|hf|lvl)"):
    LABELS = {"rp": "RP rates…", "hf": "HF rates…", "lvl": "Level-ups: cycle"}

    def __init__(self, what: str):
        super().__init__(discord.ui.Button(label=self.LABELS[what], style=discord.ButtonStyle.primary,
                                           custom_id=f"xp:set:{what}"))
        self.what = what

    @classmethod
    async def from_custom_id(cls, interaction, item, match: re.Match):
        return cls(match["what"])

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        return await staff_gate(interaction)

    @guarded
    async def callback(self, interaction: discord.Interaction) -> None:
        db: Database = interaction.client.db
        cfg = await db.get_config(guild_id_of(interaction))
        if self.what == "rp":
            await interaction.response.send_modal(RPModal(cfg))
        elif self.what == "hf":
            await interaction.response.send_modal(HFModal(cfg))
        else:  # off -> in the message's channel -> in this channel -> off
            nxt = {"off": ("message", None), "message": ("channel", interaction.channel_id),
                   "channel": ("off", None)}[cfg.levelup_mode]
            await db.set_levelup(cfg.guild_id, *nxt, changed_by=interaction.user.id)
            await show_panel(interaction, "Level-up announcements changed.")


class ChannelPicker(discord.ui.DynamicItem[discord.ui.ChannelSelect], template=r"xp:chan:(?P<kind>rp|hf)"):
    def __init__(self, kind: str, current: tuple[int, ...] = ()):
        select = discord.ui.ChannelSelect(
            custom_id=f"xp:chan:{kind}", min_values=0, max_values=25,
            channel_types=[discord.ChannelType.text, discord.ChannelType.news, discord.ChannelType.forum],
            placeholder=f"{kind.upper()} channels (none tracked)" if not current else f"{kind.upper()} channels",
            default_values=[discord.Object(c, type=discord.abc.GuildChannel) for c in current[:25]])
        super().__init__(select)
        self.kind = kind

    @classmethod
    async def from_custom_id(cls, interaction, item, match: re.Match):
        return cls(match["kind"])

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        return await staff_gate(interaction)

    @guarded
    async def callback(self, interaction: discord.Interaction) -> None:
        ids = [c.id for c in self.item.values]
        await interaction.client.db.set_channels(guild_id_of(interaction), self.kind, ids,
                                                 changed_by=interaction.user.id)
        await show_panel(interaction, f"{self.kind.upper()} channels saved.")


def settings_view(cfg: GuildConfig) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for what in ("rp", "hf", "lvl"):
        view.add_item(SettingsButton(what))
    view.add_item(ChannelPicker("rp", cfg.rp_channels))
    view.add_item(ChannelPicker("hf", cfg.hf_channels))
    return view


async def show_panel(interaction: discord.Interaction, note: str | None = None) -> None:
    """Send the settings panel, or update the message a component was on."""
    cfg = await interaction.client.db.get_config(guild_id_of(interaction))
    embed = tracking_embed(cfg)
    embed.title = "XP settings"
    embed.description = note
    if interaction.type is discord.InteractionType.component or (
            interaction.type is discord.InteractionType.modal_submit and interaction.message is not None):
        await interaction.response.edit_message(embed=embed, view=settings_view(cfg))
    else:
        await reply(interaction, embed=embed, view=settings_view(cfg))


# -- the commands ------------------------------------------------------------------------------------

def register_commands(tree: app_commands.CommandTree) -> None:  # noqa: C901 - a list of commands
    guild_only = app_commands.guild_only()

    @tree.command(name="xp", description="Show a character's XP and level (your active one by default)")
    @app_commands.describe(character="One of your characters")
    @app_commands.autocomplete(character=own_characters)
    @guild_only
    async def xp(interaction: discord.Interaction, character: str | None = None):
        await begin(interaction)
        db: Database = interaction.client.db
        if character:
            found = await resolve_character(interaction, character, own=True)
        else:
            found = await db.get_active_character(guild_id_of(interaction), interaction.user.id)
            if found is None:
                raise UserError("You have no active character. Create one with `/xp_create` "
                                "or pick one with `/xp_active`.")
        await reply(interaction, embed=character_embed(found, interaction.user))

    @tree.command(name="xp_create", description="Create a character (it becomes your active one)")
    @app_commands.describe(name="1–100 characters", image_url="Optional picture: an http(s) link")
    @guild_only
    async def xp_create(interaction: discord.Interaction, name: app_commands.Range[str, 1, 100],
                        image_url: str | None = None):
        await begin(interaction)
        created = await interaction.client.db.create_character(
            guild_id_of(interaction), interaction.user.id, name, image_url)
        await reply(interaction, f"Created **{shown(created.name)}**; it is now your active character.",
                    embed=character_embed(created, interaction.user))

    @tree.command(name="xp_active", description="Choose which of your characters earns RP XP")
    @app_commands.describe(character="One of your characters")
    @app_commands.autocomplete(character=own_characters)
    @guild_only
    async def xp_active(interaction: discord.Interaction, character: str):
        await begin(interaction)
        found = await resolve_character(interaction, character, own=True)
        active = await interaction.client.db.set_active(guild_id_of(interaction), interaction.user.id, found.id)
        await reply(interaction, f"**{shown(active.name)}** is now your active character.")

    @tree.command(name="xp_list", description="List your characters")
    @guild_only
    async def xp_list(interaction: discord.Interaction):
        await begin(interaction)
        characters = await interaction.client.db.list_characters(guild_id_of(interaction), interaction.user.id)
        if not characters:
            raise UserError("You have no characters here yet. Create one with `/xp_create`.")
        lines = [f"{'⭐' if c.active else '•'} **{shown(c.name)}** · level {rules.level_for(c.xp)} · {c.xp:,} XP"
                 for c in characters]
        embed = discord.Embed(title="Your characters", colour=COLOUR, description="\n".join(lines)[:4000])
        embed.set_footer(text="⭐ = active: it earns XP from your RP messages")
        await reply(interaction, embed=embed)

    @tree.command(name="xp_delete", description="Delete one of your characters (asks to confirm)")
    @app_commands.describe(character="One of your characters")
    @app_commands.autocomplete(character=own_characters)
    @guild_only
    async def xp_delete(interaction: discord.Interaction, character: str):
        await begin(interaction)
        found = await resolve_character(interaction, character, own=True)
        view = discord.ui.View(timeout=None)
        view.add_item(DeleteButton("yes", interaction.user.id, found.id))
        view.add_item(DeleteButton("no", interaction.user.id, found.id))
        await reply(interaction, f"Delete **{shown(found.name)}** and its {found.xp:,} XP? This can't be undone.",
                    view=view)

    @tree.command(name="xp_set_timezone", description="Your time zone, for the daily reset at your midnight")
    @app_commands.describe(timezone="An IANA time zone such as Europe/Berlin")
    @app_commands.autocomplete(timezone=timezones)
    @guild_only
    async def xp_set_timezone(interaction: discord.Interaction, timezone: str):
        await begin(interaction)
        zone = await interaction.client.db.set_timezone(guild_id_of(interaction), interaction.user.id, timezone)
        local = dt.datetime.now(dt.timezone.utc).astimezone(zoneinfo.ZoneInfo(zone))
        await reply(interaction, f"Time zone set to **{zone}** (it is {local:%H:%M} there). "
                                 "Your daily caps reset at midnight there.")

    @tree.command(name="xp_tracking", description="Which channels earn XP, and the rates and caps")
    @guild_only
    async def xp_tracking(interaction: discord.Interaction):
        await begin(interaction)
        await reply(interaction, embed=tracking_embed(await interaction.client.db.get_config(guild_id_of(interaction))))

    @tree.command(name="xp_help", description="What each XP command does")
    @guild_only
    async def xp_help(interaction: discord.Interaction):
        embed = discord.Embed(title="XP Bot", colour=COLOUR, description=(
            "Write in RP channels to earn XP for your **active** character; hunting and foraging "
            "results earn XP for the character they name. Daily caps reset at your midnight."))
        players, staff = [], []
        for command in sorted(tree.get_commands(), key=lambda c: c.name):
            line = f"`/{command.name}` — {command.description}"
            (staff if command.default_permissions else players).append(line)
        embed.add_field(name="Everyone", value="\n".join(players)[:1024], inline=False)
        embed.add_field(name="Staff (Manage Server)", value="\n".join(staff)[:1024], inline=False)
        await reply(interaction, embed=embed)

    @tree.command(name="xp_leaderboard", description="The server's characters ranked by XP")
    @guild_only
    async def xp_leaderboard(interaction: discord.Interaction):
        await begin(interaction)
        embed, view = await leaderboard_page(interaction, 0)
        await reply(interaction, embed=embed, view=view)

    @tree.command(name="xp_history", description="Recent staff grants to a character")
    @app_commands.describe(character="Your character (staff: any character)")
    @app_commands.autocomplete(character=characters_for_history)
    @guild_only
    async def xp_history(interaction: discord.Interaction, character: str):
        await begin(interaction)
        found = await resolve_character(interaction, character, own=not is_staff(interaction))
        grants = await interaction.client.db.grant_history(guild_id_of(interaction), found.id)
        lines = [f"<t:{int(g['created_at'].timestamp())}:d> **{g['amount']:+,}** by <@{g['granted_by']}>"
                 f" ({g['xp_before']:,} → {g['xp_after']:,})"
                 + (f": {rules.escape_text(g['reason'])}" if g["reason"] else "") for g in grants]
        embed = discord.Embed(title=f"Grants to {shown(found.name)}", colour=COLOUR,
                              description="\n".join(lines)[:4000] or "No grants yet.")
        await reply(interaction, embed=embed)

    # -- staff --

    @tree.command(name="xp_grant", description="Staff: add (or, negative, remove) XP")
    @app_commands.describe(character="Any character of this server", amount="XP to add; negative removes",
                           reason="Why (kept in the history)")
    @app_commands.autocomplete(character=any_characters)
    @guild_only
    @staff_command
    async def xp_grant(interaction: discord.Interaction, character: str,
                       amount: app_commands.Range[int, -rules.GRANT_MAX, rules.GRANT_MAX],
                       reason: app_commands.Range[str, 0, 500] | None = None):
        await begin(interaction)
        found = await resolve_character(interaction, character, own=False)
        award = await interaction.client.db.grant_xp(guild_id_of(interaction), found.id, amount,
                                                     interaction.user.id, reason)
        await reply(interaction, f"**{shown(award.name)}**: {award.xp_before:,} → {award.xp_after:,} XP "
                                 f"(level {award.level_before} → {award.level_after}).")
        await interaction.client.announce_level_up(interaction.guild_id, interaction.channel_id, award)

    def channel_command(kind: str, add: bool):
        verb = "start" if add else "stop"

        async def callback(interaction: discord.Interaction, channel: discord.TextChannel):
            await begin(interaction)
            db: Database = interaction.client.db
            change = db.add_channel if add else db.remove_channel
            cfg, changed = await change(guild_id_of(interaction), kind, channel.id, changed_by=interaction.user.id)
            label = kind.upper()
            if add:
                text = (f"{channel.mention} is now tracked for {label} XP (its threads too)." if changed
                        else f"{channel.mention} was already tracked for {label} XP; nothing changed.")
            else:
                text = (f"{channel.mention} is no longer tracked for {label} XP." if changed
                        else f"{channel.mention} wasn't tracked for {label} XP; nothing changed.")
            await reply(interaction, text)

        callback = app_commands.describe(channel="A text channel of this server")(callback)
        tree.command(name=f"xp_{'add' if add else 'remove'}_{kind}_channel",
                     description=f"Staff: {verb} {kind.upper()} XP tracking in a channel")(
            guild_only(staff_command(callback)))

    for kind in ("rp", "hf"):
        for add in (True, False):
            channel_command(kind, add)

    @tree.command(name="xp_set_cap", description="Staff: the daily RP XP cap")
    @app_commands.describe(amount="At least 1")
    @guild_only
    @staff_command
    async def xp_set_cap(interaction: discord.Interaction, amount: app_commands.Range[int, 1, rules.SETTING_MAX]):
        await begin(interaction)
        cfg = await interaction.client.db.set_rp_cap(guild_id_of(interaction), amount, changed_by=interaction.user.id)
        await reply(interaction, f"Daily RP XP cap set to **{cfg.daily_rp_cap:,}**.")

    @tree.command(name="xp_set_rate", description="Staff: characters of writing per RP XP")
    @app_commands.describe(characters="At least 1")
    @guild_only
    @staff_command
    async def xp_set_rate(interaction: discord.Interaction,
                          characters: app_commands.Range[int, 1, rules.SETTING_MAX]):
        await begin(interaction)
        cfg = await interaction.client.db.set_rp_rate(guild_id_of(interaction), characters,
                                                      changed_by=interaction.user.id)
        await reply(interaction, f"RP XP rate set to **1 XP per {cfg.char_per_rp:,} characters**.")

    @tree.command(name="xp_config_hf", description="Staff: HF XP per attempt, extra on success, daily cap")
    @app_commands.describe(attempt_xp="XP for every hunt or forage (0 or more)",
                           success_xp="Extra XP when it succeeds (0 or more)", daily_cap="At least 1")
    @guild_only
    @staff_command
    async def xp_config_hf(interaction: discord.Interaction,
                           attempt_xp: app_commands.Range[int, 0, rules.SETTING_MAX] | None = None,
                           success_xp: app_commands.Range[int, 0, rules.SETTING_MAX] | None = None,
                           daily_cap: app_commands.Range[int, 1, rules.SETTING_MAX] | None = None):
        await begin(interaction)
        cfg = await interaction.client.db.set_hf(guild_id_of(interaction), attempt_xp=attempt_xp,
                                                 success_xp=success_xp, daily_cap=daily_cap,
                                                 changed_by=interaction.user.id)
        await reply(interaction, f"HF XP: **{cfg.hf_attempt_xp:,}** per attempt, **+{cfg.hf_success_xp:,}** "
                                 f"on success, at most **{cfg.daily_hf_cap:,}** a day.")

    @tree.command(name="xp_levelups", description="Staff: where level-ups are announced")
    @app_commands.describe(where="Where to announce", channel="The channel, when announcing in a fixed one")
    @app_commands.choices(where=[app_commands.Choice(name="where it happens", value="message"),
                                 app_commands.Choice(name="in a fixed channel", value="channel"),
                                 app_commands.Choice(name="nowhere (off)", value="off")])
    @guild_only
    @staff_command
    async def xp_levelups(interaction: discord.Interaction, where: str,
                          channel: discord.TextChannel | None = None):
        await begin(interaction)
        cfg = await interaction.client.db.set_levelup(guild_id_of(interaction), where,
                                                      channel.id if channel else None,
                                                      changed_by=interaction.user.id)
        await reply(interaction, "Level-ups will be announced "
                    + {"message": "in the channel where they happen.", "off": "nowhere.",
                       "channel": f"in <#{cfg.levelup_channel}>."}[cfg.levelup_mode])

    @tree.command(name="xp_settings", description="Staff: a settings panel for rates, caps and channels")
    @guild_only
    @staff_command
    async def xp_settings(interaction: discord.Interaction):
        await begin(interaction)
        await show_panel(interaction)

    @tree.command(name="xp_sync", description="Staff: re-sync the slash commands (as at start-up)")
    @guild_only
    @staff_command
    async def xp_sync(interaction: discord.Interaction):
        await begin(interaction)
        await reply(interaction, await interaction.client.sync_application_commands())

    @tree.command(name="xp_export", description="Staff: this server's XP data as an xp.json file")
    @guild_only
    @staff_command
    async def xp_export(interaction: discord.Interaction):
        await begin(interaction)
        document = await interaction.client.db.export_guild(guild_id_of(interaction))
        data = (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
        players = sum(key.isdigit() for key in document)
        await reply(interaction, f"{players} players exported, in the format `migrate_to_postgres.py` reads.",
                    file=discord.File(io.BytesIO(data), filename=f"xp-{interaction.guild_id}.json"))


# -- running it ----------------------------------------------------------------------------------------

class ConfigError(Exception):
    pass


def read_config(env: dict[str, str], *, need_token: bool = True) -> dict[str, Any]:
    """Everything the bot needs from the environment, validated with clear messages."""
    token = env.get("DISCORD_BOT_TOKEN", "").strip()
    if need_token and not token:
        raise ConfigError("DISCORD_BOT_TOKEN is not set: put your bot's token in .env or the environment.")
    mode = env.get("ENV", "dev").strip().lower() or "dev"
    if mode not in ("dev", "prod"):
        raise ConfigError(f"ENV must be `dev` or `prod`, not `{mode}`.")
    guild_text = env.get("GUILD_ID", "").strip()
    if guild_text and not guild_text.isdigit():
        raise ConfigError("GUILD_ID must be a server ID (digits only): right-click the server, Copy Server ID.")
    guild_id = int(guild_text) if guild_text else None
    if mode == "dev" and guild_id is None:
        raise ConfigError("ENV=dev needs GUILD_ID (the test server's ID) so commands appear there at once; "
                          "or set ENV=prod to sync them globally.")
    shard_count = shard_ids = None
    if env.get("SHARD_COUNT", "").strip():
        try:
            shard_count = int(env["SHARD_COUNT"])
            shard_ids = ([int(s) for s in env["SHARD_IDS"].split(",") if s.strip()]
                         if env.get("SHARD_IDS", "").strip() else None)
        except ValueError:
            raise ConfigError("SHARD_COUNT must be a number and SHARD_IDS a comma list like 0,1.") from None
        if shard_count < 1 or any(not 0 <= s < shard_count for s in shard_ids or ()):
            raise ConfigError(f"SHARD_IDS must be between 0 and SHARD_COUNT-1 ({shard_count - 1}).")
    elif env.get("SHARD_IDS", "").strip():
        raise ConfigError("SHARD_IDS needs SHARD_COUNT too.")
    pool_size = env.get("DATABASE_POOL_SIZE", "").strip()
    if pool_size and not (pool_size.isdigit() and 1 <= int(pool_size) <= 100):
        raise ConfigError(f"DATABASE_POOL_SIZE must be a whole number from 1 to 100, not `{pool_size[:20]}`.")
    data_dir = Path(env.get("XPBOT_DATA_DIR", ".xpbot-pgdata"))
    database_url = env.get("DATABASE_URL", "").strip() or None
    spool = env.get("XPBOT_SPOOL") or (data_dir / "pending-xp.jsonl" if database_url
                                       else data_dir.with_name(data_dir.name + ".pending-xp.jsonl"))
    return {"token": token, "env": mode, "guild_id": guild_id, "shard_count": shard_count,
            "shard_ids": shard_ids, "database_url": database_url, "data_dir": data_dir, "spool": spool}


def setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    logging.getLogger("discord").setLevel(max(logging.INFO, logging.getLogger().level))
    logging.getLogger("discord.http").setLevel(logging.WARNING)


async def run(config: dict[str, Any], *, check: bool) -> int:
    embedded = None
    url = config["database_url"]
    if url is None:
        embedded = LocalPostgres(config["data_dir"])
        log.info("DATABASE_URL not set: using the embedded PostgreSQL in %s", config["data_dir"].resolve())
        url = await asyncio.to_thread(embedded.start)
    try:
        database = Database(url)
        if check:
            async with database:
                tree = XPTree(discord.Client(intents=discord.Intents.none()))
                register_commands(tree)
                print("Configuration OK, database reachable, schema applied. Commands:")
                for command in sorted(tree.get_commands(), key=lambda c: c.name):
                    print(f"  /{command.name:<22} {command.description}")
            return 0
        bot = XPBot(database, env=config["env"], guild_id=config["guild_id"],
                    shard_count=config["shard_count"], shard_ids=config["shard_ids"],
                    sync_commands=config["shard_ids"] is None or 0 in config["shard_ids"],
                    spool=config["spool"])
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda s=sig: (log.info("%s received: shutting down", s.name),
                                                         loop.create_task(bot.close())))
        try:
            async with bot:
                await bot.start(config["token"])
        finally:
            await bot.close()  # discord.py skips it once the gateway is closed: finish our part
        return 0
    finally:
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="XP Bot: XP for role-play characters.")
    parser.add_argument("--check", action="store_true",
                        help="validate the configuration, connect, apply the schema, list the commands, exit")
    args = parser.parse_args(argv)
    try:
        from dotenv import load_dotenv
        load_dotenv()
    except ImportError:  # python-dotenv is in requirements.txt; without it .env is just not read
        pass
    setup_logging(os.environ.get("LOG_LEVEL", "INFO"))
    try:
        config = read_config(dict(os.environ))
    except ConfigError as e:
        print(f"Configuration error: {e}", file=sys.stderr)
        return 1 if args.check else 2
    try:
        return asyncio.run(run(config, check=args.check))
    except discord.LoginFailure:
        print("Discord refused the token: check DISCORD_BOT_TOKEN (Developer Portal → Bot → Reset Token).",
              file=sys.stderr)
        return 1
    except Exception as e:  # a clear line for the operator, never the password
        if is_unavailable(e) or isinstance(e, asyncpg.PostgresError):
            where = describe_url(config["database_url"]) if config["database_url"] else "the embedded database"
            print(f"Can't reach the database at {where}: {redact(str(e)) or type(e).__name__}. "
                  "Check DATABASE_URL and that PostgreSQL is running.", file=sys.stderr)
            return 1
        if isinstance(e, RuntimeError):
            print(f"Can't start: {redact(str(e))}", file=sys.stderr)
            return 1
        raise


def describe_url(url: str) -> str:
    """host:port/database of a database URL, without user or password."""
    from urllib.parse import urlsplit
    try:
        parts = urlsplit(url)
        return f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path or ''}"
    except ValueError:
        return "DATABASE_URL (unparseable)"


def redact(text: str) -> str:
    """Hide passwords in database URLs and the bot token in a message."""
    text = re.sub(r"(postgres(?:ql)?://[^:/@\s]+:)[^@\s]+@", r"\1***@", text)
    token = os.environ.get("DISCORD_BOT_TOKEN")
    return text.replace(token, "***") if token else text


if __name__ == "__main__":
    sys.exit(main())
