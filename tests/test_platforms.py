"""Linux, macOS and Windows behaviour of `platforms.py`, exercised on the machine the tests run on.

The Windows and macOS behaviours are not simulated by mocks of their results: a child process
switches `platforms.CURRENT` to them, loses what the platform lacks (Windows: os.geteuid, pwd,
chown, loop.add_signal_handler), starts a real embedded PostgreSQL, connects, and shuts down
when a signal arrives the way that platform delivers it.
"""
from __future__ import annotations

import asyncio
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import platforms
from platforms import LINUX, MACOS, OTHER_POSIX, WINDOWS

ROOT = Path(__file__).resolve().parent.parent
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
posix_only = pytest.mark.skipif(os.name != "posix", reason="runs the other platforms' code on a POSIX host")


def test_the_platform_is_detected_from_sys_platform_and_os_name():
    assert platforms.detect("win32", "nt") is WINDOWS
    assert platforms.detect("darwin", "posix") is MACOS
    assert platforms.detect("linux", "posix") is LINUX
    assert platforms.detect("freebsd14", "posix") is OTHER_POSIX
    assert platforms.current() is platforms.detect()


def test_windows_behaviour_needs_no_posix_call(monkeypatch, tmp_path):
    for name in ("geteuid", "getegid", "getuid", "chown", "lchown", "kill"):
        monkeypatch.delattr(os, name, raising=False)
    monkeypatch.setitem(sys.modules, "pwd", None)  # `import pwd` fails, as on Windows
    assert WINDOWS.is_root() is False
    assert WINDOWS.ids() is None and WINDOWS.unprivileged_user() is None
    assert WINDOWS.user_namespace_prefix(1, 1) is None and WINDOWS.owner(tmp_path) is None
    assert WINDOWS.process_alive(os.getpid()) is None  # the caller asks pg_ctl instead
    assert WINDOWS.interrupt(12345) is False            # ... and stops with pg_ctl
    WINDOWS.chown(tmp_path, 1, 1, recursive=True)       # nothing to do
    f = tmp_path / "secret"
    f.write_text("x")
    before = f.stat().st_mode
    WINDOWS.restrict_to_owner(f)                         # the profile's ACL protects it
    assert f.stat().st_mode == before


@posix_only
def test_posix_behaviour(tmp_path):
    for platform in (LINUX, MACOS):
        assert platform.is_root() == IS_ROOT
        assert platform.ids() == (os.geteuid(), os.getegid())
        f = tmp_path / f"secret-{platform.name}"
        f.write_text("x")
        os.chmod(f, 0o644)
        platform.restrict_to_owner(f)
        assert f.stat().st_mode & 0o777 == 0o600
        platform.restrict_to_owner(tmp_path)
        assert tmp_path.stat().st_mode & 0o777 == 0o700
        assert platform.process_alive(os.getpid()) is True
    assert MACOS.user_namespace_prefix(65534, 65534) is None  # macOS has no user namespaces
    assert LINUX.max_socket_path == 107 and MACOS.max_socket_path == 103


# -- shutting down on a signal ------------------------------------------------------------

async def test_on_windows_sigint_reaches_the_loop_without_add_signal_handler(monkeypatch):
    loop = asyncio.get_running_loop()

    def unavailable(*args, **kwargs):  # what Windows' event loops do
        raise NotImplementedError
    monkeypatch.setattr(loop, "add_signal_handler", unavailable)
    monkeypatch.setattr(loop, "remove_signal_handler", unavailable)
    original = signal.getsignal(signal.SIGINT)
    received: list[str] = []
    done = asyncio.Event()
    remove = WINDOWS.install_shutdown_handlers(loop, lambda name: (received.append(name), done.set()))
    try:
        assert signal.getsignal(signal.SIGINT) is not original
        os.kill(os.getpid(), signal.SIGINT) if os.name == "posix" else signal.raise_signal(signal.SIGINT)
        await asyncio.wait_for(done.wait(), 10)
    finally:
        remove()
    assert received == ["SIGINT"]
    assert signal.getsignal(signal.SIGINT) is original


@posix_only
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_on_posix_sigterm_and_sigint_reach_the_loop(sig):
    loop = asyncio.get_running_loop()
    received: list[str] = []
    done = asyncio.Event()
    remove = LINUX.install_shutdown_handlers(loop, lambda name: (received.append(name), done.set()))
    try:
        os.kill(os.getpid(), sig)
        await asyncio.wait_for(done.wait(), 10)
    finally:
        remove()
    assert received == [sig.name]
    assert signal.getsignal(sig) in (signal.SIG_DFL, signal.default_int_handler)


# -- a real embedded server with each platform's behaviour --------------------------------

BECOME = r"""
import asyncio, os, sys
sys.path.insert(0, sys.argv[3])
which, data_dir = sys.argv[1], sys.argv[2]
if which == "windows":  # take away what Windows lacks
    for name in ("geteuid", "getegid", "getuid", "getgid", "chown", "lchown", "fchown"):
        if hasattr(os, name):
            delattr(os, name)
    sys.modules["pwd"] = sys.modules["grp"] = None
    import asyncio.unix_events
    def add_signal_handler(self, *args, **kwargs):
        raise NotImplementedError  # as ProactorEventLoop / SelectorEventLoop on Windows
    asyncio.unix_events._UnixSelectorEventLoop.add_signal_handler = add_signal_handler
import platforms
platforms.CURRENT = getattr(platforms, which.upper())
"""

CHILD = BECOME + r"""
import asyncpg
from local_postgres import LocalPostgres

async def main():
    server = LocalPostgres(data_dir)
    url = await asyncio.to_thread(server.start)
    con = await asyncpg.connect(url)
    address = await con.fetchval("SELECT host(inet_server_addr())")  # NULL over a Unix socket
    await con.close()
    loop = asyncio.get_running_loop()
    received, stop = [], asyncio.Event()
    remove = platforms.current().install_shutdown_handlers(
        loop, lambda name: (received.append(name), stop.set()))
    print("READY", address, url, flush=True)
    await asyncio.wait_for(stop.wait(), 120)
    remove()
    await asyncio.to_thread(server.stop)  # what bot.py does once closed
    print("STOPPED", received[0], flush=True)

asyncio.run(main())
"""


def unprivileged() -> list[str]:
    """A prefix running a command as a normal user: as root, in a user namespace."""
    if not IS_ROOT:
        return []
    prefix = ["unshare", "--user", "--map-user=65534", "--map-group=65534", "--"]
    if not shutil.which("unshare") or subprocess.run([*prefix, "true"], capture_output=True).returncode:
        pytest.skip("root without user namespaces: no way to run the server as a normal user here")
    return prefix


def read_line(process: subprocess.Popen, prefix: str, seconds: float, seen: list[str]) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.2)
        if ready:
            line = process.stdout.readline()
            if not line:
                break
            seen.append(line)
            if line.startswith(prefix):
                return line.strip()
        elif process.poll() is not None:
            break
    process.kill()
    raise AssertionError(f"no {prefix} line from the child:\n" + "".join(seen) + process.stdout.read())


def live_postmaster(data_dir: Path) -> bool:
    try:
        pid = int((data_dir / "postmaster.pid").read_text().split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return False
    return True


@posix_only
@pytest.mark.parametrize("which, sig", [("windows", signal.SIGINT), ("macos", signal.SIGTERM),
                                        ("macos", signal.SIGINT), ("linux", signal.SIGTERM)])
def test_a_real_embedded_server_with_each_platforms_behaviour(which, sig):
    work = Path(tempfile.mkdtemp(prefix="xpbot-platform-"))
    data_dir = work / "x y" / "My Data"  # spaces, as in "C:\Users\Jo Doe\My Documents"
    process = subprocess.Popen([*unprivileged(), sys.executable, "-c", CHILD, which, str(data_dir), str(ROOT)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen: list[str] = []
    try:
        _, address, url = read_line(process, "READY", 120, seen).split(" ", 2)
        if which == "windows":  # TCP on 127.0.0.1 with the password file, no Unix socket
            assert address == "127.0.0.1"
            assert url.startswith("postgresql://postgres@127.0.0.1:") and "host=" not in url
        else:                   # the Unix socket in the data folder, no TCP
            assert address == "None"
            assert url.startswith("postgresql://postgres@/postgres?host=")
        assert "passfile=" in url and live_postmaster(data_dir)
        os.kill(process.pid, sig)
        assert read_line(process, "STOPPED", 90, seen) == f"STOPPED {sig.name}"
        assert process.wait(30) == 0, "".join(seen)
        assert not live_postmaster(data_dir), "the server outlived the shutdown"
    finally:
        if process.poll() is None:
            process.kill()
        if live_postmaster(data_dir):
            os.kill(int((data_dir / "postmaster.pid").read_text().split()[0]), signal.SIGINT)
            time.sleep(2)
        shutil.rmtree(work, ignore_errors=True)


BOT_CHECK = BECOME + r"""
import runpy
sys.argv = [os.path.join(sys.argv[3], "bot.py"), "--check"]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@posix_only
@pytest.mark.parametrize("which", ["windows", "macos"])
def test_bot_check_on_the_embedded_database_with_each_platforms_behaviour(which):
    work = Path(tempfile.mkdtemp(prefix="xpbot-platform-"))
    data_dir = work / "x y" / "bot data"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "TEST_DATABASE_URL")}
    env.update(DISCORD_BOT_TOKEN="dummy-token-for-tests", GUILD_ID="123456789012345678", ENV="dev",
               XPBOT_DATA_DIR=str(data_dir))
    try:
        done = subprocess.run([*unprivileged(), sys.executable, "-c", BOT_CHECK, which, str(data_dir), str(ROOT)],
                              capture_output=True, text=True, timeout=180, env=env, cwd=work)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Configuration OK" in done.stdout
        assert not live_postmaster(data_dir), "bot.py --check left the embedded server running"
    finally:
        shutil.rmtree(work, ignore_errors=True)


WINDOWS_BOT = r"""
import os, sys
for name in ("geteuid", "getegid", "getuid", "getgid", "chown", "lchown", "fchown"):
    if hasattr(os, name):
        delattr(os, name)
sys.modules["pwd"] = sys.modules["grp"] = None
import asyncio.unix_events
def add_signal_handler(self, *args, **kwargs):
    raise NotImplementedError
asyncio.unix_events._UnixSelectorEventLoop.add_signal_handler = add_signal_handler
import platforms
platforms.CURRENT = platforms.WINDOWS
import runpy
sys.argv[0] = os.path.join(ROOT, "bot.py")
runpy.run_path(sys.argv[0], run_name="__main__")
"""

needs_wiring = pytest.mark.skipif("install_shutdown_handlers" not in (ROOT / "bot.py").read_text(encoding="utf-8"),
                                  reason="bot.py does not take its shutdown signals from platforms.py yet")


@posix_only
@needs_wiring
async def test_the_bot_shuts_down_cleanly_on_ctrl_c_with_windows_behaviour(fake_discord, database_url, tmp_path):
    from fake_discord import bot_process
    wrapper = tmp_path / "as_windows.py"
    wrapper.write_text(f"ROOT = {str(ROOT)!r}\n" + WINDOWS_BOT)
    env = {"DISCORD_BOT_TOKEN": "dummy-token-for-tests", "ENV": "prod", "DATABASE_URL": database_url,
           "XPBOT_SPOOL": str(tmp_path / "spool.jsonl")}
    async with bot_process(fake_discord, script=str(wrapper), env=env) as bot:
        await bot.wait_for_output("is online")
        assert await bot.stop(signal.SIGINT) == 0, bot.output
    assert "SIGINT received: shutting down" in bot.output
    assert "Traceback" not in bot.output
