"""Structural checks of files the tool saved earlier and reads back (an interrupted training run's resumable state).

A file cut short by a full disk, a crash or a copy is found here, before a library fails on it with a message that
names no file (`PytorchStreamReader failed reading zip archive`). Only the structure is checked (torch's zip
archive, the safetensors header and data length, JSON): cheap, and enough for truncation.
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
