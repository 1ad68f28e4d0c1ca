"""Reading an artifact's manifest defensively, and checking its files against it.

A manifest is written by the tool, but the disk is the user's: it may be truncated, emptied, replaced by
anything. `read_manifest` never raises: it returns the manifest, read as its kind's current schema
(`store.migrations`), or the reason it cannot be used (the artifact is then listed as damaged, and every other
artifact stays usable). `file_problem` compares one file with its
manifest entry: the size always, then a quick checksum (the first and last MiB and the size), or the full
sha256 when asked; the quick one is what a stage pays before reading its inputs.
"""

from __future__ import annotations

import hashlib
import json
import platform
from contextlib import suppress
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ifguide_cli.core.store.migrations import migrate

MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 64 << 20
_TRACKED_PACKAGES = ("torch", "transformers", "kronfluence", "datasets", "detoxify", "numpy", "ifguide-cli")
QUICK_SPAN = 1 << 20  # bytes hashed at each end of a file by the quick checksum
_SMALL_FILE = 8 << 20  # a file this small without a quick checksum (older manifests) is checked in full


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def quick_checksum(path: Path) -> str:
    """sha256 of the size, the first MiB and the last MiB: catches truncation and most in-place edits at once."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as fh:
        digest.update(fh.read(QUICK_SPAN))
        if size > QUICK_SPAN:
            fh.seek(max(QUICK_SPAN, size - QUICK_SPAN))
            digest.update(fh.read(QUICK_SPAN))
    return digest.hexdigest()


def file_entry(path: Path) -> dict:
    """What a manifest records of one file."""
    return {"sha256": sha256_file(path), "size": path.stat().st_size, "quick": quick_checksum(path)}


def read_manifest(folder: Path, kind: str, aid: str | None = None, *, as_written: bool = False) -> tuple[dict, None] | tuple[None, str]:
    """(manifest, None) or (None, why it cannot be used) for the folder of artifact `aid` (the folder's name) of `kind`.

    The manifest is read as its kind's current schema (`store.migrations`); `as_written`: as it is on disk."""
    path = folder / MANIFEST
    try:
        if not path.is_file():
            return None, f"{MANIFEST} is missing"
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            return None, f"{MANIFEST} is {path.stat().st_size >> 20} MiB, too large to be a manifest"
        raw = path.read_bytes()
    except OSError as exc:
        return None, f"{MANIFEST} cannot be read ({exc.strerror or exc})"
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return None, f"{MANIFEST} is not UTF-8 text"
    except json.JSONDecodeError as exc:
        return None, f"{MANIFEST} is not valid JSON ({'empty file' if not raw.strip() else exc.msg + f' at line {exc.lineno}'})"
    except RecursionError:
        return None, f"{MANIFEST} is nested too deeply to be a manifest"
    why = manifest_problem(manifest, aid or folder.name, kind)
    if why is not None:
        return None, why
    return (manifest if as_written else migrate(manifest)), None


def manifest_problem(manifest: Any, aid: str, kind: str) -> str | None:
    """Why a parsed manifest cannot describe artifact `aid` of `kind` (None when it can)."""
    if not isinstance(manifest, dict):
        return f"{MANIFEST} holds a JSON {_json_type(manifest)}, not an object"
    if manifest.get("id") != aid or manifest.get("kind") != kind:
        return f"{MANIFEST} describes {manifest.get('kind')!r} {manifest.get('id')!r}, not this {kind} folder {aid}"
    expected = {"parents": list, "files": dict, "config": dict, "summary": dict, "timings": dict}
    for key, typ in expected.items():
        if key in manifest and not isinstance(manifest[key], typ):
            return f"{MANIFEST} field {key!r} is a JSON {_json_type(manifest[key])}, not {_json_type(typ())}"
    if not all(isinstance(p, str) for p in manifest.get("parents", [])):
        return f"{MANIFEST} field 'parents' is not a list of ids"
    for key in ("name", "created"):
        if manifest.get(key) is not None and not isinstance(manifest[key], str):
            return f"{MANIFEST} field {key!r} is not text"
    for rel, meta in manifest.get("files", {}).items():
        if not (isinstance(meta, dict) and isinstance(meta.get("size"), int) and isinstance(meta.get("sha256"), str)):
            return f"{MANIFEST} entry of {rel!r} has no size and sha256"
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            return f"{MANIFEST} lists a file outside the artifact ({rel!r})"
    return None


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def file_problem(folder: Path, rel: str, meta: dict, *, full: bool = False) -> str | None:
    """Why file `rel` of an artifact does not match its manifest entry (None when it does)."""
    path = folder / rel
    try:
        if not path.is_file():
            return f"{rel} is missing"
        size = path.stat().st_size
        if size != meta["size"]:
            return f"{rel} has {size} bytes, its manifest says {meta['size']}"
        if full or ("quick" not in meta and size <= _SMALL_FILE):
            same = sha256_file(path) == meta["sha256"]
        else:
            same = "quick" not in meta or quick_checksum(path) == meta["quick"]
    except OSError as exc:
        return f"{rel} cannot be read ({exc.strerror or exc})"
    return None if same else f"{rel} was changed after it was written (checksum mismatch)"


_CHECKED: set[tuple] = set()  # files this process already found matching, as they were then


def checked_file_problem(folder: Path, rel: str, meta: dict, *, full: bool = False) -> str | None:
    """`file_problem`, remembered per process for a file that matched and has not changed since (a pipeline reads
    the same inputs in several stages): any write changes a file's ctime, which, unlike its mtime, cannot be set back."""
    try:
        st = (folder / rel).stat()
        key = (str(folder / rel), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, full)
    except OSError:
        key = None
    if key is not None and key in _CHECKED:
        return None
    problem = file_problem(folder, rel, meta, full=full)
    if problem is None and key is not None:
        _CHECKED.add(key)
    return problem


def package_versions() -> dict[str, str]:
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for name in _TRACKED_PACKAGES:
        with suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


def build_manifest(ctx, *, name: str | None, parents: list[str], config: dict, summary: dict,
              device: str | None) -> dict:
    """The manifest of a finished build (`ctx`: the stage's BuildContext): identity, lineage, files with checksums, summary, versions, timings."""
    files = {
        str(p.relative_to(ctx.staging)): file_entry(p)
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
    return manifest
