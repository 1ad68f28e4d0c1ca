"""Structural checks of files the tool saved earlier and reads back (an interrupted training run's resumable state).

A file cut short by a full disk, a crash or a copy is found here, before a library fails on it with a message that
names no file (`PytorchStreamReader failed reading zip archive`). Only the structure is checked (torch's zip
archive, the safetensors header and data length, JSON): cheap, and enough for truncation. `file_identity` is the
cheap identity of an input file or folder (path, sizes, modification times) that artifact configs record.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

_TORCH_SUFFIXES = (".pt", ".pth", ".bin")  # torch.save archives (zip since torch 1.6)
_CUT = "it is cut short or damaged"


def damage(path: Path) -> str | None:
    """Why `path` cannot be a whole file of its type; None when it looks whole (other types are not checked)."""
    suffix = path.suffix.lower()
    try:
        if suffix in _TORCH_SUFFIXES:
            return None if zipfile.is_zipfile(path) else _CUT
        if suffix == ".safetensors":
            return _safetensors_damage(path)
        if suffix == ".json":
            json.loads(path.read_bytes())
    except OSError as exc:
        return f"it cannot be read ({exc.strerror or exc})"
    except (ValueError, RecursionError):
        return _CUT
    return None


def _safetensors_damage(path: Path) -> str | None:
    """An 8-byte header length, a JSON header, then data up to the largest offset the header names."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        length = int.from_bytes(head, "little") if len(head) == 8 else size
        if 8 + length > size:
            return _CUT
        header = json.loads(fh.read(length))
    try:
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except (AttributeError, KeyError, IndexError, TypeError, ValueError):
        return _CUT
    return _CUT if 8 + length + end > size else None


def file_identity(path: Path) -> dict:
    """Path, size and modification time of a file, or of every file in a folder: cheap, and changes with the content."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    stats = [(p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    if path.is_file():
        return {"path": str(path.resolve()), "size": stats[0][0], "mtime_ns": stats[0][1]}
    return {"path": str(path.resolve()), "files": {str(p.relative_to(path)): list(st) for p, st in zip(files, stats, strict=True)}}
