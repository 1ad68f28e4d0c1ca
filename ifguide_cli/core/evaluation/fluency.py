"""Fluency: token-weighted perplexity on held-out text and LAMBADA last-word accuracy.

- Perplexity: each document is tokenized with an EOS appended, like the training corpus, and cut into
  non-overlapping windows of the model's context length; padding carries no loss.
- LAMBADA: the context (passage minus its last word) must make the model produce the last word
  (" word", possibly several tokens) exactly under greedy decoding. Without a defense this is checked
  teacher-forced in one forward pass (every target token is the argmax given the true prefix — the
  same condition as greedy decoding reproducing it); with RAD greedy `generate` runs with the RAD
  processor.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..artifact_files import IGNORE_INDEX
from ..progress import NULL
from .generation import left_padded
from .metrics import lambada_split, perplexity_from_totals


def context_length(model, cap: int = 2048) -> int:
    return int(min(getattr(model.config, "max_position_embeddings", None) or cap, cap))


def right_padded(rows: Sequence[Sequence[int]], pad_id: int, device):
    """(input_ids, attention_mask) of token rows padded on the right to the longest."""
    import torch

    width = max(len(x) for x in rows)
    ids = torch.tensor([list(x) + [pad_id] * (width - len(x)) for x in rows], device=device)
    mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in rows], device=device)
    return ids, mask


def _pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def _windows(tokenizer, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Each document + EOS cut into windows of at most `max_length` tokens (a 1-token window predicts nothing)."""
    windows: list[list[int]] = []
    for text in texts:
        ids = [*tokenizer.encode(text, add_special_tokens=False), tokenizer.eos_token_id]
        windows += [ids[i:i + max_length] for i in range(0, len(ids), max_length) if len(ids[i:i + max_length]) > 1]
    return sorted(windows, key=len)


def _nll(model, ids, mask) -> tuple[float, int]:
    """(summed next-token NLL, predicted tokens) of one right-padded batch."""
    import torch

    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    labels = ids[:, 1:].masked_fill(mask[:, 1:] == 0, IGNORE_INDEX)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                             ignore_index=IGNORE_INDEX, reduction="sum")
    return float(loss.double()), int((labels != IGNORE_INDEX).sum())


def perplexity(model, tokenizer, texts: Sequence[str], *, batch_size: int = 16, max_length: int | None = None,
               device: str = "cpu", reporter=NULL) -> dict:
    """Token-weighted perplexity; padding positions carry no loss."""
    import torch

    max_length = max_length or context_length(model)
    windows = _windows(tokenizer, texts, max_length)
    nll, count = 0.0, 0
    model.eval()
    with reporter.task("perplexity", total=len(windows)) as task, torch.inference_mode():
        for start in range(0, len(windows), batch_size):
            chunk = windows[start:start + batch_size]
            chunk_nll, chunk_count = _nll(model, *right_padded(chunk, _pad_id(tokenizer), device))
            nll += chunk_nll
            count += chunk_count
            task.advance(len(chunk))
    return {"perplexity": perplexity_from_totals(nll, count), "nll_sum": nll, "tokens": count, "documents": len(texts),
            "windows": len(windows), "max_length": max_length}


def _lambada_items(tokenizer, texts, max_length):
    items = []
    for text in texts:
        context, target = lambada_split(text)
        tgt = tokenizer.encode(target, add_special_tokens=False)
        ctx = tokenizer.encode(context, add_special_tokens=False)[-(max_length - len(tgt)):] or [tokenizer.eos_token_id]
        items.append((ctx, tgt))
    return items


def _teacher_forced_hits(model, chunk, pad: int, device) -> list[bool]:
    """Whether every target token is the argmax given the true prefix (one forward)."""
    ids, mask = right_padded([c + t for c, t in chunk], pad, device)
    pred = model(input_ids=ids, attention_mask=mask).logits.argmax(-1)
    return [pred[i, len(c) - 1:len(c) - 1 + len(t)].tolist() == t for i, (c, t) in enumerate(chunk)]


def _greedy_hits(model, tokenizer, chunk, pad: int, device, processor_factory) -> list[bool]:
    """Whether greedy decoding through the defense's processor produces the target."""
    from transformers import LogitsProcessorList

    ids, mask = left_padded([c for c, _ in chunk], pad, device)
    width = ids.shape[1]
    out = model.generate(input_ids=ids, attention_mask=mask, do_sample=False,
                         max_new_tokens=max(len(t) for _, t in chunk), pad_token_id=pad,
                         eos_token_id=tokenizer.eos_token_id, use_cache=True,
                         logits_processor=LogitsProcessorList([processor_factory(mask)]))
    return [out[i, width:width + len(t)].tolist() == t for i, (_, t) in enumerate(chunk)]


def lambada_accuracy(model, tokenizer, texts: Sequence[str], *, batch_size: int = 16, device: str = "cpu",
                     processor_factory: Callable | None = None, reporter=NULL) -> dict:
    """Share of passages whose last word the model produces exactly by greedy decoding."""
    import torch

    items = _lambada_items(tokenizer, texts, context_length(model))
    pad = _pad_id(tokenizer)
    correct: list[bool] = []
    model.eval()
    with reporter.task("LAMBADA", total=len(items)) as task, torch.inference_mode():
        for start in range(0, len(items), batch_size):
            chunk = items[start:start + batch_size]
            if processor_factory is None:
                correct += _teacher_forced_hits(model, chunk, pad, device)
            else:
                correct += _greedy_hits(model, tokenizer, chunk, pad, device, processor_factory)
            task.advance(len(chunk))
    return {"lambada_accuracy": sum(correct) / len(correct) if correct else float("nan"), "lambada_examples": len(correct),
            "correct": correct}
