"""LAMBADA last-token accuracy: the reference's fluency metric (`run_fluency_eval.py:97-137`).

The reference tokenizes each whole passage (left-padded), runs one forward pass and counts a passage as
correct when the argmax of the next-token logits at the second-to-last real position is the passage's last
token. Only the final token of the last word is scored, with the word's earlier tokens in the context —
easier than producing the whole word (the other LAMBADA metric), so the two numbers are not comparable.
"""

from __future__ import annotations


def last_token_correct(logits, input_ids, attention_mask=None):
    """Per sequence: does argmax(logits at the position before the last real token) equal that token?

    logits (batch, seq, vocab) from one forward pass over input_ids (batch, seq). The last real token of
    each row is the last position where attention_mask is 1 (any padding side); without a mask, the last
    position. Rows need at least two real tokens. Returns a bool tensor (batch,).
    """
    import torch

    ids = torch.as_tensor(input_ids)
    scores = torch.as_tensor(logits)
    if scores.shape[:2] != ids.shape:
        raise ValueError(f"logits {tuple(scores.shape)} do not match input_ids {tuple(ids.shape)}")
    seq = ids.shape[1]
    if attention_mask is None:
        last = torch.full((ids.shape[0],), seq - 1, dtype=torch.long)
        real = torch.full((ids.shape[0],), seq, dtype=torch.long)
    else:
        mask = torch.as_tensor(attention_mask).bool()
        positions = torch.arange(seq).expand_as(mask)
        last = torch.where(mask, positions, -1).max(dim=1).values
        real = mask.sum(dim=1)
    if bool((real < 2).any()):
        raise ValueError("every sequence needs at least two real tokens (a context and the target)")
    rows = torch.arange(ids.shape[0])
    predicted = scores[rows, last - 1].argmax(dim=-1)
    return predicted == ids[rows, last]


def last_token_accuracy(correct) -> float:
    """Share of correct passages (nan for none)."""
    values = [bool(c) for c in correct]
    return sum(values) / len(values) if values else float("nan")
