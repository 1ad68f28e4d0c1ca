"""User-facing errors: one line saying what is wrong and what to do."""

from __future__ import annotations

import errno
import os
import re


class IfguideError(Exception):
    """An error caused by the user's input or environment, shown as one line (no traceback).

    `hint` tells the user what to do; `exit_code` follows the shell convention
    (1 = failed, 2 = bad usage / not available).
    """

    def __init__(self, message: str, hint: str | None = None, exit_code: int = 1):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code

    def one_line(self) -> str:
        return f"{self.message} — {self.hint}" if self.hint else self.message


class ArtifactNotFound(IfguideError):
    pass


class WrongArtifactKind(IfguideError):
    pass


class OfflineResourceMissing(IfguideError):
    """A model/dataset/classifier that must come from the hub is not available locally."""


_sigint_seen = False


def on_sigint(signum, frame) -> None:
    """The CLI's SIGINT handler: remember the Ctrl-C, then interrupt as Python does.

    Remembering matters because a KeyboardInterrupt that lands inside a library's import can be swallowed or come
    out as another error (`ImportError: cannot load module more than once`); the CLI then still reports an
    interruption (exit 130), and no stage starts building after it.
    """
    global _sigint_seen
    _sigint_seen = True
    raise KeyboardInterrupt


def interrupted() -> bool:
    """Whether Ctrl-C was pressed during this command (only known where the CLI installed `on_sigint`)."""
    return _sigint_seen


def stop_if_interrupted() -> None:
    """A point where work would start: a Ctrl-C that a library swallowed stops the command here."""
    if _sigint_seen:
        raise KeyboardInterrupt


_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_DENIED = (errno.EACCES, errno.EPERM, errno.EROFS)


def from_environment(exc: BaseException) -> IfguideError | None:
    """The one-line error for a failure of the machine rather than of the code (a full disk, a file that cannot be
    opened, memory); None for anything else, which is a bug."""
    if isinstance(exc, MemoryError):
        return IfguideError("out of memory", hint="use smaller batches or fewer examples, or a machine with more memory")
    os_error = exc if isinstance(exc, OSError) else _wrapped_os_error(exc)
    if os_error is None or isinstance(os_error, (BlockingIOError, ChildProcessError, ConnectionError)):
        return None
    where = " ".join(f"{p}" for p in (os_error.filename, os_error.filename2) if p is not None)
    what = (os_error.strerror or str(os_error)).lower()
    if os_error.errno in _FULL:
        return IfguideError(f"cannot write {where or 'a file'}: {what}", hint="free disk space (or raise the file-size "
                            "limit) and run again; an unfinished stage resumes where it stopped")
    if os_error.errno in _DENIED:
        return IfguideError(f"cannot access {where or 'a file'}: {what}", hint="check its permissions, or use another path")
    return IfguideError(f"{where}: {what}", hint="check the path") if where else None


def check_range(name: str, value: float, low: float | None = None, high: float | None = None, *,
                low_open: bool = False, high_open: bool = False) -> float:
    """The one range check of every numeric option (config fields and computed limits alike): `value`, or a
    one-line error naming the option, the interval and the value."""
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        lo = "(-inf" if low is None else ("(" if low_open else "[") + f"{low:g}"
        hi = "inf)" if high is None else f"{high:g}" + (")" if high_open else "]")
        raise IfguideError(f"{name} must be in {lo}, {hi}; got {value!r}", exit_code=2)
    return value


def _wrapped_os_error(exc: BaseException) -> OSError | None:
    """The OSError inside another library's error: safetensors reports `I/O error: … (os error 28)`, torch.save
    `PytorchStreamWriter failed writing file …: file write failed` or, when the disk fills between two records of the
    archive, `unexpected pos N vs M`."""
    text = str(exc)
    found = re.search(r"\(os error (\d+)\)", text)
    if found:
        code = int(found.group(1))
        return OSError(code, os.strerror(code))
    if "file write failed" in text or "failed writing file" in text or "unexpected pos" in text:
        return OSError(errno.ENOSPC, "write failed (is the disk full?)")
    return None
