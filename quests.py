"""Quests: DMs run adventures for player characters; ending one gives each PC an equal share
of its monsters' XP, once.

Staff start quests; a quest's DMs (and staff) manage it; players join and leave with their own
characters. Everything lives in the database (database.py, "quests"). The confirmation of
/quest_end carries the quest's id in its custom id, so it works after a restart and in any bot
process, and ending is one transaction that only acts on an active quest
(Database.end_quest): a second click, a redelivered one or one in another process finds it
ended and is told by whom and when.
"""
from __future__ import annotations

import logging
import re
from typing import Iterable

import asyncpg
import discord
from discord import app_commands

import rules
from database import Character
from interactions import (COLOUR, CONFIRMATIONS, AnyCharacter, CharacterOption, Confirmation, Guarded, OwnCharacter,
                          Refusal, begin, bot_of, confirm_view, db_of, guild_id_of, is_staff, reply, shown, snowflake,
                          staff_command)

log = logging.getLogger("xpbot")

FIELD_MAX = 1024  # characters of an embed field's value
ALREADY_ANSWERED = 40060  # Discord: this interaction has already been acknowledged

_BY_ID = re.compile(r"^#(\d{1,25})$")


# -- the quest option ----------------------------------------------------------------------------

class QuestOption(app_commands.Transformer):
    """A quest option: autocomplete offers `#id` values with names; a typed name (or a close
    misspelling) works too. With `active`, only a quest still running will do: a completed
    one gets an answer saying it has ended."""

    def __init__(self, active: bool):
        self.active = active

    async def transform(self, interaction: discord.Interaction, value: str) -> asyncpg.Record:
        db, guild_id = db_of(interaction), guild_id_of(interaction)
        match = _BY_ID.match(value.strip()) if isinstance(value, str) else None
        quest_id = snowflake(match.group(1)) if match else None
        quest = await db.get_quest(guild_id, quest_id) if quest_id else None
        if quest is None:
            quest = await db.find_quest(guild_id, value)
        if self.active and quest["status"] != "active":
            raise Refusal(f"**{shown(quest['name'])}** has ended ({ended(quest)}); a completed quest can't be "
                          "changed. `/quest_info` shows it.")
        return quest

    async def autocomplete(self, interaction: discord.Interaction, value: str) -> list[app_commands.Choice[str]]:
        quests = await db_of(interaction).quest_choices(interaction.guild_id, value, active_only=self.active)
        return [app_commands.Choice(name=(f"{q['name']} · levels {q['min_level']}–{q['max_level']}"
                                          + (f" · ended {q['ended_at']:%Y-%m-%d}" if q["ended_at"] else ""))[:100],
                                    value=f"#{q['id']}") for q in quests]


ActiveQuest = app_commands.Transform[asyncpg.Record, QuestOption(active=True)]
AnyQuest = app_commands.Transform[asyncpg.Record, QuestOption(active=False)]


class QuestCharacterOption(CharacterOption):
    """A character option whose autocomplete offers the PCs of the command's `quest` (for
    "own": the caller's only); typed names work as for any CharacterOption."""

    async def autocomplete(self, interaction: discord.Interaction, value: str) -> list[app_commands.Choice[str]]:
        typed = str(getattr(interaction.namespace, "quest", "") or "")
        match = _BY_ID.match(typed.strip())
        quest_id = snowflake(match.group(1)) if match else None
        details = await db_of(interaction).quest_details(interaction.guild_id, quest_id) if quest_id else None
        if details is None or details["status"] != "active":
            return await super().autocomplete(interaction, value)
        wanted = rules.searchable(value).strip().casefold()
        mine = self.scope == "own"
        return [app_commands.Choice(name=f"{pc['name']} · level {rules.level_for(pc['xp'])}"[:100],
                                    value=f"#{pc['character_id']}")
                for pc in details["pcs"] if wanted in pc["name"].casefold()
                and (not mine or pc["user_id"] == interaction.user.id)][:rules.AUTOCOMPLETE_LIMIT]


OwnQuestCharacter = app_commands.Transform[Character, QuestCharacterOption("own")]
AnyQuestCharacter = app_commands.Transform[Character, QuestCharacterOption("any")]


async def quest_types(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    """The guild's earlier quest types."""
    types = await db_of(interaction).quest_types(interaction.guild_id, current)
    return [app_commands.Choice(name=t, value=t) for t in types]


async def challenge_ratings(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    """The challenge ratings starting with what was typed, with their XP."""
    typed = rules.searchable(current).strip().lower().removeprefix("cr").strip()
    ratings = [cr for cr in rules.CR_XP if cr.startswith(typed)] or list(rules.CR_XP)
    return [app_commands.Choice(name=f"CR {cr} · {rules.CR_XP[cr]:,} XP each", value=cr)
            for cr in ratings[:rules.AUTOCOMPLETE_LIMIT]]


# -- what the commands show ----------------------------------------------------------------------

def ended(quest: asyncpg.Record) -> str:
    """By whom and when a completed quest was ended (Discord shows the time in each reader's zone)."""
    return f"ended by <@{quest['ended_by']}> <t:{int(quest['ended_at'].timestamp())}:R>"


def mentions(user_ids: Iterable[int]) -> str:
    return ", ".join(f"<@{u}>" for u in user_ids) or "none"


def fitted(lines: list[str], limit: int = FIELD_MAX) -> str:
    """Lines joined into at most `limit` characters; what does not fit is counted."""
    text = ""
    for i, line in enumerate(lines):
        more = f"\n… and {len(lines) - i} more"
        candidate = f"{text}\n{line}" if text else line
        if len(candidate) + (len(more) if i < len(lines) - 1 else 0) > limit:
            return (text + more) if text else more.strip()
        text = candidate
    return text or "none"


def bracket(quest: asyncpg.Record) -> str:
    return f"levels {quest['min_level']}–{quest['max_level']}"


def quest_embed(details: asyncpg.Record) -> discord.Embed:
    """A quest: its DMs, PCs, monsters and XP; for a completed quest what each PC got."""
    done = details["status"] == "completed"
    pcs, total = details["pcs"], details["monsters_xp"]
    facts = [bracket(details).capitalize()]
    if details["quest_type"]:
        facts.append(shown(details["quest_type"]))
    if details["start_date"] or details["end_date"]:
        facts.append(" → ".join(str(d) for d in (details["start_date"], details["end_date"]) if d))
    facts.append(ended(details) if done else "active")
    embed = discord.Embed(title=("Quest completed: " if done else "Quest: ") + shown(details["name"]),
                          description=" · ".join(facts), colour=discord.Colour.green() if done else COLOUR)
    embed.add_field(name="DMs", value=fitted([f"<@{u}>" for u in details["dm_ids"]]), inline=False)
    if done:
        lines = [f"**{shown(pc['name'])}** (<@{pc['user_id']}>) · level {rules.level_for(pc['xp_before'])} → "
                 f"{rules.level_for(pc['xp_after'])} · +{pc['xp_after'] - pc['xp_before']:,} XP" for pc in pcs]
    else:
        lines = [f"**{shown(pc['name'])}** (<@{pc['user_id']}>) · level {rules.level_for(pc['xp'])} "
                 f"(joined at {pc['level_at_join']})" for pc in pcs]
    embed.add_field(name=f"PCs ({len(pcs)})", value=fitted(lines), inline=False)
    monsters = [f"{m['count']:,} × CR {m['cr']}" + (f" {shown(m['name'])}" if m["name"] else "")
                + f" · {m['count'] * m['xp_each']:,} XP" for m in details["monsters"]]
    embed.add_field(name="Monsters", value=fitted(monsters), inline=False)
    embed.add_field(name="Total", value=f"{total:,} XP")
    if done:
        share = (f"{details['xp_per_pc']:,} XP" if details["awarded"] and pcs else
                 "nothing: no PCs" if not pcs else "nothing: ended without awarding XP")
    else:
        share = f"{rules.quest_share(total, len(pcs)):,} XP if it ended now" if pcs else "no PCs yet"
    embed.add_field(name="Per PC", value=share)
    return embed


async def require_dm(interaction: discord.Interaction, quest: asyncpg.Record) -> None:
    """A quest's DMs and staff manage it: checked by the bot on every use."""
    if interaction.user.id in quest["dm_ids"] or await is_staff(interaction):
        return
    raise Refusal(f"Only the DMs of **{shown(quest['name'])}** ({mentions(quest['dm_ids'])}) or staff can do that. "
                  "Nothing was changed.")


def end_date_of(text: str | None, quest: asyncpg.Record):
    """`end_date` of /quest_end, checked against the quest's start date before anyone confirms."""
    end_date = rules.parse_date(text, "end_date")
    if end_date and quest["start_date"] and end_date < quest["start_date"]:
        raise Refusal(f"end_date ({end_date}) is before the quest's start_date ({quest['start_date']}); "
                      "give a day on or after it. Nothing was ended.")
    return end_date


# -- starting and managing -----------------------------------------------------------------------

@app_commands.command(name="quest_start", description="Staff: start a quest")
@app_commands.describe(name="1–100 characters, unique among active quests", min_level="Lowest level (1–20)",
                       max_level="Highest level (1–20)", quest_type="Any kind, e.g. one-shot (earlier ones offered)",
                       start_date="YYYY-MM-DD", dm="The quest's DM (default: you)")
@app_commands.rename(quest_type="type")
@app_commands.autocomplete(quest_type=quest_types)
@app_commands.guild_only()
@staff_command
async def quest_start(interaction: discord.Interaction, name: app_commands.Range[str, 1, rules.NAME_MAX],
                      min_level: app_commands.Range[int, rules.QUEST_LEVEL_MIN, rules.QUEST_LEVEL_MAX],
                      max_level: app_commands.Range[int, rules.QUEST_LEVEL_MIN, rules.QUEST_LEVEL_MAX],
                      quest_type: app_commands.Range[str, 1, rules.NAME_MAX] | None = None,
                      start_date: str | None = None, dm: discord.Member | None = None):
    await begin(interaction)
    if dm is not None and dm.bot:
        raise Refusal("Bots can't be DMs; pick a member. Nothing was started.")
    quest = await db_of(interaction).create_quest(
        guild_id_of(interaction), name, min_level, max_level, created_by=interaction.user.id,
        dm_id=dm.id if dm else None, quest_type=quest_type, start_date=start_date)
    await reply(interaction, f"Started **{shown(quest['name'])}** ({bracket(quest)}), DM {mentions(quest['dm_ids'])}. "
                             "Players join with `/quest_join`; its DMs add PCs and monsters and end it with "
                             "`/quest_end`.")


@app_commands.command(name="quest_add_dm", description="A quest's DMs: add another DM")
@app_commands.describe(quest="An active quest", member="The new DM")
@app_commands.guild_only()
async def quest_add_dm(interaction: discord.Interaction, quest: ActiveQuest, member: discord.Member):
    await begin(interaction)
    await require_dm(interaction, quest)
    if member.bot:
        raise Refusal("Bots can't be DMs; pick a member. Nothing was changed.")
    added = await db_of(interaction).add_quest_dm(guild_id_of(interaction), quest["id"], member.id,
                                                  added_by=interaction.user.id)
    await reply(interaction, f"{member.mention} is now a DM of **{shown(quest['name'])}**." if added
                else f"{member.mention} was already a DM of **{shown(quest['name'])}**; nothing changed.")


@app_commands.command(name="quest_add_pc", description="A quest's DMs: add any character in play to the quest")
@app_commands.describe(quest="An active quest", character="Any character in play (its level is your call)")
@app_commands.guild_only()
async def quest_add_pc(interaction: discord.Interaction, quest: ActiveQuest, character: AnyCharacter):
    await begin(interaction)
    await require_dm(interaction, quest)
    pc = await db_of(interaction).add_quest_pc(guild_id_of(interaction), quest["id"], character.id,
                                               added_by=interaction.user.id)
    outside = not quest["min_level"] <= pc["level_at_join"] <= quest["max_level"]
    await reply(interaction, f"Added **{shown(pc['character_name'])}** (<@{pc['user_id']}>, level "
                             f"{pc['level_at_join']}) to **{shown(quest['name'])}**"
                             + (f", outside its {bracket(quest)}." if outside else "."))


@app_commands.command(name="quest_remove_pc", description="A quest's DMs: take a character out of the quest")
@app_commands.describe(quest="An active quest", character="One of its PCs")
@app_commands.guild_only()
async def quest_remove_pc(interaction: discord.Interaction, quest: ActiveQuest, character: AnyQuestCharacter):
    await begin(interaction)
    await require_dm(interaction, quest)
    pc = await db_of(interaction).remove_quest_pc(guild_id_of(interaction), quest["id"], character.id)
    await reply(interaction, f"**{shown(pc['name'])}** is no longer in **{shown(quest['name'])}**.")


@app_commands.command(name="quest_add_monster", description="A quest's DMs: add monsters the party faced")
@app_commands.describe(quest="An active quest", cr="Challenge rating: 0, 1/8, 1/4, 1/2 or 1–30",
                       count=f"How many (1–{rules.MONSTER_COUNT_MAX:,})", monster_name="What they were (optional)")
@app_commands.autocomplete(cr=challenge_ratings)
@app_commands.guild_only()
async def quest_add_monster(interaction: discord.Interaction, quest: ActiveQuest, cr: str,
                            count: app_commands.Range[int, 1, rules.MONSTER_COUNT_MAX],
                            monster_name: app_commands.Range[str, 1, rules.NAME_MAX] | None = None):
    await begin(interaction)
    await require_dm(interaction, quest)
    monster, total = await db_of(interaction).add_quest_monster(guild_id_of(interaction), quest["id"], cr, count,
                                                                monster_name, added_by=interaction.user.id)
    what = f"{monster['count']:,} × CR {monster['cr']}" + (f" {shown(monster['name'])}" if monster["name"] else "")
    await reply(interaction, f"Added {what} ({monster['count'] * monster['xp_each']:,} XP) to "
                             f"**{shown(quest['name'])}**: it is worth {total:,} XP now.")


# -- players ---------------------------------------------------------------------------------------

@app_commands.command(name="quest_join", description="Join a quest with one of your characters")
@app_commands.describe(quest="An active quest", character="Your character, within the quest's levels")
@app_commands.guild_only()
async def quest_join(interaction: discord.Interaction, quest: ActiveQuest, character: OwnCharacter):
    await begin(interaction)
    pc = await db_of(interaction).add_quest_pc(guild_id_of(interaction), quest["id"], character.id,
                                               added_by=interaction.user.id, owner_id=interaction.user.id,
                                               in_bracket=True)
    await reply(interaction, f"**{shown(pc['character_name'])}** (level {pc['level_at_join']}) joined "
                             f"**{shown(quest['name'])}**.")


@app_commands.command(name="quest_leave", description="Take one of your characters out of a quest")
@app_commands.describe(quest="An active quest", character="Your character in it")
@app_commands.guild_only()
async def quest_leave(interaction: discord.Interaction, quest: ActiveQuest, character: OwnQuestCharacter):
    await begin(interaction)
    pc = await db_of(interaction).remove_quest_pc(guild_id_of(interaction), quest["id"], character.id,
                                                  owner_id=interaction.user.id)
    await reply(interaction, f"**{shown(pc['name'])}** left **{shown(quest['name'])}**.")


@app_commands.command(name="quest_info", description="A quest: its DMs, PCs, monsters and XP")
@app_commands.describe(quest="An active or completed quest")
@app_commands.guild_only()
async def quest_info(interaction: discord.Interaction, quest: AnyQuest):
    await begin(interaction)
    details = await db_of(interaction).quest_details(guild_id_of(interaction), quest["id"])
    if details is None:
        raise Refusal("That quest no longer exists (it was deleted).")
    await reply(interaction, embed=quest_embed(details))


# -- listing ---------------------------------------------------------------------------------------

@app_commands.command(name="quest_list", description="This server's quests, a page at a time")
@app_commands.describe(completed="True: the completed quests instead of the active ones")
@app_commands.guild_only()
async def quest_list(interaction: discord.Interaction, completed: bool = False):
    await begin(interaction)
    embed, view = await quest_page(interaction, completed, 0)
    await reply(interaction, embed=embed, view=view)


async def quest_page(interaction: discord.Interaction, completed: bool, page: int):
    """One page of quests (one query), with ◀ ▶ that work after a restart."""
    quests, total, page = await db_of(interaction).list_quests(guild_id_of(interaction), completed=completed,
                                                               page=page, per_page=rules.QUESTS_PER_PAGE)
    pages = max(1, -(-total // rules.QUESTS_PER_PAGE))
    if completed:
        lines = [f"**{shown(q['name'])}** · {bracket(q)} · <t:{int(q['ended_at'].timestamp())}:d> · {q['pc_count']} "
                 f"PCs · " + (f"{q['xp_per_pc']:,} XP each" if q["awarded"] and q["pc_count"] else "no XP awarded")
                 for q in quests]
    else:
        lines = [f"**{shown(q['name'])}** · {bracket(q)}" + (f" · {shown(q['quest_type'])}" if q["quest_type"] else "")
                 + f" · DM {mentions(q['dm_ids'][:3])} · {q['pc_count']} PCs · {q['monsters_xp']:,} XP"
                 for q in quests]
    empty = "No completed quests yet." if completed else "No active quests. Staff start one with `/quest_start`."
    embed = discord.Embed(title="Completed quests" if completed else "Active quests", colour=COLOUR,
                          description=fitted(lines, 4000) if lines else empty)
    embed.set_footer(text=f"Page {page + 1} of {pages} · {total:,} quests")
    view = discord.ui.View(timeout=None)
    view.add_item(QuestPageButton(completed, max(page - 1, 0), "prev", disabled=page == 0))
    view.add_item(QuestPageButton(completed, min(page + 1, pages - 1), "next", disabled=page >= pages - 1))
    return embed, view


class QuestPageButton(Guarded, discord.ui.DynamicItem[discord.ui.Button],
                      template=r"xp:quests:(?P<which>active|done):(?P<page>\d{1,6}):(?P<dir>prev|next)"):
    """◀ ▶ under /quest_list: the page it leads to is in its custom id."""

    def __init__(self, completed: bool, page: int, direction: str, disabled: bool = False):
        which = "done" if completed else "active"
        super().__init__(discord.ui.Button(label="◀" if direction == "prev" else "▶", disabled=disabled,
                                           style=discord.ButtonStyle.secondary,
                                           custom_id=f"xp:quests:{which}:{page}:{direction}"))
        self.completed, self.page = completed, page

    @classmethod
    async def from_custom_id(cls, interaction, item, match: re.Match):
        return cls(match["which"] == "done", int(match["page"]), match["dir"])

    async def run(self, interaction: discord.Interaction) -> None:
        embed, view = await quest_page(interaction, self.completed, self.page)
        await interaction.response.edit_message(embed=embed, view=view)


# -- ending and deleting ---------------------------------------------------------------------------

@app_commands.command(name="quest_end", description="A quest's DMs: end it and share its XP among the PCs (asks to confirm)")
@app_commands.describe(quest="An active quest", end_date="YYYY-MM-DD, not before its start date",
                       award="False: end it without giving XP")
@app_commands.guild_only()
async def quest_end(interaction: discord.Interaction, quest: ActiveQuest, end_date: str | None = None,
                    award: bool = True):
    await begin(interaction)
    await require_dm(interaction, quest)
    day = end_date_of(end_date, quest)
    details = await db_of(interaction).quest_details(guild_id_of(interaction), quest["id"])
    pcs, total = len(details["pcs"]), details["monsters_xp"]
    if not pcs:
        what = "It has no PCs: it ends with nothing awarded."
    elif not award:
        what = f"Its {pcs} PC(s) get no XP (`award: False`)."
    else:
        what = f"Its {pcs} PC(s) get {rules.quest_share(total, pcs):,} XP each ({total:,} XP in all)."
    await reply(interaction, f"End **{shown(quest['name'])}**? {what} This can't be undone.",
                view=end_view(interaction.user.id, quest["id"], award, day))


def end_view(asker: int, quest_id: int, award: bool, end_date) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    day = end_date.strftime("%Y%m%d") if end_date else "-"
    for answer in ("yes", "no"):
        view.add_item(QuestEndButton(answer, asker, quest_id, award, day))
    return view


class QuestEndButton(Guarded, discord.ui.DynamicItem[discord.ui.Button],
                     template=r"xp:qend:(?P<answer>yes|no):(?P<asker>\d{1,20}):(?P<quest>\d{1,20}):(?P<award>[01]):"
                              r"(?P<day>\d{8}|-)"):
    """End quest / Cancel under /quest_end: what to do is in its custom id (so it works after a
    restart); only the member who asked answers, and must still be a DM of the quest or staff."""

    def __init__(self, answer: str, asker: int, quest_id: int, award: bool, day: str):
        super().__init__(discord.ui.Button(
            label="End quest" if answer == "yes" else "Cancel",
            style=discord.ButtonStyle.danger if answer == "yes" else discord.ButtonStyle.secondary,
            custom_id=f"xp:qend:{answer}:{asker}:{quest_id}:{int(award)}:{day}"))
        self.answer, self.asker, self.quest_id, self.award, self.day = answer, asker, quest_id, award, day

    @classmethod
    async def from_custom_id(cls, interaction, item, match: re.Match):
        return cls(match["answer"], int(match["asker"]), int(match["quest"]), match["award"] == "1", match["day"])

    async def run(self, interaction: discord.Interaction) -> None:
        if snowflake(str(self.quest_id)) is None:
            raise Refusal("That quest doesn't exist.")
        if interaction.user.id != self.asker:
            await reply(interaction, "Only the member who asked can confirm or cancel this.")
            return
        if self.answer == "no":
            await interaction.response.edit_message(content="Nothing was ended.", view=None)
            return
        end_date = None if self.day == "-" else f"{self.day[:4]}-{self.day[4:6]}-{self.day[6:]}"
        if not await acknowledged(interaction):
            return
        db, bot, guild_id = db_of(interaction), bot_of(interaction), guild_id_of(interaction)
        quest = await db.get_quest(guild_id, self.quest_id)
        if quest is None:
            raise Refusal("That quest no longer exists (it was deleted); nothing was ended.")
        if quest["status"] == "active":
            await require_dm(interaction, quest)  # again: DMs and staff may have changed since the prompt
        quest, awards, already = await db.end_quest(guild_id, self.quest_id, by=interaction.user.id,
                                                    end_date=end_date, award=self.award)
        if already:
            await reply(interaction, f"**{shown(quest['name'])}** was already {ended(quest)}; nothing more was done.")
            return
        summary = quest_embed(await db.quest_details(guild_id, self.quest_id))
        await interaction.edit_original_response(content=None, embed=summary, view=None)
        for award in awards:
            await bot.xp_changed(guild_id, interaction.channel_id, award)
        await bot.post_log(guild_id, summary)


async def acknowledged(interaction: discord.Interaction) -> bool:
    """Defer a click before slow work; False when it was already answered (the same click
    delivered twice, or to two bot processes): the other delivery handles it."""
    try:
        await interaction.response.defer()
    except discord.HTTPException as e:
        if e.code != ALREADY_ANSWERED:
            raise
        log.info("Click %s was already answered elsewhere; not handled twice", interaction.id)
        return False
    return True


@app_commands.command(name="quest_delete", description="A quest's DMs: delete an active quest, awarding nothing (asks to confirm)")
@app_commands.describe(quest="An active quest")
@app_commands.guild_only()
async def quest_delete(interaction: discord.Interaction, quest: ActiveQuest):
    await begin(interaction)
    await require_dm(interaction, quest)
    await reply(interaction, f"Delete **{shown(quest['name'])}** with its PCs and monsters? Nothing is awarded, "
                             "and it can't be undone.", view=confirm_view("qdel", interaction.user.id, quest["id"]))


async def confirmed_quest_delete(interaction: discord.Interaction, quest_id: int) -> str:
    db, guild_id = db_of(interaction), guild_id_of(interaction)
    quest = await db.get_quest(guild_id, quest_id)
    if quest is None:
        raise Refusal("That quest no longer exists; nothing was deleted.")
    await require_dm(interaction, quest)
    await db.delete_quest(guild_id, quest_id)
    return f"Deleted the quest **{shown(quest['name'])}**; nothing was awarded."


CONFIRMATIONS["qdel"] = Confirmation("Delete quest", "Nothing was deleted.", confirmed_quest_delete)

COMMANDS = [quest_start, quest_add_dm, quest_add_pc, quest_remove_pc, quest_add_monster, quest_join, quest_leave,
            quest_info, quest_list, quest_end, quest_delete]
COMPONENTS = [QuestPageButton, QuestEndButton]
