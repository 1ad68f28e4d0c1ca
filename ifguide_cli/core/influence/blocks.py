"""Scoring in blocks of rows, each written into the artifact as soon as it is done (bounded memory, resumable).

kronfluence 1.0.1 keeps the per-token scores of every batch of a pass in a list and concatenates them at
the end (`score/dot_product.py`, `compute_dot_products_with_loader`), then saves them in one file: one
pass over the whole corpus holds the corpus's scores several times over, and a killed pass loses them
all. Here the scored rows are cut into blocks; each block is one kronfluence pass, and its label-aligned
scores go straight into the final `scores.safetensors`, which is created at its full size at the start
and written through a memory map (`masking.scorefile.open_tensor`), in the storage dtype asked for.
`BLOCKS_FILE` records the finished blocks; it is rewritten after each block is flushed to disk, so a
killed run continues from the last complete block. Peak memory: one block's scores and the model's
working set, whatever the corpus size. Each block's pass repeats the aggregated query gradient, so the
default block is at least 20× the query tokens (`plan_blocks`): a query set as large as the paper's (84k
queries) makes the blocks large, and `--partitions` trades that repetition for memory.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ifguide_cli.core.errors import IfguideError

if TYPE_CHECKING:
    import numpy as np

BLOCKS_FILE = ".blocks.json"  # the staging folder's record of finished blocks
BLOCK_TOKENS = 1 << 22  # default block: at least this many tokens (16 MB of float32 scores); see `plan_blocks`
# Each block's kronfluence pass recomputes the aggregated query gradient (one forward+backward per query token).
# A per-token score costs ~2 forward+backward (123k vs 254k tokens/s, Pythia-160M on an H100, the paper plan's
# anchors), so a block of ≥ 20× the query tokens keeps the repeated query passes under ~2.5% of the scoring.
QUERY_TOKEN_RATIO = 20
STORAGES = ("fp32", "bf16", "fp16")
_ST_DTYPE = {"fp32": "F32", "bf16": "BF16", "fp16": "F16"}
FP16_MAX = 65504.0


@dataclass(frozen=True)
class BlockPlan:
    """The scored rows (in order) cut into `count` consecutive blocks of about equal size."""

    rows: list[int] | None  # the scored rows (sorted); None: every row 0..n_rows-1
    n_rows: int  # rows of the dataset (the scores tensor's first dimension)
    scored: int  # how many rows are scored
    count: int

    def bounds(self, block: int) -> tuple[int, int]:
        """Positions [lo, hi) of the block among the scored rows."""
        size = math.ceil(self.scored / self.count)
        return min(self.scored, block * size), min(self.scored, (block + 1) * size)

    def block_rows(self, block: int) -> list[int]:
        lo, hi = self.bounds(block)
        return list(range(lo, hi)) if self.rows is None else self.rows[lo:hi]

    def describe(self) -> dict:
        return {"blocks": self.count, "scored_rows": self.scored}


def default_blocks(tokens: int, query_tokens: int) -> int:
    """How many blocks `tokens` training tokens are scored in by default (see `plan_blocks`)."""
    return max(1, tokens // max(BLOCK_TOKENS, QUERY_TOKEN_RATIO * query_tokens))


def plan_blocks(n_rows: int, seq_len: int, rows: list[int] | None, partitions: int | None, world: int,
                query_tokens: int = 0) -> BlockPlan:
    """`partitions` blocks, or by default as many as keep a block ≥ `BLOCK_TOKENS` tokens and ≥ 20× the query
    tokens (`QUERY_TOKEN_RATIO`: each block repeats the query pass). Every process gets rows of every block."""
    scored = n_rows if rows is None else len(rows)
    if partitions is None:
        count = min(default_blocks(scored * seq_len, query_tokens), max(1, scored // max(1, world)))
    else:
        count = partitions
    if scored < world * count:
        raise IfguideError(f"{scored} training rows cannot be split into {count} block(s) over {world} process(es)",
                           hint="use fewer --partitions or processes", exit_code=2)
    return BlockPlan(rows, n_rows, scored, count)


def encode(scores, storage: str) -> np.ndarray:
    """Label-aligned float32 scores (a torch tensor) in the storage dtype, as numpy (BF16 as uint16 words).

    bf16 rounds to nearest even (torch's conversion); fp16 refuses values it cannot hold rather than store inf."""
    import numpy as np
    import torch

    if storage == "fp32":
        return scores.float().numpy()
    if storage == "bf16":
        return scores.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    top = float(scores.abs().max()) if scores.numel() else 0.0
    if top > FP16_MAX:
        raise IfguideError(f"a score of magnitude {top:.3g} does not fit --storage fp16 (largest {FP16_MAX:g})",
                           hint="use --storage bf16 or fp32", exit_code=2)
    return scores.to(torch.float16).numpy()


def create_file(path: Path, plan: BlockPlan, seq_len: int, storage: str, names: list[str], rows_key: str | None) -> None:
    """The result file at its full size (unscored rows stay 0), with the scored rows' indices under `rows_key`."""
    import numpy as np

    from ifguide_cli.core.masking.scorefile import preallocate_safetensors

    layout: dict[str, tuple[str, tuple[int, ...]]] = {name: (_ST_DTYPE[storage], (plan.n_rows, seq_len)) for name in names}
    data = {}
    if rows_key is not None and plan.rows is not None:
        layout[rows_key] = ("I64", (plan.scored,))
        data[rows_key] = np.asarray(plan.rows, dtype=np.int64)
    preallocate_safetensors(path, layout, data)


def write_block(path: Path, tensors: dict, rows: list[int], storage: str) -> None:
    """Write each named (block rows, T) tensor at `rows` of the file's tensor of that name, and flush it to disk.

    The map is opened and closed per block, so the written pages leave this process's memory."""
    import numpy as np

    from ifguide_cli.core.masking.scorefile import open_tensor

    index = np.asarray(rows, dtype=np.int64)
    contiguous = index.size and index[-1] - index[0] + 1 == index.size
    for name, values in tensors.items():
        out = open_tensor(path, name)
        if contiguous:
            out[index[0]:index[-1] + 1] = encode(values, storage)
        else:
            out[index] = encode(values, storage)
        out.flush()
        del out


def finished_blocks(staging: Path, run: dict) -> set[int]:
    """The blocks a previous run of these settings finished (empty when none, or when it used other settings)."""
    path = staging / BLOCKS_FILE
    if not path.is_file():
        return set()
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return set()
    return set(state.get("done", [])) if state.get("run") == run else set()


def mark_finished(staging: Path, run: dict, done: set[int]) -> None:
    from ifguide_cli.core.store.workspace import atomic_write_text

    atomic_write_text(staging / BLOCKS_FILE, json.dumps({"run": run, "done": sorted(done)}))
