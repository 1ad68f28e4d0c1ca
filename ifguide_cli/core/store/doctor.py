"""`ifguide workspace doctor`: find what is wrong in a workspace, explain it, repair what can be repaired.

What it looks at:
- artifacts whose manifest cannot be used (damaged), and artifacts whose files no longer match their manifest
  (size and quick checksum; the full sha256 with `verify`) — removed only when the user confirms, and alone: what was
  made from them is intact and stays (its lineage incomplete) unless `recursive`; every artifact a removal deletes is
  listed in its finding before anything is removed;
- a folder without a manifest, or a dead link, named like an artifact: explained, never removed (nothing says it is
  one); anything else in a kind folder or in `.staging` that the tool did not name: the user's, left alone;
- artifacts whose parent is gone (explained: they still work, their lineage is incomplete);
- `.staging`: the old copy of a `--force` rebuild that was cut between its two renames (put back), leftovers of
  finished swaps and removals (deleted), interrupted builds (kept unless the user confirms: a rerun resumes them);
- `.locks`: lock files nobody holds (deleted).

Nothing that is in use by a running command (its lock is held) is touched.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.store import folders, locks
from ifguide_cli.core.store.artifact_files import KINDS
from ifguide_cli.core.store.manifests import file_problem
from ifguide_cli.core.store.workspace import Artifact, Damaged, Workspace, kind_noun


@dataclass
class Finding:
    """One problem: what and where, why, and what the doctor does about it."""

    problem: str  # damaged | mismatch | missing-parent | lost-swap | leftover | interrupted | stale-lock | foreign
    path: str  # relative to the workspace
    detail: str
    action: str | None = None  # restore | delete | remove (asks first) | None (explained only)
    outcome: str = ""
    removes: list[str] = field(default_factory=list)  # "kind id" of every artifact a `remove` deletes, itself first

    @property
    def asks(self) -> bool:
        return self.action == "remove"

    def to_dict(self) -> dict:
        return asdict(self)


def examine(ws: Workspace, *, full: bool = False, recursive: bool = False) -> list[Finding]:
    """Every problem found, without changing anything; a removal with `recursive` also takes what was made from it."""
    ws._recovered = True  # the doctor reports a lost swap itself instead of letting a read repair it silently
    findings = _staging(ws) + _locks(ws) + _foreign(ws)
    for item in ws.damaged():
        if item.removable:
            findings.append(_removal(ws, "damaged", item, f"{_what(item)} is damaged: {item.reason}", recursive))
        else:
            findings.append(Finding("damaged", _rel(ws, item.path), f"{_what(item)} is damaged: {item.reason}; not "
                                    "removed, as nothing says it is an artifact (delete it yourself if it is one)"))
    arts = ws.list()
    ids = {a.id for a in arts} | {d.id for d in ws.damaged()}  # a damaged parent is reported as such
    for art in arts:
        bad = [p for rel, meta in art.manifest.get("files", {}).items() if (p := file_problem(art.path, rel, meta, full=full))]
        if bad:
            findings.append(_removal(ws, "mismatch", art, f"{_what(art)}: {'; '.join(bad[:3])}", recursive))
        for pid in art.parents:
            if pid not in ids:
                findings.append(Finding("missing-parent", _rel(ws, art.path),
                                        f"{_what(art)} was made from {pid}, which is gone (it still works; its lineage is "
                                        "incomplete)"))
    return findings


def repair(ws: Workspace, findings: list[Finding], confirm: Callable[[Finding], bool]) -> list[Finding]:
    """Do each finding's action (asking `confirm` before removing anything); records the outcome in each."""
    for f in findings:
        if f.action is None:
            f.outcome = "explained"
        elif f.asks and not confirm(f):
            f.outcome = "kept"
        else:
            try:
                _ACTIONS[f.action](ws, f)
                f.outcome = {"restore": "restored", "delete": "deleted", "remove": "removed"}[f.action]
            except (IfguideError, OSError) as exc:
                f.outcome = f"failed: {exc.one_line() if isinstance(exc, IfguideError) else exc}"
    return findings


# ---- what is looked at -------------------------------------------------------------------------
def _removal(ws: Workspace, problem: str, item: Artifact | Damaged, detail: str, recursive: bool) -> Finding:
    """A finding that removes `item` (and, with `recursive`, what was made from it): every artifact it deletes is
    named, and what it keeps is said."""
    doomed = ws.doomed(item, recursive=recursive)[::-1]  # the item itself first
    kept = [] if recursive else ws._descendants(ws.children(item))
    if len(doomed) > 1:
        detail += f"; removing it also removes what was made from it: {_names(doomed[1:])}"
    if kept:
        detail += f"; made from it and kept (intact; --recursive removes them too): {_names(kept)}"
    return Finding(problem, _rel(ws, item.path), detail, "remove", removes=[f"{kind_noun(i.kind)} {i.id}" for i in doomed])


def _names(items: list) -> str:
    return ", ".join(f"{kind_noun(i.kind)} {i.id}" for i in items)


def _foreign(ws: Workspace) -> list[Finding]:
    """What is in a kind folder without being named like an artifact: the user's own, explained and left alone."""
    found = []
    for kind in KINDS:
        artifacts = set(folders.artifact_folders(ws.root / kind))
        found += [Finding("foreign", _rel(ws, entry), "not an artifact (its name is not a 12-hex-digit id): left alone")
                  for entry in _children(ws.root / kind) if entry not in artifacts]
    return found


def _staging(ws: Workspace) -> list[Finding]:
    found = []
    for entry in _children(ws.root / ".staging"):
        if not folders.is_tool_staging(entry.name, KINDS):
            found.append(Finding("foreign", _rel(ws, entry), "not made by ifguide: left alone"))
            continue
        aid = folders.staged_id(entry.name, KINDS)
        if aid is not None and _busy(ws, aid):
            continue  # a running command's work
        restorable = folders.restorable(entry, KINDS) if entry.is_dir() else None
        if restorable and not (ws.root / restorable[0] / restorable[1]).exists():
            found.append(Finding("lost-swap", _rel(ws, entry), f"{kind_noun(restorable[0])} artifact {restorable[1]} is missing: "
                                 "a --force rebuild was cut short while publishing; its previous copy is here", "restore"))
        elif entry.name.startswith((folders.REPLACED, folders.REMOVING, "trash-")) or _empty(entry):
            found.append(Finding("leftover", _rel(ws, entry), "left by an interrupted rebuild or removal", "delete"))
        else:
            found.append(Finding("interrupted", _rel(ws, entry), f"an unfinished build ({_size(entry)}): running the same "
                                 "command again resumes it", "remove"))
    return found


def _locks(ws: Workspace) -> list[Finding]:
    found = []
    for entry in _children(ws.root / ".locks"):
        if entry.is_dir() or not locks.holders(entry):
            found.append(Finding("stale-lock", _rel(ws, entry), "a lock nobody holds", "delete"))
    return found


# ---- what is done ---------------------------------------------------------------------------------
def _restore(ws: Workspace, f: Finding) -> None:
    entry = ws.root / f.path
    restorable = folders.restorable(entry, KINDS)
    if restorable is None:
        raise IfguideError(f"{f.path} is no longer a complete artifact")
    kind, aid = restorable
    with locks.holding(ws.root / ".locks" / f"{aid}.lock", exclusive=True):
        (ws.root / kind).mkdir(parents=True, exist_ok=True)
        os.replace(entry, ws.root / kind / aid)


def _delete(ws: Workspace, f: Finding) -> None:
    path = ws.root / f.path
    if f.problem == "stale-lock" and path.is_file():
        try:
            locks.acquire(path, exclusive=True)  # its release deletes it, if still nobody else's
        except locks.LockBusy:
            raise IfguideError("taken by a running command meanwhile") from None
        locks.release(path, exclusive=True)
    elif path.is_dir():
        folders.discard(path, follow_link=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _remove(ws: Workspace, f: Finding) -> None:
    if f.problem in ("damaged", "mismatch"):
        kind, aid = Path(f.path).parts[:2]
        item = ws.get(kind, aid) or next((d for d in ws.damaged(kind) if d.id == aid), None)
        if item is not None:
            ws.remove(item, recursive=len(f.removes) > 1, keep_dependents=True)
    else:
        _delete(ws, f)


_ACTIONS = {"restore": _restore, "delete": _delete, "remove": _remove}


# ---- small helpers ---------------------------------------------------------------------------------
def _children(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except OSError:
        return []


def _busy(ws: Workspace, aid: str) -> bool:
    lock = ws.root / ".locks" / f"{aid}.lock"
    return lock.exists() and bool(locks.holders(lock))


def _empty(path: Path) -> bool:
    return path.is_dir() and not any(p.is_file() for p in path.rglob("*"))


def _size(path: Path) -> str:
    total = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size
    return f"{total / 2**20:.1f} MiB"


def _rel(ws: Workspace, path: Path) -> str:
    return str(path.relative_to(ws.root))


def _what(item: Artifact | Damaged) -> str:
    return f"{kind_noun(item.kind)} artifact {item.id}"
