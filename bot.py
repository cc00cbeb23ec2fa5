"""XP Bot: XP for role-play characters, earned by writing and by hunting/foraging results.

The entry point and the one discord.py client: the `on_message` XP listener and the slash
commands, which live by area in players.py, staff.py, extras.py and xp_requests.py (shared
pieces in interactions.py); all of them call the `Database` in database.py.
Run `python bot.py` (or `python bot.py --check`).
"""
from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import logging
import os
import sys
from pathlib import Path
from typing import Any

import asyncpg
import discord

import extras
import level_roles
import platforms
import players
import quests
import rules
import staff
import xp_requests
from database import DEFAULT_POOL_SIZE, Award, Character, Database, HFResult, RPMessage, is_unavailable
from interactions import NO_PINGS, ConfirmButton, XPTree, clip, log_embed, redact, route_modal, shown
from local_postgres import LocalPostgres
from xp_queue import TrackedChannels, XPEvent, XPQueue

log = logging.getLogger("xpbot")

discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False  # no voice: no warnings about it
RP_MESSAGE_TYPES = (discord.MessageType.default, discord.MessageType.reply)
PRUNE_EVERY = 3600  # seconds between clean-ups of counted message ids
AREAS = (players, staff, extras, xp_requests, level_roles, quests)  # the command modules, each with COMMANDS and COMPONENTS
FORMS = {form.custom_id_value: form for area in AREAS for form in getattr(area, "FORMS", ())}


def register_commands(tree: discord.app_commands.CommandTree) -> None:
    for area in AREAS:
        for command in area.COMMANDS:
            tree.add_command(command)


def rp_failed(message_id: int, guild_id: int, award: asyncio.Future) -> None:
    """Log an RP award that failed (the listener no longer waits for it)."""
    if not award.cancelled() and award.exception() is not None:
        log.error("XP for message %s in guild %s failed", message_id, guild_id, exc_info=award.exception())


# -- the client -------------------------------------------------------------------------------

class XPBot(discord.AutoShardedClient):
    def __init__(self, database: Database, *, env: str = "dev", guild_id: int | None = None,
                 shard_count: int | None = None, shard_ids: list[int] | None = None,
                 sync_commands: bool = True, spool: str | os.PathLike | None = None):
        """One process's client: `shard_ids` of `shard_count` shards (None: all of them)."""
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
        self.tracked = TrackedChannels(database)
        self.level_roles = level_roles.LevelRoles(self)
        self._owners: frozenset[int] | None = None
        self._announced_online = False
        self._background: set[asyncio.Task] = set()
        self._following: set[asyncio.Task] = set()  # level-role updates under way
        self._closing: asyncio.Future | None = None
        register_commands(self.tree)

    @property
    def holds_shard_zero(self) -> bool:
        return self.shard_ids is None or 0 in self.shard_ids

    async def setup_hook(self) -> None:
        await self.db.connect()
        await self.tracked.start()
        self.add_dynamic_items(ConfirmButton)
        for area in AREAS:
            self.add_dynamic_items(*area.COMPONENTS)
        if self.queue.load():
            log.info("Replaying %d XP event(s) kept from the last run", len(self.queue.pending))
        self._spawn(self._prune_loop())
        if self.sync_commands and self.holds_shard_zero:
            await self.sync_application_commands()

    async def sync_application_commands(self) -> str:
        """dev: copy the commands to GUILD_ID only; prod: global only. Never both."""
        if self.env == "dev":
            if not self.dev_guild_id:
                raise rules.UserError("ENV=dev needs GUILD_ID to sync commands to.")
            guild = discord.Object(self.dev_guild_id)
            self.tree.copy_global_to(guild=guild)
            synced = await self.tree.sync(guild=guild)
            where = f"guild {self.dev_guild_id}"
        else:
            synced = await self.tree.sync()
            where = "all servers (global)"
        log.info("Synced %d commands to %s", len(synced), where)
        return f"Synced {len(synced)} commands to {where}."

    async def is_owner(self, user: discord.abc.User) -> bool:
        """Whether `user` owns the application (or is on the team that does)."""
        if self._owners is None:
            info = await self.application_info()
            members = info.team.members if info.team else []
            self._owners = frozenset([info.owner.id, *(m.id for m in members)])
        return user.id in self._owners

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        """Modal submissions are routed here by their custom id, before and after a restart."""
        await route_modal(interaction, FORMS)

    async def on_ready(self) -> None:
        if not self._announced_online:
            self._announced_online = True
            log.info("✅ %s is online", self.user.name if self.user else "XP Bot")
            # What start-up made (discord.py's cache of every guild) lives as long as the
            # process: left out of the collector's full passes, which otherwise hold the event
            # loop longer the more guilds there are.
            gc.freeze()

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _prune_loop(self) -> None:
        """Upkeep, now and then hourly: names not signed yet (a database from before signatures,
        or renamed outside the bot) get their signature; old counted message ids go."""
        while True:
            try:
                if signed := await self.db.sign_names():
                    log.info("Signed %d character name(s) for misspelt-name lookups", signed)
            except Exception as e:  # unsigned names are still found, only slower: retried next hour
                log.warning("Signing character names failed: %s", type(e).__name__)
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
        if self._following:  # role changes under way finish while Discord is still reachable
            await asyncio.wait(self._following, timeout=5)
        await super().close()  # no new events from here on
        for task in self._background:
            task.cancel()
        if not await self.queue.drain(timeout=10):
            log.warning("Database still unavailable at shutdown")
        self.queue.save()
        log.info("XP events this run: %d in %d database round trips; %d tracked-channel reads",
                 self.queue.events, self.queue.round_trips, self.tracked.reads)
        await self.tracked.close()
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
            rp, hf = await self.tracked.get(message.guild.id)
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
                # Not awaited: while the award waits for the database (a burst, thousands of
                # guilds, an outage), only the small event is kept, not discord.py's message.
                award = self.queue.submit_rp(RPMessage(message.guild.id, channel.id, parent_id, message.author.id,
                                                       len(message.content), message.id), at=message.created_at)
                if award is not None:
                    award.add_done_callback(functools.partial(rp_failed, message.id, message.guild.id))
        except Exception:
            log.exception("XP for message %s in guild %s failed", message.id, message.guild.id)

    async def _hunting_or_foraging(self, message: discord.Message, parent_id: int | None) -> None:
        embed = message.embeds[0]
        parsed = rules.parse_hf(*(rules.searchable(t) for t in (embed.title, embed.description)),
                                [(rules.searchable(f.name), rules.searchable(f.value)) for f in embed.fields])
        if parsed is None:
            return
        name, success = parsed
        award = await self.queue.hf(HFResult(
            message.guild.id, tuple(c for c in (message.channel.id, parent_id) if c), name,
            tuple(u.id for u in message.mentions), success, message.id), at=message.created_at)
        if award is not None and award.status in ("unknown_character", "ambiguous"):
            why = ("no character has that name" if award.status == "unknown_character" else
                   "several players have a character of that name and the mentions don't pick one")
            log.info("HF result for %s in guild %s awarded nothing: %s", clip(name, 100), message.guild.id, why)

    async def on_award(self, event: XPEvent, award: Award) -> None:
        """Called once per award that changed XP."""
        if award.gained:
            here = event.channel_id if isinstance(event, RPMessage) else event.channel_ids[0]
            await self.xp_changed(event.guild_id, here, award)

    # -- what follows a change: the log channel, level-ups ----------------------------------

    async def post_log(self, guild_id: int, embed: discord.Embed,
                       view: discord.ui.View | None = None) -> discord.Message | None:
        """Post to the guild's log channel, if it has one. A failure (channel gone, permission
        missing) never fails the action: it is recorded once (`/xp_settings` shows it) and
        logged once, until a post succeeds again."""
        if self.is_closed():
            return None  # shutting down: Discord is no longer reachable
        cfg = await self.db.get_config(guild_id)
        if cfg.log_channel is None:
            return None
        channel = self.get_partial_messageable(cfg.log_channel, guild_id=guild_id)
        try:
            message = await channel.send(embed=embed, view=view or discord.utils.MISSING,
                                         allowed_mentions=NO_PINGS)
        except discord.HTTPException as e:
            why = (f"posting in <#{cfg.log_channel}> failed: {e.status} {e.text or type(e).__name__}"
                   if isinstance(e, discord.HTTPException) else str(e))[:300]
            if await self.db.set_log_failure(guild_id, why):
                log.warning("Log channel of guild %s: %s", guild_id, why)
            return None
        except RuntimeError:  # the HTTP session closed under it: shutting down
            if not self.is_closed():
                raise
            return None
        if cfg.log_failure is not None:
            await self.db.set_log_failure(guild_id, None)
            log.info("Log channel of guild %s works again", guild_id)
        return message

    async def xp_changed(self, guild_id: int, here: int | None, award: Award) -> None:
        """After any XP change (RP, HF, grant, request, quest): announce a level-up, follow
        the member's level roles."""
        await self.announce_level_up(guild_id, here, award)
        if award.level_before != award.level_after:
            self.follow_level(guild_id, award.user_id)

    def follow_level(self, guild_id: int, user_id: int) -> None:
        """Bring the member's level roles in line, in the background (never delaying an award)."""
        if self.is_closed():
            return  # shutting down: the next change or a sync brings the roles in line
        async def follow() -> None:
            try:
                await self.level_roles.member_changed(guild_id, user_id)
            except Exception as e:
                if is_unavailable(e):
                    log.warning("Level roles of user %s in guild %s not updated: database unavailable",
                                user_id, guild_id)
                else:
                    log.exception("Level roles of user %s in guild %s not updated", user_id, guild_id)
        task = asyncio.get_running_loop().create_task(follow())
        self._following.add(task)
        task.add_done_callback(self._following.discard)

    async def character_changed(self, guild_id: int, user_id: int, what: str, character: Character, *,
                                by: int, extra: str = "") -> None:
        """A character was created, retired, restored or deleted (`what`): logged, and the
        player's level roles follow."""
        self.follow_level(guild_id, user_id)
        by_line = f"by <@{by}>" if by != user_id else ""
        await self.post_log(guild_id, log_embed(
            f"Character {what}", f"**{shown(character.name)}** of <@{user_id}> · level {character.level} · "
                                 f"{character.xp:,} XP", extra, by_line))

    async def player_purged(self, guild_id: int, user_id: int, gone: dict[str, int], *, by: int) -> None:
        """Everything of a player in a guild was deleted (`gone` counts it): logged, and their
        level roles taken."""
        self.follow_level(guild_id, user_id)
        await self.post_log(guild_id, log_embed(
            "Player purged", f"<@{user_id}> ({user_id}): {gone['characters']} character(s) with {gone['xp']:,} XP, "
                             f"{gone['history']} history entries, {gone['pending_requests']} pending request(s)",
            f"by <@{by}>"))

    async def announce_level_up(self, guild_id: int, here: int | None, award: Award) -> None:
        if not award.leveled_up or self.is_closed():  # closed: awards kept at shutdown are still saved
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
        except RuntimeError:  # the HTTP session closed under it: shutting down
            if not self.is_closed():
                raise


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
    pool_size = int(pool_size) if pool_size else DEFAULT_POOL_SIZE
    data_dir = Path(env.get("XPBOT_DATA_DIR", ".xpbot-pgdata"))
    database_url = env.get("DATABASE_URL", "").strip() or None
    spool = env.get("XPBOT_SPOOL") or (data_dir / "pending-xp.jsonl" if database_url
                                       else data_dir.with_name(data_dir.name + ".pending-xp.jsonl"))
    return {"token": token, "env": mode, "guild_id": guild_id, "shard_count": shard_count,
            "shard_ids": shard_ids, "database_url": database_url, "data_dir": data_dir, "spool": spool,
            "pool_size": pool_size}


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
        database = Database(url, max_size=config["pool_size"])
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

        def on_signal(name: str) -> None:  # SIGTERM/SIGINT on POSIX; Ctrl+C/Ctrl+Break on Windows
            log.info("%s received: shutting down", name)
            loop.create_task(bot.close())
        platforms.current().install_shutdown_handlers(loop, on_signal)
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


if __name__ == "__main__":
    sys.exit(main())
