"""Evaluation prompts that are also influence queries.

A model steered away from the toxic queries and then evaluated on the same prompts is scored on items it
was tuned against; the eval summary should say how many. Two ways to count:
- by prompt text (whitespace normalised), for any prompt and query sets;
- by hub row index, for the reference's subsets, from the packaged indices alone (no data needed).
The reference's sets share 4,648 rows: 1,066 toxic queries are non-toxic test prompts and 3,582 non-toxic
queries are toxic test prompts (the labels of the two sets disagree on them), none within one label.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


def normalise(text: str) -> str:
    """The text with every run of whitespace made one space and the ends stripped."""
    return " ".join(text.split())


@dataclass(frozen=True)
class Overlap:
    """How many of `evaluated` evaluation prompts are also queries, in total and per query set."""

    evaluated: int
    shared: int
    by_query_set: dict[str, int] = field(default_factory=dict)

    def message(self) -> str | None:
        """The warning line for the eval summary (None when nothing is shared)."""
        if not self.shared:
            return None
        parts = ", ".join(f"{name}: {count:,}" for name, count in self.by_query_set.items() if count)
        return (f"{self.shared:,} of {self.evaluated:,} evaluation prompts are also influence queries ({parts}); "
                "their scores measure prompts the model was steered against")

    def to_json(self) -> dict:
        return {"evaluated": self.evaluated, "shared": self.shared, "by_query_set": dict(self.by_query_set)}


def prompt_overlap(eval_prompts: Iterable[str], query_sets: Mapping[str, Iterable[str]]) -> Overlap:
    """Count evaluation prompts whose normalised text is the prompt of a query in any query set.

    Each evaluation prompt counts once in `shared` (repeats in the evaluation set count each time);
    `by_query_set` counts it under every query set holding it.
    """
    prompts = [normalise(p) for p in eval_prompts]
    sets = {name: {normalise(q) for q in queries} for name, queries in query_sets.items()}
    by_set = {name: sum(p in texts for p in prompts) for name, texts in sets.items()}
    shared = sum(any(p in texts for texts in sets.values()) for p in prompts)
    return Overlap(len(prompts), shared, by_set)


def index_overlap(eval_subset: str, query_subsets: Iterable[str]) -> Overlap:
    """The same count for reference subsets, by hub row index (both must index the same dataset)."""
    import numpy as np

    from ifguide_cli.core.paper.subsets import get, indices

    evaluated = indices(eval_subset)
    by_set, shared = {}, np.zeros(len(evaluated), dtype=bool)
    for name in query_subsets:
        if get(name).hub_id != get(eval_subset).hub_id:
            raise ValueError(f"{name} and {eval_subset} index different datasets")
        hit = np.isin(evaluated, indices(name))
        by_set[name] = int(hit.sum())
        shared |= hit
    return Overlap(len(evaluated), int(shared.sum()), by_set)


def reference_overlap() -> Overlap:
    """The reference's evaluation prompts (rtp-test) against its two query sets."""
    return index_overlap("rtp-test", ("rtp-queries-toxic", "rtp-queries-nontoxic"))
