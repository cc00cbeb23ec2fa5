"""What Discord refuses: its error shape (DiscordError) and its documented limits on messages,
embeds, components, modals, autocomplete choices and command definitions (400 50035)."""
from __future__ import annotations

import re
from typing import Any, Iterable

EPHEMERAL = 1 << 6
LOADING = 1 << 7
COMPONENTS_V2 = 1 << 15


def flatten_components(components: Iterable[dict]) -> list[dict]:
    """Every component in a (v1 or v2) component tree, depth first."""
    found: list[dict] = []
    for component in components or ():
        found.append(component)
        found.extend(flatten_components(component.get("components") or ()))
        for key in ("component", "accessory"):
            if component.get(key):
                found.extend(flatten_components([component[key]]))
    return found


class DiscordError(Exception):
    """An error answer in Discord's shape: {"message", "code", "errors"?}."""

    def __init__(self, status: int, code: int, message: str, problems: Iterable[tuple[str, str]] = ()):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.problems = list(problems)

    def body(self) -> dict:
        body: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.problems:
            body["errors"] = {path: {"_errors": [{"code": "INVALID", "message": text}]} for path, text in self.problems}
        return body

    def __str__(self) -> str:
        details = "; ".join(f"{path}: {text}" for path, text in self.problems)
        return f"{self.status} {self.message} (code {self.code})" + (f" - {details}" if details else "")


def invalid_form(problems: list[tuple[str, str]]) -> DiscordError:
    return DiscordError(400, 50035, "Invalid Form Body", problems)


def _too_long(problems: list, path: str, value: Any, limit: int, minimum: int = 0) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        problems.append((path, f"must be a string, got {type(value).__name__}"))
    elif not minimum <= len(value) <= limit:
        problems.append((path, f"must be between {minimum} and {limit} in length (got {len(value)})"))


def embed_problems(embeds: list, path: str = "embeds") -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    if len(embeds) > 10:
        problems.append((path, "must have 10 or fewer embeds"))
    total = 0
    for i, embed in enumerate(embeds):
        at = f"{path}.{i}"
        _too_long(problems, f"{at}.title", embed.get("title"), 256)
        _too_long(problems, f"{at}.description", embed.get("description"), 4096)
        _too_long(problems, f"{at}.footer.text", (embed.get("footer") or {}).get("text"), 2048)
        _too_long(problems, f"{at}.author.name", (embed.get("author") or {}).get("name"), 256)
        fields = embed.get("fields") or []
        if len(fields) > 25:
            problems.append((f"{at}.fields", "must have 25 or fewer fields"))
        for j, fld in enumerate(fields):
            _too_long(problems, f"{at}.fields.{j}.name", fld.get("name"), 256, 1)
            _too_long(problems, f"{at}.fields.{j}.value", fld.get("value"), 1024, 1)
        for key in ("url", "image", "thumbnail"):
            url = embed.get(key) if key == "url" else (embed.get(key) or {}).get("url")
            if url is not None and not re.match(r"(https?|attachment)://", str(url)):
                problems.append((f"{at}.{key}", f"Not a well formed URL: {url!r}"))
        total += sum(len(str(embed.get(k) or "")) for k in ("title", "description"))
        total += len((embed.get("footer") or {}).get("text") or "") + len((embed.get("author") or {}).get("name") or "")
        total += sum(len(str(f.get("name") or "")) + len(str(f.get("value") or "")) for f in fields)
    if total > 6000:
        problems.append((path, f"embeds must total 6000 or fewer characters (got {total})"))
    return problems


def component_problems(components: list, *, v2: bool, path: str = "components") -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    if not v2:
        if len(components) > 5:
            problems.append((path, "must have 5 or fewer action rows"))
        for i, row in enumerate(components):
            if row.get("type") != 1:
                problems.append((f"{path}.{i}", "top-level components must be action rows without IS_COMPONENTS_V2"))
                continue
            children = row.get("components") or []
            selects = [c for c in children if c.get("type") in (3, 5, 6, 7, 8)]
            if not children or len(children) > 5 or (selects and len(children) > 1):
                problems.append((f"{path}.{i}", "an action row holds 1-5 buttons or exactly one select"))
    seen: set[str] = set()
    for i, comp in enumerate(flatten_components(components)):
        at = f"{path}[{i}]"
        custom_id = comp.get("custom_id")
        if custom_id is not None:
            _too_long(problems, f"{at}.custom_id", custom_id, 100, 1)
            if custom_id in seen:
                problems.append((f"{at}.custom_id", f"custom_id {custom_id!r} is used twice"))
            seen.add(custom_id)
        if comp.get("type") == 2:
            _too_long(problems, f"{at}.label", comp.get("label"), 80)
            if comp.get("style") == 5:
                if not comp.get("url") or custom_id:
                    problems.append((at, "a link button needs a url and no custom_id"))
            elif comp.get("style") != 6 and not custom_id:
                problems.append((at, "a button needs a custom_id"))
        if comp.get("type") in (3, 5, 6, 7, 8):
            _too_long(problems, f"{at}.placeholder", comp.get("placeholder"), 150)
            if comp.get("type") == 3:
                options = comp.get("options") or []
                if not 1 <= len(options) <= 25:
                    problems.append((f"{at}.options", f"a select needs 1-25 options (got {len(options)})"))
                for j, option in enumerate(options):
                    _too_long(problems, f"{at}.options.{j}.label", option.get("label"), 100, 1)
                    _too_long(problems, f"{at}.options.{j}.value", option.get("value"), 100, 1)
                    _too_long(problems, f"{at}.options.{j}.description", option.get("description"), 100)
        if comp.get("type") == 10:
            _too_long(problems, f"{at}.content", comp.get("content"), 4000, 1)
    return problems


def message_problems(data: dict, *, creating: bool, has_files: bool = False) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    flags = int(data.get("flags") or 0)
    v2 = bool(flags & COMPONENTS_V2)
    if data.get("content") is not None:
        _too_long(problems, "content", data["content"], 2000)
    if v2 and (data.get("content") or data.get("embeds")):
        problems.append(("content", "IS_COMPONENTS_V2 messages cannot have content or embeds"))
    problems += embed_problems(data.get("embeds") or [])
    problems += component_problems(data.get("components") or [], v2=v2)
    if creating and not (data.get("content") or data.get("embeds") or data.get("components")
                         or data.get("poll") or has_files or data.get("sticker_ids")):
        problems.append(("content", "Cannot send an empty message (code 50006)"))
    return problems


def modal_problems(data: dict) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    _too_long(problems, "custom_id", data.get("custom_id"), 100, 1)
    _too_long(problems, "title", data.get("title"), 45, 1)
    components = data.get("components") or []
    if not 1 <= len(components) <= 5:
        problems.append(("components", f"a modal needs 1-5 components (got {len(components)})"))
    for i, comp in enumerate(components):
        if comp.get("type") == 18:
            _too_long(problems, f"components.{i}.label", comp.get("label"), 45, 1)
            _too_long(problems, f"components.{i}.description", comp.get("description"), 100)
            if not comp.get("component"):
                problems.append((f"components.{i}", "a label needs a component"))
        elif comp.get("type") == 1:
            if len(comp.get("components") or []) != 1:
                problems.append((f"components.{i}", "a modal action row holds exactly one text input"))
        elif comp.get("type") != 10:
            problems.append((f"components.{i}", f"component type {comp.get('type')} is not allowed in a modal"))
    for i, comp in enumerate(flatten_components(components)):
        if comp.get("type") == 4:
            _too_long(problems, f"text_input[{i}].custom_id", comp.get("custom_id"), 100, 1)
            _too_long(problems, f"text_input[{i}].label", comp.get("label"), 45)
            _too_long(problems, f"text_input[{i}].placeholder", comp.get("placeholder"), 100)
            _too_long(problems, f"text_input[{i}].value", comp.get("value"), 4000)
            for key in ("min_length", "max_length"):
                if comp.get(key) is not None and not 0 <= comp[key] <= 4000:
                    problems.append((f"text_input[{i}].{key}", "must be between 0 and 4000"))
    return problems


def choice_problems(data: dict) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    choices = data.get("choices") or []
    if len(choices) > 25:
        problems.append(("choices", f"must have 25 or fewer choices (got {len(choices)})"))
    for i, choice in enumerate(choices):
        _too_long(problems, f"choices.{i}.name", choice.get("name"), 100, 1)
        if isinstance(choice.get("value"), str):
            _too_long(problems, f"choices.{i}.value", choice["value"], 100)
    return problems


_COMMAND_NAME = re.compile(r"^[-_\w]{1,32}$")


def command_problems(commands: list, *, path: str = "") -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    names = set()
    for i, cmd in enumerate(commands):
        at = f"{path}{i}"
        name = cmd.get("name", "")
        ctype = cmd.get("type", 1)
        if (name, ctype) in names:
            problems.append((f"{at}.name", f"Application command names must be unique ({name!r})"))
        names.add((name, ctype))
        if ctype == 1:
            if not _COMMAND_NAME.match(name) or name != name.lower():
                problems.append((f"{at}.name", f"invalid slash command name {name!r}"))
            _too_long(problems, f"{at}.description", cmd.get("description"), 100, 1)
        problems += option_problems(cmd.get("options") or [], f"{at}.options")
    return problems


def option_problems(options: list, path: str) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    if len(options) > 25:
        problems.append((path, "must have 25 or fewer options"))
    optional_seen = False
    for i, opt in enumerate(options):
        at = f"{path}.{i}"
        if not _COMMAND_NAME.match(opt.get("name", "")) or opt.get("name") != opt.get("name", "").lower():
            problems.append((f"{at}.name", f"invalid option name {opt.get('name')!r}"))
        _too_long(problems, f"{at}.description", opt.get("description"), 100, 1)
        if opt.get("required"):
            if optional_seen:
                problems.append((f"{at}.required", "required options must be placed before non-required options"))
        elif opt.get("type") not in (1, 2):
            optional_seen = True
        if len(opt.get("choices") or []) > 25:
            problems.append((f"{at}.choices", "must have 25 or fewer choices"))
        if opt.get("choices") and opt.get("autocomplete"):
            problems.append((f"{at}.autocomplete", "cannot have both choices and autocomplete"))
        problems += option_problems(opt.get("options") or [], f"{at}.options")
    return problems
