"""Sampling continuations of prompts, batched, seeded per batch and resumable.

Prompts are left-padded, the KV cache is on, `do_sample=True, top_p, top_k=0`, `samples` continuations
per prompt via `num_return_sequences`, `max_new_tokens` new tokens (a continuation stops early at EOS).
Batch b is seeded with `seed + b`, so a run is deterministic and an interrupted run resumes exactly from
the batches already saved.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from ifguide_cli.core.evaluation.config import GenerationConfig
from ifguide_cli.core.progress import NULL


def left_padded(rows: Sequence[Sequence[int]], pad_id: int, device):
    """(input_ids, attention_mask) of token rows padded on the left to the longest."""
    import torch

    width = max(len(x) for x in rows)
    input_ids = torch.tensor([[pad_id] * (width - len(x)) + list(x) for x in rows], device=device)
    attention = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in rows], device=device)
    return input_ids, attention


def _sampling_kwargs(config: GenerationConfig, tokenizer, pad_id: int, attention, processor_factory) -> dict:
    """`generate` arguments; with a defense, top-p runs first as a processor and the defense re-ranks after it."""
    from transformers import LogitsProcessorList, TopPLogitsWarper

    kwargs = dict(do_sample=True, max_new_tokens=config.max_new_tokens, num_return_sequences=config.samples,
                  pad_token_id=pad_id, eos_token_id=tokenizer.eos_token_id, use_cache=True)
    if processor_factory is None:
        kwargs.update(top_p=config.top_p, top_k=0)
    else:
        procs = [TopPLogitsWarper(top_p=config.top_p)] if config.top_p < 1.0 else []
        procs.append(processor_factory(attention))
        kwargs.update(top_p=1.0, top_k=0, logits_processor=LogitsProcessorList(procs))
    return kwargs


def _sample_batch(model, tokenizer, batch: list[str], b: int, config: GenerationConfig, *, pad_id: int, max_prompt: int,
                  device, processor_factory) -> list[list[str]]:
    """`samples` continuations of each prompt of batch `b` (seeded with seed + b)."""
    import torch

    ids = [tokenizer.encode(p, add_special_tokens=False)[-max_prompt:] or [tokenizer.eos_token_id] for p in batch]
    input_ids, attention = left_padded(ids, pad_id, device)
    kwargs = _sampling_kwargs(config, tokenizer, pad_id, attention, processor_factory)
    torch.manual_seed(config.seed + b)
    with torch.inference_mode():
        out = model.generate(input_ids=input_ids, attention_mask=attention, **kwargs)
    texts = tokenizer.batch_decode(out[:, input_ids.shape[1]:], skip_special_tokens=True)
    return [texts[i * config.samples:(i + 1) * config.samples] for i in range(len(batch))]


def generate_continuations(model, tokenizer, prompts: Sequence[str], config: GenerationConfig, *, device: str = "cpu",
                           processor_factory: Callable | None = None, done: dict[int, list] | None = None,
                           on_batch: Callable[[int, list], None] | None = None, reporter=NULL) -> list[list[str]]:
    """`samples` continuations per prompt, batched; `done` holds batches finished earlier (resume).

    `processor_factory(attention_mask)` returns an extra logits processor (RAD); it runs after top-p.
    """
    done = dict(done or {})
    tokenizer.padding_side = "left"
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    max_ctx = getattr(model.config, "max_position_embeddings", None) or 2048
    max_prompt = max(1, max_ctx - config.max_new_tokens)
    model.eval()
    results: list[list[str]] = []
    with reporter.task("generating", total=len(prompts)) as task:
        for b in range(math.ceil(len(prompts) / config.batch_size)):
            batch = list(prompts[b * config.batch_size:(b + 1) * config.batch_size])
            if b in done:
                conts = done[b]
            else:
                conts = _sample_batch(model, tokenizer, batch, b, config, pad_id=pad_id, max_prompt=max_prompt,
                                      device=device, processor_factory=processor_factory)
                if on_batch is not None:
                    on_batch(b, conts)
            results += conts
            task.advance(len(batch))
    return results
