"""The IF-Guide penalty objective (paper Eq. 9): hand-computed values, alignment, λ=0, accumulation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ifguide_cli.core.store.artifact_files import IGNORE_INDEX
from ifguide_cli.core.training.objective import labels_from_attention, penalty_loss, penalty_terms


def _hand_example():
    # one row, 3 tokens, vocabulary of 2.  position 0 predicts token 1, position 1 predicts token 2.
    logits = torch.tensor([[[0.0, 0.0], [math.log(3.0), 0.0], [5.0, -5.0]]])  # p(·|pos0)=(.5,.5), p(·|pos1)=(.75,.25)
    labels = torch.tensor([[1, 0, 1]])  # token 1 = 0 → CE ln2 ; token 2 = 1 → CE ln4
    return logits, labels


def test_hand_computed_values():
    logits, labels = _hand_example()
    no_mask = torch.tensor([[False, False, False]])
    mask = torch.tensor([[False, False, True]])  # token 2 is toxic
    assert penalty_loss(logits, labels, no_mask, 1.0).item() == pytest.approx((math.log(2) + math.log(4)) / 2)
    assert penalty_loss(logits, labels, mask, 1.0).item() == pytest.approx((math.log(2) - math.log(4)) / 2)
    assert penalty_loss(logits, labels, mask, 0.5).item() == pytest.approx(0.0, abs=1e-7)
    assert penalty_loss(logits, labels, mask, 2.0).item() == pytest.approx((math.log(2) - 2 * math.log(4)) / 2)
    # a global token count replaces the batch's own
    assert penalty_loss(logits, labels, mask, 1.0, num_label_tokens=4).item() == pytest.approx((math.log(2) - math.log(4)) / 4)


def test_mask_aligned_with_labels_before_shift():
    logits, labels = _hand_example()
    # mask[:, 0] is never used: the first token is never predicted
    assert penalty_loss(logits, labels, torch.tensor([[True, False, False]]), 1.0).item() == pytest.approx(
        penalty_loss(logits, labels, None, 1.0).item())
    # mask[:, 1] flips the weight of predicting token 1 (CE ln2), not token 2
    assert penalty_loss(logits, labels, torch.tensor([[False, True, False]]), 1.0).item() == pytest.approx(
        (-math.log(2) + math.log(4)) / 2)


def test_ignored_labels_and_masked_padding_do_not_count():
    logits, labels = _hand_example()
    labels = labels.clone()
    labels[0, 2] = IGNORE_INDEX
    mask = torch.tensor([[False, False, True]])  # a mask on a padded position has no effect
    assert penalty_loss(logits, labels, mask, 1.0).item() == pytest.approx(math.log(2))
    terms = penalty_terms(logits, labels, mask, 1.0)
    assert terms.num_label_tokens.item() == 1 and terms.num_masked.item() == 0


def test_terms_statistics():
    logits, labels = _hand_example()
    terms = penalty_terms(logits, labels, torch.tensor([[False, False, True]]), 1.0)
    assert terms.num_label_tokens.item() == 2 and terms.num_masked.item() == 1
    assert terms.masked_ce_sum.item() == pytest.approx(math.log(4))
    assert terms.unmasked_ce_sum.item() == pytest.approx(math.log(2))


def test_no_mask_or_empty_mask_equals_plain_cross_entropy_and_lambda_zero_drops_masked_tokens():
    """Eq. 9 weights masked tokens by −λ: with λ=0 they are dropped (weight 0), still counted in N.

    Plain CE is the objective without a mask (or with an empty one), whatever λ.
    """
    torch.manual_seed(0)
    logits = torch.randn(3, 7, 11)
    input_ids = torch.randint(0, 11, (3, 7))
    attention = torch.ones_like(input_ids)
    attention[1, 5:] = 0
    labels = labels_from_attention(input_ids, attention)
    mask = torch.rand(3, 7) < 0.4
    ce = F.cross_entropy(logits[:, :-1].reshape(-1, 11), labels[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX,
                         reduction="none").view(3, 6)
    valid = labels[:, 1:] != IGNORE_INDEX
    plain = ce[valid].mean()
    for lam in (0.0, 1.0, 3.0):
        assert torch.allclose(penalty_loss(logits, labels, None, lam), plain, atol=1e-6)
        assert torch.allclose(penalty_loss(logits, labels, torch.zeros(3, 7, dtype=torch.bool), lam), plain, atol=1e-6)
    dropped = (ce * (valid & ~mask[:, 1:])).sum() / valid.sum()
    assert torch.allclose(penalty_loss(logits, labels, mask, 0.0), dropped, atol=1e-6)


def test_matches_transformers_causal_lm_loss():
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    torch.manual_seed(0)
    cfg = GPTNeoXConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                        max_position_embeddings=16)
    model = GPTNeoXForCausalLM(cfg).eval()
    ids = torch.randint(0, 50, (2, 9))
    attn = torch.ones_like(ids)
    attn[0, 6:] = 0
    labels = labels_from_attention(ids, attn)
    out = model(input_ids=ids, attention_mask=attn, labels=labels)
    assert torch.allclose(penalty_loss(out.logits, labels, None, 1.0), out.loss, atol=1e-5)


def test_negative_lambda_rejected():
    logits, labels = _hand_example()
    with pytest.raises(ValueError, match="lambda"):
        penalty_loss(logits, labels, None, -0.1)


def test_mask_shape_checked():
    logits, labels = _hand_example()
    with pytest.raises(ValueError, match="shape"):
        penalty_loss(logits, labels, torch.zeros(1, 4, dtype=torch.bool), 1.0)


def test_accumulated_micro_batches_equal_one_big_batch():
    """k micro-batches, each normalised by the GLOBAL token count, sum to the big batch's loss and gradient."""
    torch.manual_seed(0)
    V, B, T = 13, 8, 6
    head = torch.nn.Linear(4, V)
    feats = torch.randn(B, T, 4)
    ids = torch.randint(0, V, (B, T))
    attn = (torch.rand(B, T) > 0.3).long()
    attn[:, :2] = 1  # uneven token counts per micro-batch: a mean of means would be wrong
    labels = labels_from_attention(ids, attn)
    mask = torch.rand(B, T) < 0.3

    head.zero_grad()
    big = penalty_loss(head(feats), labels, mask, 1.0)
    big.backward()
    g_big = head.weight.grad.clone()

    head.zero_grad()
    n_global = labels[:, 1:].ne(IGNORE_INDEX).sum()
    total = 0.0
    for chunk in range(4):
        sl = slice(2 * chunk, 2 * chunk + 2)
        part = penalty_loss(head(feats[sl]), labels[sl], mask[sl], 1.0, num_label_tokens=n_global)
        part.backward()
        total += part.item()
    assert total == pytest.approx(big.item(), abs=1e-6)
    assert torch.allclose(head.weight.grad, g_big, atol=1e-6)

    # the trap: averaging per-micro-batch means is NOT the big batch
    means = sum(penalty_loss(head(feats[2 * c:2 * c + 2]), labels[2 * c:2 * c + 2], mask[2 * c:2 * c + 2], 1.0).item()
                for c in range(4)) / 4
    assert abs(means - big.item()) > 1e-4
