"""What every command, button, select and modal shares: replies, who is staff, the one
error path, the character option, and persistent components and modals.

The command modules (players.py, staff.py, extras.py) build on this; bot.py wires them.
"""
from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable

import discord
from discord import app_commands
from discord.utils import escape_markdown

from database import (AmbiguousName, Character, CharacterNotFound, CharacterRetired, Database,
                      DatabaseUnavailable, DuplicateName, RestoreClash, is_unavailable)
from rules import UserError

if TYPE_CHECKING:
    from bot import XPBot

log = logging.getLogger("xpbot")

NO_PINGS = discord.AllowedMentions.none()
COLOUR = discord.Colour.from_rgb(88, 101, 242)
LOGGED_TEXT_MAX = 200  # characters of user-supplied text that go into one log line
SNOWFLAKE_MAX = 2**63 - 1  # Discord ids and our ids are PostgreSQL bigints

STAFF_ONLY = ("Only staff (members with the **Manage Server** or **Administrator** permission, or a staff "
              "role of this server) can do that.")
MANAGERS_ONLY = "Only members with the **Manage Server** permission can do that."


class Refusal(UserError):
    """A refusal worded by the bot itself: its Discord markdown is shown as written."""


class NotStaff(app_commands.CheckFailure):
    """Raised by the staff check; its message is shown to the member."""


def bot_of(interaction: discord.Interaction) -> "XPBot":
    return interaction.client  # type: ignore[return-value]


def db_of(interaction: discord.Interaction) -> Database:
    return bot_of(interaction).db


# -- showing text --------------------------------------------------------------------------------

def shown(text: str) -> str:
    """User-chosen text, safe to show: no markdown tricks, and mentions look like plain text
    (they never ping anyway: every message is sent with pings off)."""
    return escape_markdown(text).replace("@", "@\u200b")


def clip(text: object, limit: int = LOGGED_TEXT_MAX) -> str:
    """User-supplied text for a log line: one line, at most `limit` characters."""
    text = repr(text) if not isinstance(text, str) else text
    text = text.replace("\n", "\\n").replace("\r", "\\r")
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} characters)"


def redact(text: str) -> str:
    """Hide passwords in database URLs and the bot token in a message."""
    text = re.sub(r"(postgres(?:ql)?://[^:/@\s]+:)[^@\s]+@", r"\1***@", text)
    text = re.sub(r"(password=)[^&\s]+", r"\1***", text)
    token = os.environ.get("DISCORD_BOT_TOKEN")
    return text.replace(token, "***") if token else text


def snowflake(text: str) -> int | None:
    """An id typed or carried in a custom id, or None when it can't be one."""
    return int(text) if text.isdigit() and len(text) <= 19 and int(text) <= SNOWFLAKE_MAX else None


# -- replies -----------------------------------------------------------------------------------

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


# -- staff ---------------------------------------------------------------------------------------

def is_manager(interaction: discord.Interaction) -> bool:
    """Manage Server or Administrator in this guild."""
    perms = interaction.permissions
    return interaction.guild_id is not None and (perms.manage_guild or perms.administrator)


async def is_staff(interaction: discord.Interaction) -> bool:
    """A manager, or a member holding one of the guild's staff roles: checked by the bot on
    every use of a staff command, button, select or form (Discord's own command permissions
    only hide commands)."""
    if is_manager(interaction):
        return True
    roles = [role.id for role in getattr(interaction.user, "roles", ()) if not role.is_default()]
    if interaction.guild_id is None or not roles:
        return False
    staff_roles = (await db_of(interaction).get_config(interaction.guild_id)).staff_roles
    return any(role in staff_roles for role in roles)


async def staff_check(interaction: discord.Interaction) -> bool:
    if not await is_staff(interaction):
        raise NotStaff(STAFF_ONLY)
    return True


def staff_command(func: Callable) -> Callable:
    """Hidden from members by default, and checked by the bot itself on every use."""
    return app_commands.default_permissions(manage_guild=True)(app_commands.check(staff_check)(func))


async def manager_check(interaction: discord.Interaction) -> bool:
    if not is_manager(interaction):
        raise NotStaff(MANAGERS_ONLY)
    return True


def manager_command(func: Callable) -> Callable:
    """For Manage Server only (a staff role is not enough), e.g. choosing the staff roles."""
    return app_commands.default_permissions(manage_guild=True)(app_commands.check(manager_check)(func))


def log_embed(title: str, *lines: str, colour: discord.Colour = COLOUR) -> discord.Embed:
    """An entry for the log channel (it pings nobody: nothing is ever sent with pings)."""
    return discord.Embed(title=title, description="\n".join(line for line in lines if line)[:4000], colour=colour,
                         timestamp=discord.utils.utcnow())


# -- the one error path --------------------------------------------------------------------------

def user_message(error: UserError) -> str:
    """What to tell the user about a mistake, in Discord's words."""
    if isinstance(error, AmbiguousName):
        names = ", ".join(f"**{shown(c.name)}** (<@{c.user_id}>)" for c in error.candidates)
        return f"**{shown(error.query)}** could mean {names}. Pick one from the list."
    if isinstance(error, CharacterNotFound):
        whose = "your characters" if error.own else "this server's characters"
        if error.query is None:
            hint = " Use `/xp_list` to see yours." if error.own else ""
            return f"That character is not among {whose} (it may have been deleted).{hint}"
        return (f"No character called **{shown(error.query)}** among {whose}. "
                "Check the spelling or pick one from the list.")
    if isinstance(error, DuplicateName):
        return (f"You already have a character called **{shown(error.name)}** "
                "(names ignore letter case). Pick another name.")
    if isinstance(error, RestoreClash):
        return (f"You already have a character called **{shown(error.name)}** in play. Rename that one "
                "with `/xp_edit` or retire it with `/xp_retire` first, then restore this one.")
    if isinstance(error, CharacterRetired):
        return f"**{shown(error.name)}** is retired: restore it with `/xp_unretire` first."
    if isinstance(error, Refusal):
        return str(error)
    return escape_markdown(str(error))


async def handle_error(interaction: discord.Interaction, error: Exception) -> None:
    """Every command, button, select and modal ends here on failure: a short, clear answer
    for the user; the details, when unexpected, for the log."""
    original = getattr(error, "original", error)
    if isinstance(error, app_commands.TransformerError) and isinstance(error.__cause__, Exception):
        original = error.__cause__  # raised by a Transformer, e.g. CharacterOption
    if isinstance(original, UserError) and not isinstance(original, DatabaseUnavailable):
        message = user_message(original)
    elif isinstance(original, NotStaff):
        message = str(original)
    elif isinstance(error, app_commands.TransformerError):
        message = ("That option's value isn't valid here. Pick from the list Discord offers "
                   "(for a channel: a text channel of this server).")
    elif isinstance(error, app_commands.CommandOnCooldown):
        again = discord.utils.utcnow().timestamp() + error.retry_after
        message = (f"You're doing that too often: try again <t:{int(again) + 1}:R> "
                   f"(in {error.retry_after:.0f} s).")
    elif isinstance(error, app_commands.NoPrivateMessage):
        message = "This command only works in a server."
    elif isinstance(error, app_commands.CheckFailure):
        message = "You can't use this command here."
    elif isinstance(original, DatabaseUnavailable) or is_unavailable(original):
        message = str(DatabaseUnavailable())
        log.warning("Database unavailable while handling %s", what_was_used(interaction))
    else:
        message = "Something went wrong on my side; it has been logged. Please try again."
        log.error("Unexpected error in %s (guild %s, user %s, data %s)", what_was_used(interaction),
                  interaction.guild_id, interaction.user.id,
                  clip(redact(json.dumps(interaction.data or {}, default=str)), 500), exc_info=original)
    try:
        await reply(interaction, message)
    except discord.HTTPException:
        log.warning("Could not tell user %s about an error", interaction.user.id)


def what_was_used(interaction: discord.Interaction) -> str:
    if interaction.command is not None:
        return f"/{interaction.command.qualified_name}"
    return f"component {clip((interaction.data or {}).get('custom_id', '?'), 100)}"


class XPTree(app_commands.CommandTree):
    async def on_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        await handle_error(interaction, error)


# -- the character option ------------------------------------------------------------------------

_BY_ID = re.compile(r"^#(\d{1,25})$")


class CharacterOption(app_commands.Transformer):
    """A character option: autocomplete offers `#id` values with names; a typed name (or a
    close misspelling of one) works too. Its `scope` says whose characters count:

    - "own": the caller's characters in play;
    - "mine_or_staff": the caller's in play (staff: anyone's);
    - "retired": the caller's retired ones (staff: anyone's);
    - "any": anyone's (staff commands; retired ones only when typed);
    - "history": the caller's (staff: anyone's), retired too;
    - "viewed": the characters in play of the command's `player` option, else the caller's.
    """

    def __init__(self, scope: str):
        assert scope in ("own", "mine_or_staff", "retired", "any", "history", "viewed")
        self.scope = scope

    async def _whose(self, interaction: discord.Interaction) -> tuple[int | None, bool | None, bool | None]:
        """(owner or None for anyone's, retired filter for typed names, for autocomplete)."""
        scope = self.scope
        if scope == "any":
            return None, None, False
        if scope == "viewed":
            player = getattr(interaction.namespace, "player", None)
            return (player.id if player is not None else interaction.user.id), False, False
        staff = scope in ("mine_or_staff", "retired", "history") and await is_staff(interaction)
        owner = None if staff else interaction.user.id
        retired = {"own": False, "mine_or_staff": False, "retired": True, "history": None}[scope]
        return owner, retired, (None if scope == "history" and staff else (retired if scope == "retired" else False))

    async def transform(self, interaction: discord.Interaction, value: str) -> Character:
        db = db_of(interaction)
        guild_id = guild_id_of(interaction)
        owner, retired, _ = await self._whose(interaction)
        match = _BY_ID.match(value.strip()) if isinstance(value, str) else None
        if match:
            character_id = snowflake(match.group(1))
            character = await db.get_character(guild_id, character_id) if character_id else None
            if (character is not None and (owner is None or character.user_id == owner)
                    and (retired is None or character.retired == retired)):
                return character
        return await db.find_character(guild_id, value, owner_id=owner, retired=retired)

    async def autocomplete(self, interaction: discord.Interaction, value: str) -> list[app_commands.Choice[str]]:
        owner, _, retired = await self._whose(interaction)
        characters = await db_of(interaction).character_choices(interaction.guild_id, value, owner_id=owner,
                                                                retired=retired)
        guild = interaction.guild
        choices = []
        for c in characters:
            label = f"{c.name} · level {c.level}"
            if owner is None or owner != interaction.user.id:
                member = guild.get_member(c.user_id) if guild else None
                label += f" · {member.display_name if member else f'player {c.user_id}'}"
            elif c.active:
                label += " · active"
            if c.retired:
                label += " · retired"
            choices.append(app_commands.Choice(name=label[:100], value=f"#{c.id}"))
        return choices


OwnCharacter = app_commands.Transform[Character, CharacterOption("own")]
AnyCharacter = app_commands.Transform[Character, CharacterOption("any")]
HistoryCharacter = app_commands.Transform[Character, CharacterOption("history")]
MineOrStaffCharacter = app_commands.Transform[Character, CharacterOption("mine_or_staff")]
RetiredCharacter = app_commands.Transform[Character, CharacterOption("retired")]
ViewedCharacter = app_commands.Transform[Character, CharacterOption("viewed")]


# -- persistent components and modals ------------------------------------------------------------

class Guarded:
    """Mixed into every DynamicItem: the staff check when `staff_only`, then `run`, with
    failures answered by the one error path. Subclasses implement `run`."""

    staff_only = False

    async def callback(self, interaction: discord.Interaction) -> None:
        try:
            if self.staff_only and not await is_staff(interaction):
                await reply(interaction, STAFF_ONLY)
                return
            await self.run(interaction)
        except Exception as e:
            await handle_error(interaction, e)

    async def run(self, interaction: discord.Interaction) -> None:
        raise NotImplementedError


class Form(discord.ui.Modal):
    """A modal whose submission is handled by `submit(interaction, values, arg)` from its custom
    id alone, so it works the same before and after a restart (the bot routes every `xp:modal:`
    submit itself, see `route_modal`). Subclasses set `custom_id_value` and build their fields;
    a form about one thing (a request) has the custom id `<custom_id_value>:<id>` and gets the
    id as `arg`."""

    custom_id_value = ""
    staff_only = False

    @classmethod
    async def submit(cls, interaction: discord.Interaction, values: dict[str, str], arg: int | None) -> None:
        raise NotImplementedError

    async def send(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_modal(self)
        self.stop()  # not kept in discord.py's store: route_modal handles the submission


def modal_values(data: dict) -> dict[str, str]:
    """{field custom id: value} of a modal submission (action rows or labels)."""
    values: dict[str, str] = {}

    def walk(components: list) -> None:
        for component in components or ():
            if "components" in component:
                walk(component["components"])
            elif "component" in component:
                walk([component["component"]])
            elif "custom_id" in component:
                values[component["custom_id"]] = component.get("value") or ""
    walk(data.get("components", []))
    return values


async def route_modal(interaction: discord.Interaction, forms: dict[str, type[Form]]) -> bool:
    """Handle a modal submission of ours; False when it isn't one."""
    data = interaction.data or {}
    custom_id = str(data.get("custom_id", ""))
    form, arg = forms.get(custom_id), None
    if form is None and ":" in custom_id:
        prefix, _, tail = custom_id.rpartition(":")
        form, arg = forms.get(prefix), snowflake(tail)
        form = form if arg is not None else None
    if interaction.type is not discord.InteractionType.modal_submit or form is None:
        return False
    try:
        if form.staff_only and not await is_staff(interaction):
            await reply(interaction, STAFF_ONLY)
            return True
        await form.submit(interaction, modal_values(data), arg)
    except Exception as e:
        await handle_error(interaction, e)
    return True


# -- confirmations ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Confirmation:
    """What a Confirm/Cancel prompt does: `run(interaction, target)` returns the text that
    replaces the prompt; `cancelled` replaces it on Cancel."""
    label: str
    cancelled: str
    run: Callable[[discord.Interaction, int], Awaitable[str]]
    staff_only: bool = False


CONFIRMATIONS: dict[str, Confirmation] = {}  # action -> what it does; filled by the command modules


class ConfirmButton(Guarded, discord.ui.DynamicItem[discord.ui.Button],
                    template=r"xp:(?P<action>[a-z]{1,10}):(?P<answer>yes|no):(?P<asker>\d{1,20}):(?P<target>\d{1,20})"):
    """Confirm or Cancel of a prompt: only the member who asked may answer; the action runs
    at most once in effect (each action's SQL only acts on what is still there)."""

    def __init__(self, action: str, answer: str, asker: int, target: int):
        confirmation = CONFIRMATIONS.get(action)
        label = (confirmation.label if confirmation else "Confirm") if answer == "yes" else "Cancel"
        style = discord.ButtonStyle.danger if answer == "yes" else discord.ButtonStyle.secondary
        super().__init__(discord.ui.Button(label=label, style=style,
                                           custom_id=f"xp:{action}:{answer}:{asker}:{target}"))
        self.action, self.answer, self.asker, self.target = action, answer, asker, target

    @classmethod
    async def from_custom_id(cls, interaction, item, match: re.Match):
        return cls(match["action"], match["answer"], int(match["asker"]), int(match["target"]))

    async def run(self, interaction: discord.Interaction) -> None:
        confirmation = CONFIRMATIONS.get(self.action)
        if confirmation is None or snowflake(str(self.target)) is None:
            raise UserError("This button is no longer valid.")
        if interaction.user.id != self.asker:
            await reply(interaction, "Only the member who asked can confirm or cancel this.")
            return
        if self.answer == "no":
            await interaction.response.edit_message(content=confirmation.cancelled, view=None)
            return
        if confirmation.staff_only and not await is_staff(interaction):
            await reply(interaction, STAFF_ONLY)
            return
        try:
            text = await confirmation.run(interaction, self.target)
        except UserError as e:
            text = user_message(e)
        await interaction.response.edit_message(content=text, view=None)


def confirm_view(action: str, asker: int, target: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(ConfirmButton(action, "yes", asker, target))
    view.add_item(ConfirmButton(action, "no", asker, target))
    return view
