"""Toxic-token selection (IF-Guide, paper Alg. 1), vectorised and chunked for billion-token score tensors.

Semantics — exactly those of the reference script's `build_toxic_token_mask`
(the per-token Python loop), with the deviations listed at the end:

1. τ = the p-quantile of all token scores, linearly interpolated as
   `numpy.quantile(scores.ravel(), p)` computes it by default (same dtype, same
   rounding). A token is *above threshold* when its score is strictly > τ.
2. Per document i: sparsity s_i = #tokens above τ, strength f_i = sum of their
   scores. Both are min-max normalised over documents; when max == min every
   normalised value is 0.
3. Rank key h_i = 2·s'_i·f'_i / (s'_i + f'_i), 0 where s'_i + f'_i == 0. The
   ranking is all documents by h descending; ties keep the lower index first.
4. Greedy walk: documents in ranking order, inside a document its
   above-threshold tokens left to right. Each token adds the window
   [t-w, t+w] ∩ [0, seq_len) of its document; only tokens not yet marked count.
   When the next token's new tokens would take the total over the budget L the
   walk ends (it does not skip to a smaller document): tokens marked before it,
   including earlier ones of the same document, stay marked.

Optional `valid` (bool, same shape; e.g. the attention mask): invalid positions
are left out of the quantile, are never above threshold, and are never marked,
not even as context (so padding never spends budget).

Deviations from the reference script (all deliberate, all documented in
docs/mask.md): it normalises with `(x - min) / (max - min + 1e-6)` and
`2ab / (a + b + 1e-6)` in float32, which makes the ranking depend on the scale
of the scores (a strength range below ~1e-4 gets squashed); here normalisation
is exact in float64 with the max == min guard. Strength is summed in float64
(the reference sums in float32). The reference's torch argsort is not stable;
here ties rank by lower document index.

How it is vectorised (no per-token Python loop, O(chunk) extra memory):
- τ: an exact radix selection (see `radix.py`).
- One pass over documents in chunks computes s, f and the dilated
  above-threshold set (written straight into the output mask) and its size
  c_i per document. Documents never share tokens, so a document fully walked
  adds exactly c_i new tokens; a cumulative sum over the ranking finds the
  document where the budget runs out. Inside that document the tokens marked
  after its k-th above-threshold token t_k are exactly the dilated set cut at
  t_k + w (later windows start right of t_k - w), so a cumulative sum along
  the row finds the stopping token too.
Peak memory: per-chunk temporaries (~32 bytes × chunk elements), a few numbers per
document (s, f, h, the ranking, the counts), and what the caller passes in: the
scores and the output mask may be in memory, or `row_blocks.FileRows` views of
files read and written a block of rows at a time (the mask stage's case: its
memory then does not grow with the corpus beyond the per-document numbers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ifguide_cli.core.masking.arrays import CHUNK_ELEMENTS, as_2d, check_dtype, check_valid, row_chunks
from ifguide_cli.core.masking.config import MaskConfig
from ifguide_cli.core.masking.radix import quantile_and_count
from ifguide_cli.core.masking.row_blocks import Rows, WritableRows
from ifguide_cli.core.progress import NULL


@dataclass
class MaskResult:
    """The selection: the mask, the document ranking and the per-document statistics."""

    mask: Rows  # bool (docs, seq_len): tokens to penalise (in memory, or the mask file's view)
    ranking: np.ndarray  # int64 (docs,): document indices, best first (by harmonic)
    threshold_value: float  # τ
    tokens_selected: int
    documents_selected: int  # documents with at least one marked token
    budget_used: float  # tokens_selected / max_tokens (0 when the budget is 0)
    sparsity: np.ndarray  # int64 (docs,): s_i, tokens above τ
    strength: np.ndarray  # float64 (docs,): f_i, sum of their scores
    harmonic: np.ndarray  # float64 (docs,): h_i, the rank key
    candidate_counts: np.ndarray  # int64 (docs,): tokens the document adds if walked in full (dilated)
    selected_counts: np.ndarray  # int64 (docs,): tokens actually marked
    stopped_at_rank: int | None  # rank position where the budget ended the walk; None if it never did
    config: MaskConfig = field(default_factory=MaskConfig)
    num_scores: int = 0  # token scores the quantile was taken over
    tokens_above: int = 0  # sum of sparsity

    def summary(self) -> dict[str, Any]:
        docs, seq_len = self.mask.shape
        return {
            "threshold": self.config.threshold,
            "window": self.config.window,
            "max_tokens": self.config.max_tokens,
            "threshold_value": self.threshold_value,
            "docs": int(docs),
            "seq_len": int(seq_len),
            "num_scores": int(self.num_scores),
            "tokens_above_threshold": int(self.tokens_above),
            "tokens_selected": int(self.tokens_selected),
            "documents_selected": int(self.documents_selected),
            "budget_used": float(self.budget_used),
            "budget_exhausted": self.stopped_at_rank is not None,
            "stopped_at_rank": self.stopped_at_rank,
        }


@dataclass
class _Candidates:
    """Per document, before the walk: every above-threshold token dilated by w (the mask if the budget were ∞)."""

    mask: WritableRows  # bool (docs, seq_len)
    sparsity: np.ndarray  # int64 (docs,)
    strength: np.ndarray  # float64 (docs,)
    counts: np.ndarray  # int64 (docs,): marked tokens of the document's dilated set


def _dilate(above: np.ndarray, w: int) -> np.ndarray:
    """Each True position spread to [t-w, t+w] within its row (clipped)."""
    if w == 0:
        return above.copy()
    seq_len = above.shape[1]
    if w <= 8:
        out = above.copy()
        for k in range(1, min(w, seq_len - 1) + 1):
            out[:, k:] |= above[:, :-k]
            out[:, :-k] |= above[:, k:]
        return out
    csum = np.zeros((above.shape[0], seq_len + 1), dtype=np.int32)
    np.cumsum(above, axis=1, dtype=np.int32, out=csum[:, 1:])
    pos = np.arange(seq_len)
    hi = np.minimum(pos + w, seq_len - 1) + 1
    lo = np.maximum(pos - w, 0)
    return (csum[:, hi] - csum[:, lo]) > 0


def _minmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    if x.size == 0:
        return x
    lo, hi = x.min(), x.max()
    if hi > lo:
        return (x - lo) / (hi - lo)
    return np.zeros_like(x)


def harmonic_rank(sparsity: np.ndarray, strength: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(h, ranking): the min-max normalised harmonic mean and the stable descending order."""
    s = _minmax(sparsity)
    f = _minmax(strength)
    denom = s + f
    h = np.zeros_like(s)
    nz = denom > 0
    h[nz] = (2.0 * s[nz] * f[nz]) / denom[nz]
    ranking = np.argsort(-h, kind="stable").astype(np.int64)
    return h, ranking


def _candidates(scores: Rows, tau: np.generic, valid: Rows | None, w: int, chunk_elements: int, task,
                mask: WritableRows) -> _Candidates:
    """One chunked pass over the documents: s_i, f_i and the dilated above-threshold set (written into `mask`,
    all False so far) with its size."""
    docs, seq_len = scores.shape
    out = _Candidates(mask, np.zeros(docs, dtype=np.int64),
                      np.zeros(docs, dtype=np.float64), np.zeros(docs, dtype=np.int64))
    for r0, r1 in row_chunks(docs, seq_len, chunk_elements):
        block = np.asarray(scores[r0:r1])
        above = block > tau
        if valid is not None:
            vblock = np.asarray(valid[r0:r1])
            above &= vblock
        counts = np.count_nonzero(above, axis=1)
        out.sparsity[r0:r1] = counts
        vals = block[above].astype(np.float64)  # row-major: each document's values contiguous
        nonempty = np.flatnonzero(counts)
        if nonempty.size:
            starts = np.concatenate([[0], np.cumsum(counts)[:-1]])[nonempty]
            out.strength[r0 + nonempty] = np.add.reduceat(vals, starts)
        dil = _dilate(above, w)
        if valid is not None:
            dil &= vblock
        out.mask[r0:r1] = dil
        out.counts[r0:r1] = np.count_nonzero(dil, axis=1)
        task.advance((r1 - r0) * seq_len)
    return out


def _cut_row(row: np.ndarray, above: np.ndarray, w: int, room: int) -> None:
    """Unmark, in place, what the walk does not reach in the document where the budget runs out.

    `row` is the document's dilated set, `above` its above-threshold tokens, `room` the budget left.
    The tokens marked up to the k-th centre are the dilated set cut at t_k + w.
    """
    seq_len = row.shape[0]
    centers = np.flatnonzero(above)
    row_cum = np.cumsum(row)
    union_after = row_cum[np.minimum(centers + w, seq_len - 1)]  # marked in the document after each center
    k = int(np.searchsorted(union_after, room, side="right"))  # first overflowing center
    if k == 0:
        row[:] = False
    else:
        row[min(seq_len, int(centers[k - 1]) + w + 1):] = False


def _walk(cand: _Candidates, ranking: np.ndarray, scores: Rows, tau: np.generic, valid: Rows | None,
          config: MaskConfig) -> tuple[np.ndarray, int | None]:
    """Alg. 1's walk over its candidates (see `walk_budget`); a document's centres are its tokens above τ."""

    def above(j: int) -> np.ndarray:
        row = np.asarray(scores[j]) > tau
        return row & np.asarray(valid[j]) if valid is not None else row

    return walk_budget(cand.mask, cand.counts, ranking, above, config.window, config.max_tokens)


def walk_budget(mask: WritableRows, counts: np.ndarray, ranking: np.ndarray, centers_of, window: int,
                budget: int) -> tuple[np.ndarray, int | None]:
    """The greedy walk over the ranking, shared by every mask source so that a budget means the same everywhere:
    whole documents while the running total fits the budget, then the stopping document cut at its last
    fitting centre. `mask` holds each document's candidate tokens (its centres dilated by `window`) and is
    trimmed to the selection in place; `counts` are their sizes; `centers_of(j)` gives document j's centres.
    Returns (tokens marked per document, rank position where the budget ended the walk or None)."""
    docs = ranking.shape[0]
    cum = np.cumsum(counts[ranking])
    stop = int(np.searchsorted(cum, budget, side="right"))  # first rank position that overflows
    selected = np.zeros(docs, dtype=np.int64)
    stopped_at_rank: int | None = None
    if stop < docs:
        stopped_at_rank = stop
        used_before = int(cum[stop - 1]) if stop > 0 else 0
        j = int(ranking[stop])
        row = np.array(mask[j], dtype=bool)
        _cut_row(row, centers_of(j), window, budget - used_before)
        mask[j] = row
        selected[j] = int(np.count_nonzero(row))
        # every document ranked after the stop is not marked (those without candidates hold none already)
        rest = ranking[stop + 1:]
        rest = np.sort(rest[counts[rest] > 0])
        if rest.size:
            mask[rest] = False
    walked = ranking[:stop]
    selected[walked] = counts[walked]
    return selected, stopped_at_rank


def select_toxic_tokens(scores: Rows, config: MaskConfig | None = None, valid: Rows | None = None,
                        *, reporter=NULL, chunk_elements: int = CHUNK_ELEMENTS, out: WritableRows | None = None) -> MaskResult:
    """Alg. 1 on a (docs, seq_len) score tensor (in memory, memory-mapped, or a `FileRows` view). See the module
    docstring. The mask is written into `out` (all False, the scores' shape; e.g. `mask_file.MaskFile`), or a new
    in-memory array."""
    config = config or MaskConfig()
    scores = as_2d(check_dtype(scores))
    if valid is not None:
        valid = check_valid(valid, scores.shape)
    docs, seq_len = scores.shape
    total = docs * seq_len
    passes = 1 + scores.dtype.itemsize // 2  # quantile digit passes + the document pass

    with reporter.task("Selecting toxic tokens", total=total * passes) as task:
        tau, n = quantile_and_count(scores, config.threshold, valid, chunk_elements, task)
        task.set(completed=total * (passes - 1), info=f"τ = {float(tau):.4g}")
        mask = np.zeros((docs, seq_len), dtype=bool) if out is None else out
        cand = _candidates(scores, tau, valid, config.window, chunk_elements, task, mask)
        harmonic, ranking = harmonic_rank(cand.sparsity, cand.strength)
        selected, stopped_at_rank = _walk(cand, ranking, scores, tau, valid, config)

    budget = config.max_tokens
    tokens_selected = int(selected.sum())
    return MaskResult(
        mask=cand.mask,
        ranking=ranking,
        threshold_value=float(tau),
        tokens_selected=tokens_selected,
        documents_selected=int(np.count_nonzero(selected)),
        budget_used=(tokens_selected / budget) if budget > 0 else 0.0,
        sparsity=cand.sparsity,
        strength=cand.strength,
        harmonic=harmonic,
        candidate_counts=cand.counts,
        selected_counts=selected,
        stopped_at_rank=stopped_at_rank,
        config=config,
        num_scores=n,
        tokens_above=int(cand.sparsity.sum()),
    )


def select_marked(marks: np.ndarray, key: np.ndarray, strength: np.ndarray, max_tokens: int, *,
                  threshold_value: float, num_scores: int, out: WritableRows | None = None) -> MaskResult:
    """Alg. 1's budgeted walk over tokens another source marked (a classifier, a word list), so a budget L
    selects the same way whatever found the tokens: documents ranked by `key` descending (ties: the lower
    index first), inside a document its marked tokens left to right, no context window.

    The marks are copied, a block of rows at a time, into `out` (all False, their shape; e.g. a
    `mask_file.MaskFile`), or into a new in-memory array, and the walk trims the copy.
    In the result `sparsity` counts each document's marked tokens, `strength` is the source's per-document
    evidence and `harmonic` holds the rank key (what the label metrics rank by)."""
    counts = np.count_nonzero(marks, axis=1).astype(np.int64)
    if out is None:
        mask: WritableRows = np.array(marks, dtype=bool)
    else:
        mask = out
        for r0, r1 in row_chunks(marks.shape[0], marks.shape[1], CHUNK_ELEMENTS):
            mask[r0:r1] = np.asarray(marks[r0:r1], dtype=bool)
    key = np.asarray(key, dtype=np.float64)
    ranking = np.argsort(-key, kind="stable").astype(np.int64)
    selected, stopped_at_rank = walk_budget(mask, counts, ranking, lambda j: np.array(marks[j], dtype=bool), 0,
                                            max_tokens)
    tokens_selected = int(selected.sum())
    return MaskResult(mask=mask, ranking=ranking, threshold_value=float(threshold_value), tokens_selected=tokens_selected,
                      documents_selected=int(np.count_nonzero(selected)),
                      budget_used=(tokens_selected / max_tokens) if max_tokens > 0 else 0.0,
                      sparsity=counts, strength=np.asarray(strength, dtype=np.float64), harmonic=key,
                      candidate_counts=counts.copy(), selected_counts=selected, stopped_at_rank=stopped_at_rank,
                      config=MaskConfig(threshold=0.0, window=0, max_tokens=max_tokens), num_scores=int(num_scores),
                      tokens_above=int(counts.sum()))
