"""The fake Discord works with the real discord.py: a tiny client defined here (not the product bot)
connects, gets its guilds, answers commands, components and modals, and sees messages."""
from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import discord
import pytest
from discord import app_commands

from fake_discord import EPHEMERAL, FakeDiscord, bot_process, run_client

FRUITS = ["apple", "apricot", "banana", "cherry"]


class Settings(discord.ui.Modal, title="Settings"):
    """A modal in discord.py 2.6+ style: a Label wrapping a text input."""
    rate = discord.ui.Label(text="Characters per XP", component=discord.ui.TextInput(custom_id="rate", max_length=5))

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"rate={self.rate.component.value}", ephemeral=True)


class ClassicModal(discord.ui.Modal, title="Classic"):
    """The older shape: a text input in an action row."""
    note = discord.ui.TextInput(label="Note", custom_id="note", required=False, default="prefilled")

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"note={self.note.value}", ephemeral=True)


class Panel(discord.ui.View):
    def __init__(self) -> None:
        super().__init__(timeout=60)

    @discord.ui.button(label="Edit rate", custom_id="panel:rate")
    async def rate(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        await interaction.response.send_modal(Settings())

    @discord.ui.button(label="Note", custom_id="panel:note")
    async def note(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        await interaction.response.send_modal(ClassicModal())

    @discord.ui.select(cls=discord.ui.ChannelSelect, custom_id="panel:channels", max_values=3,
                       channel_types=[discord.ChannelType.text])
    async def channels(self, interaction: discord.Interaction, select: discord.ui.ChannelSelect) -> None:
        names = ",".join(sorted(c.name for c in select.values))
        await interaction.response.edit_message(content=f"tracking {names}", view=self)


class MiniBot(discord.Client):
    """A minimal client with a command tree, built only to exercise the fake."""

    def __init__(self, *, sync_guild: int | None = None, message_content: bool = True, members: bool = True,
                 **options) -> None:
        intents = discord.Intents.default()
        intents.message_content = message_content
        intents.members = members  # chunks members at start-up: the fake answers REQUEST_GUILD_MEMBERS
        super().__init__(intents=intents, allowed_mentions=discord.AllowedMentions.none(), **options)
        self.sync_guild = sync_guild
        self.tree = app_commands.CommandTree(self)
        self.messages: asyncio.Queue[discord.Message] = asyncio.Queue()
        tree = self.tree

        @tree.command(description="Echo typed options")
        async def echo(interaction: discord.Interaction, text: str, times: app_commands.Range[int, 1, 5],
                       loud: bool = False, channel: discord.TextChannel | None = None,
                       user: discord.Member | None = None) -> None:
            words = [(text.upper() if loud else text)] * times
            where = channel.name if channel else "-"
            who = user.display_name if user else "-"
            perms = interaction.permissions.manage_guild
            await interaction.response.send_message(f"{' '.join(words)} in {where} by {who} manage={perms}",
                                                    ephemeral=True)

        @tree.command(description="Defers, then follows up")
        async def slow(interaction: discord.Interaction) -> None:
            await interaction.response.defer(ephemeral=True, thinking=True)
            await interaction.followup.send("done", ephemeral=True)
            await interaction.edit_original_response(content="edited")

        @tree.command(description="Pick a fruit")
        async def pick(interaction: discord.Interaction, fruit: str) -> None:
            await interaction.response.send_message(f"picked {fruit}")

        @pick.autocomplete("fruit")
        async def pick_fruit(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
            return [app_commands.Choice(name=f, value=f) for f in FRUITS if f.startswith(current)]

        @tree.command(description="Settings panel")
        async def panel(interaction: discord.Interaction, private: bool = False) -> None:
            await interaction.response.send_message("panel", view=Panel(), ephemeral=private)

        @tree.command(description="Repeats a name")
        async def say(interaction: discord.Interaction, name: str, allow_pings: bool = False) -> None:
            allowed = discord.AllowedMentions.all() if allow_pings else discord.utils.MISSING
            await interaction.response.send_message(f"Hello {name}", allowed_mentions=allowed)

        @tree.command(description="Answers with too much text")
        async def wordy(interaction: discord.Interaction) -> None:
            await interaction.response.send_message("x" * 2001)

        @tree.command(description="Reads, edits and deletes its own messages")
        async def lifecycle(interaction: discord.Interaction) -> None:
            await interaction.response.send_message("first", ephemeral=True)
            original = await interaction.original_response()
            follow = await interaction.followup.send(f"read {original.content}", wait=True)
            await follow.edit(content="follow-up edited")
            post = await interaction.channel.send("post")
            await post.edit(content="post edited")
            await post.delete()
            await interaction.delete_original_response()

        @tree.command(description="Post a file")
        async def upload(interaction: discord.Interaction) -> None:
            await interaction.response.defer(ephemeral=True)
            await interaction.channel.send("report", file=discord.File(io.BytesIO(b"xp,1\n"), "report.csv"))
            await interaction.followup.send("posted", ephemeral=True)

    async def setup_hook(self) -> None:
        if self.sync_guild:
            guild = discord.Object(self.sync_guild)
            self.tree.copy_global_to(guild=guild)
            await self.tree.sync(guild=guild)
        else:
            await self.tree.sync()

    async def on_message(self, message: discord.Message) -> None:
        await self.messages.put(message)


@pytest.fixture
def world(fake_discord: FakeDiscord):
    fake = fake_discord
    guild = fake.add_guild("RP Server")
    category = fake.add_category(guild, "RP")
    rp = fake.add_channel(guild, "rp", category=category)
    thread = fake.add_thread(rp, "scene")
    alice = fake.add_member(guild, "alice")
    staff = fake.add_member(guild, "mod", permissions=["manage_guild"])
    return fake, guild, category, rp, thread, alice, staff


async def test_client_connects_and_sees_guild_channels_members(world):
    fake, guild, category, rp, thread, alice, staff = world
    async with run_client(MiniBot(sync_guild=guild.id)) as bot:
        seen = bot.get_guild(guild.id)
        assert seen is not None and seen.name == "RP Server"
        assert seen.get_channel(rp.id).category.id == category.id
        assert seen.get_thread(thread.id).parent_id == rp.id
        assert seen.owner_id == guild.owner_id
        assert seen.me.id == fake.bot_user.id
        assert seen.chunked  # without the presences intent, members arrived in GUILD_MEMBERS_CHUNK
        assert seen.get_member(staff.id).guild_permissions.manage_guild
        assert not seen.get_member(alice.id).guild_permissions.manage_guild
    assert fake.requests[0].path == "/users/@me"
    assert not fake.unexpected and not fake.rejected


async def test_slash_command_with_typed_options_is_answered_ephemerally(world):
    fake, guild, _, rp, _, alice, staff = world
    async with run_client(MiniBot(sync_guild=guild.id)):
        result = await fake.slash(guild, rp, staff, "echo", {"text": "hi", "times": 2, "loud": True,
                                                             "channel": rp, "user": alice})
        assert result.type == 4
        assert result.content == "HI HI in rp by alice manage=True"
        assert result.ephemeral and result.flags & EPHEMERAL
        assert result.allowed_mentions == {"parse": []}
        plain = await fake.slash(guild, rp, alice, "echo", {"text": "yo", "times": 1})
        assert plain.content == "yo in - by - manage=False"
    fake.assert_clean()


async def test_slash_rejects_what_discords_client_would_not_send(world):
    fake, guild, _, rp, _, alice, _ = world
    async with run_client(MiniBot(sync_guild=guild.id)):
        with pytest.raises(AssertionError, match="required option"):
            await fake.slash(guild, rp, alice, "echo", {"text": "x"})
        with pytest.raises(AssertionError, match="<= 5"):
            await fake.slash(guild, rp, alice, "echo", {"text": "x", "times": 9})
        with pytest.raises(AssertionError, match="never synced"):
            await fake.slash(guild, rp, alice, "nope")


async def test_deferred_command_then_followup_and_edit(world):
    fake, guild, _, rp, _, alice, _ = world
    async with run_client(MiniBot(sync_guild=guild.id)):
        result = await fake.slash(guild, rp, alice, "slow")
        assert result.type == 5 and result.ephemeral
        followup = await result.followup()
        assert followup.content == "done" and followup.ephemeral
        edited = await result.edited()
        assert edited.content == "edited"
        assert result.message.content == "edited"


async def test_autocomplete_returns_choices(world):
    fake, guild, _, rp, _, alice, _ = world
    async with run_client(MiniBot(sync_guild=guild.id)):
        result = await fake.autocomplete(guild, rp, alice, "pick", {"fruit": "ap"}, focused="fruit")
        assert result.type == 8
        assert [c["value"] for c in result.choices] == ["apple", "apricot"]


async def test_button_opens_label_modal_and_submit_round_trips(world):
    fake, guild, _, rp, _, alice, staff = world
    async with run_client(MiniBot(sync_guild=guild.id)):
        panel = await fake.slash(guild, rp, staff, "panel")
        assert panel.components == ["panel:rate", "panel:note", "panel:channels"]
        opened = await fake.click(panel, "panel:rate", staff)
        assert opened.type == 9 and opened.modal["title"] == "Settings"
        submitted = await fake.submit_modal(opened, {"rate": "300"}, staff)
        assert submitted.content == "rate=300" and submitted.ephemeral


async def test_classic_action_row_modal_submits_prefilled_value(world):
    fake, guild, _, rp, _, alice, staff = world
    async with run_client(MiniBot(sync_guild=guild.id)):
        panel = await fake.slash(guild, rp, staff, "panel")
        opened = await fake.click(panel, "panel:note", staff)
        assert opened.modal["components"][0]["type"] == 1
        submitted = await fake.submit_modal(opened.modal["custom_id"], {}, staff)
        assert submitted.content == "note=prefilled"


async def test_channel_select_updates_the_message(world):
    fake, guild, _, rp, _, alice, staff = world
    other = fake.add_channel(guild, "ooc")
    async with run_client(MiniBot(sync_guild=guild.id)):
        panel = await fake.slash(guild, rp, staff, "panel")
        picked = await fake.select(panel, "panel:channels", [rp, other], staff)
        assert picked.type == 7
        assert picked.content == "tracking ooc,rp"
        assert panel.message.content == "tracking ooc,rp"


async def test_ephemeral_message_cannot_be_used_by_someone_else(world):
    fake, guild, _, rp, _, alice, staff = world
    async with run_client(MiniBot(sync_guild=guild.id)):
        panel = await fake.slash(guild, rp, staff, "panel", {"private": True})
        with pytest.raises(AssertionError, match="ephemeral"):
            await fake.click(panel, "panel:rate", alice)
        with pytest.raises(AssertionError, match="no component"):
            await fake.click(panel, "missing", staff)


async def test_message_create_reaches_on_message_with_embeds_mentions_webhook(world):
    fake, guild, _, rp, thread, alice, staff = world
    hunter = fake.add_member(guild, "HuntBot", bot=True)
    async with run_client(MiniBot(sync_guild=guild.id)) as bot:
        await fake.send_message(thread, alice, "Luna walks in. " * 3)
        message = await asyncio.wait_for(bot.messages.get(), 5)
        assert message.content == "Luna walks in. " * 3
        assert message.channel.id == thread.id and message.channel.parent_id == rp.id
        assert message.author.id == alice.id and not message.author.bot
        assert isinstance(message.author, discord.Member)

        embed = discord.Embed(title="Luna goes hunting", description="Time to gut and harvest!")
        await fake.send_message(rp, hunter, embeds=[embed], mentions=[alice])
        message = await asyncio.wait_for(bot.messages.get(), 5)
        assert message.author.bot
        assert message.embeds[0].title == "Luna goes hunting"
        assert [m.id for m in message.mentions] == [alice.id]

        await fake.send_message(rp, alice, "proxied", webhook_id=4242)
        message = await asyncio.wait_for(bot.messages.get(), 5)
        assert message.webhook_id == 4242


async def test_without_message_content_intent_content_is_blank(world):
    fake, guild, _, rp, _, alice, _ = world
    async with run_client(MiniBot(sync_guild=guild.id, message_content=False)) as bot:
        await fake.send_message(rp, alice, "secret words")
        message = await asyncio.wait_for(bot.messages.get(), 5)
        assert message.content == ""


async def test_shards_receive_only_their_guilds(fake_discord: FakeDiscord):
    fake = fake_discord
    even = fake.add_guild("even", id=10 << 22)   # (id >> 22) % 2 == 0
    odd = fake.add_guild("odd", id=11 << 22)
    even_channel, odd_channel = fake.add_channel(even, "rp"), fake.add_channel(odd, "rp")
    alice = fake.add_user("alice")
    async with run_client(MiniBot(shard_id=0, shard_count=2)) as zero, \
            run_client(MiniBot(shard_id=1, shard_count=2)) as one:
        assert [g.id for g in zero.guilds] == [even.id]
        assert [g.id for g in one.guilds] == [odd.id]
        await fake.send_message(odd_channel, alice, "to shard one")
        await fake.send_message(even_channel, alice, "to shard zero")
        assert (await asyncio.wait_for(one.messages.get(), 5)).content == "to shard one"
        assert (await asyncio.wait_for(zero.messages.get(), 5)).content == "to shard zero"
        assert zero.messages.empty() and one.messages.empty()
    assert sorted(s.shard for s in fake.sessions) == [(0, 2), (1, 2)]


async def test_guild_and_global_syncs_are_recorded_separately(world):
    fake, guild, *_ = world
    async with run_client(MiniBot(sync_guild=guild.id)):
        pass
    async with run_client(MiniBot()) as bot:
        names = sorted(c.name for c in bot.tree.get_commands())
    assert "echo" in names
    assert sorted(fake.commands(guild)) == names
    assert sorted(fake.commands()) == names
    assert [scope for scope, _ in fake.command_syncs] == [guild.id, None]
    assert fake.commands(guild)["echo"]["guild_id"] == str(guild.id)
    assert "guild_id" not in fake.commands()["echo"]


async def test_bot_post_with_file_is_recorded_with_bytes(world):
    fake, guild, _, rp, _, alice, _ = world
    async with run_client(MiniBot(sync_guild=guild.id)) as bot:
        result = await fake.slash(guild, rp, alice, "upload")
        assert (await result.followup()).content == "posted"
        (post,) = await fake.wait_for_posts(1, rp)
        assert post.content == "report"
        assert post.files == {"report.csv": b"xp,1\n"}
        assert post.attachments[0]["filename"] == "report.csv"
        request = await fake.wait_for_request("POST", rf"/channels/{rp.id}/messages")
        assert request.files[0].data == b"xp,1\n"
        echoed = await asyncio.wait_for(bot.messages.get(), 5)  # Discord echoes the bot's own post
        assert echoed.author.id == fake.bot_user.id and echoed.attachments[0].filename == "report.csv"
        assert await echoed.attachments[0].read() == b"xp,1\n"


async def test_dropped_connection_resumes_and_replays_missed_events(world):
    fake, guild, _, rp, _, alice, _ = world
    async with run_client(MiniBot(sync_guild=guild.id)) as bot:
        resumed = asyncio.Event()

        async def on_resumed() -> None:
            resumed.set()
        bot.on_resumed = on_resumed
        (session,) = fake.sessions
        await fake.drop()
        assert not session.connected
        await fake.send_message(rp, alice, "while away")  # kept for RESUME
        message = await asyncio.wait_for(bot.messages.get(), 5)
        assert message.content == "while away"
        await asyncio.wait_for(resumed.wait(), 5)
        assert fake.sessions == [session] and session.connected  # resumed, not identified again


async def test_answer_breaking_discord_limits_is_rejected_with_a_clear_failure(world):
    fake, guild, _, rp, _, alice, _ = world
    async with run_client(MiniBot(sync_guild=guild.id)):
        with pytest.raises(AssertionError, match=r"never answered /wordy[\s\S]*content: must be between 0 and 2000"):
            await fake.slash(guild, rp, alice, "wordy", timeout=1)
    assert [r.route for r in fake.rejected] == ["/interactions/{interaction_id}/{token}/callback"]


async def test_two_unsharded_clients_both_get_the_interaction_and_only_one_ack_counts(world):
    fake, guild, _, rp, _, alice, _ = world
    async with run_client(MiniBot(sync_guild=guild.id)), run_client(MiniBot(sync_guild=guild.id)):
        result = await fake.slash(guild, rp, alice, "echo", {"text": "once", "times": 1})
        assert result.content.startswith("once")
        await fake.wait_until(lambda: fake.rejected, "the second client's answer")
    (second,) = fake.rejected
    assert second.status == 400 and "40060" in second.error


async def test_calls_to_routes_the_fake_does_not_serve_are_recorded(world):
    fake, guild, *_ = world
    async with run_client(MiniBot(sync_guild=guild.id)) as bot:
        with pytest.raises(discord.NotFound):
            await bot.http.request(discord.http.Route("GET", "/guilds/{guild_id}/bans", guild_id=guild.id))
    assert [r.path for r in fake.unexpected] == [f"/guilds/{guild.id}/bans"]
    with pytest.raises(AssertionError, match="bans"):
        fake.assert_clean()


async def test_wrong_token_fails_login():
    async with FakeDiscord(token="right-token") as fake:
        with pytest.raises(discord.LoginFailure):
            async with run_client(MiniBot(), "wrong-token", fake=fake):
                pass


async def test_run_bot_runs_a_script_as_main_against_the_fake(fake_discord: FakeDiscord, tmp_path: Path):
    fake_discord.add_guild("Subprocess Guild")
    script = tmp_path / "tiny_bot.py"
    script.write_text(textwrap.dedent("""
        import os, sys
        import discord

        class Tiny(discord.Client):
            async def on_ready(self):
                print("READY", [g.name for g in self.guilds], sys.argv[1:], __name__, flush=True)
                await self.close()

        Tiny(intents=discord.Intents.default(), guild_ready_timeout=0.1).run(
            os.environ["DISCORD_BOT_TOKEN"], log_handler=None)
    """))
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(Path(__file__).with_name("run_bot.py")), "--api", fake_discord.base_url,
        "--script", str(script), "--env", "dev",
        env={**os.environ, "DISCORD_BOT_TOKEN": "subprocess-token"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, stderr.decode()
    assert "READY ['Subprocess Guild'] ['--env', 'dev'] __main__" in stdout.decode()
    assert fake_discord.requests[0].path == "/users/@me"


async def test_heartbeats_are_acknowledged(world):
    fake, guild, *_ = world
    async with run_client(MiniBot(sync_guild=guild.id)) as bot:
        # discord.py heartbeats right after HELLO; latency stays infinite until an ACK arrives
        await fake.wait_until(lambda: bot.latency != float("inf"), "a HEARTBEAT_ACK reaching the bot")
        assert bot.latency >= 0


async def test_guild_joined_after_connecting_reaches_the_bot(world):
    fake, *_ = world
    async with run_client(MiniBot()) as bot:
        joined = asyncio.Event()

        async def on_guild_join(guild: discord.Guild) -> None:
            joined.set()
        bot.on_guild_join = on_guild_join
        late = fake.add_guild("Late Guild")
        fake.add_channel(late, "rp")
        await fake.guild_create(late)
        await asyncio.wait_for(joined.wait(), 5)
        assert [c.name for c in bot.get_guild(late.id).text_channels] == ["rp"]


async def test_bot_reads_edits_and_deletes_its_messages(world):
    fake, guild, _, rp, _, alice, _ = world
    async with run_client(MiniBot(sync_guild=guild.id)):
        result = await fake.slash(guild, rp, alice, "lifecycle")
        assert result.content == "first"
        await fake.wait_for_request("DELETE", r"/messages/@original$")
        assert (await result.followup()).content == "follow-up edited"  # follow-ups show their latest state
        assert fake.posts(rp) == []  # posted, edited, deleted
        routes = [(r.method, r.route) for r in fake.requests if r.route.startswith(("/webhooks", "/channels"))]
        assert routes == [
            ("GET", "/webhooks/{app_id}/{token}/messages/{message_id}"),
            ("POST", "/webhooks/{app_id}/{token}"),
            ("PATCH", "/webhooks/{app_id}/{token}/messages/{message_id}"),
            ("POST", "/channels/{channel_id}/messages"),
            ("PATCH", "/channels/{channel_id}/messages/{message_id}"),
            ("DELETE", "/channels/{channel_id}/messages/{message_id}"),
            ("DELETE", "/webhooks/{app_id}/{token}/messages/{message_id}"),
        ]
    fake.assert_clean()


SHARDED_SCRIPT = """
import asyncio, os, signal, sys
import discord

class Tiny(discord.Client):
    async def on_ready(self):
        print("READY", sorted(g.name for g in self.guilds), flush=True)

    async def on_message(self, message):
        print("MESSAGE", message.content, flush=True)

async def main():
    shard, count = map(int, sys.argv[1:3])
    intents = discord.Intents.default()
    intents.message_content = True
    client = Tiny(intents=intents, shard_id=shard, shard_count=count, guild_ready_timeout=0.1)
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, lambda: asyncio.ensure_future(client.close()))
    async with client:
        await client.start(os.environ["DISCORD_BOT_TOKEN"])
    print("STOPPED", flush=True)

asyncio.run(main())
"""


async def test_two_bot_processes_on_two_shards(fake_discord: FakeDiscord, tmp_path: Path):
    fake = fake_discord
    even, odd = fake.add_guild("even", id=10 << 22), fake.add_guild("odd", id=11 << 22)
    fake.add_channel(even, "rp")
    odd_rp = fake.add_channel(odd, "rp")
    alice = fake.add_user("alice")
    script = tmp_path / "sharded_bot.py"
    script.write_text(SHARDED_SCRIPT)
    env = {"DISCORD_BOT_TOKEN": "subprocess-token"}
    async with bot_process(fake, "0", "2", script=str(script), env=env) as zero, \
            bot_process(fake, "1", "2", script=str(script), env=env) as one:
        assert "['even']" in await zero.wait_for_output("READY")
        assert "['odd']" in await one.wait_for_output("READY")
        assert (zero.session.shard, one.session.shard) == ((0, 2), (1, 2))
        await fake.send_message(odd_rp, alice, "hello odd")
        await one.wait_for_output("MESSAGE hello odd")
        assert await one.stop() == 0 and "STOPPED" in one.output  # SIGTERM handled: a clean close
    assert "hello odd" not in zero.output


async def test_pings_reflect_allowed_mentions(world):
    fake, guild, _, rp, _, alice, _ = world
    async with run_client(MiniBot(sync_guild=guild.id)):
        hostile = f"@everyone {alice.mention} <@&{guild.id}>"
        muted = await fake.slash(guild, rp, alice, "say", {"name": hostile})
        assert muted.content == f"Hello {hostile}" and muted.pings == []
        loud = await fake.slash(guild, rp, alice, "say", {"name": hostile, "allow_pings": True})
        assert loud.pings == ["@everyone", alice.mention, f"<@&{guild.id}>"]


# --- member roles ---------------------------------------------------------------------------------

def member_role_ids(bot: discord.Client, guild_id: int, user_id: int) -> list[int]:
    member = bot.get_guild(guild_id).get_member(user_id)
    return [r.id for r in member.roles] if member else []


async def test_member_roles_are_given_and_taken_with_discords_checks(fake_discord: FakeDiscord):
    fake = fake_discord
    guild = fake.add_guild("Roles", bot_permissions=["manage_roles"])
    alice = fake.add_member(guild, "alice")
    level = fake.add_role(guild, "Level 5")
    above = fake.add_role(guild, "Admins", position=fake.bot_role(guild).position + 1)
    booster = fake.add_role(guild, "Booster", managed=True)
    assert level.position < fake.bot_role(guild).position < above.position
    async with run_client(MiniBot()) as bot:
        g = bot.get_guild(guild.id)
        member = g.get_member(alice.id)
        await member.add_roles(g.get_role(level.id))
        await fake.wait_until(lambda: level.id in member_role_ids(bot, guild.id, alice.id),
                              "GUILD_MEMBER_UPDATE giving alice the role")
        assert level.id in guild.members[alice.id].role_ids
        for refused in (above, booster, fake.bot_role(guild)):  # not below the bot's top role, or managed
            with pytest.raises(discord.Forbidden) as error:
                await member.add_roles(discord.Object(refused.id))
            assert error.value.code == 50013
        await member.remove_roles(discord.Object(level.id))
        await fake.wait_until(lambda: level.id not in member_role_ids(bot, guild.id, alice.id),
                              "GUILD_MEMBER_UPDATE taking the role")
        with pytest.raises(discord.NotFound) as error:
            await bot.http.add_role(guild.id, 1234, level.id)
        assert error.value.code == 10007
        with pytest.raises(discord.NotFound) as error:
            await bot.http.add_role(guild.id, alice.id, 1234)
        assert error.value.code == 10011

        await member.edit(roles=[discord.Object(level.id)])  # PATCH with the whole list
        await fake.wait_until(lambda: level.id in member_role_ids(bot, guild.id, alice.id), "PATCH roles")
        assert (await g.fetch_member(alice.id)).get_role(level.id) is not None
        fetched = [m.id async for m in g.fetch_members(limit=None)]
        assert sorted(fetched) == sorted(guild.members)  # discord.py yields each page reversed
        assert {r.id for r in await g.fetch_roles()} == set(guild.roles)
    assert [r.status for r in fake.rejected] == [403, 403, 403, 404, 404]


async def test_role_hierarchy_and_missing_manage_roles_are_refused(fake_discord: FakeDiscord):
    fake = fake_discord
    guild = fake.add_guild("Roles")  # the bot's default permissions lack MANAGE_ROLES
    alice = fake.add_member(guild, "alice")
    level = fake.add_role(guild, "Level 5")
    async with run_client(MiniBot()) as bot:
        member = bot.get_guild(guild.id).get_member(alice.id)
        with pytest.raises(discord.Forbidden):
            await member.add_roles(discord.Object(level.id))
        await fake.update_role(fake.bot_role(guild), permissions=["manage_roles"], position=1)  # now lowest
        await fake.wait_until(lambda: bot.get_guild(guild.id).me.top_role.position == 1
                              and bot.get_guild(guild.id).me.guild_permissions.manage_roles,
                              "GUILD_ROLE_UPDATE moving the bot's role down")
        assert level.position == 2
        with pytest.raises(discord.Forbidden) as error:
            await member.add_roles(discord.Object(level.id))
        assert error.value.code == 50013
        await fake.update_role(level, position=1)
        await member.add_roles(discord.Object(level.id))
        assert level.id in guild.members[alice.id].role_ids


async def test_member_updates_need_the_members_intent_except_the_bots_own(fake_discord: FakeDiscord):
    fake = fake_discord
    guild = fake.add_guild("Roles", bot_permissions=["manage_roles"])
    alice = fake.add_member(guild, "alice")
    level = fake.add_role(guild, "Level 5")
    async with run_client(MiniBot(members=False)) as bot:
        (session,) = fake.sessions
        await bot.http.add_role(guild.id, alice.id, level.id)
        await bot.http.add_role(guild.id, fake.bot_user.id, level.id)
        await fake.wait_until(lambda: level.id in member_role_ids(bot, guild.id, fake.bot_user.id),
                              "the bot's own GUILD_MEMBER_UPDATE")
    updated = [e["d"]["user"]["id"] for e in session.sent if e["t"] == "GUILD_MEMBER_UPDATE"]
    assert updated == [str(fake.bot_user.id)]
    assert level.id in guild.members[alice.id].role_ids


async def test_removed_member_and_deleted_role_reach_the_bot(fake_discord: FakeDiscord):
    fake = fake_discord
    guild = fake.add_guild("Roles")
    level = fake.add_role(guild, "Level 5")
    alice, bob = fake.add_member(guild, "alice"), fake.add_member(guild, "bob", roles=[level])
    async with run_client(MiniBot()) as bot:
        g = bot.get_guild(guild.id)
        await fake.remove_member(guild, alice)
        await fake.wait_until(lambda: g.get_member(alice.id) is None, "GUILD_MEMBER_REMOVE")
        with pytest.raises(discord.NotFound) as error:
            await g.fetch_member(alice.id)
        assert error.value.code == 10007
        await fake.delete_role(level)
        await fake.wait_until(lambda: g.get_role(level.id) is None, "GUILD_ROLE_DELETE")
        assert g.get_member(bob.id).roles == [g.default_role]
        assert level.id not in guild.members[bob.id].role_ids


# --- rate limits ----------------------------------------------------------------------------------

async def test_rate_limit_headers_pace_the_bot(world):
    fake, guild, _, rp, _, alice, _ = world
    bucket = fake.rate_limit("/channels/{channel_id}/messages", limit=2, window=0.4, method="POST")
    async with run_client(MiniBot(sync_guild=guild.id)) as bot:
        channel = bot.get_channel(rp.id)
        start = asyncio.get_running_loop().time()
        await asyncio.gather(*(channel.send(f"post {i}") for i in range(6)))
        elapsed = asyncio.get_running_loop().time() - start
    assert sorted(p.content for p in fake.posts(rp)) == [f"post {i}" for i in range(6)]
    assert elapsed >= 0.8  # 6 posts, 2 per 0.4 s window: discord.py waited for two resets
    assert fake.rate_limited == [] and bucket.requests == 6  # it read X-RateLimit-* and never hit 429
    fake.assert_clean()


async def test_429s_are_retried_until_every_request_succeeds(world):
    fake, guild, _, rp, _, alice, _ = world
    bucket = fake.rate_limit("/channels/{channel_id}/messages", limit=2, window=0.3)
    # Two clients sharing one bot token: neither knows what the other used, so they hit 429s.
    async with run_client(MiniBot(sync_guild=guild.id)) as one, run_client(MiniBot(sync_guild=guild.id)) as two:
        await asyncio.gather(*(client.get_channel(rp.id).send(f"{name} {i}")
                               for name, client in (("one", one), ("two", two)) for i in range(3)))
    assert len(fake.posts(rp)) == 6
    assert fake.rate_limited and bucket.limited == len(fake.rate_limited)
    assert all(r.status == 200 for r in fake.requests if r.route == bucket.route and r.status != 429)
    assert "retry after" in fake.rate_limited[0].error
    fake.assert_clean()  # 429s are not refusals: discord.py retries them


# --- DMs ------------------------------------------------------------------------------------------

async def test_dms_are_recorded_and_closed_dms_are_refused(world):
    fake, guild, _, rp, _, alice, staff = world
    fake.close_dms(staff)
    async with run_client(MiniBot(sync_guild=guild.id)) as bot:
        sent = await bot.get_user(alice.id).send("You reached level 5!")
        assert isinstance(sent.channel, discord.DMChannel) and sent.channel.recipient.id == alice.id
        (dm,) = await fake.wait_for_dms(alice)
        assert dm.content == "You reached level 5!"
        echoed = await asyncio.wait_for(bot.messages.get(), 5)  # Discord echoes the bot's DMs too
        assert echoed.guild is None and echoed.content == "You reached level 5!"
        await sent.edit(content="You reached level 6!")
        assert [m.content for m in fake.dms(alice)] == ["You reached level 6!"]
        with pytest.raises(discord.Forbidden) as error:
            await bot.get_user(staff.id).send("hello")
        assert error.value.code == 50007
        assert fake.dms(staff) == [] and fake.posts() == []
    assert [(r.method, r.route, r.status) for r in fake.rejected] == [
        ("POST", "/channels/{channel_id}/messages", 403)]


# --- editing the bot's messages ---------------------------------------------------------------------

async def test_bot_edits_its_post_and_removes_the_buttons(world):
    fake, guild, _, rp, _, alice, staff = world
    async with run_client(MiniBot(sync_guild=guild.id)) as bot:
        post = await bot.get_channel(rp.id).send("Level-up panel", view=Panel())
        assert fake.message(post.id).components == ["panel:rate", "panel:note", "panel:channels"]
        await post.edit(content="Panel closed", view=None)
        edited = fake.message(post.id)
        assert edited.content == "Panel closed" and edited.components == [] and edited.raw["edited_timestamp"]
        assert [p.content for p in fake.posts(rp)] == ["Panel closed"]
        with pytest.raises(AssertionError, match="no component"):
            await fake.click(post.id, "panel:rate", staff)
        theirs = await fake.send_message(rp, alice, "my message")
        with pytest.raises(discord.Forbidden) as error:
            await bot.get_channel(rp.id).get_partial_message(int(theirs["id"])).edit(content="hijacked")
        assert error.value.code == 50005


# --- deleted channels and channel permissions -----------------------------------------------------

async def test_deleted_channel_and_denied_permissions_are_refused(world):
    fake, guild, _, rp, thread, alice, _ = world
    ooc, hidden = fake.add_channel(guild, "ooc"), fake.add_channel(guild, "staff-only")
    async with run_client(MiniBot(sync_guild=guild.id)) as bot:
        g = bot.get_guild(guild.id)
        await fake.deny_bot(ooc, "send_messages")
        await fake.wait_until(lambda: not g.get_channel(ooc.id).permissions_for(g.me).send_messages,
                              "CHANNEL_UPDATE with the bot's overwrite")
        with pytest.raises(discord.Forbidden) as error:
            await g.get_channel(ooc.id).send("hello")
        assert error.value.code == 50013
        await fake.deny_bot(hidden, "view_channel")
        with pytest.raises(discord.Forbidden) as error:
            await g.get_channel(hidden.id).send("hello")
        assert error.value.code == 50001

        result = await fake.slash(guild, ooc, alice, "echo", {"text": "hi", "times": 1})
        assert not discord.Permissions(int(result.payload["app_permissions"])).send_messages
        assert result.content.startswith("hi")  # interaction answers need no channel permission

        rp_channel = g.get_channel(rp.id)
        await fake.delete_channel(rp)
        await fake.wait_until(lambda: g.get_channel(rp.id) is None, "CHANNEL_DELETE")
        assert g.get_thread(thread.id) is None  # its threads went with it
        with pytest.raises(discord.NotFound) as error:
            await rp_channel.send("anyone there?")
        assert error.value.code == 10003
    assert [r.status for r in fake.rejected] == [403, 403, 404]


class NoIdentifyWait(discord.AutoShardedClient):
    """All shards of one process, identifying without discord.py's 5 s between shards."""

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        pass


async def test_past_2500_guilds_discord_requires_shards_and_recommends_one_per_1000(fake_discord: FakeDiscord):
    fake = fake_discord
    guilds = [fake.add_guild(f"g{g}", id=(100 + g) << 22) for g in range(2501)]
    with pytest.raises(discord.ConnectionClosed) as closed:
        async with run_client(discord.Client(intents=discord.Intents.none())):
            pass
    assert closed.value.code == 4011 and fake.sessions == []
    async with run_client(NoIdentifyWait(intents=discord.Intents.none()), timeout=30) as client:
        assert client.shard_count == 3 and len(client.guilds) == len(guilds)
    assert sorted(s.shard for s in fake.sessions) == [(0, 3), (1, 3), (2, 3)]
