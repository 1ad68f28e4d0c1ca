"""Document labels: parsing a 0/1 field of the user's data, and scoring a document ranking against it.

A label is a per-document fact the user already has ("this comment was marked offensive"). The mask
stage ranks documents by how strongly they drive toxicity; `label_metrics` says how well that ranking
finds the labelled documents: precision at k (k = the number of labelled documents) and the area under
the ROC curve, each to be read against the base rate (what a random ranking scores).
"""

from __future__ import annotations

from typing import Any

from ifguide_cli.core.errors import IfguideError

_TRUE = ("true", "1")
_FALSE = ("false", "0")


def parse_label(value: Any, where: str, field: str) -> bool:
    """A 0/1 or boolean value (strings "true"/"false"/"0"/"1" too, any case); else one line naming where and the field."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    hint = "every document needs 0/1 or true/false in the label field (or leave out --label-field)"
    if value is None:
        raise IfguideError(f"{where} has no value in label field {field!r}", hint=hint, exit_code=2)
    raise IfguideError(f"{where}: label field {field!r} is {value!r:.40}, not 0/1 or true/false", hint=hint, exit_code=2)


def label_metrics(ranking, labels, *, scores=None, doc_ids=None) -> dict[str, Any]:
    """How well a ranking (row indices, most toxic first) finds the labelled rows or documents.

    `labels` (one 0/1 per row) is indexed by the ranking's entries. `scores` (one per row, higher = more
    toxic) lets tied rows share a rank in the AUC; without it, the ranking's order is the score. With
    `doc_ids` (one per row) rows of the same document count once, at their best rank: the metrics are
    then about documents, whatever the layout split them into. k is the number of labelled positives
    among the ranked items; precision@k and AUC are None when there are no positives (AUC also when
    there are no negatives).
    """
    import numpy as np

    ranking = np.asarray(ranking, dtype=np.int64).reshape(-1)
    positive = np.asarray(labels).astype(bool)
    if scores is not None:
        rank_scores = np.asarray(scores, dtype=np.float64)[ranking]
        if not np.isfinite(rank_scores).all():
            raise ValueError("label_metrics: scores must be finite")
    else:
        rank_scores = -np.arange(len(ranking), dtype=np.float64)
    if doc_ids is not None:
        _, first = np.unique(np.asarray(doc_ids)[ranking], return_index=True)
        keep = np.sort(first)  # each document's best-ranked row, in ranking order
        ranking, rank_scores = ranking[keep], rank_scores[keep]
    pos = positive[ranking]
    n, k = len(pos), int(pos.sum())
    return {
        "label_documents": n,
        "label_positive_documents": k,
        "label_base_rate": k / n if n else None,
        "label_precision_at_k": float(pos[:k].mean()) if k else None,
        "label_auc": _auc(rank_scores, pos),
    }


def _auc(scores, positive) -> float | None:
    """Mann–Whitney AUC: the chance a positive outscores a negative, ties counting one half."""
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = average_ranks(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_ranks(values):
    """1-based ascending ranks; tied values share the mean of the ranks they span."""
    import numpy as np

    values = np.asarray(values)
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.r_[0, np.flatnonzero(ordered[1:] != ordered[:-1]) + 1]
    ends = np.r_[starts[1:], len(values)]
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat((starts + 1 + ends) / 2, ends - starts)
    return ranks
