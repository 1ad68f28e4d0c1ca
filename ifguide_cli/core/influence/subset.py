"""Scoring part of a corpus: `scores --max-rows N` (the first N rows), `--rows FILE` (row indices) or
`--shard I/N` (the I-th of N contiguous blocks of rows, for independent jobs merged afterwards).

The scores artifact keeps the corpus's shape, so masks and training still index the same tensor: rows
not scored hold 0, and the file's `rows` tensor lists the scored rows, which `mask` reads to leave the
others out of the quantile and the selection (they are never masked).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.store.artifact_files import ROWS_KEY

__all__ = ["ROWS_KEY", "RowSubset", "scored_rows"]


@dataclass(frozen=True)
class RowSubset:
    indices: list[int]  # sorted, distinct row indices
    how: dict  # how they were chosen (the scores artifact's `rows` config)

    def __len__(self) -> int:
        return len(self.indices)


def parse_shard(text: str) -> tuple[int, int]:
    """`I/N` → (I, N) with 0 ≤ I < N; anything else is one line."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        index, count = -1, 0
    if not 0 <= index < count:
        raise IfguideError(f"--shard must be I/N with 0 ≤ I < N (e.g. 0/8 … 7/8), got {text!r}", exit_code=2)
    return index, count


def shard_bounds(index: int, count: int, n_rows: int) -> tuple[int, int]:
    """Rows [lo, hi) of shard `index` of `count`: contiguous blocks, sizes differing by at most one row."""
    return index * n_rows // count, (index + 1) * n_rows // count


def scored_rows(max_rows: int | None, rows_file: str | None, n_rows: int, shard: str | None = None) -> RowSubset | None:
    """The rows to score (None: all of them); a bad --rows file is one line naming it."""
    if shard is not None:
        index, count = parse_shard(shard)
        if count > n_rows:
            raise IfguideError(f"--shard {shard}: {n_rows} rows cannot be split into {count} shards", exit_code=2)
        lo, hi = shard_bounds(index, count, n_rows)
        return RowSubset(list(range(lo, hi)), {"shard": [index, count]})
    if max_rows is not None and max_rows < n_rows:
        return RowSubset(list(range(max_rows)), {"first": max_rows})
    if rows_file is None:
        return None
    indices = sorted(set(_read_indices(Path(rows_file).expanduser())))
    if not indices:
        raise IfguideError(f"--rows {rows_file} lists no row", hint="one row index per line, or a .npy array", exit_code=2)
    if indices[0] < 0 or indices[-1] >= n_rows:
        bad = indices[0] if indices[0] < 0 else indices[-1]
        raise IfguideError(f"--rows {rows_file} lists row {bad}, outside the data's rows 0–{n_rows - 1}", exit_code=2)
    digest = hashlib.sha256(",".join(map(str, indices)).encode()).hexdigest()[:16]
    return RowSubset(indices, {"file": str(Path(rows_file).expanduser().resolve()), "count": len(indices), "sha256": digest})


def _read_indices(path: Path) -> list[int]:
    if not path.is_file():
        from ifguide_cli.core.store.folders import not_a_file

        raise IfguideError(f"--rows {path} {not_a_file(path)}", exit_code=2)
    if path.suffix.lower() == ".npy":
        import numpy as np

        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise IfguideError(f"--rows {path} is not a readable .npy file ({exc})", exit_code=2) from None
        if arr.dtype.kind not in "iu" or arr.ndim != 1:
            raise IfguideError(f"--rows {path} holds a {arr.dtype} array of shape {arr.shape}, not a 1-D array of row "
                               "indices", exit_code=2)
        return [int(x) for x in arr]
    out = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise IfguideError(f"--rows {path} is not a text file", hint="one row index per line, or a .npy array",
                           exit_code=2) from None
    for lineno, line in enumerate(lines, 1):
        if line.strip():
            try:
                out.append(int(line))
            except ValueError:
                raise IfguideError(f"{path}:{lineno} is {line.strip()[:40]!r}, not a row index", exit_code=2) from None
    return out
