"""What differs between Linux, macOS and Windows, in one place.

Everything POSIX-only the bot and the embedded PostgreSQL need (effective user ids, `pwd`,
chmod/chown, signalling a process, `loop.add_signal_handler`, user namespaces, Unix
sockets) goes through a `Platform`. `current()` is the one for this machine; the tests
swap in `WINDOWS` or `MACOS` to run those code paths on Linux.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


@dataclass(frozen=True)
class Platform:
    name: str
    posix: bool              # effective user ids, chmod/chown, os.kill, loop.add_signal_handler
    unix_sockets: bool       # the embedded PostgreSQL can listen on a Unix socket
    user_namespaces: bool    # `unshare --user` can run the server as root's own files' owner
    max_socket_path: int     # longest Unix socket path (sun_path less its NUL)

    # -- who we are -------------------------------------------------------------------------

    def is_root(self) -> bool:
        """True for uid 0 on POSIX. Never on Windows: there pg_ctl itself drops administrator
        rights (a restricted token), so the server can always be started as we are."""
        return self.posix and os.geteuid() == 0

    def ids(self) -> tuple[int, int] | None:
        """(effective uid, gid), or None where files have no numeric owner (Windows)."""
        return (os.geteuid(), os.getegid()) if self.posix else None

    def unprivileged_user(self) -> tuple[int, int] | None:
        """(uid, gid) of `nobody`: who runs the server as root where user namespaces are missing."""
        if not self.posix:
            return None
        import pwd
        try:
            entry = pwd.getpwnam("nobody")
        except KeyError:
            return None
        return entry.pw_uid, entry.pw_gid

    def user_namespace_prefix(self, uid: int, gid: int) -> list[str] | None:
        """A command prefix running a program in a new user namespace as `uid`/`gid` there,
        mapped to the caller outside: as root, files stay root's and nothing changes owner.
        None where there are no user namespaces or no `unshare` with --map-user (util-linux
        2.36+; the caller checks that it actually works here)."""
        if not self.user_namespaces:
            return None
        exe = shutil.which("unshare")
        if not exe:
            return None
        return [exe, "--user", f"--map-user={uid}", f"--map-group={gid}", "--"]

    # -- files ------------------------------------------------------------------------------

    def restrict_to_owner(self, path: str | os.PathLike) -> None:
        """Make a file (0600) or folder (0700) reachable by its owner only. On Windows nothing
        to do: a folder under the user's profile is private by its inherited ACL."""
        if self.posix:
            os.chmod(path, 0o700 if os.path.isdir(path) else 0o600)

    def owner(self, path: str | os.PathLike) -> tuple[int, int] | None:
        if not self.posix:
            return None
        st = os.lstat(path)
        return st.st_uid, st.st_gid

    def chown(self, path: str | os.PathLike, uid: int, gid: int, *, recursive: bool = False) -> None:
        """Give `path` (and with `recursive` everything below it) to uid/gid. POSIX only."""
        if not self.posix:
            return
        os.lchown(path, uid, gid)
        if recursive and os.path.isdir(path) and not os.path.islink(path):
            for folder, dirs, files in os.walk(path):
                for name in dirs + files:
                    os.lchown(os.path.join(folder, name), uid, gid)

    def can_traverse(self, path: str | os.PathLike, uid: int, gid: int) -> bool:
        """Whether user uid/gid can reach things inside folder `path` (its x permission bit)."""
        if not self.posix:
            return True
        st = os.stat(path)
        if st.st_uid == uid:
            return bool(st.st_mode & 0o100)
        if st.st_gid == gid:
            return bool(st.st_mode & 0o010)
        return bool(st.st_mode & 0o001)

    # -- processes --------------------------------------------------------------------------

    def process_alive(self, pid: int) -> bool | None:
        """Whether process `pid` exists; None where we cannot tell cheaply (Windows: there
        `os.kill(pid, 0)` would send CTRL_C_EVENT). Ask `pg_ctl status` then."""
        if not self.posix:
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # alive, another user's
            return True
        except OSError:
            return False
        return True

    def interrupt(self, pid: int) -> bool:
        """Send SIGINT (PostgreSQL's fast shutdown). False where signals are not POSIX ones:
        use `pg_ctl stop` instead."""
        if not self.posix:
            return False
        os.kill(pid, signal.SIGINT)
        return True

    # -- shutting down on a signal ---------------------------------------------------------

    def install_shutdown_handlers(self, loop: asyncio.AbstractEventLoop,
                                  on_signal: Callable[[str], object]) -> Callable[[], None]:
        """Call `on_signal(name)` in `loop` when asked to stop: SIGTERM/SIGINT on POSIX
        (Docker, Fly, systemd, Ctrl+C); Ctrl+C (SIGINT) and Ctrl+Break (SIGBREAK) on Windows,
        whose event loops lack add_signal_handler. Call from the main
        thread. Returns a function that removes the handlers again."""
        if self.posix:
            posix_signals = (signal.SIGTERM, signal.SIGINT)
            for sig in posix_signals:
                loop.add_signal_handler(sig, on_signal, sig.name)

            def remove_posix() -> None:
                for sig in posix_signals:
                    loop.remove_signal_handler(sig)
            return remove_posix

        previous: dict[int, object] = {}
        for name in ("SIGINT", "SIGBREAK"):
            sig = getattr(signal, name, None)
            if sig is None:  # SIGBREAK exists on Windows only
                continue

            def handler(signum, frame, name=name):  # runs in the main thread, between bytecodes
                loop.call_soon_threadsafe(on_signal, name)
            previous[sig] = signal.signal(sig, handler)

        def remove_windows() -> None:
            for sig, old in previous.items():
                signal.signal(sig, old)
        return remove_windows


LINUX = Platform("linux", posix=True, unix_sockets=True, user_namespaces=True, max_socket_path=107)
MACOS = Platform("macos", posix=True, unix_sockets=True, user_namespaces=False, max_socket_path=103)
WINDOWS = Platform("windows", posix=False, unix_sockets=False, user_namespaces=False, max_socket_path=0)
OTHER_POSIX = Platform("posix", posix=True, unix_sockets=True, user_namespaces=False, max_socket_path=103)


def detect(sys_platform: str | None = None, os_name: str | None = None) -> Platform:
    sys_platform = sys.platform if sys_platform is None else sys_platform
    os_name = os.name if os_name is None else os_name
    if os_name == "nt" or sys_platform == "win32":
        return WINDOWS
    if sys_platform.startswith("linux"):
        return LINUX
    if sys_platform == "darwin":
        return MACOS
    return OTHER_POSIX


CURRENT: Platform = detect()


def current() -> Platform:
    """This machine's platform (tests may set `platforms.CURRENT` to another)."""
    return CURRENT


def short_temp_root(platform: Platform) -> Path:
    """A temporary folder short enough for Unix socket paths."""
    import tempfile
    base = Path(tempfile.gettempdir())
    if platform.posix and len(str(base)) > 40 and Path("/tmp").is_dir():
        return Path("/tmp")
    return base
