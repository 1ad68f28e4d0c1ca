"""LAMBADA last-token accuracy (the reference's metric) on a hand-computed example."""

from __future__ import annotations

import math

import pytest
import torch

from ifguide_cli.core.paper.metrics import last_token_accuracy, last_token_correct


def _logits(batch: int, seq: int, vocab: int, top: dict[tuple[int, int], int]) -> torch.Tensor:
    """Zero logits except a 1 at token `top[(row, position)]` for the listed positions."""
    logits = torch.zeros(batch, seq, vocab)
    for (row, pos), token in top.items():
        logits[row, pos, token] = 1.0
    return logits


def test_hand_computed_example_with_any_padding_side():
    ids = torch.tensor([[1, 2, 3, 4],   # no padding: last token 4, predicted at position 2
                        [0, 3, 1, 2],   # left-padded: last token 2, predicted at position 2
                        [2, 2, 4, 0]])  # right-padded: last token 4, predicted at position 1
    mask = torch.tensor([[1, 1, 1, 1], [0, 1, 1, 1], [1, 1, 1, 0]])
    logits = _logits(3, 4, 5, {(0, 2): 4, (1, 2): 0, (2, 1): 4, (2, 2): 0})
    correct = last_token_correct(logits, ids, mask)
    assert correct.tolist() == [True, False, True]
    assert last_token_accuracy(correct) == pytest.approx(2 / 3)


def test_left_padded_batch_matches_the_reference_formula():
    torch.manual_seed(0)
    logits = torch.randn(16, 12, 30)
    ids = torch.randint(0, 30, (16, 12))
    ids[:, -1] = logits[:, -2].argmax(-1)
    ids[::3, -1] = (ids[::3, -1] + 1) % 30  # every third row wrong
    mask = torch.ones_like(ids)
    mask[:, :5] = 0  # left padding, as the reference tokenizes
    reference = logits[:, -2, :].argmax(dim=-1) == ids[:, -1]  # run_fluency_eval.py:107-132
    assert torch.equal(last_token_correct(logits, ids, mask), reference)
    assert torch.equal(last_token_correct(logits, ids), reference)
    assert last_token_accuracy(reference) == pytest.approx(10 / 16)


def test_bad_inputs():
    with pytest.raises(ValueError, match="do not match"):
        last_token_correct(torch.zeros(2, 3, 5), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="two real tokens"):
        last_token_correct(torch.zeros(1, 3, 5), torch.zeros(1, 3, dtype=torch.long), torch.tensor([[0, 0, 1]]))
    assert math.isnan(last_token_accuracy([]))
