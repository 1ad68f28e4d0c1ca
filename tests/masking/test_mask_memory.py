"""The mask stage in bounded memory: scores read and the mask written a block of rows at a time, same bytes as before.

The reference digests were computed with the code before streaming (main at 552481b: `load_scores`, which widened
a bf16 file to a whole float32 array, `select_toxic_tokens` into an in-memory mask, and `write_mask` through
`save_safetensors`) on the scores `_case` makes; the stage must write byte-identical mask files from every storage.
"""

from __future__ import annotations

import hashlib
import tracemalloc

import numpy as np
import pytest

from ifguide_cli.core.masking import MaskConfig, save_safetensors, select_marked
from ifguide_cli.core.masking.mask_file import MaskFile, write_mask
from ifguide_cli.core.masking.row_blocks import FileRows
from ifguide_cli.core.masking.scorefile import open_scores, open_tensor, preallocate_safetensors
from ifguide_cli.core.masking.source import MaskRefs
from ifguide_cli.core.masking.stage import InfluenceMaskStage
from ifguide_cli.core.stage import run_stage
from ifguide_cli.core.store.artifact_files import CORPUS_FILE, MASK_FILE, ROWS_KEY
from ifguide_cli.core.store.workspace import Workspace

# (window, budget, attention mask counted, rows scored) → sha256[:16] of mask.safetensors per storage (main 552481b)
REFERENCE = {
    (1, 700, True, "all"): {"fp32": "773a2f4e714a0cfb", "bf16": "ce01ad0900713f5c", "fp16": "08e38f1806c6329e"},
    (10, 2500, True, "all"): {"fp32": "d69097405da6c4eb", "bf16": "270a86172fa24dd6", "fp16": "c82718e89856280e"},
    (1, 400, False, "all"): {"fp32": "a8f57e50a9a6467f", "bf16": "94e8931096d25310", "fp16": "6c1d2d6d23dcea91"},
    (2, 600, True, "half"): {"fp32": "4c7ce3723c998504", "bf16": "3bc01302b665dec9", "fp16": "880a83c6f884cf52"},
}
STORAGE = {"fp32": "F32", "bf16": "BF16", "fp16": "F16"}


def _case(docs: int, seq_len: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores (a few heavy documents) and an attention mask (random lengths) of the reference cases."""
    rng = np.random.default_rng(seed)
    scores = rng.standard_normal((docs, seq_len)).astype(np.float32)
    scores[rng.random(docs) < 0.05] *= 4
    lengths = rng.integers(1, seq_len + 1, docs)
    return scores, np.arange(seq_len)[None, :] < lengths[:, None]


def _write_scores(path, scores: np.ndarray, storage: str, rows: np.ndarray | None = None) -> None:
    """A scores file in `storage` (bf16: the float32 bits' top half), with the scored rows when only some were."""
    layout = {"scores": (STORAGE[storage], scores.shape)}
    if rows is not None:
        layout[ROWS_KEY] = ("I64", rows.shape)
    preallocate_safetensors(path, layout, {ROWS_KEY: rows} if rows is not None else None)
    out = open_tensor(path, "scores")
    out[...] = (scores.view(np.uint32) >> 16).astype(np.uint16) if storage == "bf16" else scores.astype(out.dtype)
    out.flush()
    del out


def _scores_artifact(ws: Workspace, scores: np.ndarray, valid: np.ndarray, storage: str, rows=None) -> str:
    """A dataset artifact whose attention mask is `valid`, and a scores artifact over it; returns the scores id."""

    def dataset(ctx):
        save_safetensors(ctx.staging / CORPUS_FILE, {"input_ids": np.zeros(valid.shape, np.int32),
                                                     "attention_mask": valid.astype(np.uint8)})
        return {}

    tag = f"{storage}-{None if rows is None else rows.size}-{hashlib.sha256(scores.tobytes()).hexdigest()[:8]}"
    ds = ws.create("datasets", {"test": tag}, [], dataset)[0]

    def build(ctx):
        _write_scores(ctx.staging / "scores.safetensors", scores, storage, rows)
        return {}

    return ws.create("scores", {"dataset": ds.id, "test": tag}, [ds.id], build)[0].id


def _mask(ws: Workspace, scores_id: str, config: MaskConfig, chunk_elements: int, all_positions: bool = False):
    stage = InfluenceMaskStage(chunk_elements=chunk_elements)
    return run_stage(ws, stage, stage.inputs(ws, MaskRefs(scores_id, all_positions=all_positions)), config).artifact


@pytest.mark.parametrize("storage", ["fp32", "bf16", "fp16"])
def test_the_stage_writes_the_bytes_the_in_memory_code_wrote(tmp_path, storage):
    ws = Workspace(tmp_path / "ws")
    scores, valid = _case(300, 64, 7)
    for (window, budget, counted, rows), digests in REFERENCE.items():
        scored = np.arange(0, 300, 2) if rows == "half" else None
        art = _mask(ws, _scores_artifact(ws, scores, valid, storage, scored),
                    MaskConfig(threshold=0.9, window=window, max_tokens=budget), chunk_elements=64 * 7,
                    all_positions=not counted)  # 7 rows a block: 43 blocks
        assert hashlib.sha256(art.file(MASK_FILE).read_bytes()).hexdigest()[:16] == digests[storage], (window, budget)
        assert art.summary["budget_exhausted"] and art.summary["tokens_selected"] <= budget


def test_marks_walked_in_memory_or_in_the_file_are_written_as_save_safetensors_wrote_them(tmp_path):
    """The cheap sources and `mask transfer` (`select_marked`): the walk on an in-memory copy of the marks, written
    by `write_mask`, and the walk in the mask file itself give the file `save_safetensors` wrote before."""
    rng = np.random.default_rng(3)
    marks = rng.random((50, 40)) < 0.1
    key, strength = rng.random(50), marks.sum(axis=1).astype(np.float64)
    res = select_marked(marks, key, strength, 60, threshold_value=0.0, num_scores=marks.size)
    assert res.stopped_at_rank is not None
    write_mask(tmp_path / "memory.safetensors", res)
    in_file = select_marked(marks, key, strength, 60, threshold_value=0.0, num_scores=marks.size,
                            out=MaskFile(tmp_path / "file.safetensors", marks.shape))
    write_mask(tmp_path / "file.safetensors", in_file)
    save_safetensors(tmp_path / "old.safetensors", {"mask": res.mask, "ranking": res.ranking, "sparsity": res.sparsity,
                                                    "strength": res.strength, "harmonic": res.harmonic,
                                                    "selected": res.selected_counts})
    old = (tmp_path / "old.safetensors").read_bytes()
    assert (tmp_path / "memory.safetensors").read_bytes() == old == (tmp_path / "file.safetensors").read_bytes()


class _TracedMaskStage(InfluenceMaskStage):
    """The mask stage, recording the most memory its build held at once as tracemalloc counts it (numpy reports its
    buffers to tracemalloc; memory maps are not counted). The workspace's publishing is not the stage's: its quick
    checksum reads up to 2 MiB of a file, whatever its size."""

    peak = 0

    def build(self, ctx, inputs, config):
        tracemalloc.start()
        try:
            return super().build(ctx, inputs, config)
        finally:
            self.peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()


def _traced_peak(tmp_path, storage: str, docs: int, seq_len: int = 4096) -> int:
    ws = Workspace(tmp_path / f"ws-{docs}")
    scores, valid = _case(docs, seq_len, 11)
    scores_id = _scores_artifact(ws, scores, valid, storage)
    del scores, valid
    stage = _TracedMaskStage(chunk_elements=seq_len * 16)  # 16 rows a block
    inputs = stage.inputs(ws, MaskRefs(scores_id))
    assert isinstance(inputs.source.scores, FileRows) and isinstance(inputs.source.valid, FileRows)
    art = run_stage(ws, stage, inputs, MaskConfig(threshold=0.95, window=2, max_tokens=docs * 4)).artifact
    assert art.summary["budget_exhausted"] and art.summary["tokens_selected"] > docs * 3
    return stage.peak


@pytest.mark.parametrize("storage", ["fp32", "bf16", "fp16"])
def test_the_stage_never_holds_a_whole_corpus_array(tmp_path, storage):
    """8× the tokens (0.8M → 6.6M) add (nearly) nothing to the peak: not a whole float32 copy of the scores
    (4 B/token, what a bf16 file cost before), nor an in-memory mask (1 B/token); only the per-document numbers.
    (The peak's ~2 MB floor is the quantile's 65,536-bin histograms, whatever the corpus.)"""
    small, large = _traced_peak(tmp_path, storage, 200), _traced_peak(tmp_path, storage, 1600)
    tokens = (1600 - 200) * 4096
    assert large - small < tokens // 4, f"peak {small:,} → {large:,} B for {tokens:,} more tokens"


def test_rows_views_read_and_write_blocks(tmp_path):
    scores = np.arange(60, dtype=np.float32).reshape(10, 6)
    _write_scores(tmp_path / "s.safetensors", scores, "bf16")
    view = open_scores(tmp_path / "s.safetensors")
    assert view.dtype == np.float32 and view.shape == (10, 6)
    np.testing.assert_array_equal(view[2:5], scores[2:5])  # small integers are exact in bf16
    np.testing.assert_array_equal(view[-1], scores[-1])
    with pytest.raises(TypeError, match="block of rows"):
        np.asarray(view)
    mask = MaskFile(tmp_path / "m.safetensors", (10, 6))
    mask[0:10] = np.ones((10, 6), dtype=bool)
    mask[np.array([1, 3, 8])] = False
    mask[4] = np.array([0, 1, 0, 1, 0, 1], dtype=bool)
    expected = np.ones((10, 6), dtype=bool)
    expected[[1, 3, 8]] = False
    expected[4] = [0, 1, 0, 1, 0, 1]
    np.testing.assert_array_equal(mask[:], expected)
    mask._write_listed(np.array([0, 5, 9]), False, span=6)  # one row per map: three maps
    expected[[0, 5, 9]] = False
    np.testing.assert_array_equal(mask[:], expected)
