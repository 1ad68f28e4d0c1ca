"""Per-artifact locks: shared while a stage reads an artifact, exclusive while one builds, rebuilds or removes it.

`filelock` has no shared locks, so these are `flock(2)` locks on `ROOT/.locks/<id>.lock` (Linux, macOS). Every lock
a process holds lives in one table: a process that already reads an artifact can still rebuild or remove it (the
lock is converted, not taken twice, which would deadlock with itself). A lock file is deleted by its last holder;
a process that opened a file just deleted retries on the new one, so two holders never hold different files.
Where `fcntl` is missing (Windows) exclusive locks fall back to `filelock` and shared locks are not taken.

`holders(path)` names the processes holding a lock (from /proc/locks), so a refusal can say which command is in
the way.
"""

from __future__ import annotations

import atexit
import os
import time
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

fcntl: ModuleType | None
try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

_POLL_S = 0.05


class LockBusy(Exception):
    """The lock is held by another process (in a conflicting mode) past the time we were willing to wait."""

    def __init__(self, path: Path):
        super().__init__(str(path))
        self.path = path


@dataclass
class _Held:
    handle: Any  # an fd (flock) or a filelock.FileLock
    shared: int = 0
    exclusive: int = 0


_TABLE: dict[str, _Held] = {}
_PID = os.getpid()  # a forked child shares the parent's locks: it must never unlock or delete them


def acquire(path: Path, *, exclusive: bool, wait: float = 0.0) -> None:
    """Take (or convert to) the lock; raises LockBusy when another process holds it past `wait` seconds."""
    key = str(path)
    held = _TABLE.get(key)
    if held is None:
        held = _Held(_open_locked(path, exclusive, wait))
        _TABLE[key] = held
    elif exclusive and not held.exclusive and fcntl is not None:
        try:
            _flock(held.handle, exclusive=True, wait=wait)
        except LockBusy:
            with suppress(LockBusy):  # a failed conversion may have dropped the shared lock: take it back
                _flock(held.handle, exclusive=False, wait=1.0)
            raise
    if exclusive:
        held.exclusive += 1
    else:
        held.shared += 1


def release(path: Path, *, exclusive: bool) -> None:
    """Give one hold back; the last one unlocks and deletes the lock file (when nobody else waits on it)."""
    key = str(path)
    held = _TABLE.get(key)
    if held is None:
        return
    if exclusive:
        held.exclusive = max(0, held.exclusive - 1)
    else:
        held.shared = max(0, held.shared - 1)
    if held.exclusive or held.shared:
        if not held.exclusive and fcntl is not None:
            fcntl.flock(held.handle, fcntl.LOCK_SH)  # back to reading only
        return
    del _TABLE[key]
    _close(path, held.handle)


def release_all() -> None:
    """Every lock this process holds: at the end of a command (also when run in-process, e.g. by tests) and at exit,
    so that lock files do not pile up."""
    if os.getpid() != _PID:
        _TABLE.clear()
        return
    for key in list(_TABLE):
        held = _TABLE.pop(key)
        _close(Path(key), held.handle)


atexit.register(release_all)


@contextmanager
def holding(path: Path, *, exclusive: bool, wait: float = 0.0):
    acquire(path, exclusive=exclusive, wait=wait)
    try:
        yield
    finally:
        release(path, exclusive=exclusive)


def is_held(path: Path) -> bool:
    return str(path) in _TABLE


# ---- flock mechanics -------------------------------------------------------------------------
def _open_locked(path: Path, exclusive: bool, wait: float):
    """An open, locked fd on the file now at `path` (retrying when the file was deleted and recreated meanwhile)."""
    if fcntl is None:  # pragma: no cover - Windows
        return _filelock(path, exclusive, wait)
    deadline = time.monotonic() + wait
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            _flock(fd, exclusive=exclusive, wait=max(0.0, deadline - time.monotonic()))
        except BaseException:
            os.close(fd)
            raise
        if _same_file(fd, path):
            return fd
        os.close(fd)  # its last holder deleted it after we opened it: lock the new one


def _flock(fd: int, *, exclusive: bool, wait: float) -> None:
    assert fcntl is not None, "called only where fcntl exists"
    mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise LockBusy(Path(f"/proc/self/fd/{fd}")) from None
            time.sleep(_POLL_S)


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


def _close(path: Path, handle) -> None:
    """Unlock; the last holder (an exclusive lock is then free to take) deletes the file first."""
    if fcntl is None:  # pragma: no cover - Windows
        handle.release()
        return
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if _same_file(handle, path):
            with suppress(OSError):
                os.unlink(path)
    except OSError:
        pass  # someone else holds it too: they delete it
    finally:
        os.close(handle)


def _filelock(path: Path, exclusive: bool, wait: float):  # pragma: no cover - Windows
    from filelock import FileLock, Timeout

    lock = FileLock(str(path))
    if exclusive:
        try:
            lock.acquire(timeout=wait)
        except Timeout:
            raise LockBusy(path) from None
    return lock


# ---- who holds a lock --------------------------------------------------------------------------
def holders(path: Path) -> list[tuple[int, bool]]:
    """(pid, exclusive) of every other process holding a flock on `path` (empty where /proc/locks is unreadable)."""
    try:
        st = os.stat(path)
        table = Path("/proc/locks").read_text()
    except OSError:
        return []
    found = []
    for line in table.splitlines():
        fields = line.split()
        if len(fields) < 6 or fields[1] != "FLOCK":
            continue  # POSIX locks, and "->" lines of blocked waiters
        with suppress(ValueError):
            pid, inode = int(fields[4]), int(fields[5].rsplit(":", 1)[1])
            if inode == st.st_ino and pid != os.getpid():
                found.append((pid, fields[3] == "WRITE"))
    return found


def describe_process(pid: int) -> str:
    """`process 1234 (ifguide finetune 8cac… --data tiny)`, or just `process 1234`."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode("utf-8", "replace").split("\0")
    except OSError:
        return f"process {pid}"
    command = _ifguide_command([a for a in argv if a])
    return f"process {pid} ({command})" if command else f"process {pid}"


def _ifguide_command(argv: list[str]) -> str:
    """The ifguide command line without the interpreter and global options (or any other program's command line),
    at most ~80 characters."""
    start = next((i + 1 for i, a in enumerate(argv) if a.endswith(("ifguide_cli", "ifguide"))), None)
    if start is None:
        words, start = [Path(argv[0]).name] if argv else [], 1
    else:
        words = ["ifguide"]
    skip = False
    for arg in argv[start:]:
        if skip:
            skip = False
        elif arg in ("--workspace", "-w"):
            skip = True
        elif not arg.startswith("--workspace=") and arg not in ("--json", "--quiet", "-q", "--debug"):
            words.append(arg)
    text = " ".join(words)
    text = "".join(c for c in text if c.isprintable())
    return text if len(text) <= 80 else text[:79] + "…"
