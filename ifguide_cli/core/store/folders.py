"""Folder mechanics of the workspace: atomic swaps, undoing an interrupted one, and one-line errors for paths that
cannot be used (a workspace that is a file, a folder that cannot be created)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.store.manifests import MANIFEST, file_problem, read_manifest

REPLACED, REMOVING = "replaced", "removing"  # .staging/<prefix>-<id>-<pid>: an old copy on its way out


def check_root(root: Path) -> None:
    """A workspace path that cannot be one (a file, a symlink loop or to nothing) is one line, before anything is written.

    A path that does not exist yet is fine: it is created when the first artifact is written.
    """
    hint = "pass --workspace a folder (a new one is created)"
    try:
        st = os.stat(root)
    except FileNotFoundError:
        if os.path.islink(root):
            raise IfguideError(f"workspace {root} is a symbolic link to nothing", hint=hint, exit_code=2) from None
        return
    except OSError as exc:
        raise IfguideError(f"workspace {root} cannot be used ({exc.strerror or exc})", hint=hint, exit_code=2) from None
    if not stat.S_ISDIR(st.st_mode):
        raise IfguideError(f"workspace {root} is a file, not a folder", hint=hint, exit_code=2)


def make_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise IfguideError(f"cannot create folder {path} ({exc.strerror or exc})",
                           hint="pass --workspace a folder you can write to", exit_code=2) from None


def check_output_file(path: str, option: str) -> None:
    """A file the user asked to have written (`--log-file`) can be: checked before any work, so that a wrong folder
    fails in one line rather than once a stage is under way. Nothing is created here."""
    target = Path(path).expanduser()
    if target.is_dir():
        problem = "is a folder"
    elif not target.exists() and not target.parent.is_dir():
        problem = f"cannot be created: folder {target.parent} does not exist"
    elif not os.access(target if target.exists() else target.parent, os.W_OK):
        problem = "cannot be written (permission denied)"
    else:
        return
    raise IfguideError(f"{option} {path} {problem}", hint="pass the path of a file in an existing folder", exit_code=2)


def subfolders(folder: Path) -> list[Path]:
    """The sub-folders of `folder` (none when it is missing or not a folder)."""
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink())
    except OSError:
        return []


@contextmanager
def drop_if_empty(staging: Path) -> Iterator[None]:
    """A build that fails before writing anything (a rejected input) leaves no empty staging folder behind."""
    try:
        yield
    except BaseException:
        with suppress(OSError):
            if not any(p.is_file() for p in staging.rglob("*")):
                shutil.rmtree(staging)
        raise


def exchange(a: Path, b: Path) -> bool:
    """Swap two folders atomically (Linux renameat2 RENAME_EXCHANGE); False where that is not available."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err), str(b))


def restorable(folder: Path, kinds: tuple[str, ...]) -> tuple[str, str] | None:
    """(kind, id) of `.staging/replaced-<id>-<pid>` (or the older `trash-<id>-<pid>`) when it is a complete
    artifact: the old copy of a `--force` rebuild. A half-deleted copy (its files no longer match) is not."""
    prefix, _, rest = folder.name.partition("-")
    aid = rest.split("-")[0]
    if prefix not in (REPLACED, "trash") or len(aid) != 12:
        return None
    try:
        kind = json.loads((folder / MANIFEST).read_text()).get("kind")
    except (OSError, ValueError, AttributeError, RecursionError):
        return None
    manifest, _ = read_manifest(folder, kind, aid) if kind in kinds else (None, None)
    if manifest is None or any(file_problem(folder, rel, meta) for rel, meta in manifest.get("files", {}).items()):
        return None
    return kind, aid
