"""Tensors in files, read and written a block of rows at a time: the mask stage's bounded-memory views.

A billion-token score tensor, its dataset's attention mask and the output mask are each read or written by
Alg. 1 in blocks of whole rows (`arrays.row_chunks`). A `FileRows` maps its file for one block only: each
access maps the tensor, copies (and converts: a bf16 score file is widened to float32 here, one block at a
time) or writes that block, and unmaps it. The process therefore never holds more than a block, and the pages
it touched do not stay mapped (a whole-file `np.memmap` keeps every page it read in the resident set until it
is closed). `np.asarray` of a view is refused: a caller that wants every row says so with `view[:]`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np


class RowBlocks(ABC):
    """A read-only (rows, columns) tensor whose rows are read on demand: `view[i]`, `view[a:b]`, `view[:]`."""

    ndim = 2

    def __init__(self, shape: tuple[int, int], dtype: np.dtype):
        self.shape = (int(shape[0]), int(shape[1]))
        self.dtype = np.dtype(dtype)

    @abstractmethod
    def read(self, r0: int, r1: int) -> np.ndarray:
        """Rows r0 … r1-1 as a new in-memory array of `dtype`."""

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: Any) -> np.ndarray:
        if isinstance(index, (int, np.integer)):
            i = int(index) + (self.shape[0] if index < 0 else 0)
            if not 0 <= i < self.shape[0]:
                raise IndexError(f"row {index} of {self.shape[0]}")
            return self.read(i, i + 1)[0]
        if isinstance(index, slice) and index.step in (None, 1):
            r0, r1, _ = index.indices(self.shape[0])
            return self.read(r0, max(r0, r1))
        raise TypeError(f"{type(self).__name__} reads a row or a range of rows, not {index!r}")

    def __array__(self, dtype=None, copy=None):
        raise TypeError(f"{type(self).__name__} is read a block of rows at a time; take view[:] to read every row")


class FileRows(RowBlocks):
    """A tensor of a file, mapped for one block of rows at a time (see the module docstring).

    `open_map()` maps the whole (rows, columns) tensor (a fresh `np.memmap`: only the pages a block touches are
    read, and they are released when the map is dropped); `convert` turns a stored block into `dtype` (None: a
    plain copy). Writable when `open_map` maps the file for writing."""

    def __init__(self, open_map: Callable[[], np.ndarray], shape: tuple[int, int], dtype: np.dtype,
                 convert: Callable[[np.ndarray], np.ndarray] | None = None):
        super().__init__(shape, dtype)
        self.open_map = open_map
        self.convert = convert

    def read(self, r0: int, r1: int) -> np.ndarray:
        if r1 <= r0 or self.shape[1] == 0:
            return np.zeros((max(0, r1 - r0), self.shape[1]), dtype=self.dtype)
        mapped = self.open_map()
        block = mapped[r0:r1]
        out = np.array(block, dtype=self.dtype) if self.convert is None else self.convert(block)
        del block, mapped
        return out

    def __setitem__(self, index: Any, value: Any) -> None:
        """Write rows: one (`view[i] = row`), a range (`view[a:b] = block`), or rows listed in ascending order
        (`view[rows] = value`, a scalar for all of them), a block of rows' span at a time."""
        if isinstance(index, np.ndarray) and index.ndim == 1:
            self._write_listed(index, value)
            return
        if isinstance(index, (int, np.integer)):
            index = slice(int(index), int(index) + 1)
            value = np.asarray(value)[None]
        if not (isinstance(index, slice) and index.step in (None, 1)):
            raise TypeError(f"FileRows writes a row, a range of rows or a sorted list of rows, not {index!r}")
        r0, r1, _ = index.indices(self.shape[0])
        self._write(r0, r1, partial(_assign, slice(None), value))

    def _write_listed(self, rows: np.ndarray, value: Any, span: int = 1 << 22) -> None:
        """`view[rows] = value` for sorted `rows`, mapping at most `span` elements' worth of rows at once."""
        per_map = max(1, span // max(1, self.shape[1]))
        i = 0
        while i < rows.size:
            lo = int(rows[i])
            j = int(np.searchsorted(rows, lo + per_map, side="left"))
            self._write(lo, int(rows[j - 1]) + 1, partial(_assign, rows[i:j] - lo, value))
            i = j

    def _write(self, r0: int, r1: int, assign: Callable[[np.ndarray], None]) -> None:
        if r1 <= r0 or self.shape[1] == 0:
            return
        mapped = self.open_map()
        block = mapped[r0:r1]
        assign(block)
        if isinstance(mapped, np.memmap):
            mapped.flush()
        del block, mapped


def _assign(index: Any, value: Any, block: np.ndarray) -> None:
    block[index] = value


class ScoredRows(RowBlocks):
    """The positions Alg. 1 counts when only some rows were scored: the valid positions (or every position) of the
    scored rows, none of the others. `scored` is one flag per row (what stays in memory)."""

    def __init__(self, valid: RowBlocks | np.ndarray | None, scored: np.ndarray, shape: tuple[int, int]):
        super().__init__(shape, np.dtype(bool))
        self.valid = valid
        self.scored = scored

    def read(self, r0: int, r1: int) -> np.ndarray:
        flags = self.scored[r0:r1, None]
        if self.valid is None:
            return np.broadcast_to(flags, (r1 - r0, self.shape[1])).copy()
        return flags & np.asarray(self.valid[r0:r1], dtype=bool)


Rows = np.ndarray | RowBlocks  # a (rows, columns) tensor: in memory, memory-mapped, or read a block at a time
WritableRows = np.ndarray | FileRows  # one that can be written: in memory, or a file's tensor (e.g. a mask file)
