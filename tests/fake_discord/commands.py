"""Application commands: what the bot synced (globally or per guild) and the command REST routes."""
from __future__ import annotations

from typing import Any, Optional

from aiohttp import web

from .limits import DiscordError, command_problems, invalid_form
from .rest import BODY, json_response
from .world import Guild, id_of, snowflake


class CommandsMixin:
    """FakeDiscord's store of application commands."""

    def commands(self, guild: Any = None) -> dict[str, dict]:
        """Commands synced globally (guild=None) or to one guild, by name."""
        scope = None if guild is None else id_of(guild)
        return {name: cmd for (name, _), cmd in self._commands.get(scope, {}).items()}
    def _find_command(self, guild: Guild, name: str) -> tuple[Optional[dict], Optional[int]]:
        for scope in (guild.id, None):
            command = self._commands.get(scope, {}).get((name, 1))
            if command is not None:
                return command, scope
        return None, None

    def _command_scope(self, request: web.Request) -> Optional[int]:
        if int(request.match_info["app_id"]) != self.application_id:
            raise DiscordError(403, 20012, "You are not authorized to perform this action on this application")
        guild_id = request.match_info.get("guild_id")
        if guild_id is not None and int(guild_id) not in self.guilds:
            raise DiscordError(403, 50001, "Missing Access")
        return None if guild_id is None else int(guild_id)

    def _stored_command(self, scope: Optional[int], data: dict, old: Optional[dict]) -> dict:
        command = {
            "type": 1, "options": [], "default_member_permissions": None, "dm_permission": True, "nsfw": False,
            "contexts": None, "integration_types": [0], "name_localizations": None,
            "description_localizations": None, **data,
            "id": old["id"] if old else str(snowflake()), "application_id": str(self.application_id),
            "version": str(snowflake()),
        }
        if scope is not None:
            command["guild_id"] = str(scope)
        return command

    async def _commands_get(self, request: web.Request) -> web.Response:
        return json_response(list(self._commands.get(self._command_scope(request), {}).values()))

    async def _commands_put(self, request: web.Request) -> web.Response:
        scope = self._command_scope(request)
        body = request[BODY] or []
        problems = command_problems(body)
        if scope is None and len(body) > 100:
            problems.append(("", "at most 100 global commands"))
        if problems:
            raise invalid_form(problems)
        old = self._commands.get(scope, {})
        stored = {}
        for data in body:
            key = (data["name"], data.get("type", 1))
            stored[key] = self._stored_command(scope, data, old.get(key))
        self._commands[scope] = stored
        self.command_syncs.append((scope, [name for name, _ in stored]))
        return json_response(list(stored.values()))

    async def _command_post(self, request: web.Request) -> web.Response:
        scope = self._command_scope(request)
        data = request[BODY]
        problems = command_problems([data])
        if problems:
            raise invalid_form(problems)
        commands = self._commands.setdefault(scope, {})
        key = (data["name"], data.get("type", 1))
        commands[key] = self._stored_command(scope, data, commands.get(key))
        return json_response(commands[key], 201)

    def _command_by_id(self, request: web.Request) -> tuple[dict, tuple[str, int]]:
        commands = self._commands.get(self._command_scope(request), {})
        for key, command in commands.items():
            if command["id"] == request.match_info["command_id"]:
                return commands, key
        raise DiscordError(404, 10063, "Unknown application command")

    async def _command_get(self, request: web.Request) -> web.Response:
        commands, key = self._command_by_id(request)
        return json_response(commands[key])

    async def _command_patch(self, request: web.Request) -> web.Response:
        commands, key = self._command_by_id(request)
        commands[key] = {**commands[key], **(request[BODY] or {}), "version": str(snowflake())}
        return json_response(commands[key])

    async def _command_delete(self, request: web.Request) -> web.Response:
        commands, key = self._command_by_id(request)
        del commands[key]
        return web.Response(status=204)
