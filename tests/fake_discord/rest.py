"""REST plumbing: the route table, request recording, token check and error answers, identity routes."""
from __future__ import annotations

import json
import logging
from typing import Any, Callable

from aiohttp import web

from .gateway import GUILDS_PER_RECOMMENDED_SHARD
from .limits import DiscordError
from .replies import RecordedRequest, UploadedFile

log = logging.getLogger("fake_discord")

BODY = web.RequestKey("body", object)
FILES = web.RequestKey("files", list)
RECORD = web.RequestKey("record", object)


def json_response(data: Any, status: int = 200) -> web.Response:
    # discord.py only parses JSON when the content type is exactly application/json.
    return web.Response(status=status, body=json.dumps(data).encode(), headers={"Content-Type": "application/json"})


class RestMixin:
    """FakeDiscord's HTTP side: every route Discord serves that the fake knows, and the middleware."""

    # Every route the fake serves (below /api/v10): method, template, handler method name.
    ROUTES: list[tuple[str, str, str]] = [
        ("GET", "/users/@me", "_me"),
        ("GET", "/users/{user_id}", "_get_user"),
        ("POST", "/users/@me/channels", "_dm_open"),
        ("GET", "/oauth2/applications/@me", "_app_info"),
        ("GET", "/applications/@me", "_app_info"),
        ("GET", "/gateway", "_gateway_info"),
        ("GET", "/gateway/bot", "_gateway_info"),
        ("GET", "/applications/{app_id}/commands", "_commands_get"),
        ("PUT", "/applications/{app_id}/commands", "_commands_put"),
        ("POST", "/applications/{app_id}/commands", "_command_post"),
        ("GET", "/applications/{app_id}/commands/{command_id}", "_command_get"),
        ("PATCH", "/applications/{app_id}/commands/{command_id}", "_command_patch"),
        ("DELETE", "/applications/{app_id}/commands/{command_id}", "_command_delete"),
        ("GET", "/applications/{app_id}/guilds/{guild_id}/commands", "_commands_get"),
        ("PUT", "/applications/{app_id}/guilds/{guild_id}/commands", "_commands_put"),
        ("POST", "/applications/{app_id}/guilds/{guild_id}/commands", "_command_post"),
        ("GET", "/applications/{app_id}/guilds/{guild_id}/commands/{command_id}", "_command_get"),
        ("PATCH", "/applications/{app_id}/guilds/{guild_id}/commands/{command_id}", "_command_patch"),
        ("DELETE", "/applications/{app_id}/guilds/{guild_id}/commands/{command_id}", "_command_delete"),
        ("POST", "/interactions/{interaction_id}/{token}/callback", "_callback"),
        ("POST", "/webhooks/{app_id}/{token}", "_followup"),
        ("GET", "/webhooks/{app_id}/{token}/messages/{message_id}", "_webhook_message_get"),
        ("PATCH", "/webhooks/{app_id}/{token}/messages/{message_id}", "_webhook_message_edit"),
        ("DELETE", "/webhooks/{app_id}/{token}/messages/{message_id}", "_webhook_message_delete"),
        ("GET", "/channels/{channel_id}", "_channel_get"),
        ("POST", "/channels/{channel_id}/messages", "_channel_post"),
        ("GET", "/channels/{channel_id}/messages/{message_id}", "_channel_message_get"),
        ("PATCH", "/channels/{channel_id}/messages/{message_id}", "_channel_message_edit"),
        ("DELETE", "/channels/{channel_id}/messages/{message_id}", "_channel_message_delete"),
        ("POST", "/channels/{channel_id}/typing", "_typing"),
        ("GET", "/guilds/{guild_id}", "_guild_get"),
        ("GET", "/guilds/{guild_id}/channels", "_guild_channels"),
        ("GET", "/guilds/{guild_id}/roles", "_guild_roles"),
        ("GET", "/guilds/{guild_id}/members/{user_id}", "_member_get"),
        ("GET", "/guilds/{guild_id}/roles/{role_id}", "_role_get"),
        ("GET", "/guilds/{guild_id}/members", "_members_list"),
        ("PATCH", "/guilds/{guild_id}/members/{user_id}", "_member_patch"),
        ("PUT", "/guilds/{guild_id}/members/{user_id}/roles/{role_id}", "_member_role_add"),
        ("DELETE", "/guilds/{guild_id}/members/{user_id}/roles/{role_id}", "_member_role_remove"),
    ]

    def _add_routes(self, app: web.Application) -> None:
        for method, path, handler in self.ROUTES:
            app.router.add_route(method, "/api/v10" + path, getattr(self, handler))
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/gateway/", self._gateway)
        app.router.add_get("/attachments/{attachment_id}/{filename}", self._attachment_get)
        self._catch_all = app.router.add_route("*", "/{tail:.*}", self._unknown).resource

    async def _read_body(self, request: web.Request) -> tuple[Any, list[UploadedFile]]:
        if request.content_type.startswith("multipart/"):
            body, files = None, []
            reader = await request.multipart()
            async for part in reader:
                data = await part.read(decode=False)  # type: ignore[union-attr]
                if part.name == "payload_json":  # type: ignore[union-attr]
                    body = json.loads(data)
                else:
                    files.append(UploadedFile(part.name or "", part.filename or "",  # type: ignore[union-attr]
                                              part.headers.get("Content-Type", ""), bytes(data)))  # type: ignore[union-attr]
            return body, files
        raw = await request.read()
        return (json.loads(raw) if raw else None), []

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        if not request.path.startswith("/api/"):
            return await handler(request)
        resource = request.match_info.route.resource
        known = resource is not None and resource is not self._catch_all
        route = resource.canonical.removeprefix("/api/v10") if known else "(unknown)"
        body, files = await self._read_body(request)
        record = RecordedRequest(
            request.method, request.path.removeprefix("/api/v10"), route, dict(request.query), body, files,
            {k: v for k, v in request.headers.items() if k.lower() != "authorization"})
        self.requests.append(record)
        request[BODY], request[FILES], request[RECORD] = body, files, record
        limit_headers: dict = {}
        try:
            self._check_token(request)
            limited, limit_headers = self._rate_limit(request, record)
            response = limited or await handler(request)
        except DiscordError as error:
            record.error = str(error)
            response = json_response(error.body(), error.status)
        except Exception as error:  # a bug in the fake: answer 400 so discord.py does not retry, and remember it
            log.exception("fake discord failed on %s %s", request.method, request.path)
            record.error = f"fake discord internal error: {error!r}"
            self.internal_errors.append(f"{request.method} {request.path}: {error!r}")
            response = json_response({"message": record.error, "code": 0}, 400)
        response.headers.update(limit_headers)
        record.status = response.status
        self._signal.notify()
        return response

    def _check_token(self, request: web.Request) -> None:
        route = request[RECORD].route
        if self.token is None or route.startswith(("/interactions/", "/webhooks/")):
            return
        if request.headers.get("Authorization") != f"Bot {self.token}":
            raise DiscordError(401, 0, "401: Unauthorized")

    async def _unknown(self, request: web.Request) -> web.Response:
        raise DiscordError(404, 0, "404: Not Found")

    # -- REST: identity ------------------------------------------------------------------------

    async def _me(self, request: web.Request) -> web.Response:
        return json_response({**self.bot_user.payload(), "verified": True, "mfa_enabled": False})

    async def _get_user(self, request: web.Request) -> web.Response:
        user = self.users.get(int(request.match_info["user_id"]))
        if user is None:
            raise DiscordError(404, 10013, "Unknown User")
        return json_response(user.payload())

    async def _app_info(self, request: web.Request) -> web.Response:
        return json_response({
            "id": str(self.application_id), "name": self.bot_user.name, "description": "", "icon": None,
            "bot_public": True, "bot_require_code_grant": False, "owner": self.owner.payload(), "team": None,
            "verify_key": "0" * 64, "flags": 0, "summary": "", "bot": self.bot_user.payload(),
            "interactions_endpoint_url": None, "redirect_uris": [], "approximate_guild_count": len(self.guilds),
        })

    async def _gateway_info(self, request: web.Request) -> web.Response:
        data: dict[str, Any] = {"url": self.gateway_url}
        if request.path.endswith("/bot"):
            shards = self.recommended_shards or max(1, -(-len(self.guilds) // GUILDS_PER_RECOMMENDED_SHARD))
            data.update(shards=shards, session_start_limit={
                "total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1})
        return json_response(data)
