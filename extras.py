"""Beyond the basics: staff grants and their history, the leaderboard, the xp.json export."""
from __future__ import annotations

import re
import tempfile

import discord
from discord import app_commands

import migrate_to_postgres
import rules
from interactions import (COLOUR, CONFIRMATIONS, AnyCharacter, Confirmation, Guarded, HistoryCharacter, Refusal,
                          begin, bot_of, confirm_view, db_of, guild_id_of, log_embed, reply, shown,
                          staff_command)

PAGE_SIZE = 10  # leaderboard lines per page
PAGE_MAX = 999_999  # pages a leaderboard button may name
MIB = 1 << 20
EXPORT_IN_MEMORY = MIB  # bytes of an export kept in memory; a larger one is spooled to disk


@app_commands.command(name="xp_grant", description="Staff: add (or, negative, remove) XP")
@app_commands.describe(character="Any character of this server", amount="XP to add; negative removes",
                       reason="Why (kept in the history)")
@app_commands.guild_only()
@staff_command
async def xp_grant(interaction: discord.Interaction, character: AnyCharacter,
                   amount: app_commands.Range[int, -rules.GRANT_MAX, rules.GRANT_MAX],
                   reason: app_commands.Range[str, 0, rules.REASON_MAX] | None = None):
    await begin(interaction)
    award = await db_of(interaction).grant_xp(guild_id_of(interaction), character.id, amount,
                                              interaction.user.id, reason)
    await reply(interaction, f"**{shown(award.name)}**: {award.xp_before:,} → {award.xp_after:,} XP "
                             f"(level {award.level_before} → {award.level_after}).")
    bot = bot_of(interaction)
    await bot.xp_changed(interaction.guild_id, interaction.channel_id, award)
    await bot.post_log(interaction.guild_id, log_embed(
        "XP granted", f"**{award.xp_after - award.xp_before:+,} XP** to **{shown(award.name)}** of <@{award.user_id}> "
                      f"by <@{interaction.user.id}>",
        f"{award.xp_before:,} → {award.xp_after:,} XP (level {award.level_before} → {award.level_after})",
        f"Reason: {shown(reason)}" if reason else ""))


@app_commands.command(name="xp_history", description="A character's recent XP history: grants, starting XP, requests, quests")
@app_commands.describe(character="Your character (staff: any character)")
@app_commands.guild_only()
async def xp_history(interaction: discord.Interaction, character: HistoryCharacter):
    await begin(interaction)
    grants = await db_of(interaction).grant_history(guild_id_of(interaction), character.id)
    lines = [f"<t:{int(g['created_at'].timestamp())}:d> **{g['amount']:+,}** "
             + ("" if g["source"] == "grant" else f"({rules.HISTORY_SOURCES[g['source']]}) ")
             + f"by <@{g['granted_by']}> ({g['xp_before']:,} → {g['xp_after']:,})"
             + (f": {shown(g['reason'])}" if g["reason"] else "") for g in grants]
    title = f"XP history of {shown(character.name)}" + (" (retired)" if character.retired else "")
    embed = discord.Embed(title=title, colour=COLOUR, description="\n".join(lines)[:4000] or "No grants yet.")
    await reply(interaction, embed=embed)


# -- purging a player ------------------------------------------------------------------------------

@app_commands.command(name="xp_purge", description="Staff: delete everything a player has in this server (asks to confirm)")
@app_commands.describe(player="The player: a member, or the user ID of someone who left")
@app_commands.guild_only()
@staff_command
async def xp_purge(interaction: discord.Interaction, player: discord.User):
    await begin(interaction)
    user_id = player.id
    summary = await db_of(interaction).player_summary(guild_id_of(interaction), user_id)
    if not summary["known"]:
        raise Refusal(f"<@{user_id}> has nothing in this server; nothing to purge.")
    await reply(interaction, f"Purge <@{user_id}>? This deletes, for good, their {summary['characters']} "
                             f"character(s) ({summary['retired']} retired, {summary['xp']:,} XP in all) and "
                             f"{summary['history']} history entries in this server.",
                view=confirm_view("purge", interaction.user.id, user_id))


async def confirmed_purge(interaction: discord.Interaction, user_id: int) -> str:
    gone = await db_of(interaction).purge_player(guild_id_of(interaction), user_id)
    await bot_of(interaction).player_purged(guild_id_of(interaction), user_id, gone, by=interaction.user.id)
    return (f"Purged <@{user_id}>: {gone['characters']} character(s) with {gone['xp']:,} XP and "
            f"{gone['history']} history entries are gone.")


CONFIRMATIONS["purge"] = Confirmation("Purge", "Nothing was purged.", confirmed_purge, staff_only=True)


# -- the leaderboard -------------------------------------------------------------------------------

@app_commands.command(name="xp_leaderboard", description="The server's characters ranked by XP")
@app_commands.guild_only()
async def xp_leaderboard(interaction: discord.Interaction):
    await begin(interaction)
    embed, view = await leaderboard_page(interaction, 0)
    await reply(interaction, embed=embed, view=view)


class LeaderboardButton(Guarded, discord.ui.DynamicItem[discord.ui.Button],
                        template=r"xp:lb:(?P<page>\d{1,6}):(?P<dir>prev|next)(?::(?P<xp>\d{1,13}):(?P<id>\d{1,19}))?"):
    """Previous/next page. It carries the page number and the (xp, id) of the row it pages
    from, so the next page is read right after that row at any depth (buttons of older
    messages, without one, page by number)."""

    def __init__(self, page: int, direction: str, anchor: tuple[int, int] | None = None, disabled: bool = False):
        where = f":{anchor[0]}:{anchor[1]}" if anchor else ""
        super().__init__(discord.ui.Button(label="◀ Previous" if direction == "prev" else "Next ▶",
                                           style=discord.ButtonStyle.secondary, disabled=disabled,
                                           custom_id=f"xp:lb:{page}:{direction}{where}"))
        self.page, self.direction, self.anchor = page, direction, anchor

    @classmethod
    async def from_custom_id(cls, interaction, item, match: re.Match):
        anchor = (int(match["xp"]), int(match["id"])) if match["xp"] else None
        return cls(int(match["page"]), match["dir"], anchor)

    async def run(self, interaction: discord.Interaction) -> None:
        embed, view = await leaderboard_page(interaction, self.page, **(
            {"after" if self.direction == "next" else "before": self.anchor} if self.anchor else {}))
        await interaction.response.edit_message(embed=embed, view=view)


async def leaderboard_page(interaction: discord.Interaction, page: int, **anchor: tuple[int, int]):
    guild_id = guild_id_of(interaction)
    db = db_of(interaction)
    characters, total = await db.leaderboard(guild_id, page=page, per_page=PAGE_SIZE, **anchor)
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(page, pages - 1)
    if "before" in anchor and len(characters) < PAGE_SIZE:  # ranks changed: back to the start
        page = 0
        characters, _ = await db.leaderboard(guild_id, page=page, per_page=PAGE_SIZE)
    elif not characters and page > 0:  # the rows after it are gone: the (new) last page
        characters, _ = await db.leaderboard(guild_id, page=page, per_page=PAGE_SIZE)
    lines = [f"**{page * PAGE_SIZE + i + 1}.** {shown(c.name)} · level {c.level} · "
             f"{c.xp:,} XP · <@{c.user_id}>" for i, c in enumerate(characters)]
    embed = discord.Embed(title="Leaderboard", colour=COLOUR,
                          description="\n".join(lines) or "No characters yet: `/xp_create` makes one.")
    embed.set_footer(text=f"Page {page + 1} of {pages} · {total:,} characters")
    first, last = ((characters[0].xp, characters[0].id), (characters[-1].xp, characters[-1].id)) if characters \
        else (None, None)
    view = discord.ui.View(timeout=None)
    view.add_item(LeaderboardButton(max(page - 1, 0), "prev", first, disabled=page == 0))
    view.add_item(LeaderboardButton(min(page + 1, pages - 1, PAGE_MAX), "next", last, disabled=page >= pages - 1))
    return embed, view


# -- export ----------------------------------------------------------------------------------------

@app_commands.command(name="xp_export", description="Staff: this server's XP data as an xp.json file")
@app_commands.guild_only()
@staff_command
@app_commands.checks.cooldown(*rules.COOLDOWNS["xp_export"], key=lambda i: i.guild_id)
async def xp_export(interaction: discord.Interaction):
    await begin(interaction)
    guild_id = guild_id_of(interaction)
    with tempfile.SpooledTemporaryFile(max_size=EXPORT_IN_MEMORY) as out:  # streamed: a large guild goes to disk
        players = await migrate_to_postgres.write_export(db_of(interaction), guild_id, out)
        limit = interaction.guild.filesize_limit if interaction.guild else discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES
        if out.tell() > limit:
            raise Refusal(f"This server's export is {out.tell() / MIB:,.1f} MiB, too big for Discord to upload here "
                          f"(at most {limit / MIB:,.0f} MiB). Export it on the bot's machine instead: "
                          f"`python migrate_to_postgres.py --export xp.json --guild-id {guild_id}`")
        out.seek(0)
        await reply(interaction, f"{players} players exported, in the format `migrate_to_postgres.py` reads.",
                    file=discord.File(out, filename=f"xp-{guild_id}.json"))


COMMANDS = [xp_grant, xp_history, xp_purge, xp_leaderboard, xp_export]
COMPONENTS = [LeaderboardButton]
