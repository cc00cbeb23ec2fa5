"""Staff settings: tracked channels, rates and caps, level-up announcements, the settings
panel (its buttons, channel pickers and forms) and the command sync."""
from __future__ import annotations

import re

import discord
from discord import app_commands

import rules
from database import GuildConfig
from interactions import (Form, Guarded, Refusal, begin, bot_of, db_of, guild_id_of, log_embed, manager_command,
                          reply, shown, staff_command)
from level_roles import FIXES
from players import tracking_embed

def setting_range(key: str):
    """The option type of a guild setting: an integer within the setting's range."""
    return app_commands.Range[int, rules.SETTINGS[key].low, rules.SETTINGS[key].high]


CharPerRP, DailyRPCap, HFAttemptXP, HFSuccessXP, DailyHFCap = (
    setting_range(key) for key in ("char_per_rp", "daily_rp_cap", "hf_attempt_xp", "hf_success_xp", "daily_hf_cap"))


async def settings_changed(interaction: discord.Interaction, text: str) -> None:
    """Every settings change goes to the log channel, with who made it."""
    await bot_of(interaction).post_log(guild_id_of(interaction), log_embed(
        "Settings changed", text, f"by <@{interaction.user.id}>"))


async def changed(interaction: discord.Interaction, text: str, *, really: bool = True) -> None:
    """Answer a settings command and, when something changed, log it."""
    await reply(interaction, text)
    if really:
        await settings_changed(interaction, text)


# -- tracked channels ----------------------------------------------------------------------------

async def change_tracking(interaction: discord.Interaction, kind: str, channel: discord.TextChannel,
                          add: bool) -> None:
    await begin(interaction)
    db = db_of(interaction)
    change = db.add_channel if add else db.remove_channel
    _, changed_ = await change(guild_id_of(interaction), kind, channel.id, changed_by=interaction.user.id)
    label = kind.upper()
    if add:
        text = (f"{channel.mention} is now tracked for {label} XP (its threads too)." if changed_
                else f"{channel.mention} was already tracked for {label} XP; nothing changed.")
    else:
        text = (f"{channel.mention} is no longer tracked for {label} XP." if changed_
                else f"{channel.mention} wasn't tracked for {label} XP; nothing changed.")
    await changed(interaction, text, really=changed_)


@app_commands.command(name="xp_add_rp_channel", description="Staff: start RP XP tracking in a channel")
@app_commands.describe(channel="A text channel of this server")
@app_commands.guild_only()
@staff_command
async def xp_add_rp_channel(interaction: discord.Interaction, channel: discord.TextChannel):
    await change_tracking(interaction, "rp", channel, add=True)


@app_commands.command(name="xp_remove_rp_channel", description="Staff: stop RP XP tracking in a channel")
@app_commands.describe(channel="A text channel of this server")
@app_commands.guild_only()
@staff_command
async def xp_remove_rp_channel(interaction: discord.Interaction, channel: discord.TextChannel):
    await change_tracking(interaction, "rp", channel, add=False)


@app_commands.command(name="xp_add_hf_channel", description="Staff: start HF XP tracking in a channel")
@app_commands.describe(channel="A text channel of this server")
@app_commands.guild_only()
@staff_command
async def xp_add_hf_channel(interaction: discord.Interaction, channel: discord.TextChannel):
    await change_tracking(interaction, "hf", channel, add=True)


@app_commands.command(name="xp_remove_hf_channel", description="Staff: stop HF XP tracking in a channel")
@app_commands.describe(channel="A text channel of this server")
@app_commands.guild_only()
@staff_command
async def xp_remove_hf_channel(interaction: discord.Interaction, channel: discord.TextChannel):
    await change_tracking(interaction, "hf", channel, add=False)


# -- rates and caps ----------------------------------------------------------------------------------

@app_commands.command(name="xp_set_cap", description="Staff: the daily RP XP cap")
@app_commands.describe(amount="At least 1")
@app_commands.guild_only()
@staff_command
async def xp_set_cap(interaction: discord.Interaction, amount: DailyRPCap):
    await begin(interaction)
    cfg = await db_of(interaction).set_rp_cap(guild_id_of(interaction), amount, changed_by=interaction.user.id)
    await changed(interaction, f"Daily RP XP cap set to **{cfg.daily_rp_cap:,}**.")


@app_commands.command(name="xp_set_rate", description="Staff: characters of writing per RP XP")
@app_commands.describe(characters="At least 1")
@app_commands.guild_only()
@staff_command
async def xp_set_rate(interaction: discord.Interaction, characters: CharPerRP):
    await begin(interaction)
    cfg = await db_of(interaction).set_rp_rate(guild_id_of(interaction), characters,
                                               changed_by=interaction.user.id)
    await changed(interaction, f"RP XP rate set to **1 XP per {cfg.char_per_rp:,} characters**.")


@app_commands.command(name="xp_config_hf", description="Staff: HF XP per attempt, extra on success, daily cap")
@app_commands.describe(attempt_xp="XP for every hunt or forage (0 or more)",
                       success_xp="Extra XP when it succeeds (0 or more)", daily_cap="At least 1")
@app_commands.guild_only()
@staff_command
async def xp_config_hf(interaction: discord.Interaction,
                       attempt_xp: HFAttemptXP | None = None,
                       success_xp: HFSuccessXP | None = None,
                       daily_cap: DailyHFCap | None = None):
    await begin(interaction)
    cfg = await db_of(interaction).set_hf(guild_id_of(interaction), attempt_xp=attempt_xp,
                                          success_xp=success_xp, daily_cap=daily_cap,
                                          changed_by=interaction.user.id)
    await changed(interaction, f"HF XP: **{cfg.hf_attempt_xp:,}** per attempt, **+{cfg.hf_success_xp:,}** "
                             f"on success, at most **{cfg.daily_hf_cap:,}** a day.")


def announced_where(cfg: GuildConfig) -> str:
    if cfg.levelup_mode == "channel":
        return f"in <#{cfg.levelup_channel}>"
    return rules.LEVELUP_MODES[cfg.levelup_mode]


@app_commands.command(name="xp_levelups", description="Staff: where level-ups are announced")
@app_commands.describe(where="Where to announce", channel="The channel, when announcing in a fixed one")
@app_commands.choices(where=[app_commands.Choice(name=label, value=mode)
                             for mode, label in rules.LEVELUP_MODES.items()])
@app_commands.guild_only()
@staff_command
async def xp_levelups(interaction: discord.Interaction, where: str, channel: discord.TextChannel | None = None):
    await begin(interaction)
    cfg = await db_of(interaction).set_levelup(guild_id_of(interaction), where, channel.id if channel else None,
                                               changed_by=interaction.user.id)
    await changed(interaction, f"Level-ups will be announced {announced_where(cfg)}.")


# -- staff roles and the log channel ---------------------------------------------------------------

HOW_STAFF_SEE_COMMANDS = ("Staff commands stay hidden from members without Manage Server in Discord's menu: to "
                          "show them to this role, open Server Settings → Integrations → XP Bot and allow the role "
                          "there (per command or for all). The bot checks the role itself either way.")


@app_commands.command(name="xp_add_staff_role", description="Manage Server: members with this role count as staff")
@app_commands.describe(role="A role of this server")
@app_commands.guild_only()
@manager_command
async def xp_add_staff_role(interaction: discord.Interaction, role: discord.Role):
    await begin(interaction)
    if role.is_default():
        raise Refusal("@everyone can't be a staff role: everyone would be staff. Pick a role only staff hold.")
    if role.guild.id != guild_id_of(interaction):
        raise Refusal("Pick a role of this server.")
    _, added = await db_of(interaction).add_staff_role(guild_id_of(interaction), role.id,
                                                       changed_by=interaction.user.id)
    text = (f"{role.mention} is now a staff role." if added else f"{role.mention} was already a staff role; nothing changed.")
    await changed(interaction, f"{text}\n{HOW_STAFF_SEE_COMMANDS}", really=added)


@app_commands.command(name="xp_remove_staff_role", description="Manage Server: this role no longer makes its members staff")
@app_commands.describe(role="One of the staff roles")
@app_commands.guild_only()
@manager_command
async def xp_remove_staff_role(interaction: discord.Interaction, role: discord.Role):
    await begin(interaction)
    _, removed = await db_of(interaction).remove_staff_role(guild_id_of(interaction), role.id,
                                                            changed_by=interaction.user.id)
    await changed(interaction, f"{role.mention} is no longer a staff role." if removed
                  else f"{role.mention} wasn't a staff role; nothing changed.", really=removed)


@app_commands.command(name="xp_log_channel", description="Staff: where the bot logs grants, requests and changes (none: off)")
@app_commands.describe(channel="A text channel of this server; leave out to turn the log off")
@app_commands.guild_only()
@staff_command
async def xp_log_channel(interaction: discord.Interaction, channel: discord.TextChannel | None = None):
    await begin(interaction)
    bot = bot_of(interaction)
    guild_id = guild_id_of(interaction)
    if channel is None:
        await bot.post_log(guild_id, log_embed("Log turned off", f"by <@{interaction.user.id}>"))
        await db_of(interaction).set_log_channel(guild_id, None, changed_by=interaction.user.id)
        await reply(interaction, "The log is off: nothing will be posted.")
        return
    await db_of(interaction).set_log_channel(guild_id, channel.id, changed_by=interaction.user.id)
    posted = await bot.post_log(guild_id, log_embed(
        "Log channel", f"From now on grants, characters, requests, settings changes and quests are logged here "
                       f"(set by <@{interaction.user.id}>)."))
    if posted is None:
        cfg = await db_of(interaction).get_config(guild_id)
        raise Refusal(f"{channel.mention} is the log channel now, but I can't post there "
                      f"({shown(cfg.log_failure or 'unknown error')}). Give me **View Channel**, **Send Messages** "
                      "and **Embed Links** there, then run this again.")
    await reply(interaction, f"The log goes to {channel.mention} from now on.")


# -- the settings panel ------------------------------------------------------------------------------

@app_commands.command(name="xp_settings", description="Staff: a settings panel for rates, caps and channels")
@app_commands.guild_only()
@staff_command
async def xp_settings(interaction: discord.Interaction):
    await begin(interaction)
    await show_panel(interaction)


async def show_panel(interaction: discord.Interaction, note: str | None = None) -> None:
    """Send the settings panel, or update the message a component or form was on."""
    cfg = await db_of(interaction).get_config(guild_id_of(interaction))
    embed = tracking_embed(cfg)
    embed.title = "XP settings"
    embed.add_field(name="Log channel", value=f"<#{cfg.log_channel}>" if cfg.log_channel else "off", inline=False)
    level_roles = await db_of(interaction).level_roles(cfg.guild_id)
    embed.add_field(name=f"Level roles ({cfg.level_role_mode})",
                    value=", ".join(f"{lvl}: <@&{role}>" for lvl, role in level_roles.items())[:1024] or
                    "none (`/xp_level_role`)", inline=False)
    failures = await db_of(interaction).level_role_failures(cfg.guild_id)
    if failures:
        embed.add_field(name="⚠️ Level roles I can't give", inline=False, value="\n".join(
            f"<@&{f['role_id']}>: {FIXES[f['cause']]}" for f in failures)[:1024])
    if cfg.log_failure:
        embed.add_field(name="⚠️ The log channel isn't working", value=shown(cfg.log_failure)[:1000]
                        + "\nFix the bot's permissions there or pick another with `/xp_log_channel`.", inline=False)
    embed.description = note
    if interaction.type is discord.InteractionType.component or (
            interaction.type is discord.InteractionType.modal_submit and interaction.message is not None):
        await interaction.response.edit_message(embed=embed, view=settings_view(cfg))
    else:
        await reply(interaction, embed=embed, view=settings_view(cfg))


def settings_view(cfg: GuildConfig) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for what in SettingsButton.LABELS:
        view.add_item(SettingsButton(what))
    for kind in rules.CHANNEL_KINDS:
        view.add_item(ChannelPicker(kind, getattr(cfg, rules.CHANNEL_KINDS[kind])))
    return view


class SettingsForm(Form):
    """A form of some of the guild's settings (`fields`: setting key -> field custom id)."""

    staff_only = True
    fields: dict[str, str] = {}

    def __init__(self, cfg: GuildConfig):
        super().__init__(custom_id=self.custom_id_value)
        for key, field_id in self.fields.items():
            self.add_item(discord.ui.TextInput(label=rules.SETTINGS[key].label, default=str(getattr(cfg, key)),
                                               max_length=7, custom_id=field_id))

    @classmethod
    def read(cls, values: dict[str, str]) -> dict[str, int]:
        """Every field as a valid setting, or UserError naming the first that isn't."""
        out = {}
        for key, field_id in cls.fields.items():
            label = rules.SETTINGS[key].label
            out[key] = rules.clean_setting(key, rules.parse_whole_number(values.get(field_id, ""), label))
        return out


class RPForm(SettingsForm, title="RP XP settings"):
    custom_id_value = "xp:modal:rp"
    fields = {"char_per_rp": "rate", "daily_rp_cap": "cap"}

    @classmethod
    async def submit(cls, interaction: discord.Interaction, values: dict[str, str], arg: int | None) -> None:
        given = cls.read(values)
        db = db_of(interaction)
        await db.set_rp_rate(guild_id_of(interaction), given["char_per_rp"], changed_by=interaction.user.id)
        await db.set_rp_cap(guild_id_of(interaction), given["daily_rp_cap"], changed_by=interaction.user.id)
        await show_panel(interaction, "RP settings saved.")
        await settings_changed(interaction, f"RP XP: 1 XP per {given['char_per_rp']:,} characters, "
                                            f"at most {given['daily_rp_cap']:,} a day (settings panel).")


class HFForm(SettingsForm, title="HF XP settings"):
    custom_id_value = "xp:modal:hf"
    fields = {"hf_attempt_xp": "attempt", "hf_success_xp": "success", "daily_hf_cap": "cap"}

    @classmethod
    async def submit(cls, interaction: discord.Interaction, values: dict[str, str], arg: int | None) -> None:
        given = cls.read(values)
        await db_of(interaction).set_hf(
            guild_id_of(interaction), attempt_xp=given["hf_attempt_xp"], success_xp=given["hf_success_xp"],
            daily_cap=given["daily_hf_cap"], changed_by=interaction.user.id)
        await show_panel(interaction, "HF settings saved.")
        await settings_changed(interaction, f"HF XP: {given['hf_attempt_xp']:,} per attempt, "
                                            f"+{given['hf_success_xp']:,} on success, at most {given['daily_hf_cap']:,} "
                                            "a day (settings panel).")


class SettingsButton(Guarded, discord.ui.DynamicItem[discord.ui.Button], template=r"xp:set:(?P<what>rp|hf|lvl)"):
    LABELS = {"rp": "RP rates…", "hf": "HF rates…", "lvl": "Level-ups: cycle"}
    staff_only = True

    def __init__(self, what: str):
        super().__init__(discord.ui.Button(label=self.LABELS[what], style=discord.ButtonStyle.primary,
                                           custom_id=f"xp:set:{what}"))
        self.what = what

    @classmethod
    async def from_custom_id(cls, interaction, item, match: re.Match):
        return cls(match["what"])

    async def run(self, interaction: discord.Interaction) -> None:
        db = db_of(interaction)
        cfg = await db.get_config(guild_id_of(interaction))
        if self.what == "rp":
            await RPForm(cfg).send(interaction)
        elif self.what == "hf":
            await HFForm(cfg).send(interaction)
        else:
            mode = rules.next_levelup_mode(cfg.levelup_mode)
            await db.set_levelup(cfg.guild_id, mode, interaction.channel_id if mode == "channel" else None,
                                 changed_by=interaction.user.id)
            await show_panel(interaction, "Level-up announcements changed.")
            await settings_changed(interaction, f"Level-up announcements: {rules.LEVELUP_MODES[mode]} (settings panel).")


class ChannelPicker(Guarded, discord.ui.DynamicItem[discord.ui.ChannelSelect], template=r"xp:chan:(?P<kind>rp|hf)"):
    staff_only = True

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

    async def run(self, interaction: discord.Interaction) -> None:
        guild_id = guild_id_of(interaction)
        foreign = [c for c in self.item.values if not belongs_to(interaction, c)]
        if foreign:
            raise Refusal("Pick channels of this server only; nothing was changed.")
        await db_of(interaction).set_channels(guild_id, self.kind, [c.id for c in self.item.values],
                                              changed_by=interaction.user.id)
        await show_panel(interaction, f"{self.kind.upper()} channels saved.")
        picked = ", ".join(f"<#{c.id}>" for c in self.item.values) or "none"
        await settings_changed(interaction, f"{self.kind.upper()} channels: {picked} (settings panel).")


def belongs_to(interaction: discord.Interaction, channel: discord.abc.Snowflake) -> bool:
    """Whether a picked channel is one of this guild's (a crafted select may name others)."""
    if getattr(channel, "guild_id", interaction.guild_id) != interaction.guild_id:
        return False
    guild = interaction.guild
    return guild is None or guild.get_channel_or_thread(channel.id) is not None


# -- command sync ------------------------------------------------------------------------------------

@app_commands.command(name="xp_sync", description="Staff: re-sync the slash commands (as at start-up)")
@app_commands.guild_only()
@staff_command
async def xp_sync(interaction: discord.Interaction):
    await begin(interaction)
    bot = bot_of(interaction)
    if bot.env != "dev" and not await bot.is_owner(interaction.user):
        raise Refusal("In production the commands are synced for every server at once, and Discord limits "
                      "how often that may happen, so only the bot's owner can run `/xp_sync` there. "
                      "Commands appear in every server by themselves after a restart.")
    await reply(interaction, await bot.sync_application_commands())


COMMANDS = [xp_add_rp_channel, xp_remove_rp_channel, xp_add_hf_channel, xp_remove_hf_channel,
            xp_set_cap, xp_set_rate, xp_config_hf, xp_levelups, xp_add_staff_role, xp_remove_staff_role,
            xp_log_channel, xp_settings, xp_sync]
COMPONENTS = [SettingsButton, ChannelPicker]
FORMS = [RPForm, HFForm]
