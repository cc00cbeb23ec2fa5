"""Guilds in the fake Discord (tests/fake_discord.py) for the end-to-end tests and benchmarks."""
from __future__ import annotations

from helpers import STATE_TABLES, setup_guild, snapshot


class World:
    """One guild with an RP and an HF channel, two players, staff and an HF bot; `client` is
    the bot under test (set by the `w` fixture) and `db` a connection for checking."""

    def __init__(self, fake, db, client=None):
        self.fake, self.client, self.db = fake, client, db
        self.guild = fake.add_guild("RP Server")
        self.rp = fake.add_channel(self.guild, "rp")
        self.hf = fake.add_channel(self.guild, "hunting")
        self.alice = fake.add_member(self.guild, "alice")
        self.bob = fake.add_member(self.guild, "bob")
        self.mod = fake.add_member(self.guild, "mod", permissions=["manage_guild"])
        self.admin = fake.add_member(self.guild, "admin", permissions=["administrator"])
        self.hunter = fake.add_member(self.guild, "HuntBot", bot=True)

    async def run(self, user, name, options=None, strict=True):
        """The bot's whole answer to a slash command: the follow-up if it deferred."""
        result = await self.fake.slash(self.guild, self.rp, user, name, options or {}, strict=strict)
        return (await result.followup()) if result.type == 5 else result

    async def snapshot(self):
        return await snapshot(self.db, STATE_TABLES)

    async def refused(self, user, name, options, *expected, strict=False):
        """The command is refused with a message containing `expected`, and nothing changes."""
        before = await self.snapshot()
        reply = await self.run(user, name, options, strict=strict)
        assert reply.ephemeral, reply
        for text in expected:
            assert text in reply.content, reply.content
        assert "Traceback" not in reply.content
        assert await self.snapshot() == before
        return reply

    async def character(self, user, name):
        return await self.db.find_character(self.guild.id, name, owner_id=user.id)


def sharded_guilds(fake, guilds: int, members: int, first_id: int, name: str = "G") -> list[tuple]:
    """`guilds` guilds with ids first_id << 22, (first_id + 1) << 22, ... (so alternating between
    shard 0 and 1 of 2), each with an RP channel and `members` members: [(guild, channel, members)]."""
    made = []
    for g in range(guilds):
        guild = fake.add_guild(f"{name}{g}", id=(first_id + g) << 22)
        channel = fake.add_channel(guild, "rp")
        made.append((guild, channel, [fake.add_member(guild, f"p{g}-{i}") for i in range(members)]))
    return made


async def track_rp(db, made: list[tuple], rate: int, cap: int) -> None:
    """In the database: each guild's channel tracked for RP at `rate` and `cap`, and one
    character C<member id> for each member."""
    for guild, channel, members in made:
        await setup_guild(db, guild.id, rp=[channel.id], rate=rate, cap=cap,
                          characters=[(m.id, f"C{m.id}") for m in members])
