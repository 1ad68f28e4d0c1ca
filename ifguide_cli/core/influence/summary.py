"""The summary a scores artifact carries: score statistics over the predicted tokens, throughput, and on a
corpus with planted toxic documents (the tiny one) their mean score against the clean ones."""

from __future__ import annotations

SAMPLE = 1 << 22  # the p99 is estimated on at most this many scores (a seeded sample)


def score_summary(total, corpus, toxic, safe, elapsed: float, processes: int, rows=None) -> dict:
    """Statistics of the label-aligned scores (N, T) over the tokens that are predicted (of the scored `rows`)."""
    import torch

    n_rows, seq_len = total.shape
    label_mask = torch.zeros_like(corpus.attention_mask, dtype=torch.bool)
    label_mask[:, 1:] = corpus.attention_mask[:, 1:].bool()  # tokens that are predicted
    scored = torch.ones(n_rows, dtype=torch.bool)
    if rows is not None:  # part of the rows was scored: the others are left out of every figure
        scored = torch.zeros(n_rows, dtype=torch.bool)
        scored[torch.tensor(rows, dtype=torch.long)] = True
        label_mask &= scored[:, None]
    summary = {
        "documents": n_rows, "seq_len": seq_len, "tokens": int(label_mask.sum()),
        "toxic_queries": len(toxic.pairs), "safe_queries": len(safe.pairs) if safe else 0,
        "dropped_empty_queries": toxic.dropped + (safe.dropped if safe else 0),
        **_statistics(total[label_mask]),
        "processes": processes,
    }
    scored_rows = n_rows if rows is None else len(rows)
    if rows is not None:
        summary["scored_rows"] = scored_rows
    if elapsed > 0:
        summary["seconds"] = round(elapsed, 3)
        summary["tokens_per_s"] = round(scored_rows * seq_len / elapsed, 1)
    if corpus.planted_toxic is not None:
        summary.update(_planted_means(total[scored], label_mask[scored], corpus.planted_toxic.bool()[scored]))
    return summary


def _statistics(values) -> dict:
    """Mean, spread, p99, max and the positive share of a 1-d tensor of scores (0 when empty)."""
    import numpy as np
    import torch

    if values.numel() == 0:
        return {"score_mean": 0.0, "score_std": 0.0, "score_p99": 0.0, "score_max": 0.0, "positive_fraction": 0.0}
    sample = values
    if values.numel() > SAMPLE:
        gen = torch.Generator().manual_seed(0)
        sample = values[torch.randint(values.numel(), (SAMPLE,), generator=gen)]
    return {
        "score_mean": float(values.double().mean()),
        "score_std": float(values.double().std()) if values.numel() > 1 else 0.0,
        "score_p99": float(np.quantile(sample.numpy(), 0.99)),
        "score_max": float(values.max()),
        "positive_fraction": float((values > 0).double().mean()),
    }


def _planted_means(total, label_mask, planted) -> dict:
    """Mean document score of the planted toxic documents and of the clean ones (when both exist)."""
    if not (planted.any() and (~planted).any()):
        return {}
    doc_mean = (total * label_mask).sum(1) / label_mask.sum(1).clamp(min=1)
    return {"planted_toxic_doc_mean": float(doc_mean[planted].mean()), "clean_doc_mean": float(doc_mean[~planted].mean())}
