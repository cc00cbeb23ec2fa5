"""Rate limits (429): opt-in buckets per route, answered with the headers and body discord.py reads."""
from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Optional

from aiohttp import web

from .replies import RecordedRequest
from .rest import json_response

# Path parameters that make separate buckets on Discord ("major parameters").
MAJOR_PARAMETERS = ("channel_id", "guild_id", "token")


def _seconds(value: float) -> float:
    """Rounded up to the millisecond, so a client that waits this long never comes back early."""
    return math.ceil(max(value, 0.0) * 1000) / 1000


@dataclass(eq=False)
class RateLimit:
    """`limit` requests per `window` seconds on one route (each channel/guild/webhook counted apart)."""
    route: str                      # a route template, as in RecordedRequest.route
    limit: int
    window: float
    method: Optional[str] = None    # None: every method of the route
    bucket: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    requests: int = 0               # requests counted against the bucket
    limited: int = 0                # of which answered 429
    _windows: dict[tuple, list] = field(default_factory=dict, repr=False)   # major params -> [reset_at, remaining]

    def matches(self, method: str, route: str) -> bool:
        return route == self.route and (self.method is None or self.method == method)

    def take(self, major: tuple, now: float) -> tuple[Optional[float], dict[str, str]]:
        """Count one request: (retry_after if it is over the limit else None, the X-RateLimit-* headers)."""
        window = self._windows.get(major)
        if window is None or now >= window[0]:
            window = self._windows[major] = [now + self.window, self.limit]
        self.requests += 1
        retry_after = None
        if window[1] <= 0:
            retry_after = _seconds(window[0] - now)
            self.limited += 1
        else:
            window[1] -= 1
        headers = {
            "X-RateLimit-Limit": str(self.limit), "X-RateLimit-Remaining": str(window[1]),
            "X-RateLimit-Reset": f"{_seconds(window[0]):.3f}",
            "X-RateLimit-Reset-After": f"{_seconds(window[0] - now):.3f}", "X-RateLimit-Bucket": self.bucket,
        }
        return retry_after, headers


class RateLimitsMixin:
    """FakeDiscord's opt-in rate limits."""

    def rate_limit(self, route: str, limit: int = 1, window: float = 1.0, *,
                   method: Optional[str] = None) -> RateLimit:
        """From now on allow `limit` requests per `window` seconds to `route` (a template such as
        "/channels/{channel_id}/messages"; method=None: all its methods), per channel/guild/webhook.
        Responses carry X-RateLimit-* headers; requests over the limit get 429 with retry_after."""
        known = {path for _, path, _ in self.ROUTES}
        assert route in known, f"{route!r} is not a route the fake serves; routes: {sorted(known)}"
        assert limit >= 1 and window > 0, "a bucket needs limit >= 1 and window > 0"
        bucket = RateLimit(route, limit, window, method.upper() if method else None)
        self._rate_limits.append(bucket)
        return bucket

    @property
    def rate_limited(self) -> list[RecordedRequest]:
        """Requests the fake answered with 429 (discord.py waits retry_after and sends them again)."""
        return [r for r in self.requests if r.status == 429]

    def _rate_limit(self, request: web.Request, record: RecordedRequest) -> tuple[Optional[web.Response], dict]:
        """(a 429 response if the request is over its bucket's limit, headers for the response)."""
        bucket = next((b for b in self._rate_limits if b.matches(record.method, record.route)), None)
        if bucket is None:
            return None, {}
        major = tuple(request.match_info.get(name) for name in MAJOR_PARAMETERS)
        retry_after, headers = bucket.take(major, time.time())
        if retry_after is None:
            return None, headers
        record.error = f"rate limited: retry after {retry_after}s (bucket {bucket.route})"
        response = json_response({"message": "You are being rate limited.", "retry_after": retry_after,
                                  "global": False}, 429)
        # discord.py treats a 429 without Via as a Cloudflare ban rather than a rate limit
        response.headers.update({**headers, "Via": "1.1 google", "X-RateLimit-Scope": "user"})
        return response, headers
