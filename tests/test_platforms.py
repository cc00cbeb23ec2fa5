"""Linux, macOS and Windows behaviour of `platforms.py`, exercised on the machine the tests run on.

"""
from __future__ import annotations

import asyncio
import os
import signal
import sys

import pytest

import platforms
from platforms import LINUX, MACOS, OTHER_POSIX, WINDOWS

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
