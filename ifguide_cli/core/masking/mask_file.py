"""The `masks` artifact's tensor file (`mask.safetensors`): the mask and the per-document statistics of a selection.

Its tensors, in this order: `mask` (bool, docs × seq_len), `ranking` (int64), `sparsity` (int64), `strength`
(float64), `harmonic` (float64), `selected` (int64) — one number per document for all but the mask. The file
is created at its full size before the selection runs (a sparse file of zeros: no token marked), so that Alg. 1
writes the mask straight into it a block of rows at a time (`MaskFile`) instead of holding it whole; the
per-document tensors are written when the selection ends. A mask selected in memory (the cheap sources, a
transfer) is written into the same layout, so every source's file has the same bytes for the same selection.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ifguide_cli.core.masking.arrays import CHUNK_ELEMENTS, row_chunks
from ifguide_cli.core.masking.row_blocks import FileRows
from ifguide_cli.core.masking.scorefile import open_tensor, preallocate_safetensors, write_tensors

if TYPE_CHECKING:
    from ifguide_cli.core.masking.select import MaskResult


def mask_layout(docs: int, seq_len: int) -> dict[str, tuple[str, tuple[int, ...]]]:
    """The file's tensors: {name: (safetensors dtype, shape)}, in file order."""
    per_doc = (int(docs),)
    return {"mask": ("BOOL", (int(docs), int(seq_len))), "ranking": ("I64", per_doc), "sparsity": ("I64", per_doc),
            "strength": ("F64", per_doc), "harmonic": ("F64", per_doc), "selected": ("I64", per_doc)}


class MaskFile(FileRows):
    """A new mask file at `path` (its full size, no token marked) and its `mask` tensor, written a block of rows at
    a time through a short-lived memory map: what `select_toxic_tokens(out=...)` fills."""

    def __init__(self, path: Path, shape: tuple[int, int]):
        preallocate_safetensors(path, mask_layout(*shape))
        super().__init__(partial(open_tensor, path, "mask"), shape, np.dtype(bool))
        self.path = Path(path)


def write_mask(path: Path, res: MaskResult) -> None:
    """The `masks` artifact's tensor file for a selection: its per-document tensors, and its mask unless the
    selection wrote it into this file already (a `MaskFile` at `path`)."""
    mask = res.mask
    if not (isinstance(mask, MaskFile) and mask.path == Path(path)):
        target = MaskFile(path, mask.shape)
        for r0, r1 in row_chunks(mask.shape[0], mask.shape[1], CHUNK_ELEMENTS):
            target[r0:r1] = np.asarray(mask[r0:r1], dtype=bool)
    write_tensors(path, {"ranking": res.ranking, "sparsity": res.sparsity, "strength": res.strength,
                         "harmonic": res.harmonic, "selected": res.selected_counts})
