"""What the bot sent, as tests read it: recorded requests, messages (Reply) and interactions."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from .limits import EPHEMERAL, flatten_components
from .waiting import Signal

if TYPE_CHECKING:
    from .driver import FakeDiscord


@dataclass
class UploadedFile:
    field: str
    filename: str
    content_type: str
    data: bytes


@dataclass
class RecordedRequest:
    method: str
    path: str                     # below /api/v10, e.g. "/channels/123/messages"
    route: str                    # the route template, e.g. "/channels/{channel_id}/messages"
    query: dict
    json: Any
    files: list[UploadedFile]
    headers: dict
    status: int = 0
    error: Optional[str] = None

    def __str__(self) -> str:
        return f"{self.method} {self.path} -> {self.status}" + (f" ({self.error})" if self.error else "")


class Reply:
    """A message (or callback data) the bot produced, with the fields tests look at."""

    def __init__(self, data: dict, *, files: Optional[dict[str, bytes]] = None, allowed_mentions: Any = None):
        self.raw = data
        self.id: Optional[int] = int(data["id"]) if "id" in data else None
        self._files = files or {}
        self._allowed_mentions = allowed_mentions

    def __repr__(self) -> str:
        return f"<Reply content={self.content!r} embeds={len(self.embeds)} components={self.components}>"

    @property
    def content(self) -> str:
        return self.raw.get("content") or ""

    @property
    def embeds(self) -> list[dict]:
        return self.raw.get("embeds") or []

    @property
    def embed(self) -> Optional[dict]:
        return self.embeds[0] if self.embeds else None

    def text(self) -> str:
        """Content plus every embed's title, description, fields and footer, for `in` checks."""
        parts = [self.content]
        for embed in self.embeds:
            parts += [embed.get("title") or "", embed.get("description") or ""]
            parts += [f"{f.get('name')}\n{f.get('value')}" for f in embed.get("fields") or ()]
            parts.append((embed.get("footer") or {}).get("text") or "")
        return "\n".join(p for p in parts if p)

    @property
    def flags(self) -> int:
        return int(self.raw.get("flags") or 0)

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & EPHEMERAL)

    @property
    def all_components(self) -> list[dict]:
        return flatten_components(self.raw.get("components") or ())

    @property
    def components(self) -> list[str]:
        """custom_ids of every interactive component, in order."""
        return [c["custom_id"] for c in self.all_components if c.get("custom_id")]

    def component(self, custom_id: str) -> dict:
        for component in self.all_components:
            if component.get("custom_id") == custom_id:
                return component
        raise AssertionError(f"no component with custom_id {custom_id!r}; the message has {self.components}")

    @property
    def allowed_mentions(self) -> Any:
        return self._allowed_mentions if self._allowed_mentions is not None else self.raw.get("allowed_mentions")

    @property
    def pings(self) -> list[str]:
        """Mentions in the content that would notify someone under the message's allowed_mentions
        (without allowed_mentions Discord notifies every mention). Embeds never ping."""
        allowed = self.allowed_mentions
        parse = {"users", "roles", "everyone"} if allowed is None else set(allowed.get("parse") or ())
        users = {str(u) for u in (allowed or {}).get("users") or ()}
        roles = {str(r) for r in (allowed or {}).get("roles") or ()}
        found = []
        for match in re.finditer(r"@(everyone|here)|<@!?(\d+)>|<@&(\d+)>", self.content):
            everyone, user, role = match.groups()
            if (everyone and "everyone" in parse) or (user and ("users" in parse or user in users)) or (
                    role and ("roles" in parse or role in roles)):
                found.append(match.group(0))
        return found

    @property
    def attachments(self) -> list[dict]:
        return self.raw.get("attachments") or []

    @property
    def files(self) -> dict[str, bytes]:
        return dict(self._files)


class InteractionResult(Reply):
    """One interaction the fake sent and everything the bot answered for its token."""

    def __init__(self, fake: "FakeDiscord", payload: dict, *, label: str):
        super().__init__({})
        self.fake, self.payload, self.label = fake, payload, label
        self.id = int(payload["id"])
        self.token: str = payload["token"]
        self.user_id = int((payload.get("member") or {}).get("user", payload.get("user", {}))["id"])
        self.callback: Optional[dict] = None
        self.original_id: Optional[int] = None
        self.followups: list[Reply] = []
        self.edits: list[Reply] = []
        self.rejections: list[str] = []
        self._followups_read = 0
        self._edits_read = 0
        self._signal = Signal()

    def __repr__(self) -> str:
        return f"<InteractionResult {self.label} type={self.type} content={self.content!r}>"

    # Reply fields read the callback's data.
    @property
    def raw(self) -> dict:
        return (self.callback or {}).get("data") or {}

    @raw.setter
    def raw(self, value: dict) -> None:
        pass

    @property
    def type(self) -> Optional[int]:
        return self.callback["type"] if self.callback else None

    @property
    def deferred(self) -> bool:
        return self.type in (5, 6)

    @property
    def choices(self) -> list[dict]:
        assert self.type == 8, f"{self.label} was answered with type {self.type}, not autocomplete choices"
        return self.raw.get("choices") or []

    @property
    def modal(self) -> dict:
        assert self.type == 9, f"{self.label} was answered with type {self.type}, not a modal"
        return self.raw

    @property
    def message(self) -> Reply:
        """The original response as it is now (after any edits)."""
        assert self.original_id is not None, f"{self.label} has no original response message"
        return self.fake.message(self.original_id)

    def _changed(self) -> None:
        self._signal.notify()

    def _describe(self) -> str:
        lines = [f"REST calls for this interaction: {[str(r) for r in self.fake.requests if self.token in r.path]}"]
        if self.rejections:
            lines.append(f"the fake rejected the bot's answers: {self.rejections}")
        return "\n".join(lines)

    async def wait(self, timeout: Optional[float] = None) -> "InteractionResult":
        timeout = self.fake.timeout if timeout is None else timeout
        await self._signal.until(
            lambda: self.callback is not None, timeout,
            lambda: f"the bot never answered {self.label} within {timeout}s\n{self._describe()}")
        return self

    async def followup(self, timeout: Optional[float] = None) -> Reply:
        """The next follow-up message the bot sent for this interaction."""
        timeout = self.fake.timeout if timeout is None else timeout
        await self._signal.until(
            lambda: len(self.followups) > self._followups_read, timeout,
            lambda: f"no follow-up #{self._followups_read + 1} for {self.label} within {timeout}s\n{self._describe()}")
        self._followups_read += 1
        return self.followups[self._followups_read - 1]

    async def edited(self, timeout: Optional[float] = None) -> Reply:
        """The original response right after the bot's next edit of it."""
        timeout = self.fake.timeout if timeout is None else timeout
        await self._signal.until(
            lambda: len(self.edits) > self._edits_read, timeout,
            lambda: f"no edit #{self._edits_read + 1} of {self.label}'s response within {timeout}s\n{self._describe()}")
        self._edits_read += 1
        return self.edits[self._edits_read - 1]
