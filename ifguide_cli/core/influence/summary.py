"""The summary a scores artifact carries: score statistics over the predicted tokens, throughput, and on a
corpus with planted toxic documents (the tiny one) their mean score against the clean ones.

Read from the memory-mapped scores file in row chunks, so a summary of a billion-token corpus needs
memory for one chunk and one number per row, never the score tensor.
"""

from __future__ import annotations

import math

import numpy as np

from ifguide_cli.core.masking.arrays import CHUNK_ELEMENTS, row_chunks

SAMPLE = 1 << 22  # the p99 is estimated on at most this many scores (every k-th predicted token)


def score_summary(scores, corpus, elapsed: float, processes: int, rows=None) -> dict:
    """Statistics of the label-aligned scores (N, T) over the tokens that are predicted (of the scored `rows`).

    `scores`: a numpy (memory-mapped) float tensor, or BF16 words (uint16) that are widened chunk by chunk."""
    n_rows, seq_len = scores.shape
    scored = np.ones(n_rows, dtype=bool)
    if rows is not None:  # part of the rows was scored: the others are left out of every figure
        scored = np.zeros(n_rows, dtype=bool)
        scored[np.asarray(rows, dtype=np.int64)] = True
    stats = _Accumulator(n_rows, _stride(corpus.attention_mask, scored))
    for r0, r1 in row_chunks(n_rows, seq_len, CHUNK_ELEMENTS):
        stats.add(r0, _floats(scores[r0:r1]), _predicted(corpus.attention_mask, r0, r1) & scored[r0:r1, None])
    summary = {
        "documents": n_rows, "seq_len": seq_len, "tokens": stats.count, **stats.statistics(),
        "processes": processes,
    }
    scored_rows = n_rows if rows is None else len(rows)
    if rows is not None:
        summary["scored_rows"] = scored_rows
    if elapsed > 0:
        summary["seconds"] = round(elapsed, 3)
        summary["tokens_per_s"] = round(scored_rows * seq_len / elapsed, 1)
    if corpus.planted_toxic is not None:
        summary.update(_planted_means(stats, np.asarray(corpus.planted_toxic, dtype=bool), scored))
    return summary


def query_counts(toxic, safe) -> dict:
    """How many queries of each set were used, and how many were dropped for having no continuation token."""
    return {"toxic_queries": len(toxic.pairs), "safe_queries": len(safe.pairs) if safe else 0,
            "dropped_empty_queries": toxic.dropped + (safe.dropped if safe else 0)}


def _floats(chunk) -> np.ndarray:
    from ifguide_cli.core.masking.scorefile import bf16_to_float32

    chunk = np.asarray(chunk)
    return bf16_to_float32(chunk) if chunk.dtype == np.uint16 else chunk.astype(np.float32, copy=False)


def _predicted(attention_mask, r0: int, r1: int) -> np.ndarray:
    """Positions whose token is predicted (column 0 never is) in rows r0..r1."""
    att = np.asarray(attention_mask[r0:r1]) != 0
    out = np.zeros_like(att)
    out[:, 1:] = att[:, 1:]
    return out


def _stride(attention_mask, scored: np.ndarray) -> int:
    """Every k-th predicted token goes into the p99 sample, so that it holds at most `SAMPLE` scores."""
    n_rows, seq_len = attention_mask.shape
    total = sum(int((_predicted(attention_mask, r0, r1) & scored[r0:r1, None]).sum())
                for r0, r1 in row_chunks(n_rows, seq_len, CHUNK_ELEMENTS))
    return max(1, math.ceil(total / SAMPLE))


class _Accumulator:
    """Sums, extremes, a strided sample and per-row sums of the predicted tokens' scores, chunk by chunk."""

    def __init__(self, n_rows: int, stride: int):
        self.count, self.total, self.squares, self.top, self.positive = 0, 0.0, 0.0, -np.inf, 0
        self.stride, self.offset = stride, 0
        self.sample: list[np.ndarray] = []  # every `stride`-th score of each chunk
        self.row_sum, self.row_count = np.zeros(n_rows), np.zeros(n_rows, dtype=np.int64)

    def add(self, r0: int, values: np.ndarray, valid: np.ndarray) -> None:
        picked = values[valid].astype(np.float64)
        self.count += picked.size
        self.total += float(picked.sum())
        self.squares += float(np.square(picked).sum())
        if picked.size:
            self.top = max(self.top, float(picked.max()))
        self.positive += int((picked > 0).sum())
        self.sample.append(picked[(-self.offset) % self.stride::self.stride].astype(np.float32))
        self.offset = (self.offset + picked.size) % self.stride
        self.row_sum[r0:r0 + len(values)] = np.where(valid, values, 0).sum(1, dtype=np.float64)
        self.row_count[r0:r0 + len(values)] = valid.sum(1)

    def statistics(self) -> dict:
        """Mean, spread, p99, max and the positive share (0 when there is nothing)."""
        if self.count == 0:
            return {"score_mean": 0.0, "score_std": 0.0, "score_p99": 0.0, "score_max": 0.0, "positive_fraction": 0.0}
        mean = self.total / self.count
        var = max(0.0, (self.squares - self.count * mean * mean) / (self.count - 1)) if self.count > 1 else 0.0
        return {"score_mean": mean, "score_std": math.sqrt(var), "score_p99": float(np.quantile(np.concatenate(self.sample), 0.99)),
                "score_max": self.top, "positive_fraction": self.positive / self.count}


def _planted_means(stats: _Accumulator, planted: np.ndarray, scored: np.ndarray) -> dict:
    """Mean document score of the planted toxic documents and of the clean ones (when both exist)."""
    planted, clean = planted & scored, ~planted & scored
    if not (planted.any() and clean.any()):
        return {}
    doc_mean = stats.row_sum / np.maximum(stats.row_count, 1)
    return {"planted_toxic_doc_mean": float(doc_mean[planted].mean()), "clean_doc_mean": float(doc_mean[clean].mean())}
