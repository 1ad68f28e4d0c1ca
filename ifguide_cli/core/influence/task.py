"""The kronfluence `Task` for causal language models: what is differentiated, on which modules.

Train loss (factors and the training side of scores): summed next-token cross-entropy over the
labelled tokens of a batch. With ``sample=True`` (EK-FAC's true Fisher) the labels are drawn from the
model's own predictive distribution, taken from the *detached logits of the same forward pass* — a
second forward under ``torch.no_grad()`` would trip kronfluence's hooks.

Measurement (the query side of scores): Σ_q w_q · Σ_t CE_qt over the continuation tokens of each
query q (prompt tokens carry label -100). With w = +1/N_tox for toxic and −1/N_safe for non-toxic
queries and kronfluence's ``aggregate_query_gradients=True``, one pass gives the differential score
``-(mean_tox ∇log p(c|p) − mean_safe ∇log p(c|p))ᵀ H⁻¹ ∇L_train`` (the measurement is linear in w).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from ifguide_cli.core.store.artifact_files import IGNORE_INDEX


def _shifted_ce(logits, labels):
    """Per-position next-token CE (B, T-1) in float32, 0 where the shifted label is IGNORE_INDEX.

    Not `objective.shifted_token_ce`, which pads the shifted labels to (B, T) instead of slicing the logits
    to (B, T-1): the per-position losses and the gradients agree bit for bit, but the summed losses do not
    (sums over differently shaped tensors round differently in the last bits; measured on the tiny model in
    fp32 and bf16), and the task's losses must stay exactly what the existing artifacts were computed with.
    """
    import torch.nn.functional as F

    shift_logits = logits[:, :-1, :].float()
    shift_labels = labels[:, 1:]
    return F.cross_entropy(shift_logits.reshape(-1, shift_logits.size(-1)), shift_labels.reshape(-1),
                           ignore_index=IGNORE_INDEX, reduction="none").view(shift_labels.shape)


FISHER_SEED = 0


def sample_labels(shift_logits, row_index=None, seed: int = FISHER_SEED):
    """Labels drawn from softmax(shift_logits) (B, T-1, V) for the true-Fisher pass.

    With the rows' dataset indices the draw is a function of (seed, row, position) alone — inverse-CDF sampling
    with uniforms from a generator seeded per row — so it does not depend on batch composition, the number of
    processes, or resumption, and nearly identical distributions (fp32 vs bf16) give nearly identical labels.
    """
    import torch

    with torch.no_grad():
        if row_index is None:
            probs = torch.softmax(shift_logits, dim=-1)
            return torch.multinomial(probs.reshape(-1, probs.size(-1)), num_samples=1).view(probs.shape[:-1])
        out = torch.empty(shift_logits.shape[:-1], dtype=torch.long, device=shift_logits.device)
        vocab = shift_logits.size(-1)
        for i, row in enumerate(row_index.tolist()):
            cdf = torch.softmax(shift_logits[i], dim=-1).cumsum_(dim=-1)
            gen = torch.Generator().manual_seed((seed * 1_000_003 + int(row)) % (2**63))
            u = torch.rand(cdf.shape[0], generator=gen, dtype=torch.float64).to(device=cdf.device, dtype=cdf.dtype)
            out[i] = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(-1)).squeeze(-1).clamp_(max=vocab - 1)
        return out


@functools.cache
def _make_task_class():
    from kronfluence.task import Task

    class CausalLMTask(Task):
        """See the module docstring. `on_train_batch` / `on_query_batch` receive the batch size (progress)."""

        def __init__(self, tracked_modules: list[str], on_train_batch: Callable[[int], None] | None = None,
                     on_query_batch: Callable[[int], None] | None = None, seed: int = FISHER_SEED):
            self.tracked_modules = list(tracked_modules)
            self.seed = seed
            self.on_train_batch = on_train_batch
            self.on_query_batch = on_query_batch

        def _logits(self, batch, model):
            return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits

        def compute_train_loss(self, batch: Any, model, sample: bool = False):
            import torch
            import torch.nn.functional as F

            logits = self._logits(batch, model)
            labels = batch["labels"]
            if sample:
                # pseudo-labels from the detached logits of this same forward pass (no second forward)
                shift_logits = logits[:, :-1, :].float()
                sampled = sample_labels(shift_logits.detach(), batch.get("index"), self.seed)
                sampled = torch.where(labels[:, 1:].eq(IGNORE_INDEX), torch.full_like(sampled, IGNORE_INDEX), sampled)
                loss = F.cross_entropy(shift_logits.reshape(-1, shift_logits.size(-1)), sampled.reshape(-1),
                                       ignore_index=IGNORE_INDEX, reduction="sum")
            else:
                loss = _shifted_ce(logits, labels).sum()
            if self.on_train_batch is not None:
                self.on_train_batch(int(labels.shape[0]))
            return loss

        def compute_measurement(self, batch: Any, model):
            logits = self._logits(batch, model)
            per_query = _shifted_ce(logits, batch["labels"]).sum(dim=-1)  # summed CE over continuation tokens
            if self.on_query_batch is not None:
                self.on_query_batch(int(per_query.shape[0]))
            return (per_query * batch["weight"].to(per_query.dtype)).sum()

        def get_influence_tracked_modules(self):
            return self.tracked_modules

        def get_attention_mask(self, batch: Any):
            return batch["attention_mask"]

    return CausalLMTask


def make_task(tracked_modules: list[str], **callbacks):
    """A `CausalLMTask` (the class is built lazily so importing this module does not import kronfluence)."""
    return _make_task_class()(tracked_modules, **callbacks)
