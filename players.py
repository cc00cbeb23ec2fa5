"""Players' commands: their characters, the active one, their time zone, what is tracked."""
from __future__ import annotations

import datetime as dt
import re
import zoneinfo

import discord
from discord import app_commands

import rules
from database import Character, GuildConfig
from interactions import (COLOUR, Guarded, OwnCharacter, Refusal, begin, db_of, guild_id_of, reply,
                          shown, snowflake, user_message)

POPULAR_ZONES = ["UTC", "Europe/London", "Europe/Berlin", "Europe/Paris", "Europe/Moscow",
                 "America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles",
                 "America/Sao_Paulo", "America/Mexico_City", "America/Toronto", "Asia/Tokyo",
                 "Asia/Seoul", "Asia/Shanghai", "Asia/Kolkata", "Asia/Singapore", "Asia/Dubai",
                 "Australia/Sydney", "Pacific/Auckland", "Africa/Johannesburg", "Africa/Cairo"]


# -- what these commands show --------------------------------------------------------------------

def character_embed(character: Character, owner: discord.abc.User | None = None) -> discord.Embed:
    level = character.level
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
    announce = (f"in <#{cfg.levelup_channel}>" if cfg.levelup_mode == "channel"
                else rules.LEVELUP_MODES[cfg.levelup_mode])
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


# -- the commands ----------------------------------------------------------------------------------

@app_commands.command(name="xp", description="Show a character's XP and level (your active one by default)")
@app_commands.describe(character="One of your characters")
@app_commands.guild_only()
async def xp(interaction: discord.Interaction, character: OwnCharacter | None = None):
    await begin(interaction)
    if character is None:
        character = await db_of(interaction).get_active_character(guild_id_of(interaction), interaction.user.id)
        if character is None:
            raise Refusal("You have no active character. Create one with `/xp_create` "
                          "or pick one with `/xp_active`.")
    await reply(interaction, embed=character_embed(character, interaction.user))


@app_commands.command(name="xp_create", description="Create a character (it becomes your active one)")
@app_commands.describe(name="1–100 characters", image_url="Optional picture: an http(s) link")
@app_commands.guild_only()
async def xp_create(interaction: discord.Interaction, name: app_commands.Range[str, 1, rules.NAME_MAX],
                    image_url: str | None = None):
    await begin(interaction)
    created = await db_of(interaction).create_character(guild_id_of(interaction), interaction.user.id,
                                                        name, image_url)
    await reply(interaction, f"Created **{shown(created.name)}**; it is now your active character.",
                embed=character_embed(created, interaction.user))


@app_commands.command(name="xp_active", description="Choose which of your characters earns RP XP")
@app_commands.describe(character="One of your characters")
@app_commands.guild_only()
async def xp_active(interaction: discord.Interaction, character: OwnCharacter):
    await begin(interaction)
    active = await db_of(interaction).set_active(guild_id_of(interaction), interaction.user.id, character.id)
    await reply(interaction, f"**{shown(active.name)}** is now your active character.")


@app_commands.command(name="xp_list", description="List your characters")
@app_commands.guild_only()
async def xp_list(interaction: discord.Interaction):
    await begin(interaction)
    characters = await db_of(interaction).list_characters(guild_id_of(interaction), interaction.user.id)
    if not characters:
        raise Refusal("You have no characters here yet. Create one with `/xp_create`.")
    lines = [f"{'⭐' if c.active else '•'} **{shown(c.name)}** · level {c.level} · {c.xp:,} XP"
             for c in characters]
    embed = discord.Embed(title="Your characters", colour=COLOUR, description="\n".join(lines)[:4000])
    embed.set_footer(text="⭐ = active: it earns XP from your RP messages")
    await reply(interaction, embed=embed)


@app_commands.command(name="xp_delete", description="Delete one of your characters (asks to confirm)")
@app_commands.describe(character="One of your characters")
@app_commands.guild_only()
async def xp_delete(interaction: discord.Interaction, character: OwnCharacter):
    await begin(interaction)
    view = discord.ui.View(timeout=None)
    view.add_item(DeleteButton("yes", interaction.user.id, character.id))
    view.add_item(DeleteButton("no", interaction.user.id, character.id))
    await reply(interaction, f"Delete **{shown(character.name)}** and its {character.xp:,} XP? "
                             "This can't be undone.", view=view)


class DeleteButton(Guarded, discord.ui.DynamicItem[discord.ui.Button],
                   template=r"xp:del:(?P<action>yes|no):(?P<owner>\d{1,20}):(?P<cid>\d{1,20})"):
    def __init__(self, action: str, owner: int, character_id: int):
        style = discord.ButtonStyle.danger if action == "yes" else discord.ButtonStyle.secondary
        super().__init__(discord.ui.Button(label="Delete" if action == "yes" else "Cancel", style=style,
                                           custom_id=f"xp:del:{action}:{owner}:{character_id}"))
        self.action, self.owner, self.character_id = action, owner, character_id

    @classmethod
    async def from_custom_id(cls, interaction, item, match: re.Match):
        return cls(match["action"], int(match["owner"]), int(match["cid"]))

    async def run(self, interaction: discord.Interaction) -> None:
        if interaction.user.id != self.owner:
            await reply(interaction, "Only the player who asked can confirm or cancel this.")
            return
        if self.action == "no":
            await interaction.response.edit_message(content="Nothing was deleted.", view=None)
            return
        if snowflake(str(self.character_id)) is None:
            raise Refusal("That character doesn't exist.")
        try:
            deleted, active = await db_of(interaction).delete_character(
                guild_id_of(interaction), self.owner, self.character_id)
        except rules.UserError as e:
            await interaction.response.edit_message(content=user_message(e), view=None)
            return
        text = f"Deleted **{shown(deleted.name)}** ({deleted.xp:,} XP)."
        if active is not None:
            text += f" Your active character is now **{shown(active.name)}**."
        await interaction.response.edit_message(content=text, view=None)


async def timezones(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    typed = current.strip().lower().replace(" ", "_")
    if not typed:
        zones = POPULAR_ZONES
    else:
        every = rules.all_timezones()
        zones = ([z for z in every if z.lower().startswith(typed)] +
                 [z for z in every if typed in z.lower() and not z.lower().startswith(typed)])
    return [app_commands.Choice(name=z, value=z) for z in zones[:rules.AUTOCOMPLETE_LIMIT]]


@app_commands.command(name="xp_set_timezone", description="Your time zone, for the daily reset at your midnight")
@app_commands.describe(timezone="An IANA time zone such as Europe/Berlin")
@app_commands.autocomplete(timezone=timezones)
@app_commands.guild_only()
async def xp_set_timezone(interaction: discord.Interaction, timezone: str):
    await begin(interaction)
    zone = await db_of(interaction).set_timezone(guild_id_of(interaction), interaction.user.id, timezone)
    local = dt.datetime.now(dt.timezone.utc).astimezone(zoneinfo.ZoneInfo(zone))
    await reply(interaction, f"Time zone set to **{zone}** (it is {local:%H:%M} there). "
                             "Your daily caps reset at midnight there.")


@app_commands.command(name="xp_tracking", description="Which channels earn XP, and the rates and caps")
@app_commands.guild_only()
async def xp_tracking(interaction: discord.Interaction):
    await begin(interaction)
    await reply(interaction, embed=tracking_embed(await db_of(interaction).get_config(guild_id_of(interaction))))


@app_commands.command(name="xp_help", description="What each XP command does")
@app_commands.guild_only()
async def xp_help(interaction: discord.Interaction):
    embed = discord.Embed(title="XP Bot", colour=COLOUR, description=(
        "Write in RP channels to earn XP for your **active** character; hunting and foraging "
        "results earn XP for the character they name. Daily caps reset at your midnight."))
    players, staff = [], []
    for command in sorted(interaction.client.tree.get_commands(), key=lambda c: c.name):
        line = f"`/{command.name}` — {command.description}"
        (staff if command.default_permissions else players).append(line)
    embed.add_field(name="Everyone", value="\n".join(players)[:1024], inline=False)
    embed.add_field(name="Staff (Manage Server)", value="\n".join(staff)[:1024], inline=False)
    await reply(interaction, embed=embed)


COMMANDS = [xp, xp_create, xp_active, xp_list, xp_delete, xp_set_timezone, xp_tracking, xp_help]
COMPONENTS = [DeleteButton]
