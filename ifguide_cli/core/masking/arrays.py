"""Checks and chunked iteration shared by the quantile, the selection and the score-file reader.

Score tensors can be billions of tokens and memory-mapped, so everything here walks them in row
chunks of about `CHUNK_ELEMENTS` elements and never copies the whole tensor.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.masking.row_blocks import RowBlocks, Rows

# Elements per chunk of the score tensor processed at once (~16 MB of float32).
CHUNK_ELEMENTS = 1 << 22


def row_chunks(n_rows: int, row_len: int, chunk_elements: int) -> Iterator[tuple[int, int]]:
    """(first row, end row) of consecutive blocks of whole rows, about `chunk_elements` each."""
    rows = max(1, chunk_elements // max(1, row_len))
    for r0 in range(0, n_rows, rows):
        yield r0, min(n_rows, r0 + rows)


def work_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype Alg. 1 works in for scores stored as `dtype`: native-endian float, integers and bools as float64."""
    if dtype.kind == "f" and dtype.itemsize in (2, 4, 8):
        return dtype if dtype.isnative else dtype.newbyteorder("=")
    if dtype.kind in "iub":
        return np.dtype(np.float64)
    raise IfguideError(f"scores must be a float tensor; got dtype {dtype}")


def check_dtype(scores: Rows) -> Rows:
    """The scores as a native-endian float tensor (integers and bools become float64; a `RowBlocks` view converts
    each block it reads itself)."""
    dtype = work_dtype(scores.dtype)
    if dtype is scores.dtype or isinstance(scores, RowBlocks):
        return scores
    return scores.astype(dtype)


def as_2d(scores: Rows) -> Rows:
    """A (docs, seq_len) view: a 1-D tensor is one document."""
    if isinstance(scores, RowBlocks):
        return scores
    if scores.ndim == 1:
        return scores.reshape(1, -1)
    if scores.ndim != 2:
        raise IfguideError(f"scores must be 2-D (docs, seq_len); got shape {tuple(scores.shape)}")
    return scores


def check_valid(valid: Rows, shape: tuple[int, ...]) -> Rows:
    """The validity mask as bool, of the scores' shape."""
    if isinstance(valid, RowBlocks):  # read a block at a time, already bool
        if valid.shape != tuple(shape) or valid.dtype != bool:
            raise IfguideError(f"valid mask {valid.shape} ({valid.dtype}) does not match scores {tuple(shape)}")
        return valid
    valid = np.asarray(valid)
    if valid.shape != tuple(shape):
        raise IfguideError(f"valid mask shape {tuple(valid.shape)} does not match scores {tuple(shape)}")
    return valid if valid.dtype == bool else valid.astype(bool)


def nonfinite_error(scores: Rows, valid: Rows | None, count: int, chunk_elements: int) -> IfguideError:
    """The error for `count` NaN/inf scores, naming the first one (found by a second chunked scan)."""
    docs, seq_len = scores.shape
    where = ""
    for r0, r1 in row_chunks(docs, seq_len, chunk_elements):
        bad = ~np.isfinite(np.asarray(scores[r0:r1]))
        if valid is not None:
            bad &= np.asarray(valid[r0:r1], dtype=bool)
        if bad.any():
            i, t = np.argwhere(bad)[0]
            where = f"; first at document {r0 + int(i)}, position {int(t)} ({np.asarray(scores[r0 + int(i)])[int(t)]})"
            break
    return IfguideError(f"scores contain {count} non-finite value(s) (NaN or inf){where}",
                        hint="influence scores must be finite; recompute them (e.g. with a larger damping factor)")


def check_finite(scores: Rows, valid: Rows | None = None, chunk_elements: int = CHUNK_ELEMENTS) -> None:
    """Raise IfguideError naming the first NaN/inf (a chunked scan; memory-mapped arrays stay on disk)."""
    scores = as_2d(scores)
    docs, seq_len = scores.shape
    bad = 0
    for r0, r1 in row_chunks(docs, seq_len, chunk_elements):
        block = ~np.isfinite(np.asarray(scores[r0:r1]))
        if valid is not None:
            block &= np.asarray(valid[r0:r1], dtype=bool)
        bad += int(np.count_nonzero(block))
    if bad:
        raise nonfinite_error(scores, valid, bad, chunk_elements)
