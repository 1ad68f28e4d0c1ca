"""The IF-Guide penalty objective (paper Eq. 9) and its baselines: suppress the masked (toxic) training tokens.

For a batch of sequences with next-token cross-entropy ℓ_it = -log p(x_it | x_i,<t),

    L = (1 / N) · Σ_{i,t labelled} w_it · ℓ_it,     w_it = +1 for ordinary tokens, −λ for masked tokens,

where N is the number of label tokens (labels ≠ -100 after the shift) in the WHOLE batch the optimizer
step uses: all gradient-accumulation micro-batches on all data-parallel processes. Masked tokens stay in
N (they are label tokens; the reference divides by the same count). With λ = 0 (or no mask) it is plain
next-token cross-entropy, mean over label tokens. With λ > 0 minimising L *raises* the loss of masked
tokens, i.e. makes the model less likely to produce them.

Alignment (the same as the reference and as the influence scores): ``mask[i, t]`` weights the loss of
PREDICTING token t, i.e. it is aligned with ``labels[i, t]`` / ``input_ids[i, t]`` BEFORE the shift.
Logits at position t-1 predict token t, so the loss uses ``logits[:, :-1]`` against ``labels[:, 1:]``
and ``mask[:, 1:]``; ``mask[:, 0]`` is never used (the first token of a row is never predicted).

Suppression modes (`--suppression`), i.e. what happens to a masked token:

- ``penalty`` (IF-Guide, the default): weight −λ, as above.
- ``filter`` (token filtering): weight 0 — the token is left out of the loss numerator. It STAYS in the
  normaliser N, exactly as the reference normalises by all label tokens. So `filter` is Eq. 9 at λ = 0, and
  every ordinary token gets the same weight 1/N as in the plain control and the penalty runs of the same
  batch: an arm differs from the control only in the weight of its masked tokens (+1, −λ or 0), never in the
  effective learning rate of the others (dropping masked tokens from N would scale the step up by
  N / (N − masked) in exactly the batches that hold them).
- ``drop`` (document filtering): every row with a masked token is left out of the training data
  (`rows.rows_without_masked`), so no masked token reaches the loss; what is left is plain CE.

Pure functions of tensors; nothing here knows about the Trainer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ifguide_cli.core.store.artifact_files import IGNORE_INDEX
from ifguide_cli.core.training.config import SUPPRESSIONS


def masked_weight(suppression: str, lam: float) -> float:
    """The loss weight of a masked label token: −λ (penalty, Eq. 9) or 0 (filter; drop leaves none in the data)."""
    if suppression not in SUPPRESSIONS:
        raise ValueError(f"suppression must be one of {SUPPRESSIONS}, got {suppression!r}")
    if lam < 0:
        raise ValueError(f"lambda must be >= 0, got {lam}")
    return -float(lam) if suppression == "penalty" else 0.0


@dataclass
class PenaltyTerms:
    """The pieces of the penalty loss for one (micro-)batch, before normalisation.

    ``loss_sum`` = Σ w·ℓ (what gets divided by N); the other sums are detached statistics for logging.
    """

    loss_sum: torch.Tensor  # Σ_t w_t ℓ_t  (differentiable)
    num_label_tokens: torch.Tensor  # labels ≠ -100 after the shift (long scalar)
    masked_ce_sum: torch.Tensor  # Σ ℓ over masked label tokens (detached)
    num_masked: torch.Tensor  # masked label tokens (long scalar)
    unmasked_ce_sum: torch.Tensor  # Σ ℓ over ordinary label tokens (detached)


def shifted_token_ce(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-position next-token CE and the validity of each position's target.

    Returns (ce, valid), both (B, T): ``ce[:, t]`` is the loss of predicting ``labels[:, t + 1]`` from the
    logits at position t (0 where the target is ignored; the last column is always ignored). The labels are
    shifted instead of the logits, like transformers' own causal-LM loss, so the (B, T, V) logits are never
    copied (except for the float32 upcast of half-precision logits).
    """
    if logits.dim() != 3 or labels.dim() != 2 or logits.shape[:2] != labels.shape:
        raise ValueError(f"logits must be (B, T, V) and labels (B, T); got {tuple(logits.shape)} and {tuple(labels.shape)}")
    shift_labels = F.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)
    valid = shift_labels.ne(IGNORE_INDEX)
    ce = F.cross_entropy(
        logits.float().reshape(-1, logits.size(-1)),
        shift_labels.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="none",
    ).view(shift_labels.shape)
    return ce, valid


def token_weights(labels: torch.Tensor, mask: torch.Tensor | None, lam: float = 1.0,
                  suppression: str = "penalty") -> torch.Tensor:
    """Each label position's loss weight, aligned with ``labels`` BEFORE the shift (float32, (B, T)).

    ``w[:, t]`` weighs the loss of predicting token t (from the logits at position t-1): +1 for an ordinary
    label token, `masked_weight(suppression, lam)` for a masked one (−λ penalty, 0 filter), 0 where nothing is
    predicted (``t = 0`` and labels −100). The loss of a batch is ``Σ w[:, 1:]·ℓ / N`` with N the label tokens
    ``labels[:, 1:] ≠ −100`` (masked ones included): what `penalty_terms` sums and `mask export` writes.
    """
    weight = masked_weight(suppression, lam)
    if mask is not None and mask.shape != labels.shape:
        raise ValueError(f"mask {tuple(mask.shape)} must have the labels' shape {tuple(labels.shape)}")
    valid = labels.ne(IGNORE_INDEX)
    valid[:, 0] = False
    masked = torch.zeros_like(valid) if mask is None else mask.to(device=labels.device, dtype=torch.bool) & valid
    return torch.where(masked, torch.full(labels.shape, weight, dtype=torch.float32, device=labels.device), valid.to(torch.float32))


def penalty_terms(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None, lam: float,
                  suppression: str = "penalty") -> PenaltyTerms:
    """Un-normalised loss and statistics for one batch (see the module docstring for alignment and the modes):
    masked label tokens get weight `masked_weight(suppression, lam)`, ordinary ones +1; all count in N."""
    ce, valid = shifted_token_ce(logits, labels)
    weights = F.pad(token_weights(labels, mask, lam, suppression)[:, 1:], (0, 1), value=0.0).to(ce.dtype)
    masked = torch.zeros_like(valid) if mask is None else F.pad(mask[:, 1:].to(torch.bool), (0, 1), value=False) & valid
    ordinary = valid & ~masked
    detached = ce.detach()
    return PenaltyTerms(
        loss_sum=(weights * ce).sum(),
        num_label_tokens=valid.sum(),
        masked_ce_sum=(detached * masked).sum(),
        num_masked=masked.sum(),
        unmasked_ce_sum=(detached * ordinary).sum(),
    )


def penalty_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    mask: torch.Tensor | None = None,
    lam: float = 1.0,
    num_label_tokens: torch.Tensor | int | float | None = None,
    suppression: str = "penalty",
) -> torch.Tensor:
    """IF-Guide loss (paper Eq. 9): Σ w·CE / N, w = +1 ordinary, −λ masked.

    Args:
        logits: (B, T, V) model outputs for ``input_ids`` (position t predicts token t+1).
        labels: (B, T) token ids, ``-100`` where there is nothing to predict (padding). Not shifted.
        mask: (B, T) bool, ``mask[i, t]`` = token t of row i is toxic: its prediction loss gets weight −λ.
            Aligned with ``labels`` before the shift; ``mask[:, 0]`` is unused. ``None`` = no masked token.
        lam: λ ≥ 0, the penalty strength (paper default 1).
        num_label_tokens: N, the number of label tokens of the whole optimizer batch (every accumulated
            micro-batch on every process). ``None`` = this batch's own count (a mean over its tokens).
            Passing the global N is what makes k accumulated micro-batches equal one big batch.
        suppression: `penalty` (weight −λ) or `filter` (weight 0, masked tokens still counted in N).
    """
    terms = penalty_terms(logits, labels, mask, lam, suppression)
    denom = terms.num_label_tokens if num_label_tokens is None else num_label_tokens
    if torch.is_tensor(denom):
        denom = denom.to(terms.loss_sum.device, terms.loss_sum.dtype)
    return terms.loss_sum / (denom.clamp(min=1) if torch.is_tensor(denom) else max(float(denom), 1.0))


def labels_from_attention(input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Causal-LM labels: the input ids, with -100 on padding (attention 0)."""
    labels = input_ids.clone()
    if attention_mask is not None:
        labels[attention_mask == 0] = IGNORE_INDEX
    return labels
