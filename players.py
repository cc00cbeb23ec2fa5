"""Players' commands: their characters, the active one, their time zone, what is tracked."""
from __future__ import annotations

import datetime as dt
import re
import zoneinfo

import discord
from discord import app_commands

import rules
from database import KEEP, Character, GuildConfig
from interactions import (COLOUR, CONFIRMATIONS, Confirmation, Guarded, MineOrStaffCharacter, OwnCharacter,
                          Refusal, RetiredCharacter, ViewedCharacter, begin, confirm_view, db_of, guild_id_of,
                          is_staff, reply, shown, bot_of)

POPULAR_ZONES = ["UTC", "Europe/London", "Europe/Berlin", "Europe/Paris", "Europe/Moscow",
                 "America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles",
                 "America/Sao_Paulo", "America/Mexico_City", "America/Toronto", "Asia/Tokyo",
                 "Asia/Seoul", "Asia/Shanghai", "Asia/Kolkata", "Asia/Singapore", "Asia/Dubai",
                 "Australia/Sydney", "Pacific/Auckland", "Africa/Johannesburg", "Africa/Cairo"]


# -- what these commands show --------------------------------------------------------------------

def character_embed(character: Character, owner: discord.abc.User | None = None) -> discord.Embed:
    level = character.level
    embed = discord.Embed(title=shown(character.name), colour=COLOUR, url=character.sheet_url)
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
    footer = "Retired" if character.retired else "Active character" if character.active else "Not active"
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
    embed.add_field(name="Staff roles", value=", ".join(f"<@&{r}>" for r in cfg.staff_roles)[:1024] or
                    "none (staff: Manage Server or Administrator)", inline=False)
    embed.set_footer(text="Daily caps reset at each player's own midnight (/xp_set_timezone).")
    return embed


# -- the commands ----------------------------------------------------------------------------------

@app_commands.command(name="xp", description="A character's XP and level (your active one by default)")
@app_commands.describe(character="A character (yours, or the player's you name)",
                       player="Someone else: browse their characters")
@app_commands.guild_only()
async def xp(interaction: discord.Interaction, character: ViewedCharacter | None = None,
             player: discord.Member | None = None):
    await begin(interaction)
    db = db_of(interaction)
    guild_id = guild_id_of(interaction)
    if player is None and character is None:
        character = await db.get_active_character(guild_id, interaction.user.id)
        if character is None:
            raise Refusal("You have no active character. Create one with `/xp_create` "
                          "or pick one with `/xp_active`.")
    if player is None:
        owner = interaction.user if character.user_id == interaction.user.id else None
        await reply(interaction, embed=character_embed(character, owner))
        return
    embed, view = await character_page(interaction, player.id, 0 if character is None else None, character)
    await reply(interaction, embed=embed, view=view)


async def character_page(interaction: discord.Interaction, player_id: int, page: int | None,
                         character: Character | None = None) -> tuple[discord.Embed, discord.ui.View | None]:
    """One of a player's characters in play (the active one first), with ◀ ▶ to page through
    them: `page` by number, or the page showing `character`."""
    characters = await db_of(interaction).list_characters(guild_id_of(interaction), player_id)
    characters.sort(key=lambda c: not c.active)
    if not characters:
        raise Refusal(f"<@{player_id}> has no characters in play here.")
    if page is None:
        page = next((i for i, c in enumerate(characters) if c.id == character.id), 0)
    page = min(page, len(characters) - 1)
    member = interaction.guild.get_member(player_id) if interaction.guild else None
    embed = character_embed(characters[page], member)
    embed.set_author(name=f"Character {page + 1} of {len(characters)}")
    if len(characters) == 1:
        return embed, None
    view = discord.ui.View(timeout=None)
    viewer = interaction.user.id
    view.add_item(CharacterPageButton(viewer, player_id, max(page - 1, 0), "prev", disabled=page == 0))
    view.add_item(CharacterPageButton(viewer, player_id, min(page + 1, len(characters) - 1), "next",
                                      disabled=page >= len(characters) - 1))
    return embed, view


class CharacterPageButton(Guarded, discord.ui.DynamicItem[discord.ui.Button],
                          template=r"xp:page:(?P<viewer>\d{1,20}):(?P<player>\d{1,20}):(?P<page>\d{1,4}):(?P<dir>prev|next)"):
    """◀ ▶ under `/xp player:`: only the member who asked pages; works after a restart."""

    def __init__(self, viewer: int, player: int, page: int, direction: str, disabled: bool = False):
        super().__init__(discord.ui.Button(label="◀" if direction == "prev" else "▶", disabled=disabled,
                                           style=discord.ButtonStyle.secondary,
                                           custom_id=f"xp:page:{viewer}:{player}:{page}:{direction}"))
        self.viewer, self.player, self.page = viewer, player, page

    @classmethod
    async def from_custom_id(cls, interaction, item, match: re.Match):
        return cls(int(match["viewer"]), int(match["player"]), int(match["page"]), match["dir"])

    async def run(self, interaction: discord.Interaction) -> None:
        if interaction.user.id != self.viewer:
            await reply(interaction, "Only the member who asked can page through these; "
                                     "use `/xp player:` to browse them yourself.")
            return
        embed, view = await character_page(interaction, self.player, self.page)
        await interaction.response.edit_message(embed=embed, view=view)


@app_commands.command(name="xp_create", description="Create a character (it becomes your active one)")
@app_commands.describe(name="1–100 characters", image_url="Optional picture: an http(s) link",
                       sheet_url="Optional character sheet: an http(s) link",
                       player="Staff: create it for this member", starting_xp="Staff: XP it starts with")
@app_commands.guild_only()
async def xp_create(interaction: discord.Interaction, name: app_commands.Range[str, 1, rules.NAME_MAX],
                    image_url: str | None = None, sheet_url: str | None = None,
                    player: discord.Member | None = None,
                    starting_xp: app_commands.Range[int, 0, rules.STARTING_XP_MAX] | None = None):
    await begin(interaction)
    if (player is not None or starting_xp is not None) and not await is_staff(interaction):
        raise Refusal("Only staff can create a character for someone else or with starting XP; "
                      "leave out `player` and `starting_xp`. Nothing was created.")
    if player is not None and player.bot:
        raise Refusal("Bots can't have characters; pick a member. Nothing was created.")
    owner = player or interaction.user
    created = await db_of(interaction).create_character(
        guild_id_of(interaction), owner.id, name, image_url, sheet_url,
        starting_xp=starting_xp or 0, created_by=interaction.user.id)
    await bot_of(interaction).character_changed(
        created.guild_id, owner.id, "created", created, by=interaction.user.id,
        extra=f"Starting XP: {created.xp:,}" if created.xp else "")
    whose = "your" if owner.id == interaction.user.id else f"{owner.mention}'s"
    await reply(interaction, f"Created **{shown(created.name)}**; it is now {whose} active character.",
                embed=character_embed(created, owner))


def link_change(value: str | None):
    """An option of /xp_edit: not given keeps the link, `none` clears it."""
    if value is None:
        return KEEP
    return None if value.strip().lower() == "none" else value


@app_commands.command(name="xp_edit", description="Rename a character or change its picture or sheet link")
@app_commands.describe(character="Your character (staff: any)", name="A new name",
                       image_url="A picture link, or none to remove it", sheet_url="A sheet link, or none to remove it")
@app_commands.guild_only()
async def xp_edit(interaction: discord.Interaction, character: MineOrStaffCharacter,
                  name: app_commands.Range[str, 1, rules.NAME_MAX] | None = None,
                  image_url: str | None = None, sheet_url: str | None = None):
    await begin(interaction)
    staff = await is_staff(interaction)
    before, after = await db_of(interaction).edit_character(
        guild_id_of(interaction), character.id, owner_id=None if staff else interaction.user.id,
        name=name, image_url=link_change(image_url), sheet_url=link_change(sheet_url))
    changed = [what for what, a, b in (("name", before.name, after.name), ("picture", before.image_url, after.image_url),
                                       ("sheet link", before.sheet_url, after.sheet_url)) if a != b]
    text = (f"**{shown(after.name)}**: {', '.join(changed)} changed." if changed
            else f"**{shown(after.name)}** already looked like that; nothing changed.")
    await reply(interaction, text, embed=character_embed(after))


@app_commands.command(name="xp_active", description="Choose which of your characters earns RP XP")
@app_commands.describe(character="One of your characters")
@app_commands.guild_only()
async def xp_active(interaction: discord.Interaction, character: OwnCharacter):
    await begin(interaction)
    active = await db_of(interaction).set_active(guild_id_of(interaction), interaction.user.id, character.id)
    await reply(interaction, f"**{shown(active.name)}** is now your active character.")


@app_commands.command(name="xp_list", description="List your characters (or a player's), or the retired ones")
@app_commands.describe(player="Someone else's characters", retired="True: the retired characters instead")
@app_commands.guild_only()
async def xp_list(interaction: discord.Interaction, player: discord.Member | None = None, retired: bool = False):
    await begin(interaction)
    whose = player or interaction.user
    characters = await db_of(interaction).list_characters(guild_id_of(interaction), whose.id, retired=retired)
    mine = whose.id == interaction.user.id
    if not characters:
        if retired:
            raise Refusal(f"{'You have' if mine else f'{whose.mention} has'} no retired characters here.")
        raise Refusal("You have no characters here yet. Create one with `/xp_create`." if mine
                      else f"{whose.mention} has no characters in play here.")
    lines = [f"{'⭐' if c.active else '•'} **{shown(c.name)}** · level {c.level} · {c.xp:,} XP" for c in characters]
    title = ("Your" if mine else f"{whose.display_name}'s") + (" retired characters" if retired else " characters")
    embed = discord.Embed(title=shown(title), colour=COLOUR, description="\n".join(lines)[:4000])
    embed.set_footer(text="Retired characters earn nothing; /xp_unretire brings one back" if retired
                     else "⭐ = active: it earns XP from RP messages")
    await reply(interaction, embed=embed)


@app_commands.command(name="xp_delete", description="Delete one of your characters for good (asks to confirm)")
@app_commands.describe(character="One of your characters")
@app_commands.guild_only()
async def xp_delete(interaction: discord.Interaction, character: OwnCharacter):
    await begin(interaction)
    await reply(interaction, f"Delete **{shown(character.name)}** and its {character.xp:,} XP? This can't be undone.",
                view=confirm_view("del", interaction.user.id, character.id))


async def confirmed_delete(interaction: discord.Interaction, character_id: int) -> str:
    deleted, active = await db_of(interaction).delete_character(guild_id_of(interaction), interaction.user.id,
                                                                character_id)
    await bot_of(interaction).character_changed(deleted.guild_id, deleted.user_id, "deleted", deleted,
                                                by=interaction.user.id)
    text = f"Deleted **{shown(deleted.name)}** ({deleted.xp:,} XP)."
    if active is not None:
        text += f" Your active character is now **{shown(active.name)}**."
    return text


@app_commands.command(name="xp_retire", description="Retire a character: it keeps its XP but earns none (asks to confirm)")
@app_commands.describe(character="Your character (staff: any)")
@app_commands.guild_only()
async def xp_retire(interaction: discord.Interaction, character: MineOrStaffCharacter):
    await begin(interaction)
    await reply(interaction, f"Retire **{shown(character.name)}** ({character.xp:,} XP)? It keeps its XP and history "
                             "but earns no more until `/xp_unretire` brings it back.",
                view=confirm_view("ret", interaction.user.id, character.id))


async def confirmed_retire(interaction: discord.Interaction, character_id: int) -> str:
    staff = await is_staff(interaction)
    retired, active = await db_of(interaction).retire_character(
        guild_id_of(interaction), character_id, owner_id=None if staff else interaction.user.id)
    await bot_of(interaction).character_changed(guild_id_of(interaction), retired.user_id, "retired", retired,
                                                by=interaction.user.id)
    text = f"Retired **{shown(retired.name)}** ({retired.xp:,} XP)."
    if retired.user_id == interaction.user.id and active is not None:
        text += f" Your active character is now **{shown(active.name)}**."
    return text


@app_commands.command(name="xp_unretire", description="Bring a retired character back into play")
@app_commands.describe(character="Your retired character (staff: any)")
@app_commands.guild_only()
async def xp_unretire(interaction: discord.Interaction, character: RetiredCharacter):
    await begin(interaction)
    staff = await is_staff(interaction)
    restored = await db_of(interaction).unretire_character(guild_id_of(interaction), character.id,
                                                           owner_id=None if staff else interaction.user.id)
    await bot_of(interaction).character_changed(guild_id_of(interaction), restored.user_id, "restored", restored,
                                                by=interaction.user.id)
    await reply(interaction, f"**{shown(restored.name)}** is back in play ({restored.xp:,} XP). "
                             "Make it active with `/xp_active` to earn RP XP with it.")


CONFIRMATIONS["del"] = Confirmation("Delete", "Nothing was deleted.", confirmed_delete)
CONFIRMATIONS["ret"] = Confirmation("Retire", "Nothing was retired.", confirmed_retire)


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
    for title, lines in (("Everyone", players), ("Staff (Manage Server, Administrator or a staff role)", staff)):
        for i, chunk in enumerate(field_chunks(lines)):
            embed.add_field(name=title if i == 0 else f"{title}, continued", value=chunk, inline=False)
    await reply(interaction, embed=embed)


def field_chunks(lines: list[str], limit: int = 1024) -> list[str]:
    """Lines joined into as few embed field values (at most `limit` characters) as they need."""
    chunks: list[str] = []
    for line in lines:
        if chunks and len(chunks[-1]) + 1 + len(line) <= limit:
            chunks[-1] += "\n" + line
        else:
            chunks.append(line[:limit])
    return chunks


COMMANDS = [xp, xp_create, xp_edit, xp_active, xp_list, xp_delete, xp_retire, xp_unretire, xp_set_timezone,
            xp_tracking, xp_help]
COMPONENTS = [CharacterPageButton]
