"""The figures of a finished checkpoint: next-token NLL on validation rows, and on masked vs ordinary tokens."""

from __future__ import annotations

import math
from contextlib import nullcontext
from typing import Any

import torch

from ifguide_cli.core.training.objective import labels_from_attention, penalty_terms


def token_nll(model, input_ids, attention_mask, mask=None, *, batch_size: int = 32, precision: str = "fp32") -> dict:
    """Next-token NLL summed over label tokens, split into masked / ordinary tokens (mask aligned with labels).

    Returns sums and counts: {"nll", "tokens", "masked_nll", "masked_tokens", "ordinary_nll", "ordinary_tokens"}.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    sums = torch.zeros(5, dtype=torch.float64)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
                if precision in ("bf16", "fp16") and device.type == "cuda" else nullcontext())
    with torch.no_grad(), autocast:
        for start in range(0, input_ids.shape[0], batch_size):
            ids = input_ids[start:start + batch_size].to(device)
            att = attention_mask[start:start + batch_size].to(device)
            m = None if mask is None else mask[start:start + batch_size].to(device)
            labels = labels_from_attention(ids, att)
            logits = model(input_ids=ids, attention_mask=att).logits
            t = penalty_terms(logits, labels, m, 0.0)
            sums += torch.tensor([t.masked_ce_sum + t.unmasked_ce_sum, t.num_label_tokens, t.masked_ce_sum, t.num_masked,
                                  t.unmasked_ce_sum], dtype=torch.float64)
    model.train(was_training)
    nll, tokens, mnll, mtok, onll = sums.tolist()
    return {"nll": nll, "tokens": int(tokens), "masked_nll": mnll, "masked_tokens": int(mtok),
            "ordinary_nll": onll, "ordinary_tokens": int(tokens - mtok)}


def final_metrics(model, corpus, mask, eval_ds, train_rows, probe_docs: int, precision: str, batch: int) -> dict:
    """metrics.json's figures: the eval loss and perplexity, and the NLL of masked vs ordinary training tokens."""
    out: dict[str, Any] = {}
    if eval_ds is not None:
        out.update(_eval_figures(model, eval_ds, precision, batch))
    if mask is not None:
        out.update(_mask_figures(model, corpus, mask, train_rows, probe_docs, precision, batch))
    return out


def _eval_figures(model, eval_ds, precision: str, batch: int) -> dict:
    rows = torch.tensor(eval_ds.rows)
    s = token_nll(model, eval_ds.input_ids[rows], eval_ds.attention_mask[rows], batch_size=batch, precision=precision)
    if not s["tokens"]:
        return {}
    loss = round(s["nll"] / s["tokens"], 6)
    return {"eval_loss": loss, "eval_perplexity": round(math.exp(min(loss, 50.0)), 4), "eval_tokens": s["tokens"]}


def _mask_figures(model, corpus, mask, train_rows, probe_docs: int, precision: str, batch: int) -> dict:
    """The probe pass: masked and ordinary token NLL of the trained model on (at most `probe_docs`) training rows
    that hold masked tokens — how much less likely the penalised tokens became. One forward pass over those
    rows after training (it changes nothing in the weights); --probe-docs 0 skips it."""
    rows = torch.tensor(train_rows)
    with_mask = rows[mask[rows].any(dim=1)][:probe_docs]
    out: dict[str, Any] = {"masked_tokens": int(mask[rows].sum())}
    if len(with_mask):
        s = token_nll(model, corpus.input_ids[with_mask], corpus.attention_mask[with_mask], mask[with_mask],
                      batch_size=batch, precision=precision)
        out["masked_token_nll"] = _mean(s["masked_nll"], s["masked_tokens"])
        out["ordinary_token_nll"] = _mean(s["ordinary_nll"], s["ordinary_tokens"])
    return out


def _mean(total: float, count: int) -> float | None:
    return round(total / count, 6) if count else None
