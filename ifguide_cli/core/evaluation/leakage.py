"""Evaluation prompts that are also influence queries: the toxicity eval summary's `leakage`.

A model steered away from the toxic queries and then evaluated on the same prompts is scored on items it
was tuned against, so the summary says how many are shared. Counted
- by hub row index when the prompts and every query set are reference subsets of one dataset (nothing
  but the packaged indices is needed; the reference's rtp-test shares 4,648 prompts with its query sets);
- else by normalised prompt text (`core/paper/leakage.prompt_overlap`).
With no query sets given, an RTP reference prompt subset is checked against the reference's two query sets.
"""

from __future__ import annotations

from collections.abc import Sequence

from ifguide_cli.core.paper import leakage as paper_leakage
from ifguide_cli.core.paper.leakage import Overlap

REFERENCE_QUERY_SETS = ("rtp-queries-toxic", "rtp-queries-nontoxic")


def _subset(ref: str):
    from ifguide_cli.core.paper import subsets

    return subsets.SUBSETS.get(ref)


def query_sets_identity(queries: Sequence[str]) -> list[dict]:
    """What the query sets given with `--queries` are (part of the eval's identity when given)."""
    from ifguide_cli.core.data import dataset_identity
    from ifguide_cli.core.paper import subsets

    return [subsets.identity(q) if _subset(q) is not None else dataset_identity(q) for q in queries]


def eval_leakage(prompts_ref: str, prompts: Sequence[dict], queries: Sequence[str] = ()) -> Overlap | None:
    """How many of `prompts` (dicts with "prompt", and "index" for a reference subset) are influence queries.

    None when there is nothing to compare with: no query sets given and the prompts are not an RTP
    reference subset.
    """
    prompt_set = _subset(prompts_ref)
    queries = tuple(queries) or (REFERENCE_QUERY_SETS if _is_rtp_reference(prompt_set) else ())
    if not queries:
        return None
    if prompt_set is not None and all(_subset(q) is not None and _subset(q).hub_id == prompt_set.hub_id for q in queries):
        if prompts_ref == "rtp-test" and queries == REFERENCE_QUERY_SETS and len(prompts) == prompt_set.rows:
            return paper_leakage.reference_overlap()  # all of the reference's prompts: its own count
        return index_overlap([p["index"] for p in prompts], queries)
    return paper_leakage.prompt_overlap([p["prompt"] for p in prompts], {q: _query_prompts(q) for q in queries})


def _is_rtp_reference(subset) -> bool:
    from ifguide_cli.core.paper.subsets import RTP

    return subset is not None and subset.role == "prompts" and subset.hub_id == RTP


def index_overlap(evaluated: Sequence[int], query_subsets: Sequence[str]) -> Overlap:
    """The count by hub row index: `evaluated` rows (repeats count each time) against reference query subsets."""
    import numpy as np

    from ifguide_cli.core.paper.subsets import indices

    rows = np.asarray(evaluated, dtype=np.int64)
    shared, by_set = np.zeros(len(rows), dtype=bool), {}
    for name in query_subsets:
        hit = np.isin(rows, indices(name))
        by_set[name] = int(hit.sum())
        shared |= hit
    return Overlap(len(rows), int(shared.sum()), by_set)


def _query_prompts(ref: str) -> list[str]:
    """The prompts of a query set (a reference subset or any query set `ifguide scores` reads)."""
    if _subset(ref) is not None:
        from ifguide_cli.core.paper import subsets

        return [r["prompt"] for r in subsets.records(ref)]
    from ifguide_cli.core.data import load_queries

    return [q["prompt"] for q in load_queries(ref)[0]]
