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
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

from .errors import ArtifactNotFound, IfguideError, WrongArtifactKind

KINDS = ("datasets", "tokenizers", "factors", "scores", "masks", "checkpoints", "evals", "classifiers", "reports")
MANIFEST = "manifest.json"
_TRACKED_PACKAGES = ("torch", "transformers", "kronfluence", "datasets", "detoxify", "numpy", "ifguide-cli")


def process_rank() -> tuple[int, int]:
    """(rank, world size) under torchrun / accelerate launch, read from their environment; (0, 1) otherwise."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def is_main_process() -> bool:
    """Rank 0 (or a plain single process): the one that reports and publishes."""
    return process_rank()[0] == 0


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
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def atomic_write_text(path: Path, text: str) -> None:
    """Write a file so that a crash leaves either the old or the new content, never half."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def with_article(noun: str) -> str:
    return ("an " if noun[:1] in "aeiou" else "a ") + noun


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
        """All finished artifacts (of one kind), oldest first."""
        kinds = [kind] if kind else list(KINDS)
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
        return sorted(found, key=lambda a: (a.created, a.id))

    def by_id(self, aid: str) -> Artifact | None:
        for kind in KINDS:
            art = self.get(kind, aid)
            if art is not None:
                return art
        return None

    def resolve(self, ref: str, kind: str | tuple[str, ...] | None = None) -> Artifact:
        """An artifact from an id, a unique id prefix (≥4 chars), a name, or `latest`.

        With `kind`, a reference to an artifact of another kind is an error (not a silent miss).
        """
        kinds = (kind,) if isinstance(kind, str) else tuple(kind or ())
        wanted = " or ".join(f"{kind_noun(k)} artifact" for k in kinds) if kinds else "artifact"
        candidates = [a for k in (kinds or KINDS) for a in self.list(k)]
        if ref == "latest" or ref.startswith("latest:"):
            if ref.startswith("latest:"):
                sub = ref.split(":", 1)[1]
                sub = sub if sub.endswith("s") else sub + "s"
                if kinds and sub not in kinds:
                    raise WrongArtifactKind(f"{ref!r} names {with_article(kind_noun(sub))} artifact, not {with_article(wanted)}",
                                            hint=f"use `latest` or `latest:{kinds[0]}`", exit_code=2)
                candidates = [a for a in candidates if a.kind == sub]
            if not candidates:
                raise ArtifactNotFound(f"no {wanted} in workspace {self.root}",
                                       hint="create one first (see `ifguide --help`)")
            return candidates[-1]
        matches = [a for a in candidates if a.id == ref]
        if not matches:
            matches = [a for a in candidates if a.name == ref]
            if len(matches) > 1:
                return matches[-1]  # a reused name means the newest
        if not matches and len(ref) >= 4 and all(c in "0123456789abcdef" for c in ref):
            matches = [a for a in candidates if a.id.startswith(ref)]
            if len(matches) > 1:
                raise IfguideError(f"{ref!r} matches {len(matches)} artifacts ({', '.join(a.id for a in matches[:5])})",
                                   hint="give more characters of the id", exit_code=2)
        if matches:
            return matches[0]
        other = None
        if kinds:  # tell "exists but is another kind" apart from "does not exist"
            other = next((a for a in self.list() if a.id == ref or a.name == ref
                          or (len(ref) >= 4 and a.id.startswith(ref))), None)
        if other is not None:
            raise WrongArtifactKind(f"{ref!r} is {with_article(kind_noun(other.kind))} artifact, not {with_article(wanted)}",
                                    hint="see `ifguide workspace ls`", exit_code=2)
        raise ArtifactNotFound(f"no {wanted} {ref!r} in workspace {self.root}", hint="see `ifguide workspace ls`")

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
        rank, world = process_rank()
        if rank != 0:
            return self._create_as_worker(kind, config, parents, build, force=force)
        for pid in parents:
            if self.by_id(pid) is None:
                raise ArtifactNotFound(f"parent artifact {pid} is not in workspace {self.root}")
        aid = artifact_id(kind, config, parents)
        final = self._kind_dir(kind) / aid
        existing = self.get(kind, aid)
        if existing is not None and not force:
            return existing, True

        from filelock import FileLock, Timeout

        (self.root / ".locks").mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.root / ".locks" / f"{aid}.lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise IfguideError(f"{kind} artifact {aid} is being written by another process",
                               hint="wait for it to finish, then run again (it will be reused)") from None
        try:
            existing = self.get(kind, aid)  # another process may have finished while we waited
            if existing is not None and not force:
                return existing, True
            staging = self.staging_dir(kind, aid)
            if force and staging.exists():
                shutil.rmtree(staging)
            staging.mkdir(parents=True, exist_ok=True)
            ctx = BuildContext(aid, kind, staging, {})
            start = time.perf_counter()
            summary = build(ctx) or {}
            ctx.timings["total"] = round(time.perf_counter() - start, 4)
            files = {
                str(p.relative_to(staging)): {"sha256": sha256_file(p), "size": p.stat().st_size}
                for p in sorted(staging.rglob("*"))
                if p.is_file() and p.name != MANIFEST and not p.name.startswith(".")
            }
            manifest = {
                "id": aid,
                "kind": kind,
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
            manifest = json_safe(manifest)
            atomic_write_text(staging / MANIFEST, json.dumps(manifest, indent=2, default=str, allow_nan=False))
            final.parent.mkdir(parents=True, exist_ok=True)
            if final.exists():  # --force: swap the old one out only once the new one is complete
                trash = self.root / ".staging" / f"trash-{aid}-{os.getpid()}"
                os.replace(final, trash)
                os.replace(staging, final)
                shutil.rmtree(trash, ignore_errors=True)
            else:
                os.replace(staging, final)
            return Artifact(aid, kind, final, manifest), False
        finally:
            lock.release()

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
        return removed + [art]

    def verify(self, art: Artifact) -> list[str]:
        """Files whose checksum no longer matches the manifest."""
        bad = []
        for rel, meta in art.manifest.get("files", {}).items():
            path = art.path / rel
            if not path.is_file() or sha256_file(path) != meta["sha256"]:
                bad.append(rel)
        return bad
