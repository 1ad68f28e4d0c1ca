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
from ifguide_cli.core.store.artifact_files import KINDS
from ifguide_cli.core.store.manifests import MANIFEST, file_problem, read_manifest

REPLACED, REMOVING = "replaced", "removing"  # .staging/<prefix>-<id>-<pid>: an old copy on its way out
_OLD_COPY_PREFIXES = (REPLACED, REMOVING, "trash")
_TOOL_TEMP_PREFIXES = ("rad-source-",)  # tempfile.mkdtemp folders the tool makes in .staging
_HEX = frozenset("0123456789abcdef")


def is_artifact_id(name: str) -> bool:
    """An artifact id is 12 lowercase hex digits (the start of a sha256): anything else in a kind folder is the user's."""
    return len(name) == 12 and set(name) <= _HEX


def staged_id(name: str, kinds: tuple[str, ...]) -> str | None:
    """The artifact id of a `.staging` entry the tool names (`<kind>-<id>`, `replaced-<id>-<pid>`, `removing-…`,
    `trash-…`); None for anything else, which the tool never made and never touches."""
    prefix, _, rest = name.partition("-")
    if prefix in kinds and is_artifact_id(rest):
        return rest
    aid, _, pid = rest.partition("-")
    if prefix in _OLD_COPY_PREFIXES and is_artifact_id(aid) and pid.isdigit():
        return aid
    return None


def is_tool_staging(name: str, kinds: tuple[str, ...]) -> bool:
    """A `.staging` entry the tool made (a build, an old copy on its way out, a temporary folder)."""
    return staged_id(name, kinds) is not None or name.startswith(_TOOL_TEMP_PREFIXES)


def artifact_folders(folder: Path) -> list[Path]:
    """The entries of a kind folder named like an artifact (12 hex digits), symbolic links included (an artifact
    moved to another disk and linked back is an artifact like any other). Other entries are the user's own."""
    try:
        return sorted(p for p in folder.iterdir() if is_artifact_id(p.name) and (p.is_dir() or p.is_symlink()))
    except OSError:
        return []


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


def writable(root: Path) -> bool:
    """Whether the workspace can be written at all (False on a read-only mount, or without permission)."""
    locks = root / ".locks"
    return os.access(locks if locks.is_dir() else root, os.W_OK)


def not_a_file(path: Path) -> str:
    """Why `path`, where a file was expected, is not one: the words of an error after the path."""
    if not os.path.lexists(path):
        return "does not exist"
    if path.is_dir():
        return "is a folder, not a file"
    if not path.exists():
        return "is a symbolic link to nothing"
    return "is not a regular file (a device, pipe or socket)"


def make_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise IfguideError(f"cannot create folder {path} ({exc.strerror or exc})",
                           hint="pass --workspace a folder you can write to", exit_code=2) from None


def check_output_file(path: str, option: str, root: Path | None = None) -> None:
    """A file the user asked to have written (`--log-file`, `--html`) can be: checked before any work, so that a wrong
    path fails in one line rather than once a stage is under way. Nothing is created here.

    Refused: a folder, a missing folder, no permission, anything but a regular file (a FIFO would block the command
    while it holds the workspace locks; a device is not a file to replace), and a path inside workspace `root`'s
    artifact folders, staging or locks (writing there would damage a stored artifact).
    """
    target = Path(path).expanduser()
    inside = artifact_holding(root, target) if root is not None else None
    if inside is not None:
        raise IfguideError(f"{option} {path} is inside {inside} of workspace {root}: writing there would damage what "
                           "is stored", hint="pass a path outside the workspace's artifact folders", exit_code=2)
    if target.is_dir():
        problem = "is a folder"
    elif target.exists() and not target.is_file():
        problem = "is not a regular file (a pipe, socket or device)"
    elif not target.exists() and not target.parent.is_dir():
        problem = f"cannot be created: folder {target.parent} does not exist"
    elif not os.access(target if target.exists() else target.parent, os.W_OK):
        problem = "cannot be written (permission denied)"
    else:
        return
    raise IfguideError(f"{option} {path} {problem}", hint="pass the path of a file in an existing folder", exit_code=2)


def artifact_holding(root: Path, target: Path) -> str | None:
    """Which stored folder of workspace `root` (`masks/<id>`, `.staging`, `.locks`) `target` would be written inside,
    following symbolic links (an artifact folder linked to another disk included); None when it is outside them."""
    where = _real(target)
    base = _real(root)
    guarded = [(f"{kind}/{entry.name}", entry) for kind in KINDS for entry in artifact_folders(root / kind)]
    guarded += [(name, root / name) for name in (".staging", ".locks")]
    for label, folder in guarded:
        real = _real(folder)
        if where == real or real in where.parents or (base / label) in where.parents:
            return label
    return None


def _real(path: Path) -> Path:
    try:
        return Path(os.path.realpath(path.expanduser()))
    except (OSError, ValueError):
        return Path(os.path.abspath(path))


def discard(path: Path, *, follow_link: bool) -> None:
    """Delete a folder already moved out of the way; for a symbolic link (an artifact kept on another disk), the link
    and, with `follow_link`, the folder it points to."""
    if not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
        return
    if follow_link and path.is_dir():
        shutil.rmtree(os.path.realpath(path), ignore_errors=True)
    with suppress(OSError):
        path.unlink()


def subfolders(folder: Path) -> list[Path]:
    """The sub-folders of `folder` (none when it is missing or not a folder)."""
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink())
    except OSError:
        return []


@contextmanager
def drop_if_empty(staging: Path) -> Iterator[None]:
    """A build that fails before writing anything (a rejected input) leaves no staging folder behind: nothing in it
    but folders and empty files (an output opened before the input was found wrong) is nothing to resume."""
    try:
        yield
    except BaseException:
        with suppress(OSError):
            if not any(p.is_file() and p.stat().st_size > 0 for p in staging.rglob("*")):
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
    if prefix not in (REPLACED, "trash") or not is_artifact_id(aid):
        return None
    try:
        kind = json.loads((folder / MANIFEST).read_text()).get("kind")
    except (OSError, ValueError, AttributeError, RecursionError):
        return None
    manifest, _ = read_manifest(folder, kind, aid) if kind in kinds else (None, None)
    if manifest is None or any(file_problem(folder, rel, meta) for rel, meta in manifest.get("files", {}).items()):
        return None
    return kind, aid
