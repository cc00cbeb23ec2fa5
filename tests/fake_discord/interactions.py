"""Interactions: users running commands, pressing buttons, picking in selects and submitting modals,
and the bot's answers (callbacks, follow-ups, edits of responses)."""
from __future__ import annotations

import copy
import uuid
from typing import Any, Iterable, Optional

from aiohttp import web

from .limits import (EPHEMERAL, LOADING, DiscordError, choice_problems, flatten_components, invalid_form,
                     modal_problems)
from .replies import InteractionResult, Reply
from .rest import BODY, FILES, json_response
from .world import Channel, Guild, Member, Role, User, id_of, snowflake


class InteractionsMixin:
    """FakeDiscord's INTERACTION_CREATE side and the interaction-response routes."""

    def _where(self, guild: Guild, channel: Channel, user: Any) -> tuple[Guild, Channel, Member]:
        assert channel.guild_id == guild.id, f"channel {channel.name} is not in guild {guild.name}"
        return guild, channel, self.member(guild, user)

    def _interaction_payload(self, itype: int, guild: Guild, channel: Channel, member: Member, data: dict,
                             message: Optional[dict] = None) -> dict:
        permissions = guild.permissions_in(member, channel)  # the member's, overwrites included
        payload = {
            "id": str(snowflake()), "application_id": str(self.application_id), "type": itype, "data": data,
            "guild_id": str(guild.id), "guild": {"id": str(guild.id), "locale": "en-US", "features": []},
            "channel_id": str(channel.id), "channel": {**channel.payload(), "permissions": str(permissions)},
            "member": {**member.payload(), "permissions": str(permissions)}, "token": f"tok-{uuid.uuid4().hex}",
            "version": 1, "app_permissions": str(self._bot_permissions_in(channel)), "locale": "en-US",
            "guild_locale": "en-US", "entitlements": [], "authorizing_integration_owners": {"0": str(guild.id)},
            "context": 0, "attachment_size_limit": 10 * 1024 * 1024,
        }
        if message is not None:
            payload["message"] = message
        return payload

    async def _interact(self, payload: dict, label: str, wait: bool, timeout: Optional[float]) -> InteractionResult:
        result = InteractionResult(self, payload, label=label)
        self._interactions[result.token] = result
        await self._dispatch_required("INTERACTION_CREATE", payload, int(payload["guild_id"]))
        if wait:
            await result.wait(timeout)
        return result
    def _resolve(self, resolved: dict, opt_type: int, value: Any, guild: Guild, member: Member) -> str:
        """Record a user/channel/role/attachment in `resolved` as Discord does; returns the option value."""
        if opt_type in (6, 9) and not isinstance(value, Role) and id_of(value) in self.users:
            user = self.users[id_of(value)]
            resolved.setdefault("users", {})[str(user.id)] = user.payload()
            if user.id in guild.members:
                resolved.setdefault("members", {})[str(user.id)] = guild.members[user.id].payload(
                    with_user=False, permissions=True)
            return str(user.id)
        if opt_type in (8, 9):
            role = guild.roles[id_of(value)]
            resolved.setdefault("roles", {})[str(role.id)] = role.payload()
            return str(role.id)
        if opt_type == 7:
            channel = self.channel(value)
            resolved.setdefault("channels", {})[str(channel.id)] = {
                **channel.payload(), "permissions": str(guild.permissions_in(member, channel))}
            return str(channel.id)
        if opt_type == 11:
            filename, data = value
            attachment = self._attachment(0, filename, data)
            resolved.setdefault("attachments", {})[attachment["id"]] = attachment
            return attachment["id"]
        raise AssertionError(f"cannot resolve {value!r} as option type {opt_type}")

    def _option_value(self, definition: dict, value: Any, resolved: dict, guild: Guild, member: Member,
                      strict: bool) -> Any:
        opt_type, name = definition["type"], definition["name"]
        if opt_type in (6, 7, 8, 9, 11):
            if opt_type == 7 and strict and definition.get("channel_types"):
                assert self.channel(value).type in definition["channel_types"], (
                    f"option {name!r} accepts channel types {definition['channel_types']}, "
                    f"not {self.channel(value).type}")
            return self._resolve(resolved, opt_type, value, guild, member)
        expected = {3: str, 4: int, 5: bool, 10: (int, float)}[opt_type]
        if strict:
            assert isinstance(value, expected) and not (opt_type in (4, 10) and isinstance(value, bool)), (
                f"option {name!r} is type {opt_type}; Discord's client cannot send {value!r}")
            choices = [c["value"] for c in definition.get("choices") or ()]
            assert not choices or value in choices, f"option {name!r} must be one of {choices}, not {value!r}"
            low, high = definition.get("min_value"), definition.get("max_value")
            assert low is None or value >= low, f"option {name!r} must be >= {low} (Discord's client enforces it)"
            assert high is None or value <= high, f"option {name!r} must be <= {high} (Discord's client enforces it)"
            if opt_type == 3:
                assert definition.get("min_length", 0) <= len(value) <= definition.get("max_length", 6000), (
                    f"option {name!r} length must be within its min_length/max_length")
        return value

    def _build_options(self, definitions: list[dict], values: dict, resolved: dict, guild: Guild, member: Member,
                       strict: bool, focused: Optional[str] = None) -> list[dict]:
        by_name = {d["name"]: d for d in definitions}
        unknown = set(values) - set(by_name)
        assert not (strict and unknown), f"unknown option(s) {sorted(unknown)}; the command has {sorted(by_name)}"
        if strict and focused is None:
            missing = [d["name"] for d in definitions if d.get("required") and d["name"] not in values]
            assert not missing, f"required option(s) {missing} missing (Discord's client requires them)"
        options = []
        for name, value in values.items():
            definition = by_name.get(name) or {"name": name, "type": _guess_type(value)}
            if name == focused:
                options.append({"name": name, "type": definition["type"], "value": str(value), "focused": True})
            else:
                options.append({"name": name, "type": definition["type"], "value": self._option_value(
                    definition, value, resolved, guild, member, strict and focused is None)})
        return options

    def _command_data(self, guild: Guild, member: Member, name: str, options: Optional[dict], strict: bool,
                      focused: Optional[str] = None) -> dict:
        root, *path = name.split()
        command, scope = self._find_command(guild, root)
        assert command or not strict, (
            f"/{root} was never synced (globally or to guild {guild.id}), so Discord would not offer it; "
            f"synced: global {sorted(self.commands())}, guild {sorted(self.commands(guild))}")
        resolved: dict = {}
        definitions = (command or {}).get("options") or []
        data: dict[str, Any] = {"id": (command or {}).get("id", str(snowflake())), "name": root, "type": 1}
        nest = data
        for sub in path:  # subcommand groups and subcommands
            definition = next((d for d in definitions if d["name"] == sub), None)
            assert definition or not strict, f"/{root} has no subcommand {sub!r}"
            child = {"name": sub, "type": (definition or {}).get("type", 1), "options": []}
            nest.setdefault("options", []).append(child)
            nest, definitions = child, (definition or {}).get("options") or []
        nest["options"] = self._build_options(definitions, options or {}, resolved, guild, member, strict, focused)
        if resolved:
            data["resolved"] = resolved
        if scope is not None:
            data["guild_id"] = str(scope)
        return data

    async def slash(self, guild: Guild, channel: Channel, user: Any, name: str, options: Optional[dict] = None, *,
                    strict: bool = True, wait: bool = True, timeout: Optional[float] = None) -> InteractionResult:
        """A user runs /name (or "/group sub") with options: INTERACTION_CREATE type 2."""
        guild, channel, member = self._where(guild, channel, user)
        data = self._command_data(guild, member, name, options, strict)
        payload = self._interaction_payload(2, guild, channel, member, data)
        return await self._interact(payload, f"/{name}", wait, timeout)

    async def autocomplete(self, guild: Guild, channel: Channel, user: Any, name: str, options: dict, focused: str, *,
                           strict: bool = True, wait: bool = True, timeout: Optional[float] = None) -> InteractionResult:
        """A user types into option `focused` of /name: INTERACTION_CREATE type 4."""
        guild, channel, member = self._where(guild, channel, user)
        assert focused in options, f"the focused option {focused!r} needs a (partial) value in options"
        data = self._command_data(guild, member, name, options, strict, focused=focused)
        payload = self._interaction_payload(4, guild, channel, member, data)
        return await self._interact(payload, f"autocomplete /{name} {focused}={options[focused]!r}", wait, timeout)

    def _clickable(self, source: Any, user: Any, custom_id: str) -> tuple[dict, Guild, Channel, Member, dict]:
        mid = source.original_id if isinstance(source, InteractionResult) else id_of(source)
        assert mid is not None, f"{source!r} has no message to click (its answer was type {source.type})"
        assert mid in self._messages, f"message {mid} is not known to the fake (deleted?)"
        message = copy.deepcopy(self._messages[mid])
        channel = self.channel(message["channel_id"])
        assert not channel.is_dm, "the fake sends component interactions from guild channels only, not DMs"
        guild = self.guilds[channel.guild_id]
        member = self.member(guild, user)
        owner = self._message_owner.get(mid)
        assert owner is None or owner == member.id, (
            f"message {mid} is ephemeral: only user {owner} sees it, so {member.user.name} cannot use it")
        component = Reply(message).component(custom_id)
        assert not component.get("disabled"), f"component {custom_id!r} is disabled"
        return message, guild, channel, member, component

    async def click(self, source: Any, custom_id: str, user: Any, *, wait: bool = True,
                    timeout: Optional[float] = None) -> InteractionResult:
        """A user presses a button on a message (an InteractionResult, a Reply, a message dict or id)."""
        message, guild, channel, member, component = self._clickable(source, user, custom_id)
        assert component["type"] == 2, f"{custom_id!r} is a type {component['type']} component, not a button"
        data = {"custom_id": custom_id, "component_type": 2}
        payload = self._interaction_payload(3, guild, channel, member, data, message)
        return await self._interact(payload, f"click {custom_id!r}", wait, timeout)

    async def select(self, source: Any, custom_id: str, values: Iterable, user: Any, *,
                     component_type: Optional[int] = None, wait: bool = True,
                     timeout: Optional[float] = None) -> InteractionResult:
        """A user picks values in a select menu (string, user, role, mentionable or channel select)."""
        message, guild, channel, member, component = self._clickable(source, user, custom_id)
        ctype = component_type or component["type"]
        values = list(values)
        low, high = component.get("min_values", 1), component.get("max_values", 1)
        assert low <= len(values) <= high, f"select {custom_id!r} takes {low}-{high} values, not {len(values)}"
        data, resolved = {"custom_id": custom_id, "component_type": ctype}, {}
        if ctype == 3:
            allowed = [o["value"] for o in component.get("options") or ()]
            assert all(v in allowed for v in values), f"select {custom_id!r} offers {allowed}, not {values}"
            data["values"] = values
        else:
            option_type = {5: 6, 6: 8, 7: 9, 8: 7}[ctype]
            if ctype == 8 and component.get("channel_types"):
                assert all(self.channel(v).type in component["channel_types"] for v in values), (
                    f"select {custom_id!r} accepts channel types {component['channel_types']}")
            data["values"] = [self._resolve(resolved, option_type, v, guild, member) for v in values]
            data["resolved"] = resolved
        payload = self._interaction_payload(3, guild, channel, member, data, message)
        return await self._interact(payload, f"select {custom_id!r}={values}", wait, timeout)

    async def submit_modal(self, modal: Any, values: dict, user: Any, *, strict: bool = True, wait: bool = True,
                           timeout: Optional[float] = None) -> InteractionResult:
        """A user submits a modal the bot showed (its InteractionResult, or the modal's custom_id)."""
        shown_by = modal if isinstance(modal, InteractionResult) else self._modals.get(modal)
        assert shown_by is not None and shown_by.type == 9, (
            f"the bot never showed modal {modal!r}; shown: {sorted(self._modals)}")
        origin = shown_by.payload
        guild = self.guilds[int(origin["guild_id"])]
        channel = self.channel(origin["channel_id"])
        member = self.member(guild, user)
        assert member.id == shown_by.user_id, "only the user the modal was shown to can submit it"
        definition = shown_by.modal
        resolved: dict = {}
        fields = {c["custom_id"] for c in flatten_components(definition["components"]) if c.get("custom_id")}
        unknown = set(values) - fields
        assert not unknown, f"modal {definition['custom_id']!r} has no field(s) {sorted(unknown)}; it has {sorted(fields)}"

        def answer(comp: dict) -> dict:
            cid, ctype = comp.get("custom_id"), comp["type"]
            if ctype == 10 or cid is None:
                return {"type": ctype, "id": comp.get("id", 0)}
            value = values.get(cid, comp.get("value"))
            out: dict[str, Any] = {"type": ctype, "id": comp.get("id", 0), "custom_id": cid}
            if ctype == 4:
                value = value or ""
                if strict:
                    assert value or not comp.get("required", True), f"modal field {cid!r} is required"
                    assert comp.get("min_length", 0) <= len(value) <= comp.get("max_length", 4000) or not value, (
                        f"modal field {cid!r} must be {comp.get('min_length', 0)}-{comp.get('max_length', 4000)} "
                        f"characters (Discord's client enforces it)")
                out["value"] = value
            elif ctype in (3, 22):
                out["values"] = list(value or [])
            elif ctype in (5, 6, 7, 8):
                option_type = {5: 6, 6: 8, 7: 9, 8: 7}[ctype]
                out["values"] = [self._resolve(resolved, option_type, v, guild, member) for v in value or []]
            elif ctype in (21, 23):
                out["value"] = value if ctype == 21 else bool(value)
            else:
                raise AssertionError(f"the fake cannot submit modal component type {ctype}")
            return out

        def rebuild(components: list[dict]) -> list[dict]:
            rows = []
            for comp in components:
                if comp["type"] == 1:
                    rows.append({"type": 1, "id": comp.get("id", 0), "components": [answer(c) for c in comp["components"]]})
                elif comp["type"] == 18:
                    rows.append({"type": 18, "id": comp.get("id", 0), "component": answer(comp["component"])})
                else:
                    rows.append(answer(comp))
            return rows

        data = {"custom_id": definition["custom_id"], "components": rebuild(definition["components"])}
        if resolved:
            data["resolved"] = resolved
        payload = self._interaction_payload(5, guild, channel, member, data, origin.get("message"))
        return await self._interact(payload, f"modal {definition['custom_id']!r}", wait, timeout)
    _ALLOWED_CALLBACKS = {2: {4, 5, 9}, 3: {4, 5, 6, 7, 9}, 4: {8}, 5: {4, 5, 6, 7}}

    def _result(self, token: str, missing: DiscordError) -> InteractionResult:
        result = self._interactions.get(token)
        if result is None:
            raise missing
        return result

    async def _callback(self, request: web.Request) -> web.Response:
        result = self._result(request.match_info["token"], DiscordError(404, 10062, "Unknown interaction"))
        try:
            response = await self._acknowledge(request, result)
        except DiscordError as error:
            result.rejections.append(str(error))
            result._changed()
            raise
        result._changed()
        return response

    async def _acknowledge(self, request: web.Request, result: InteractionResult) -> web.Response:
        if str(result.id) != request.match_info["interaction_id"]:
            raise DiscordError(404, 10062, "Unknown interaction")
        if result.callback is not None:
            raise DiscordError(400, 40060, "Interaction has already been acknowledged.")
        body, files = request[BODY] or {}, request[FILES]
        ctype, data = body.get("type"), body.get("data") or {}
        itype = result.payload["type"]
        if ctype not in self._ALLOWED_CALLBACKS[itype] or (ctype in (6, 7) and "message" not in result.payload):
            raise invalid_form([("type", f"callback type {ctype} is not allowed for interaction type {itype}")])
        if ctype == 8:
            problems = choice_problems(data)
        elif ctype == 9:
            problems = modal_problems(data)
        else:
            problems = []
        if problems:
            raise invalid_form(problems)
        channel_id = int(result.payload["channel_id"])
        message = None
        if ctype == 4:
            message = self._create_message(channel_id, data, files, webhook=True, token=result.token,
                                           msg_type=20 if result.payload["type"] == 2 else 0)
            await self._echo("MESSAGE_CREATE", message)
        elif ctype == 5:
            message = self._create_message(channel_id, {"flags": data.get("flags", 0)}, [], webhook=True,
                                           token=result.token, flags=LOADING)
            await self._echo("MESSAGE_CREATE", message)
        elif ctype in (6, 7):
            message = self._messages[int(result.payload["message"]["id"])]
            if ctype == 7:
                self._edit_message(message, data, files)
                await self._echo("MESSAGE_UPDATE", message)
        elif ctype == 9:
            self._modals[data["custom_id"]] = result
        result.callback = {"type": ctype, "data": data}
        result._files = {f.filename: f.data for f in files}
        if message is not None:
            result.original_id = int(message["id"])
        if request.query.get("with_response", "false").lower() in ("false", "0"):
            return web.Response(status=204)
        answer: dict[str, Any] = {"interaction": {
            "id": str(result.id), "type": itype, "response_message_id": message["id"] if message else None,
            "response_message_loading": ctype == 5, "response_message_ephemeral": bool(
                message and message["flags"] & EPHEMERAL)}}
        if message is not None and ctype in (4, 5, 7):
            answer["resource"] = {"type": ctype, "message": message}
        return json_response(answer)

    def _webhook(self, request: web.Request) -> InteractionResult:
        unknown = DiscordError(404, 10015, "Unknown Webhook")
        if int(request.match_info["app_id"]) != self.application_id:
            raise unknown
        result = self._result(request.match_info["token"], unknown)
        if result.callback is None:
            raise unknown  # follow-ups and edits need the interaction to be acknowledged first
        return result

    def _webhook_target(self, request: web.Request, result: InteractionResult) -> dict:
        raw = request.match_info["message_id"]
        mid = result.original_id if raw == "@original" else int(raw)
        message = self._messages.get(mid) if mid is not None else None
        if message is None or (raw != "@original" and self._message_token.get(mid) != result.token):
            raise DiscordError(404, 10008, "Unknown Message")
        return message

    async def _followup(self, request: web.Request) -> web.Response:
        result = self._webhook(request)
        try:
            message = self._create_message(int(result.payload["channel_id"]), request[BODY] or {},
                                           request[FILES], webhook=True, token=result.token)
        except DiscordError as error:
            result.rejections.append(str(error))
            result._changed()
            raise
        await self._echo("MESSAGE_CREATE", message)
        result.followups.append(Reply(copy.deepcopy(message), files=self._files.get(int(message["id"]))))
        result._changed()
        if request.query.get("wait") in ("true", "True", "1"):
            return json_response(message)
        return web.Response(status=204)

    async def _webhook_message_get(self, request: web.Request) -> web.Response:
        return json_response(self._webhook_target(request, self._webhook(request)))

    async def _webhook_message_edit(self, request: web.Request) -> web.Response:
        result = self._webhook(request)
        message = self._webhook_target(request, result)
        try:
            self._edit_message(message, request[BODY] or {}, request[FILES])
        except DiscordError as error:
            result.rejections.append(str(error))
            result._changed()
            raise
        await self._echo("MESSAGE_UPDATE", message)
        snapshot = Reply(copy.deepcopy(message), files=self._files.get(int(message["id"])))
        if int(message["id"]) == result.original_id:
            result.edits.append(snapshot)
        else:
            result.followups[:] = [snapshot if f.id == snapshot.id else f for f in result.followups]
        result._changed()
        return json_response(message)

    async def _webhook_message_delete(self, request: web.Request) -> web.Response:
        result = self._webhook(request)
        message = self._webhook_target(request, result)
        del self._messages[int(message["id"])]
        result._changed()
        return web.Response(status=204)

def _guess_type(value: Any) -> int:
    """Option type for a value when the command was not synced (strict=False)."""
    if isinstance(value, bool):
        return 5
    if isinstance(value, int):
        return 4
    if isinstance(value, float):
        return 10
    if isinstance(value, (User, Member)):
        return 6
    if isinstance(value, Channel):
        return 7
    if isinstance(value, Role):
        return 8
    return 3
