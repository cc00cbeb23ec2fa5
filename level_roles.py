"""Level roles: the roles members earn by level, given and taken as the guild configured them.

A member's level here is the highest among their characters in play. Whenever it may have
changed (an XP change crossing a level, retire, restore, delete, purge), `LevelRoles` claims
the change in the database (one claim per level change, whichever process sees it first),
reads the member's roles and makes only the calls that differ: 60 messages crossing one
threshold give one role change. Failures never break an award; staff hear of each role
and cause once, in the log channel, until a change of that role succeeds again.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Callable, Awaitable

import discord
from discord import app_commands

import rules
from interactions import (COLOUR, Refusal, begin, bot_of, db_of, guild_id_of, is_staff, log_embed, reply,
                          staff_command)

if TYPE_CHECKING:
    from bot import XPBot

log = logging.getLogger("xpbot.level_roles")

PROGRESS_EVERY = 2.0  # seconds between progress updates of a sync

FIXES = {
    "manage_roles": "I lack the **Manage Roles** permission: give it to my role in Server Settings → Roles.",
    "hierarchy": "it is at or above my highest role: in Server Settings → Roles, drag my role above it.",
    "deleted": "the role no longer exists: pick another with `/xp_level_role`, or remove the level's role.",
}


class LevelRoles:
    """Gives and takes one guild member's level roles, and reconciles a whole guild."""

    def __init__(self, bot: "XPBot"):
        self.bot = bot
        self._locks: dict[tuple[int, int], asyncio.Lock] = {}
        self.calls = 0  # role changes made (for the benchmark)

    def _lock(self, guild_id: int, user_id: int) -> asyncio.Lock:
        key = (guild_id, user_id)
        if key not in self._locks:
            if len(self._locks) > 10_000:  # forget idle locks
                self._locks = {k: v for k, v in self._locks.items() if v.locked()}
            self._locks[key] = asyncio.Lock()
        return self._locks[key]

    async def member_changed(self, guild_id: int, user_id: int) -> None:
        """The member's level may have changed: follow it, if the guild has level roles."""
        db = self.bot.db
        roles = await db.level_roles(guild_id)
        if not roles:
            return
        async with self._lock(guild_id, user_id):
            level = await db.player_level(guild_id, user_id)
            if not await db.claim_level_change(guild_id, user_id, level):
                return  # already applied (by this or another process)
            mode = (await db.get_config(guild_id)).level_role_mode
            await self.apply(guild_id, user_id, level, roles, mode)

    async def apply(self, guild_id: int, user_id: int, level: int | None, roles: dict[int, int],
                    mode: str) -> tuple[int, list[str]]:
        """Make the member's level roles those of `level`: (role calls made, failures reported)."""
        desired = rules.level_roles_for(level, roles, mode)
        try:
            member = await self.bot.http.get_member(guild_id, user_id)
        except discord.NotFound:
            return 0, []  # not (or no longer) a member: nothing to give
        current = {int(r) for r in member["roles"]}
        changes = [(role, True) for role in sorted(desired - current)]
        changes += [(role, False) for role in sorted((set(roles.values()) & current) - desired)]
        made, problems, healed = 0, [], []
        level_of = {role: lvl for lvl, role in roles.items()}
        for role, add in changes:
            try:
                if add:
                    await self.bot.http.add_role(guild_id, user_id, role, reason="XP Bot level role")
                else:
                    await self.bot.http.remove_role(guild_id, user_id, role, reason="XP Bot level role")
            except discord.NotFound as e:
                if e.code == 10007:  # the member left meanwhile
                    break
                problems += await self._failed(guild_id, role, level_of[role], "deleted")
            except discord.Forbidden:
                problems += await self._failed(guild_id, role, level_of[role], self._cause(guild_id, role))
            else:
                made += 1
                healed.append(role)
        self.calls += made
        if healed:
            await self.bot.db.level_role_succeeded(guild_id, healed)
        return made, problems

    def _cause(self, guild_id: int, role_id: int) -> str:
        guild = self.bot.get_guild(guild_id)
        me = guild.me if guild else None
        if me is not None and not me.guild_permissions.manage_roles:
            return "manage_roles"
        return "hierarchy"

    async def _failed(self, guild_id: int, role_id: int, level: int, cause: str) -> list[str]:
        """Report a failure once per role and cause; returns the message when it is news."""
        if not await self.bot.db.report_level_role_failure(guild_id, role_id, cause):
            return []
        message = f"I couldn't give or take <@&{role_id}> (level {level}): {FIXES[cause]}"
        log.warning("Level role %s in guild %s: %s", role_id, guild_id, cause)
        await self.bot.post_log(guild_id, log_embed("Level role not applied", message, colour=discord.Colour.orange()))
        return [message]

    async def sync(self, guild_id: int, progress: Callable[[int, int], Awaitable[None]]) -> dict[str, int]:
        """Reconcile every member who has a character, one at a time (discord.py waits out
        Discord's rate limits), calling `progress(done, total)` now and then."""
        db = self.bot.db
        roles = await db.level_roles(guild_id)
        mode = (await db.get_config(guild_id)).level_role_mode
        players = await db.level_role_players(guild_id)
        counts = {"members": len(players), "changes": 0, "problems": 0}
        last = time.monotonic()
        for done, player in enumerate(players, 1):
            level = None if player["xp"] is None else rules.level_for(player["xp"])
            async with self._lock(guild_id, player["user_id"]):
                made, problems = await self.apply(guild_id, player["user_id"], level, roles, mode)
                await db.set_applied_level(guild_id, player["user_id"], level)
            counts["changes"] += made
            counts["problems"] += len(problems)
            if time.monotonic() - last >= PROGRESS_EVERY:
                last = time.monotonic()
                await progress(done, len(players))
        return counts


# -- the commands --------------------------------------------------------------------------------

async def bot_top_position(interaction: discord.Interaction) -> int:
    guild = interaction.guild
    me = guild.me or await guild.fetch_member(interaction.client.user.id)
    return me.top_role.position


@app_commands.command(name="xp_level_role", description="Staff: the role members get for reaching a level")
@app_commands.describe(level="1–20", role="The role; leave out to remove that level's role")
@app_commands.guild_only()
@staff_command
async def xp_level_role(interaction: discord.Interaction, level: app_commands.Range[int, 1, rules.MAX_LEVEL],
                        role: discord.Role | None = None):
    await begin(interaction)
    db = db_of(interaction)
    guild_id = guild_id_of(interaction)
    if role is not None:
        if role.is_default():
            raise Refusal("@everyone can't be a level role: everyone has it. Pick or create a role for the level.")
        if role.managed:
            raise Refusal(f"{role.mention} is managed by Discord or an integration (a bot's or the booster role) "
                          "and can't be given by me. Pick a normal role.")
        if role.position >= await bot_top_position(interaction):
            raise Refusal(f"{role.mention} is at or above my highest role, so I can't give it. In Server Settings → "
                          "Roles, drag my role above it, then run this again.")
    before = await db.set_level_role(guild_id, level, role.id if role else None, changed_by=interaction.user.id)
    if role is None:
        text = (f"Level {level} no longer has a role." if before else f"Level {level} had no role; nothing changed.")
    else:
        text = (f"Members reaching level {level} get {role.mention}. It follows each member's next level change; "
                "`/xp_level_roles_sync` applies it to everyone now.")
    await reply(interaction, text)
    if before != (role.id if role else None):
        await bot_of(interaction).post_log(guild_id, log_embed("Settings changed", text, f"by <@{interaction.user.id}>"))


def roles_lines(roles: dict[int, int]) -> str:
    return "\n".join(f"Level {level}: <@&{role}>" for level, role in sorted(roles.items())) or "none"


@app_commands.command(name="xp_level_roles", description="The roles members get by level (staff: set how they combine)")
@app_commands.describe(mode="Staff: stack (every role up to the level) or replace (only the highest)")
@app_commands.choices(mode=[app_commands.Choice(name=f"{mode}: {text}", value=mode)
                            for mode, text in rules.LEVEL_ROLE_MODES.items()])
@app_commands.guild_only()
async def xp_level_roles(interaction: discord.Interaction, mode: str | None = None):
    await begin(interaction)
    db = db_of(interaction)
    guild_id = guild_id_of(interaction)
    note = None
    if mode is not None:
        if not await is_staff(interaction):
            raise Refusal("Only staff can change how level roles combine; leave out `mode` to see them.")
        before = (await db.get_config(guild_id)).level_role_mode
        await db.set_level_role_mode(guild_id, mode, changed_by=interaction.user.id)
        note = (f"Level roles now combine as **{mode}**: {rules.LEVEL_ROLE_MODES[mode]}. This applies at each "
                "member's next level change, or to everyone with `/xp_level_roles_sync`.")
        if before != mode:
            await bot_of(interaction).post_log(guild_id, log_embed("Settings changed", note,
                                                                   f"by <@{interaction.user.id}>"))
    cfg = await db.get_config(guild_id)
    embed = discord.Embed(title="Level roles", colour=COLOUR, description=roles_lines(await db.level_roles(guild_id)))
    embed.set_footer(text=f"Mode: {cfg.level_role_mode} ({rules.LEVEL_ROLE_MODES[cfg.level_role_mode]}). "
                          "A member's level is that of their highest character in play.")
    await reply(interaction, note, embed=embed)


@app_commands.command(name="xp_level_roles_sync", description="Staff: give and take level roles for every member now")
@app_commands.guild_only()
@staff_command
@app_commands.checks.cooldown(*rules.COOLDOWNS["xp_level_roles_sync"], key=lambda i: i.guild_id)
async def xp_level_roles_sync(interaction: discord.Interaction):
    await begin(interaction)
    bot = bot_of(interaction)
    guild_id = guild_id_of(interaction)
    if not await bot.db.level_roles(guild_id):
        raise Refusal("This server has no level roles yet: set one with `/xp_level_role`.")
    await interaction.edit_original_response(content="Syncing level roles…")

    async def progress(done: int, total: int) -> None:
        try:
            await interaction.edit_original_response(content=f"Syncing level roles… {done:,} of {total:,} members.")
        except discord.HTTPException:
            pass  # progress is a courtesy; the sync goes on
    counts = await bot.level_roles.sync(guild_id, progress)
    text = (f"Level roles synced: {counts['members']:,} members checked, {counts['changes']:,} role changes made.")
    if counts["problems"]:
        text += f" {counts['problems']} role(s) could not be given; the log channel says why and how to fix it."
    await interaction.edit_original_response(content=text)


COMMANDS = [xp_level_role, xp_level_roles, xp_level_roles_sync]
COMPONENTS: list = []
