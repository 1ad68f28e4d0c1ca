"""The query side of the differential score: prompt+continuation pairs, tokenized and weighted.

Toxic queries get weight +1/N_tox and safe ones −1/N_safe in ONE query set; the measurement is linear in
the weights, so one kronfluence pass gives (toxic influence) − (safe influence). Only continuation tokens
carry a loss (prompt tokens and padding have label -100).
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass

from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.store.artifact_files import IGNORE_INDEX


class QueryRows:
    """Prompt+continuation queries padded to one length: labels -100 on prompt and padding; a weight each."""

    def __init__(self, input_ids, attention_mask, labels, weight):
        self.input_ids, self.attention_mask, self.labels, self.weight = input_ids, attention_mask, labels, weight

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.input_ids[i], "attention_mask": self.attention_mask[i], "labels": self.labels[i],
                "weight": self.weight[i]}


def join_query(prompt: str, continuation: str) -> str:
    """prompt + continuation as one text; a space between them unless one side already has it (RTP style) or the
    continuation starts with punctuation."""
    if not prompt or not continuation or prompt[-1].isspace() or continuation[0].isspace() or continuation[0] in ",.;:!?)]}'\"":
        return prompt + continuation
    return prompt + " " + continuation


def tokenize_queries(pairs: list[dict], tokenizer, max_len: int) -> tuple[list[list[int]], list[int]]:
    """Token ids of the joined prompt+continuation and the number of prompt tokens, per pair.

    The text is tokenized as a whole (as the model saw such text in training); the prompt part is the longest
    common prefix with the prompt tokenized alone, so a token merged across the boundary counts as continuation.
    Long queries lose prompt tokens from the left to fit `max_len`.
    """
    prompts = tokenizer([p["prompt"] for p in pairs], add_special_tokens=False)["input_ids"]
    fulls = tokenizer([join_query(p["prompt"], p["continuation"]) for p in pairs], add_special_tokens=False)["input_ids"]
    ids, n_prompt = [], []
    for p, f in zip(prompts, fulls, strict=True):
        n = 0
        while n < min(len(p), len(f)) and p[n] == f[n]:
            n += 1
        cut = max(0, len(f) - max_len)
        if cut > n:  # the continuation alone is too long: keep its beginning
            f, cut = f[n: n + max_len - 1], 0
            f = p[n - 1: n] + f if n else f
            n = 1 if n else 0
        ids.append(f[cut:])
        n_prompt.append(n - cut)
    return ids, n_prompt


def build_query_rows(sets: list[tuple[list[list[int]], list[int], float]], pad_id: int) -> QueryRows:
    """Concatenate query sets [(ids, n_prompt, weight per query)] into one padded QueryRows."""
    import torch

    rows = [(ids, n, w) for ids_list, n_list, w in sets for ids, n in zip(ids_list, n_list, strict=True)]
    length = max(len(ids) for ids, _, _ in rows)
    input_ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), length), dtype=torch.long)
    labels = torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long)
    weight = torch.empty(len(rows), dtype=torch.float32)
    for i, (ids, n, w) in enumerate(rows):
        t = torch.tensor(ids, dtype=torch.long)
        input_ids[i, : len(ids)] = t
        attention[i, : len(ids)] = 1
        labels[i, n: len(ids)] = t[n:]
        weight[i] = w
    return QueryRows(input_ids, attention, labels, weight)


def continuation_tokens(ids: list[list[int]], n_prompt: list[int]) -> list[int]:
    """Continuation tokens that get a loss term (a continuation token at position 0 has no prediction)."""
    return [len(x) - max(n, 1) for x, n in zip(ids, n_prompt, strict=True)]


@dataclass
class QuerySet:
    """One query set as loaded: its reference, identity, the kept pairs and their tokens."""

    ref: str
    identity: dict
    pairs: list[dict]
    ids: list[list[int]]
    n_prompt: list[int]
    dropped: int = 0  # pairs without continuation tokens

    def describe(self) -> dict:
        """What the scores artifact records of this set (its identity, size and content hash)."""
        digest = hashlib.sha256(json.dumps(self.pairs, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]
        return {**self.identity, "queries": len(self.pairs), "sha256": digest}


def load_query_set(ref: str, tokenizer, max_len: int, max_queries: int | None, seed: int, role: str) -> QuerySet:
    """A query set (registry entry, RTP-style jsonl, hub id), subsampled and tokenized; empty continuations dropped."""
    from ifguide_cli.core.data import load_queries

    pairs, identity = load_queries(ref)
    if max_queries is not None and len(pairs) > max_queries:
        keep = sorted(random.Random(f"{seed}:{role}").sample(range(len(pairs)), max_queries))
        pairs = [pairs[i] for i in keep]
    ids, n_prompt = tokenize_queries(pairs, tokenizer, max_len)
    counts = continuation_tokens(ids, n_prompt)
    if sum(counts) == 0:
        raise IfguideError(f"{role} query set {ref!r} has no continuation tokens: every continuation is empty after tokenization",
                           hint="each record needs a non-empty `continuation` (the text whose likelihood is measured)", exit_code=2)
    keep = [i for i, c in enumerate(counts) if c > 0]
    dropped = len(pairs) - len(keep)
    pairs, ids, n_prompt = [pairs[i] for i in keep], [ids[i] for i in keep], [n_prompt[i] for i in keep]
    return QuerySet(ref, identity, pairs, ids, n_prompt, dropped)


def query_rows(toxic: QuerySet, safe: QuerySet | None, pad_id: int) -> QueryRows:
    """Toxic queries weighted +1/N_tox, safe ones −1/N_safe, in one set."""
    sets = [(toxic.ids, toxic.n_prompt, 1.0 / len(toxic.ids))]
    if safe is not None:
        sets.append((safe.ids, safe.n_prompt, -1.0 / len(safe.ids)))
    return build_query_rows(sets, pad_id)
