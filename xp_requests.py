"""XP requests: a player asks for XP for their character, staff approve or deny it once.

The request lives in the database; its Approve/Deny buttons in the log channel carry its id,
so they work after a restart and from any bot process, and approving is one transaction
that takes the request out of 'pending' (database.decide_request): a second click, a
redelivered one or one in another process finds nothing left to do and says who decided.
"""
from __future__ import annotations

import logging
import re

import asyncpg
import discord
from discord import app_commands

import rules
from interactions import (COLOUR, Form, Guarded, OwnCharacter, Refusal, begin, bot_of, db_of, guild_id_of,
                          is_staff, reply, shown, snowflake)

log = logging.getLogger("xpbot")

STATUS_TEXT = {"pending": "⏳ waiting for staff", "approved": "✅ approved", "denied": "❌ denied",
               "cancelled": "↩️ cancelled by the player", "closed": "🚫 closed"}
STATUS_COLOUR = {"pending": COLOUR, "approved": discord.Colour.green(), "denied": discord.Colour.red(),
                 "cancelled": discord.Colour.light_grey(), "closed": discord.Colour.dark_grey()}


def outcome(request: asyncpg.Record) -> str:
    """What became of a request, by whom and when (Discord renders the time in each reader's zone)."""
    text = STATUS_TEXT[request["status"]]
    if request["decided_at"] is not None and request["status"] != "cancelled":
        text += f" by <@{request['decided_by']}> <t:{int(request['decided_at'].timestamp())}:R>"
    if request["note"]:
        text += f": {shown(request['note'])}"
    return text


def request_embed(request: asyncpg.Record) -> discord.Embed:
    embed = discord.Embed(title=f"XP request #{request['id']}", colour=STATUS_COLOUR[request["status"]],
                          timestamp=request["created_at"])
    embed.add_field(name="Character", value=f"**{shown(request['character_name'])}** of <@{request['user_id']}>")
    embed.add_field(name="Amount", value=f"{request['amount']:,} XP")
    embed.add_field(name="Reason", value=shown(request["reason"])[:1024], inline=False)
    embed.add_field(name="Status", value=outcome(request)[:1024], inline=False)
    return embed


def decision_view(request_id: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(RequestButton("approve", request_id))
    view.add_item(RequestButton("deny", request_id))
    return view


# -- the commands --------------------------------------------------------------------------------

@app_commands.command(name="xp_request", description="Ask staff for XP for one of your characters")
@app_commands.describe(character="One of your characters", amount=f"1–{rules.REQUEST_AMOUNT_MAX:,} XP",
                       reason=f"Why (1–{rules.REQUEST_REASON_MAX} characters)")
@app_commands.guild_only()
@app_commands.checks.cooldown(*rules.COOLDOWNS["xp_request"], key=lambda i: (i.guild_id, i.user.id))
async def xp_request(interaction: discord.Interaction, character: OwnCharacter,
                     amount: app_commands.Range[int, 1, rules.REQUEST_AMOUNT_MAX],
                     reason: app_commands.Range[str, 1, rules.REQUEST_REASON_MAX]):
    await begin(interaction)
    db, bot = db_of(interaction), bot_of(interaction)
    guild_id = guild_id_of(interaction)
    cfg = await db.get_config(guild_id)
    if cfg.log_channel is None:
        raise Refusal("Requests go to the log channel, and this server has none yet: ask staff to set one "
                      "with `/xp_log_channel`. Nothing was requested.")
    request = await db.create_request(guild_id, interaction.user.id, character.id, amount, reason)
    posted = await bot.post_log(guild_id, request_embed(request), view=decision_view(request["id"]))
    if posted is not None:
        await db.set_request_message(request["id"], posted.channel.id, posted.id)
        where = f"in <#{posted.channel.id}>"
    else:
        where = "with `/xp_requests` (the log channel isn't working right now)"
    await reply(interaction, f"Request #{request['id']} sent: **{amount:,} XP** for **{shown(character.name)}**. "
                             f"Staff will see it {where}; you'll get a DM with the decision if your DMs are open.")


@app_commands.command(name="xp_requests", description="Your XP requests (staff: every one waiting, oldest first)")
@app_commands.guild_only()
async def xp_requests(interaction: discord.Interaction):
    await begin(interaction)
    db = db_of(interaction)
    guild_id = guild_id_of(interaction)
    view = discord.ui.View(timeout=None)
    if await is_staff(interaction):
        requests = await db.list_requests(guild_id)
        lines = [f"**#{r['id']}** <t:{int(r['created_at'].timestamp())}:R> · <@{r['user_id']}> asks "
                 f"**{r['amount']:,} XP** for **{shown(r['character_name'])}**: {shown(r['reason'])[:100]}"
                 for r in requests]
        for r in requests[:10]:  # Discord allows 25 buttons; two per request, oldest first
            view.add_item(RequestButton("approve", r["id"], label=f"Approve #{r['id']}"))
            view.add_item(RequestButton("deny", r["id"], label=f"Deny #{r['id']}"))
        title, empty = "XP requests waiting", "No requests are waiting."
    else:
        requests = await db.list_requests(guild_id, user_id=interaction.user.id)
        lines = [f"**#{r['id']}** {r['amount']:,} XP for **{shown(r['character_name'])}** · {outcome(r)}"
                 for r in requests]
        for r in requests:
            if r["status"] == "pending":
                view.add_item(CancelRequestButton(r["id"]))
        title, empty = "Your XP requests", "You have no requests. Ask with `/xp_request`."
    embed = discord.Embed(title=title, colour=COLOUR, description="\n".join(lines)[:4000] or empty)
    await reply(interaction, embed=embed, view=view if view.children else None)


# -- deciding ------------------------------------------------------------------------------------

async def decide(interaction: discord.Interaction, request_id: int, *, approve: bool, note: str | None) -> None:
    """Approve or deny, once; update the log message, tell the requester, announce a level-up."""
    bot, db = bot_of(interaction), db_of(interaction)
    guild_id = guild_id_of(interaction)
    request, award, already = await db.decide_request(guild_id, request_id, approve=approve,
                                                      by=interaction.user.id, note=note)
    on_log_message = interaction.message is not None and interaction.message.id == request["log_message_id"]
    if on_log_message:
        await interaction.response.edit_message(embed=request_embed(request), view=None)
    if already:
        await reply(interaction, f"Request #{request_id} was already decided: {outcome(request)}.")
        return
    if not on_log_message:
        await reply(interaction, f"Request #{request_id}: {outcome(request)}.")
        await update_log_message(bot, request)
    if award is not None:
        await bot.xp_changed(guild_id, interaction.channel_id, award)
    await tell_requester(bot, request)


async def update_log_message(bot, request: asyncpg.Record) -> None:
    """Show the outcome on the request's log message and remove its buttons (best effort)."""
    if request["log_message_id"] is None:
        return
    channel = bot.get_partial_messageable(request["log_channel_id"], guild_id=request["guild_id"])
    try:
        await channel.get_partial_message(request["log_message_id"]).edit(embed=request_embed(request), view=None)
    except discord.HTTPException as e:
        log.info("Could not update the log message of request %s: %s", request["id"], e.status)


async def tell_requester(bot, request: asyncpg.Record) -> None:
    """A DM with the outcome; closed DMs (or a user who left) fail nothing."""
    try:
        user = bot.get_user(request["user_id"]) or await bot.fetch_user(request["user_id"])
        guild = bot.get_guild(request["guild_id"])
        embed = request_embed(request)
        embed.set_footer(text=f"in {guild.name}" if guild else "")
        await user.send(embed=embed)
    except discord.HTTPException as e:
        log.info("Could not DM user %s about request %s: %s", request["user_id"], request["id"], e.status)


class RequestButton(Guarded, discord.ui.DynamicItem[discord.ui.Button],
                    template=r"xp:req:(?P<what>approve|deny):(?P<id>\d{1,20})"):
    """Approve or Deny under a request (staff only, re-checked on every click)."""

    staff_only = True

    def __init__(self, what: str, request_id: int, label: str | None = None):
        style = discord.ButtonStyle.success if what == "approve" else discord.ButtonStyle.danger
        super().__init__(discord.ui.Button(label=label or what.capitalize(), style=style,
                                           custom_id=f"xp:req:{what}:{request_id}"))
        self.what, self.request_id = what, request_id

    @classmethod
    async def from_custom_id(cls, interaction, item, match: re.Match):
        return cls(match["what"], int(match["id"]))

    async def run(self, interaction: discord.Interaction) -> None:
        if snowflake(str(self.request_id)) is None:
            raise Refusal("That request doesn't exist.")
        if self.what == "approve":
            await decide(interaction, self.request_id, approve=True, note=None)
            return
        request = await db_of(interaction).get_request(guild_id_of(interaction), self.request_id)
        if request is None:
            raise Refusal("That request doesn't exist in this server.")
        if request["status"] != "pending":
            await reply(interaction, f"Request #{self.request_id} was already decided: {outcome(request)}.")
            return
        await DenyForm(self.request_id).send(interaction)


class DenyForm(Form, title="Deny the request"):
    """Deny with an optional reason, which the requester sees."""

    custom_id_value = "xp:modal:deny"
    staff_only = True

    def __init__(self, request_id: int):
        super().__init__(custom_id=f"{self.custom_id_value}:{request_id}")
        self.add_item(discord.ui.TextInput(label="Why (optional; the player sees it)", required=False,
                                           max_length=rules.REQUEST_REASON_MAX, custom_id="why",
                                           style=discord.TextStyle.paragraph))

    @classmethod
    async def submit(cls, interaction: discord.Interaction, values: dict[str, str], arg: int | None) -> None:
        await decide(interaction, arg, approve=False, note=values.get("why") or None)


class CancelRequestButton(Guarded, discord.ui.DynamicItem[discord.ui.Button],
                          template=r"xp:reqcancel:(?P<id>\d{1,20})"):
    """The requester withdraws a request that is still waiting."""

    def __init__(self, request_id: int):
        super().__init__(discord.ui.Button(label=f"Cancel #{request_id}", style=discord.ButtonStyle.secondary,
                                           custom_id=f"xp:reqcancel:{request_id}"))
        self.request_id = request_id

    @classmethod
    async def from_custom_id(cls, interaction, item, match: re.Match):
        return cls(int(match["id"]))

    async def run(self, interaction: discord.Interaction) -> None:
        if snowflake(str(self.request_id)) is None:
            raise Refusal("That request doesn't exist.")
        request = await db_of(interaction).cancel_request(guild_id_of(interaction), self.request_id,
                                                          interaction.user.id)
        await reply(interaction, f"Request #{self.request_id} cancelled.")
        await update_log_message(bot_of(interaction), request)


COMMANDS = [xp_request, xp_requests]
COMPONENTS = [RequestButton, CancelRequestButton]
FORMS = [DenyForm]
