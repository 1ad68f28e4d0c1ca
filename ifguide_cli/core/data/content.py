"""A local file's identity is the sha256 of its bytes, so the same content is the same dataset wherever it lies and
however often it is rewritten, and a changed file is never mistaken for the one an artifact was built from.

Hashing a corpus of gigabytes takes seconds to minutes, so the digest is remembered per file as it was when hashed
(path, size, modification time, plus inode and change time, which a byte-identical rewrite or a copy changes but an
unchanged file keeps): in this process, and across processes in `file-sha256.json` under the cache folder
(`IFGUIDE_CACHE_DIR`, else the platform's user cache folder). An unchanged file is read once, ever; a file whose
stat differs is hashed again (streamed in 1 MiB blocks), whatever its bytes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ifguide_cli.core.store.manifests import sha256_file

CACHE_FILE = "file-sha256.json"
_MAX_ENTRIES = 10_000  # the oldest entries are dropped beyond this: a cache, not a record
_SEEN: dict[str, tuple[list, str]] = {}  # this process: path -> (stat key, digest)


def cache_dir() -> Path:
    """`IFGUIDE_CACHE_DIR`, else the platform's user cache folder for ifguide."""
    env = os.environ.get("IFGUIDE_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return platformdirs.user_cache_path("ifguide")


def _stat_key(path: Path) -> list:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def _load_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _save_cache(entries: dict) -> None:
    """Best effort: a cache that cannot be written (a read-only home) only costs hashing again next time."""
    from ifguide_cli.core.store.workspace import atomic_write_text

    try:
        folder = cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / CACHE_FILE, json.dumps(dict(list(entries.items())[-_MAX_ENTRIES:])))
    except OSError:
        pass


def content_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes, read only when the file is not as it was when last hashed."""
    path = Path(path).resolve()
    key, name = _stat_key(path), str(path)
    seen = _SEEN.get(name)
    if seen is not None and seen[0] == key:
        return seen[1]
    cache = _load_cache(cache_dir() / CACHE_FILE)
    stored = cache.get(name)
    if isinstance(stored, dict) and stored.get("stat") == key and isinstance(stored.get("sha256"), str):
        digest = stored["sha256"]
    else:
        digest = sha256_file(path)
        cache.pop(name, None)
        cache[name] = {"stat": key, "sha256": digest}
        _save_cache(cache)
    _SEEN[name] = (key, digest)
    return digest


def content_identity(path: Path) -> dict:
    """What a local file or folder is, by content: the file's format (its suffix decides how it is parsed) and sha256,
    or every file of a folder by relative path. The path is not part of it: a copy is the same data."""
    path = Path(path)
    if path.is_file():
        return {"format": path.suffix.lower(), "sha256": content_sha256(path)}
    files = sorted(p for p in path.rglob("*") if p.is_file())
    return {"files": {str(p.relative_to(path)): content_sha256(p) for p in files}}
