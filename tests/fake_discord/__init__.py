"""A fake Discord (REST v10 + gateway) on 127.0.0.1 that the real, unmodified discord.py talks to.

Tests drive the bot the way Discord does: users post messages, run commands, press buttons and
submit modals; the fake turns that into gateway events, answers the bot's REST calls like Discord
would, and records them.

Start it and point discord.py at it (Route.BASE and DiscordWebSocket.DEFAULT_GATEWAY, restored on exit):

    async with FakeDiscord() as fake:              # or the `fake_discord` pytest fixture
        guild = fake.add_guild("RP Server")        # the bot is a member of every guild
        rp = fake.add_channel(guild, "rp")
        alice = fake.add_member(guild, "alice")
        staff = fake.add_member(guild, "mod", permissions=["manage_guild"])
        async with run_client(XPBot(db, env="dev", guild_id=guild.id)) as bot:
            result = await fake.slash(guild, rp, alice, "xp_create", {"name": "Luna"})
            assert result.ephemeral and "Luna" in result.content

    A separate process (python tests/run_bot.py --api <fake.base_url> [bot args]), until it has a
    ready gateway session; SIGTERM on exit:

        async with bot_process(fake, env={"DISCORD_BOT_TOKEN": "t", "DATABASE_URL": url}) as bot:
            await bot.wait_for_output("is online")      # also bot.session, bot.stop(), bot.kill()

The world (synchronous; set it up before the bot connects, or `await fake.guild_create(g)` after):
    add_user(name, bot=False) -> User
    add_guild(name="Test Server", owner=None, id=None, bot_permissions=None) -> Guild
        @everyone, the bot's managed role and member, the owner. id=n << 22 puts the guild on shard
        n % shard_count. bot_permissions: what the bot's role grants (default BOT_PERMISSIONS, which
        lacks manage_roles); @everyone's permissions apply on top.
    add_role(guild, name, permissions=0, position=None, managed=False) -> Role
        Positions stay 1..n (0 is @everyone). By default a new role goes right below the bot's role
        (the bot's moves up), so the bot may assign it; position=n inserts it at n instead.
    bot_role(guild) -> Role
    add_channel(guild, name="general", type=0, category=None) / add_category(guild, name) -> Channel
    add_thread(parent, name, owner=None, private=False) -> Channel
    add_member(guild, user_or_name, permissions=0, roles=(), bot=False, nick=None) -> Member
        permissions: int, discord.Permissions or names; kept in a role, so the interaction's
        `permissions` and discord.py's Member.guild_permissions agree.
    close_dms(user, closed=True)   the user refuses the bot's DMs (sending answers 403 50007)

Changing the world while the bot runs (async; each sends the event Discord sends, to sessions whose
intents include it: GUILD_MEMBERS for member events, GUILDS for role and channel events):
    remove_member(guild, user)                     GUILD_MEMBER_REMOVE
    delete_role(role)                              GUILD_ROLE_DELETE (members and overwrites lose it)
    update_role(role, name=None, permissions=None, position=None)   GUILD_ROLE_UPDATE per moved role
    delete_channel(channel)                        CHANNEL_DELETE (threads: THREAD_DELETE); its routes 404 10003
    set_overwrite(channel, role_member_user_or_guild, allow=(), deny=())   CHANNEL_UPDATE
    deny_bot(channel, *permissions)                e.g. deny_bot(rp, "send_messages"): posts there 403 50013

Driving the bot (async). The interaction helpers wait for the bot's first answer (wait=False: don't;
timeout=: override FakeDiscord(timeout=5.0)) and fail with an AssertionError saying what happened:
    send_message(channel, author, content="", embeds=(), mentions=(), webhook_id=None, type=0,
                 edit=False, message_id=None, attachments=()) -> message dict
        MESSAGE_CREATE (MESSAGE_UPDATE with edit=True) with author, member, mentions (also parsed
        from <@id> in content), embeds (dicts or discord.Embed), timestamp, guild_id.
    slash(guild, channel, user, "name" or "group sub", options={...}) -> InteractionResult
        Option types and `resolved` data come from the synced command; strict=True (default) also
        requires the command to be synced for that guild or globally and checks required options,
        choices, min/max and channel types, as Discord's client does.
    autocomplete(guild, channel, user, "name", options={...}, focused="opt") -> InteractionResult
    click(message, custom_id, user)                              (message: a result, Reply, dict or id)
    select(message, custom_id, values, user, component_type=None)  (values: strings, or channels/
                                                                    users/roles for those selects)
    submit_modal(result_or_custom_id, {field_custom_id: value}, user)   (Label or action-row modals;
                                                                          missing fields keep defaults)
    dispatch(event, data, guild_id)   guild_create(guild, joined=True)
    drop(session=None, code=4000, resumable=True)   request_reconnect(session)   invalidate_session(s)

InteractionResult: the callback (type 4 message, 5 deferred, 6 deferred update, 7 update, 8 choices,
9 modal) read like a Reply, plus what came later for the same token:
    .type .content .embeds .embed .text() .components (custom_ids) .component(id) .ephemeral .flags
    .allowed_mentions .pings (mentions that would notify) .attachments .files {filename: bytes} .choices .modal .deferred
    .message -> Reply of the original response now      .rejections (answers the fake refused)
    await .followup() -> the next follow-up (Reply)      await .edited() -> original after next edit

What the bot did:
    fake.requests [RecordedRequest: method, path, route, query, json, files, headers, status, error]
    fake.unexpected (routes the fake does not serve; 404 like Discord)   fake.rejected (4xx but 429)
    fake.assert_clean()   fake.commands(guild=None) -> {name: command}
    fake.command_syncs [(guild_id or None, [names])]   fake.posts(channel=None) -> [Reply]
    fake.message(id) -> Reply (current state, edits included)   fake.dms(user) -> [Reply] (DMs the bot sent)
    fake.sessions [GatewaySession: shard, intents, seq, connected, sent]
    await fake.wait_for_posts(n, channel)  wait_for_dms(user, n)  wait_for_request(method, path_regex)
    await fake.wait_for_sessions(n)  wait_until(predicate, "what")
    guild.members[user_id].role_ids, guild.roles, channel.overwrites: the world as the bot changed it

Rate limits (opt-in): fake.rate_limit(route_template, limit=1, window=1.0, method=None) -> RateLimit
    e.g. fake.rate_limit("/channels/{channel_id}/messages", limit=5, window=5): per channel/guild/webhook,
    responses carry X-RateLimit-Limit/Remaining/Reset/Reset-After/Bucket (discord.py paces itself by
    them); requests over the limit get 429 {"retry_after", "global": false} and discord.py retries.
    fake.rate_limited -> [RecordedRequest answered 429] (not in fake.rejected)   RateLimit.requests/.limited

Discord behaviour the fake reproduces, so bugs show up in tests: message/embed/component/modal/
choice and command-definition limits (400 50035); one acknowledgement per interaction (400 40060);
follow-ups and edits only after it (404 10015); the bot's own non-ephemeral messages echoed back
to it (DMs too, on shard 0 with DIRECT_MESSAGES); MESSAGE_CONTENT, GUILD_MESSAGES, GUILD_MEMBERS
and GUILDS intents (the bot's own GUILD_MEMBER_UPDATE comes regardless); members in GUILD_CREATE
only with the presences intent (else discord.py chunks them); ephemeral messages usable only by
their owner and unknown to channel routes; sessions that RESUME get the events they missed; a session
of more than 2,500 guilds closed with 4011 (sharding required) and GET /gateway/bot recommending one
shard per 1,000 guilds (FakeDiscord(recommended_shards=n) overrides it); a close
with 1000/1001 by the bot ends its session (discord.py's close() actually sends 4000, so its
sessions stay resumable, as on Discord).
Member roles (PUT/DELETE .../members/{user}/roles/{role}, PATCH .../members/{user} roles/nick):
MANAGE_ROLES and a role strictly below the bot's highest, not managed (else 403 50013); unknown
member 404 10007, unknown role (or @everyone) 404 10011; GUILD_MEMBER_UPDATE on a change. Also GET
guild members (limit/after), member, roles, role. Channel permissions with overwrites (@everyone,
roles, member; threads use their parent's): posting needs VIEW_CHANNEL (else 403 50001) and
SEND_MESSAGES (SEND_MESSAGES_IN_THREADS in threads; ATTACH_FILES with files) (else 403 50013);
interaction payloads carry the overwritten permissions, and answering an interaction needs none.
Deleted channels 404 10003. DMs: POST /users/@me/channels, then the DM channel's message routes;
closed DMs and bots 403 50007. Editing a message someone else wrote 403 50005.
Not reproduced: the global rate limit and Discord's default buckets (only the opt-in ones), the
3-second deadline for the first answer, users' DMs to the bot, GUILD_MEMBER_ADD/GUILD_ROLE_CREATE/
CHANNEL_CREATE for things added after connecting (use guild_create), role hierarchy checks beyond
member roles and nicknames (kicks, bans, role edits by the bot), voice, ETF encoding and
zlib-compressed frames.

Layout (one concern per module; FakeDiscord in driver.py composes the mixins):
    world.py        snowflakes, User/Role/Channel/Member/Guild, permissions
    limits.py       DiscordError and Discord's limits on messages, components, modals, choices, commands
    replies.py      RecordedRequest, Reply, InteractionResult (what the bot sent, as tests read it)
    waiting.py      Signal: wait for a condition, re-checked on every change
    gateway.py      GatewaySession, IDENTIFY/RESUME/member chunks, dispatching events by intent (GatewayMixin)
    rest.py         the route table, request recording, token check, error answers (RestMixin)
    ratelimits.py   opt-in 429 buckets and their X-RateLimit-* headers (RateLimitsMixin)
    guilds.py       building and changing the world (with its events), permission checks, guild, member,
                    role and channel routes (GuildsMixin)
    messages.py     users' messages, the bot's messages and attachments, channel message routes, DMs
                    (MessagesMixin)
    commands.py     application commands the bot synced and their routes (CommandsMixin)
    interactions.py slash/autocomplete/click/select/submit_modal and the bot's answers (InteractionsMixin)
    driver.py       FakeDiscord (state, lifecycle, inspection, waiting), pointed_at, the fake_discord fixture
    clients.py      run_client (in-process), bot_process/BotProcess (tests/run_bot.py)
"""
from __future__ import annotations

from .clients import RUN_BOT, BotProcess, bot_process, run_client
from .driver import DEFAULT_TIMEOUT, FakeDiscord, fake_discord, pointed_at
from .gateway import (EVENT_INTENTS, INTENT_DIRECT_MESSAGES, INTENT_GUILD_MEMBERS, INTENT_GUILD_MESSAGES,
                      INTENT_GUILD_PRESENCES, INTENT_GUILDS, INTENT_MESSAGE_CONTENT, GatewaySession)
from .guilds import permission_bits
from .limits import (COMPONENTS_V2, EPHEMERAL, LOADING, DiscordError, choice_problems, command_problems,
                     component_problems, embed_problems, flatten_components, invalid_form, message_problems,
                     modal_problems, option_problems)
from .ratelimits import RateLimit
from .replies import InteractionResult, RecordedRequest, Reply, UploadedFile
from .rest import json_response
from .world import (ADMINISTRATOR, ALL_PERMISSIONS, BOT_PERMISSIONS, DISCORD_EPOCH_MS, EVERYONE_PERMISSIONS,
                    Channel, Guild, Member, Overwrite, Role, User, id_of, iso_now, permission_value, snowflake)

__all__ = [
    "FakeDiscord", "fake_discord", "run_client", "bot_process", "BotProcess", "RUN_BOT", "pointed_at",
    "DEFAULT_TIMEOUT", "GatewaySession", "EVENT_INTENTS", "INTENT_DIRECT_MESSAGES", "INTENT_GUILD_MEMBERS",
    "INTENT_GUILD_MESSAGES", "INTENT_GUILD_PRESENCES", "INTENT_GUILDS", "INTENT_MESSAGE_CONTENT", "RateLimit",
    "permission_bits", "ADMINISTRATOR", "Overwrite", "COMPONENTS_V2", "EPHEMERAL", "LOADING", "DiscordError",
    "invalid_form", "choice_problems", "command_problems", "component_problems", "embed_problems",
    "message_problems", "modal_problems", "option_problems", "flatten_components", "InteractionResult",
    "RecordedRequest", "Reply", "UploadedFile", "json_response", "ALL_PERMISSIONS", "BOT_PERMISSIONS",
    "DISCORD_EPOCH_MS", "EVERYONE_PERMISSIONS", "Channel", "Guild", "Member", "Role", "User", "id_of",
    "iso_now", "permission_value", "snowflake",
]
