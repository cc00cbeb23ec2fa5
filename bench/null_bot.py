"""The Discord side's ceiling: a discord.py client whose listener does nothing but count.

Run by bench_e2e.py through tests/run_bot.py (pointed at the fake Discord). When it has
seen NULL_BOT_TARGET messages it posts "done" in the channel of the last one.
"""
import os

import discord


class NullBot(discord.Client):
    def __init__(self, target: int):
        intents = discord.Intents.none()
        intents.guilds = intents.guild_messages = intents.message_content = True
        super().__init__(intents=intents)
        self.target, self.seen = target, 0

    async def on_message(self, message: discord.Message) -> None:
        self.seen += 1
        if self.seen == self.target:
            await message.channel.send("done")


if __name__ == "__main__":
    NullBot(int(os.environ["NULL_BOT_TARGET"])).run(os.environ["DISCORD_BOT_TOKEN"], log_handler=None)
