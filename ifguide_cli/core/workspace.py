"""The managed workspace: every result is an artifact folder with a manifest linking it to its parents.

Layout::

    ROOT/<kind>/<id>/manifest.json + files     finished artifacts (immutable)
    ROOT/.staging/<kind>-<id>/                 work in progress; survives a crash so a stage can resume
    ROOT/.locks/<id>.lock                      one writer per artifact

An artifact's id is a hash of its kind, config and parent ids, so running the same stage
twice finds the first result instead of recomputing it. A finished artifact appears by one
`os.replace` of its staging folder, so readers never see half an artifact.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .dist import is_main_process
from .errors import ArtifactNotFound, IfguideError, WrongArtifactKind

KINDS = ("datasets", "tokenizers", "factors", "scores", "masks", "checkpoints", "evals", "classifiers", "reports")
MANIFEST = "manifest.json"
_TRACKED_PACKAGES = ("torch", "transformers", "kronfluence", "datasets", "detoxify", "numpy", "ifguide-cli")


def default_root(override: str | os.PathLike | None = None) -> Path:
    """`--workspace`, else `IFGUIDE_HOME`, else the platform's user data folder."""
    if override:
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


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def package_versions() -> dict[str, str]:
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for name in _TRACKED_PACKAGES:
        with suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


def atomic_write_text(path: Path, text: str) -> None:
    """Write a file so that a crash leaves either the old or the new content, never half."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


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
        path = self.path / name
        if not path.exists():
            raise IfguideError(f"{self.kind} artifact {self.id} has no file {name!r}; it may be damaged",
                               hint=f"rebuild it with --force or remove it with `ifguide workspace rm {self.id}`")
        return path

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


class Workspace:
    def __init__(self, root: str | os.PathLike | None = None):
        self.root = default_root(root)

    # ---- reading -------------------------------------------------------------------------
    def _kind_dir(self, kind: str) -> Path:
        if kind not in KINDS:
            raise IfguideError(f"unknown artifact kind {kind!r}; known kinds: {', '.join(KINDS)}", exit_code=2)
        return self.root / kind

    def get(self, kind: str, aid: str) -> Artifact | None:
        path = self._kind_dir(kind) / aid
        manifest_path = path / MANIFEST
        if not manifest_path.is_file():
            return None
        return Artifact(aid, kind, path, json.loads(manifest_path.read_text()))

    def list(self, kind: str | None = None) -> list[Artifact]:
        """All finished artifacts (of one kind: `masks` or `mask`), oldest first."""
        kinds = [normalize_kind(kind)] if kind else list(KINDS)
        found = []
        for k in kinds:
            base = self._kind_dir(k)
            if not base.is_dir():
                continue
            for entry in base.iterdir():
                if (entry / MANIFEST).is_file():
                    art = self.get(k, entry.name)
                    if art is not None:
                        found.append(art)
        return sorted(found, key=_age)

    def by_id(self, aid: str) -> Artifact | None:
        for kind in KINDS:
            art = self.get(kind, aid)
            if art is not None:
                return art
        return None

    def resolve(self, ref: str, kind: str | tuple[str, ...] | None = None) -> Artifact:
        """An artifact from an id, a name, a unique id prefix (≥4 hex chars), `latest` or `latest:KIND`.

        With `kind`, a reference to an artifact of another kind is an error (not a silent miss).
        """
        kinds = (kind,) if isinstance(kind, str) else tuple(kind or ())
        if ref == "latest" or ref.startswith("latest:"):
            return self._latest(ref, kinds)
        candidates = self._candidates(kinds)
        found = _by_id(candidates, ref) or _by_name(candidates, ref) or _by_prefix(candidates, ref)
        if found is None:
            raise self._missing(ref, kinds)
        return found

    def _candidates(self, kinds: tuple[str, ...]) -> list[Artifact]:
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
        """The error for a reference nothing answered: "exists but is another kind" is told apart from "does not exist"."""
        other = next((a for a in self.list() if _refers_to(a, ref)), None) if kinds else None
        if other is not None:
            return WrongArtifactKind(f"{ref!r} is {with_article(kind_noun(other.kind))} artifact, not {with_article(_wanted(kinds))}",
                                     hint="see `ifguide workspace ls`", exit_code=2)
        return ArtifactNotFound(f"no {_wanted(kinds)} {ref!r} in workspace {self.root}", hint="see `ifguide workspace ls`")

    def children(self, art: Artifact) -> list[Artifact]:
        return [a for a in self.list() if art.id in a.parents]

    def lineage(self, art: Artifact) -> dict:
        """The ancestry of an artifact as a nested dict (parents that were removed show as missing)."""
        node = {"id": art.id, "kind": art.kind, "name": art.name, "parents": []}
        for pid in art.parents:
            parent = self.by_id(pid)
            node["parents"].append(self.lineage(parent) if parent else {"id": pid, "kind": "missing", "parents": []})
        return node

    # ---- writing -------------------------------------------------------------------------
    def staging_dir(self, kind: str, aid: str) -> Path:
        return self.root / ".staging" / f"{kind}-{aid}"

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
        function that checks what is already there can resume.
        """
        parents = list(parents)
        if not is_main_process():
            return self._create_as_worker(kind, config, parents, build, force=force)
        self._check_parents(parents)
        aid = artifact_id(kind, config, parents)
        existing = self.get(kind, aid)
        if existing is not None and not force:
            return existing, True
        with self._writer_lock(kind, aid):
            existing = self.get(kind, aid)  # another process may have finished while we waited
            if existing is not None and not force:
                return existing, True
            ctx = BuildContext(aid, kind, self._fresh_staging(kind, aid, force), {})
            start = time.perf_counter()
            summary = build(ctx) or {}
            ctx.timings["total"] = round(time.perf_counter() - start, 4)
            manifest = _manifest(ctx, name=name, parents=parents, config=config, summary=summary, device=device)
            atomic_write_text(ctx.staging / MANIFEST, json.dumps(manifest, indent=2, default=str, allow_nan=False))
            final = self._publish(ctx.staging, kind, aid)
            return Artifact(aid, kind, final, manifest), False

    def _check_parents(self, parents: list[str]) -> None:
        for pid in parents:
            if self.by_id(pid) is None:
                raise ArtifactNotFound(f"parent artifact {pid} is not in workspace {self.root}")

    @contextmanager
    def _writer_lock(self, kind: str, aid: str) -> Iterator[None]:
        """One writer per artifact: a second process is refused at once rather than left waiting."""
        from filelock import FileLock, Timeout

        (self.root / ".locks").mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.root / ".locks" / f"{aid}.lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise IfguideError(f"{kind} artifact {aid} is being written by another process",
                               hint="wait for it to finish, then run again (it will be reused)") from None
        try:
            yield
        finally:
            lock.release()

    def _fresh_staging(self, kind: str, aid: str, force: bool) -> Path:
        """The staging folder: kept from an interrupted build (to resume), emptied with --force."""
        staging = self.staging_dir(kind, aid)
        if force and staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(parents=True, exist_ok=True)
        return staging

    def _publish(self, staging: Path, kind: str, aid: str) -> Path:
        """Move a complete staging folder into place in one `os.replace`; with --force the old one goes only then."""
        final = self._kind_dir(kind) / aid
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            trash = self.root / ".staging" / f"trash-{aid}-{os.getpid()}"
            os.replace(final, trash)
            os.replace(staging, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(staging, final)
        return final

    def _create_as_worker(self, kind: str, config: dict, parents: list[str], build, force: bool = False) -> tuple[Artifact, bool]:
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

    def remove(self, art: Artifact, *, recursive: bool = False) -> list[Artifact]:
        """Delete an artifact; refuses while others depend on it unless `recursive`."""
        kids = self.children(art)
        if kids and not recursive:
            raise IfguideError(f"{len(kids)} artifact(s) depend on {art.id} ({', '.join(k.id for k in kids[:5])})",
                               hint="pass --recursive to remove them too", exit_code=2)
        removed = []
        for kid in kids:
            removed += self.remove(kid, recursive=True)
        trash = self.root / ".staging" / f"trash-{art.id}-{os.getpid()}"
        trash.parent.mkdir(parents=True, exist_ok=True)
        os.replace(art.path, trash)  # disappears atomically, then is deleted
        shutil.rmtree(trash, ignore_errors=True)
        return [*removed, art]

    def verify(self, art: Artifact) -> list[str]:
        """Files whose checksum no longer matches the manifest."""
        bad = []
        for rel, meta in art.manifest.get("files", {}).items():
            path = art.path / rel
            if not path.is_file() or sha256_file(path) != meta["sha256"]:
                bad.append(rel)
        return bad


# ---- the steps of `resolve` ----------------------------------------------------------------
def _age(art: Artifact) -> tuple[str, str]:
    return art.created, art.id


def _wanted(kinds: tuple[str, ...]) -> str:
    """What a reference was expected to name: "mask artifact", "factors or scores artifact", "artifact"."""
    return " or ".join(f"{kind_noun(k)} artifact" for k in kinds) if kinds else "artifact"


def _latest_kind(ref: str, kinds: tuple[str, ...]) -> str:
    """The KIND of `latest:KIND` (`mask` or `masks`), which must be one of the wanted kinds."""
    sub = normalize_kind(ref.split(":", 1)[1])
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


def _manifest(ctx: BuildContext, *, name: str | None, parents: list[str], config: dict, summary: dict,
              device: str | None) -> dict:
    """The manifest of a finished build: identity, lineage, files with checksums, summary, versions, timings."""
    files = {
        str(p.relative_to(ctx.staging)): {"sha256": sha256_file(p), "size": p.stat().st_size}
        for p in sorted(ctx.staging.rglob("*"))
        if p.is_file() and p.name != MANIFEST and not p.name.startswith(".")
    }
    manifest = {
        "id": ctx.id,
        "kind": ctx.kind,
        "name": name,
        "created": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        "parents": parents,
        "config": config,
        "files": files,
        "summary": summary,
        "versions": package_versions(),
        "device": device or "cpu",
        "timings": ctx.timings,
    }
    return json_safe(manifest)
