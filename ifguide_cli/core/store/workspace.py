"""The managed workspace: every result is an artifact folder with a manifest linking it to its parents.

Layout::

    ROOT/<kind>/<id>/manifest.json + files     finished artifacts (immutable)
    ROOT/.staging/<kind>-<id>/                 work in progress; survives a crash so a stage can resume
    ROOT/.locks/<id>.lock                      shared while a stage reads it, exclusive to build or remove it

An artifact's id is a hash of its kind, config and parent ids, so running the same stage
twice finds the first result instead of recomputing it. A finished artifact appears by one
`os.replace` of its staging folder, so readers never see half an artifact; a `--force` rebuild
swaps the old and new folders in one atomic exchange (Linux), or, elsewhere, in two renames that the
next command undoes if it was cut between them.

The disk is the user's: an artifact whose manifest cannot be read is listed as damaged (with the
reason) and every other artifact stays usable; a stage checks the size and a quick checksum of each
input file before reading it (the full sha256 with IFGUIDE_VERIFY=1); `ifguide workspace doctor`
explains and repairs the rest.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ifguide_cli.core import notes
from ifguide_cli.core.dist import is_main_process
from ifguide_cli.core.errors import ArtifactNotFound, IfguideError, WrongArtifactKind, stop_if_interrupted
from ifguide_cli.core.store import folders, locks
from ifguide_cli.core.store.artifact_files import KINDS
from ifguide_cli.core.store.manifests import MANIFEST, build_manifest, checked_file_problem, file_problem, read_manifest
from ifguide_cli.core.store.manifests import sha256_file as sha256_file  # re-exported: stages hash their sources with it
from ifguide_cli.core.store.migrations import migrate

_READ_WAIT_S = 2.0  # a reader waits this long for a brief exclusive hold (a removal, a publish) to end


def default_root(override: str | os.PathLike | None = None) -> Path:
    """`--workspace`, else `IFGUIDE_HOME`, else the platform's user data folder."""
    if override is not None:
        if not str(override).strip():
            raise IfguideError("--workspace is empty", hint="pass a folder, or leave the option out for the default",
                               exit_code=2)
        return Path(override).expanduser()
    env = os.environ.get("IFGUIDE_HOME")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return platformdirs.user_data_path("ifguide")


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def artifact_id(kind: str, config: dict, parents: Iterable[str]) -> str:
    """Deterministic id: the same stage with the same inputs gets the same id."""
    payload = canonical_json({"kind": kind, "config": config, "parents": sorted(parents)})
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def json_safe(obj: Any) -> Any:
    """NaN and ±inf become None: JSON has no such numbers, and `--json` output must parse anywhere."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def verify_fully() -> bool:
    """IFGUIDE_VERIFY=1: inputs are checked against their full sha256 rather than the quick checksum."""
    return os.environ.get("IFGUIDE_VERIFY", "").strip().lower() in ("1", "true", "yes")


def atomic_write_text(path: Path, text: str) -> None:
    """Write a file so that a crash leaves either the old or the new content, never half.

    Only a regular file is replaced: a device or a pipe given as the target (`--html /dev/full`) is refused rather
    than silently swapped for a file.
    """
    if path.exists() and not path.is_file():
        raise IfguideError(f"{path} is not a regular file", hint="pass the path of a file to write", exit_code=2)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def with_article(noun: str) -> str:
    return ("an " if noun[:1] in "aeiou" else "a ") + noun


def normalize_kind(kind: str) -> str:
    """The kind a user means: `mask` and `masks` both name `masks` (`workspace ls mask`, `latest:mask`)."""
    return kind + "s" if kind + "s" in KINDS else kind


def kind_noun(kind: str) -> str:
    """The kind as it reads before "artifact": "a scores artifact", "a mask artifact"."""
    return kind if kind in ("factors", "scores") else kind.removesuffix("s")


@dataclass(frozen=True)
class Artifact:
    id: str
    kind: str
    path: Path
    manifest: dict

    @property
    def name(self) -> str | None:
        return self.manifest.get("name")

    @property
    def parents(self) -> list[str]:
        return list(self.manifest.get("parents", []))

    @property
    def config(self) -> dict:
        return self.manifest.get("config", {})

    @property
    def summary(self) -> dict:
        return self.manifest.get("summary", {})

    @property
    def created(self) -> str:
        return self.manifest.get("created", "")

    def file(self, name: str) -> Path:
        """The path of file (or folder) `name`, checked against the manifest before a stage reads it."""
        path = self.path / name
        if not path.exists():
            raise _damaged_error(self, f"{name} is missing")
        self.check(prefix=name)
        return path

    def check(self, prefix: str = "") -> None:
        """Its files (those under `prefix`) match the manifest: size and quick checksum (full sha256 with IFGUIDE_VERIFY=1).

        Each file is checked once per process; a mismatch is one line naming the file.
        """
        full = verify_fully()
        for rel, meta in sorted(self.manifest.get("files", {}).items()):
            if prefix and rel != prefix and not rel.startswith(prefix.rstrip("/") + "/"):
                continue
            problem = checked_file_problem(self.path, rel, meta, full=full)
            if problem:
                raise _damaged_error(self, problem)

    def ref(self) -> dict:
        """The fields every command's --json output carries for an artifact."""
        return {"id": self.id, "kind": self.kind, "name": self.name, "path": str(self.path)}

    def listing(self) -> dict:
        """What `workspace ls` shows of it: identity, age, lineage and build time."""
        return {**self.ref(), "created": self.created, "parents": self.parents,
                "seconds": self.manifest.get("timings", {}).get("total")}


@dataclass
class BuildContext:
    """Handed to a stage's build function: where to write, and which id it is building."""

    id: str
    kind: str
    staging: Path
    timings: dict

    def timed(self, label: str):
        return _Timer(self.timings, label)


class _Timer:
    def __init__(self, sink: dict, label: str):
        self.sink, self.label = sink, label

    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.sink[self.label] = round(self.sink.get(self.label, 0.0) + time.perf_counter() - self.start, 4)


@dataclass(frozen=True)
class Damaged:
    """An artifact folder whose manifest cannot be used: listed with the reason, never resolved."""

    id: str
    kind: str
    path: Path
    reason: str
    removable: bool = True  # False without a manifest.json (or behind a dead link): it may be the user's own folder

    def listing(self) -> dict:
        return {"id": self.id, "kind": self.kind, "path": str(self.path), "reason": self.reason}


def _damaged_error(art: Artifact | Damaged, problem: str) -> IfguideError:
    return IfguideError(f"{kind_noun(art.kind)} artifact {art.id} is damaged: {problem}",
                        hint="rebuild it (the command that made it, with --force), or see `ifguide workspace doctor`")


class Workspace:
    def __init__(self, root: str | os.PathLike | None = None):
        self.root = default_root(root)
        self._recovered = False
        folders.check_root(self.root)

    # ---- reading -------------------------------------------------------------------------
    def _kind_dir(self, kind: str) -> Path:
        if kind not in KINDS:
            raise IfguideError(f"unknown artifact kind {kind!r}; known kinds: {', '.join(KINDS)}", exit_code=2)
        return self.root / kind

    def get(self, kind: str, aid: str) -> Artifact | None:
        """The artifact `aid` of `kind`, or None when there is none (or only a damaged one)."""
        self._recover_swaps()
        if not (isinstance(aid, str) and folders.is_artifact_id(aid)):  # a hand-edited parent or dataset reference
            return None
        path = self._kind_dir(kind) / aid
        if not path.is_dir():
            return None
        manifest, _ = read_manifest(path, kind)
        return Artifact(aid, kind, path, manifest) if manifest is not None else None

    def _scan(self, kind: str | None) -> tuple[list[Artifact], list[Damaged]]:
        """Every artifact folder (of one kind: `masks` or `mask`): the usable ones and the damaged ones."""
        self._recover_swaps()
        found, damaged = [], []
        for k in [normalize_kind(kind)] if kind else KINDS:
            base = self._kind_dir(k)
            for entry in folders.artifact_folders(base):
                if not entry.exists():
                    damaged.append(Damaged(entry.name, k, entry, f"it is a symbolic link to {os.readlink(entry)}, which "
                                           "cannot be reached (a disk not mounted?)", removable=False))
                    continue
                read = read_manifest(entry, k)  # (manifest, None) or (None, why)
                if read[0] is not None:
                    found.append(Artifact(entry.name, k, entry, read[0]))
                else:
                    damaged.append(Damaged(entry.name, k, entry, read[1], removable=(entry / MANIFEST).exists()))
        return sorted(found, key=_age), sorted(damaged, key=lambda d: (d.kind, d.id))

    def list(self, kind: str | None = None) -> list[Artifact]:
        """All usable artifacts (of one kind: `masks` or `mask`), oldest first."""
        return self._scan(kind)[0]

    def damaged(self, kind: str | None = None) -> builtins.list[Damaged]:
        """Artifact folders whose manifest is missing or unusable, with the reason."""
        return self._scan(kind)[1]

    def by_id(self, aid: str) -> Artifact | None:
        for kind in KINDS:
            art = self.get(kind, aid)
            if art is not None:
                return art
        return None

    def find_damaged(self, ref: str) -> Damaged | None:
        """The damaged artifact `ref` names (its id or a unique id prefix)."""
        matches = [d for d in self.damaged() if d.id == ref or (_looks_like_prefix(ref) and d.id.startswith(ref))]
        return matches[0] if len(matches) == 1 else None

    def resolve(self, ref: str, kind: str | tuple[str, ...] | None = None) -> Artifact:
        """An artifact from an id, a name, a unique id prefix (≥4 hex chars), `latest` or `latest:KIND`.

        With `kind`, a reference to an artifact of another kind is an error (not a silent miss), and the
        artifact is an input about to be read: it is locked for reading and its files are checked (`use`).
        """
        kinds = (kind,) if isinstance(kind, str) else tuple(kind or ())
        found: Artifact | None
        if ref == "latest" or ref.startswith("latest:"):
            found = self._latest(ref, kinds)
        else:
            candidates = self._candidates(kinds)
            found = _by_id(candidates, ref) or _by_name(candidates, ref) or _by_prefix(candidates, ref)
            if found is None:
                raise self._missing(ref, kinds)
        return self.use(found) if kinds else found

    def _candidates(self, kinds: tuple[str, ...]) -> builtins.list[Artifact]:
        """The artifacts of these kinds (of every kind without), oldest first."""
        if not kinds:
            return self.list()
        return sorted((a for k in kinds for a in self.list(k)), key=_age)

    def _latest(self, ref: str, kinds: tuple[str, ...]) -> Artifact:
        """`latest`: the newest artifact of the wanted kinds; `latest:KIND`: the newest of KIND."""
        if ref.startswith("latest:"):
            kinds = (_latest_kind(ref, kinds),)
        candidates = self._candidates(kinds)
        if not candidates:
            raise ArtifactNotFound(f"no {_wanted(kinds)} in workspace {self.root}", hint="create one first (see `ifguide --help`)")
        return candidates[-1]

    def _missing(self, ref: str, kinds: tuple[str, ...]) -> IfguideError:
        """The error for a reference nothing answered: damaged, another kind, or not there at all."""
        broken = self.find_damaged(ref)
        if broken is not None:
            return _damaged_error(broken, broken.reason)
        other = next((a for a in self.list() if _refers_to(a, ref)), None) if kinds else None
        if other is not None:
            return WrongArtifactKind(f"{ref!r} is {with_article(kind_noun(other.kind))} artifact, not {with_article(_wanted(kinds))}",
                                     hint="see `ifguide workspace ls`", exit_code=2)
        return ArtifactNotFound(f"no {_wanted(kinds)} {ref!r} in workspace {self.root}", hint="see `ifguide workspace ls`")

    def use(self, art: Artifact) -> Artifact:
        """Lock an artifact for reading until the command ends (so it cannot be removed or replaced under a
        running stage), then check its files; the manifest is read again under the lock.

        A workspace that cannot be written (a shared results folder mounted read-only) is read without a lock: nothing
        can remove or rebuild an artifact there either."""
        if not folders.writable(self.root):
            art.check()
            return art
        path = self._lock_path(art.id)
        try:
            locks.acquire(path, exclusive=False, wait=_READ_WAIT_S)
        except locks.LockBusy:
            raise IfguideError(f"{kind_noun(art.kind)} artifact {art.id} is being rebuilt or removed by "
                               f"{_who(path)}", hint="wait for it to finish, then run again") from None
        fresh = self.get(art.kind, art.id)
        if fresh is None:
            locks.release(path, exclusive=False)
            raise ArtifactNotFound(f"{kind_noun(art.kind)} artifact {art.id} was removed just now",
                                   hint="see `ifguide workspace ls`")
        fresh.check()
        _check_identity(fresh)
        return fresh

    def children(self, art: Artifact | Damaged) -> builtins.list[Artifact]:
        return [a for a in self.list() if art.id in a.parents]

    def lineage(self, art: Artifact) -> dict:
        """The ancestry of an artifact as a nested dict (removed parents show as missing, broken ones as damaged)."""
        parents: builtins.list[dict] = []
        node = {"id": art.id, "kind": art.kind, "name": art.name, "parents": parents}
        for pid in art.parents:
            parent = self.by_id(pid)
            if parent is not None:
                parents.append(self.lineage(parent))
            else:
                kind = "damaged" if self.find_damaged(pid) is not None else "missing"
                parents.append({"id": pid, "kind": kind, "parents": []})
        return node

    # ---- writing -------------------------------------------------------------------------
    def staging_dir(self, kind: str, aid: str) -> Path:
        return self.root / ".staging" / f"{kind}-{aid}"

    def _lock_path(self, aid: str) -> Path:
        folders.make_dir(self.root / ".locks")
        return self.root / ".locks" / f"{aid}.lock"

    def create(
        self,
        kind: str,
        config: dict,
        parents: Iterable[str],
        build: Callable[[BuildContext], dict | None],
        *,
        name: str | None = None,
        force: bool = False,
        device: str | None = None,
    ) -> tuple[Artifact, bool]:
        """Find the artifact for (kind, config, parents), or build it. Returns (artifact, reused).

        `build` writes its files into `ctx.staging` and may return a summary dict stored in
        the manifest. The staging folder is kept when build fails or is killed, so a build
        function that checks what is already there can resume (an empty one is removed).
        """
        parents = list(parents)
        if not is_main_process():
            return self._create_as_worker(kind, config, parents, build, force=force)
        self._use_parents(parents)
        aid = artifact_id(kind, config, parents)
        existing = self.get(kind, aid)
        if existing is not None and not force:
            return self.rename(existing, name), True  # the same artifact: it takes the name asked for now
        with self._writer_lock(kind, aid):
            existing = self.get(kind, aid)  # another process may have finished while we waited
            if existing is None or force:
                stop_if_interrupted()
                ctx = BuildContext(aid, kind, self._fresh_staging(kind, aid, force), {})
                with folders.drop_if_empty(ctx.staging):
                    start = time.perf_counter()
                    summary = build(ctx) or {}
                    ctx.timings["total"] = round(time.perf_counter() - start, 4)
                manifest = json_safe(build_manifest(ctx, name=name, parents=parents, config=config, summary=summary,
                                                    device=device))
                manifest["summary_sha256"] = summary_digest(manifest["summary"])
                atomic_write_text(ctx.staging / MANIFEST, json.dumps(manifest, indent=2, default=str, allow_nan=False))
                built = Artifact(aid, kind, self._publish(ctx.staging, kind, aid), migrate(manifest))
        if existing is not None and not force:
            return self.rename(existing, name), True
        self._take_name(built)
        return built, False

    def _use_parents(self, parents: builtins.list[str]) -> None:
        """Every parent exists, is locked for reading and has the files its manifest lists."""
        for pid in parents:
            art = self.by_id(pid)
            if art is None:
                broken = self.find_damaged(pid)
                if broken is not None:
                    raise _damaged_error(broken, broken.reason)
                raise ArtifactNotFound(f"parent artifact {pid} is not in workspace {self.root}")
            self.use(art)

    @contextmanager
    def _writer_lock(self, kind: str, aid: str) -> Iterator[None]:
        """One writer per artifact, and none while a stage reads it: refused at once rather than left waiting."""
        path = self._lock_path(aid)
        try:
            locks.acquire(path, exclusive=True)
        except locks.LockBusy:
            writing = any(excl for _, excl in locks.holders(path))
            doing = "being written by another process" if writing else "in use by another process"
            who = _who(path)
            raise IfguideError(f"{kind} artifact {aid} is {doing}" + ("" if who == "another process" else f" ({who})"),
                               hint="wait for it to finish, then run again" + (" (it will be reused)" if writing else "")) from None
        try:
            yield
        finally:
            locks.release(path, exclusive=True)

    def _fresh_staging(self, kind: str, aid: str, force: bool) -> Path:
        """The staging folder: kept from an interrupted build (to resume), emptied with --force."""
        staging = self.staging_dir(kind, aid)
        if force and staging.exists():
            shutil.rmtree(staging)
        folders.make_dir(staging)
        return staging

    def _publish(self, staging: Path, kind: str, aid: str) -> Path:
        """Move a complete staging folder into place; with --force the old one is swapped out, never missing."""
        final = self._kind_dir(kind) / aid
        folders.make_dir(final.parent)
        if not final.exists():
            os.replace(staging, final)
            return final
        old = self.root / ".staging" / f"{folders.REPLACED}-{aid}-{os.getpid()}"
        if folders.exchange(staging, final):  # one atomic step: `final` is the new folder, `staging` the old one
            os.replace(staging, old)
        else:  # two renames; a kill between them is undone by the next command (`_recover_swaps`)
            os.replace(final, old)
            os.replace(staging, final)
        folders.discard(old, follow_link=True)
        return final

    def _recover_swaps(self) -> None:
        """Put back an artifact whose `--force` rebuild was killed between its two renames (once per workspace object)."""
        if self._recovered:
            return
        self._recovered = True
        for entry in folders.subfolders(self.root / ".staging"):
            found = folders.restorable(entry, KINDS)
            if found is None or (self.root / found[0] / found[1]).exists():
                continue
            kind, aid = found
            with suppress(locks.LockBusy, OSError), locks.holding(self._lock_path(aid), exclusive=True):
                if not (self.root / kind / aid).exists():
                    os.replace(entry, self.root / kind / aid)
                    notes.warn(f"restored {kind_noun(kind)} artifact {aid}: a rebuild of it was interrupted while publishing")

    def _create_as_worker(self, kind: str, config: dict, parents: builtins.list[str], build, force: bool = False) -> tuple[Artifact, bool]:
        """A non-zero rank of a distributed run: same id and staging folder as rank 0, never publishes.

        Rank 0 holds the lock, writes the manifest and publishes; the build function is run by every
        rank (it does its share of the work and must synchronise with rank 0 itself, e.g. a barrier,
        and write shared files only from rank 0).
        """
        aid = artifact_id(kind, config, parents)
        existing = self.get(kind, aid)
        if existing is not None and not force:  # with --force rank 0 rebuilds, so this rank must build too
            return existing, True
        staging = self.staging_dir(kind, aid)
        staging.mkdir(parents=True, exist_ok=True)
        build(BuildContext(aid, kind, staging, {}))
        return Artifact(aid, kind, self._kind_dir(kind) / aid, {"id": aid, "kind": kind, "parents": parents, "config": config}), False

    def rename(self, art: Artifact, name: str | None) -> Artifact:
        """Give an existing artifact another name (its manifest is rewritten atomically; the id stays). A name is one
        artifact's per kind: another artifact holding it gives it up, with a note."""
        if name is None or name == art.name:
            return art
        renamed = self._write_name(art, name)
        self._take_name(renamed)
        return renamed

    def _write_name(self, art: Artifact, name: str | None) -> Artifact:
        with self._writer_lock(art.kind, art.id):
            read = read_manifest(art.path, art.kind, art.id, as_written=True)  # not the migrated copy
            if read[0] is None:
                raise _damaged_error(art, read[1])
            manifest = {**read[0], "name": name}
            atomic_write_text(art.path / MANIFEST, json.dumps(manifest, indent=2, default=str, allow_nan=False))
        return Artifact(art.id, art.kind, art.path, migrate(manifest))

    def _take_name(self, art: Artifact) -> None:
        """`art` now holds its name: any other artifact of its kind with that name gives it up, so a name always means
        one artifact (the one it was given to last) and never silently the newest of several."""
        if not art.name:
            return
        from ifguide_cli.core.notes import warn

        for other in self.list(art.kind):
            if other.name == art.name and other.id != art.id:
                self._write_name(other, None)
                warn(f"the name {art.name!r} now means {kind_noun(art.kind)} {art.id}; {other.id}, which had it, "
                     "keeps its id and loses the name")

    def doomed(self, art: Artifact | Damaged, *, recursive: bool) -> builtins.list[Artifact | Damaged]:
        """What removing `art` deletes, deepest first: with `recursive`, everything derived from it too."""
        return [*self._descendants(self.children(art)), art] if recursive else [art]

    def remove(self, art: Artifact | Damaged, *, recursive: bool = False, keep_dependents: bool = False,
               before: Callable[[builtins.list], None] | None = None) -> builtins.list[Artifact | Damaged]:
        """Delete an artifact (a damaged one too) and, with `recursive`, what was made from it; `before` is shown
        the whole list first. Refuses while others depend on it (unless `recursive`, or `keep_dependents`: they
        stay usable, their lineage incomplete), while any stage uses one of them, and for a folder without a
        manifest (nothing says it is an artifact)."""
        if isinstance(art, Damaged) and not art.removable:
            raise IfguideError(f"{art.path} is not removed: {art.reason}, so nothing says it is an artifact",
                               hint="delete it yourself if it is a broken artifact", exit_code=2)
        kids = self.children(art)
        if kids and not recursive and not keep_dependents:
            raise IfguideError(f"{len(kids)} artifact(s) depend on {art.id} ({', '.join(k.id for k in kids[:5])})",
                               hint="pass --recursive to remove them too", exit_code=2)
        doomed = self.doomed(art, recursive=recursive)
        held = []
        try:
            for item in doomed:
                path = self._lock_path(item.id)
                try:
                    locks.acquire(path, exclusive=True)
                except locks.LockBusy:
                    raise IfguideError(f"{kind_noun(item.kind)} artifact {item.id} is in use by {_who(path)}",
                                       hint="wait for it to finish, then remove it") from None
                held.append(path)
            if before is not None:
                before(doomed)
            for item in doomed:
                self._delete(item.path, item.id, follow_link=isinstance(item, Artifact))
        finally:
            for path in held:
                locks.release(path, exclusive=True)
        return doomed

    def _descendants(self, kids: builtins.list[Artifact]) -> builtins.list[Artifact]:
        """Everything derived from `kids`, deepest first, each once."""
        out: builtins.list[Artifact] = []
        for kid in kids:
            for item in [*self._descendants(self.children(kid)), kid]:
                if all(item.id != seen.id for seen in out):
                    out.append(item)
        return out

    def _delete(self, path: Path, aid: str, *, follow_link: bool) -> None:
        """Make a folder disappear atomically (a rename out of the way), then delete it; an artifact linked to another
        disk goes with its link (`follow_link`; a damaged link's target may be anything: only the link goes)."""
        gone = self.root / ".staging" / f"{folders.REMOVING}-{aid}-{os.getpid()}"
        folders.make_dir(gone.parent)
        os.replace(path, gone)
        folders.discard(gone, follow_link=follow_link)

    def verify(self, art: Artifact) -> builtins.list[str]:
        """Files whose checksum no longer matches the manifest."""
        return [rel for rel, meta in art.manifest.get("files", {}).items() if file_problem(art.path, rel, meta, full=True)]


def _check_identity(art: Artifact) -> None:
    """An input's manifest is as it was written: the id is the hash of the kind, config and parents (a migration never
    changes them on disk) and `summary_sha256` that of the summary, so a hand-edited manifest (wrong types, other
    values) is found here, as one line, rather than deep in a stage that trusts it."""
    written, _ = read_manifest(art.path, art.kind, art.id, as_written=True)
    if written is None:
        return
    if artifact_id(art.kind, written.get("config", {}), written.get("parents", [])) != art.id:
        raise _damaged_error(art, f"{MANIFEST} was edited after it was written (its config and parents no longer give "
                                  "its id)")
    digest = written.get("summary_sha256")  # recorded since issue 26; older manifests have none
    if digest is not None and digest != summary_digest(written.get("summary", {})):
        raise _damaged_error(art, f"{MANIFEST} was edited after it was written (its summary no longer matches)")


def summary_digest(summary: dict) -> str:
    """The sha256 of a manifest's summary as written (the figures later stages and reports read from it); taken of
    its JSON form, so that the digest at writing and at reading agree (tuples, integer keys, numpy numbers)."""
    return hashlib.sha256(canonical_json(json.loads(json.dumps(summary, default=str))).encode()).hexdigest()


# ---- the file system -----------------------------------------------------------------------
def _who(lock: Path) -> str:
    """`process 1234 (ifguide finetune …)`: who holds a lock (`another process` when that cannot be known)."""
    found = locks.holders(lock)
    return locks.describe_process(found[0][0]) if found else "another process"


# ---- the steps of `resolve` ----------------------------------------------------------------
def _age(art: Artifact) -> tuple[str, str]:
    return art.created, art.id


def _wanted(kinds: tuple[str, ...]) -> str:
    """What a reference was expected to name: "mask artifact", "factors or scores artifact", "artifact"."""
    return " or ".join(f"{kind_noun(k)} artifact" for k in kinds) if kinds else "artifact"


def _latest_kind(ref: str, kinds: tuple[str, ...]) -> str:
    """The KIND of `latest:KIND` (`mask` or `masks`), which must be one of the wanted kinds."""
    sub = normalize_kind(ref.split(":", 1)[1])
    if sub not in KINDS:
        raise IfguideError(f"unknown artifact kind {sub!r} in {ref!r}; known kinds: {', '.join(KINDS)}",
                           hint="e.g. latest:mask", exit_code=2)
    if kinds and sub not in kinds:
        raise WrongArtifactKind(f"{ref!r} names {with_article(kind_noun(sub))} artifact, not {with_article(_wanted(kinds))}",
                                hint=f"use `latest` or `latest:{kinds[0]}`", exit_code=2)
    return sub


def _by_id(candidates: list[Artifact], ref: str) -> Artifact | None:
    return next((a for a in candidates if a.id == ref), None)


def _by_name(candidates: list[Artifact], ref: str) -> Artifact | None:
    """The newest artifact of that name: a reused name means the newest."""
    named = [a for a in candidates if a.name == ref]
    return named[-1] if named else None


def _looks_like_prefix(ref: str) -> bool:
    return len(ref) >= 4 and all(c in "0123456789abcdef" for c in ref)


def _by_prefix(candidates: list[Artifact], ref: str) -> Artifact | None:
    """The one artifact whose id starts with `ref`; several are an error (a prefix must be unique)."""
    if not _looks_like_prefix(ref):
        return None
    matches = [a for a in candidates if a.id.startswith(ref)]
    if len(matches) > 1:
        raise IfguideError(f"{ref!r} matches {len(matches)} artifacts ({', '.join(a.id for a in matches[:5])})",
                           hint="give more characters of the id", exit_code=2)
    return matches[0] if matches else None


def _refers_to(art: Artifact, ref: str) -> bool:
    return art.id == ref or art.name == ref or (_looks_like_prefix(ref) and art.id.startswith(ref))
