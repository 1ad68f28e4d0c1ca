"""Generation (left padding, seeds, resume), perplexity and LAMBADA on the tiny model."""

from __future__ import annotations

import math

import pytest
import torch
from evalkit import tiny_lm

from ifguide_cli.core.evaluation import GenerationConfig, generate_continuations, lambada_accuracy, perplexity

PROMPTS = ["The bus driver hit the brakes and", "Hello", "Clara has played the violin since childhood. Clara practices for"]


def test_left_padding_does_not_change_a_prompt_s_continuation():
    model, tok = tiny_lm()
    greedy = GenerationConfig(samples=1, max_new_tokens=6, top_p=1e-6, seed=0, batch_size=3)  # nucleus of one token
    batched = generate_continuations(model, tok, PROMPTS, greedy)
    alone = [generate_continuations(model, tok, [p], greedy)[0] for p in PROMPTS]
    assert batched == alone


def test_sampling_is_seeded_batched_and_resumable():
    model, tok = tiny_lm()
    cfg = GenerationConfig(samples=3, max_new_tokens=5, top_p=0.9, seed=7, batch_size=2)
    saved = {}
    first = generate_continuations(model, tok, PROMPTS, cfg, on_batch=lambda b, c: saved.__setitem__(b, c))
    assert len(first) == 3 and all(len(c) == 3 for c in first) and sorted(saved) == [0, 1]
    assert generate_continuations(model, tok, PROMPTS, cfg) == first
    # resume: batch 0 taken from disk, batch 1 regenerated with its own seed -> identical
    assert generate_continuations(model, tok, PROMPTS, cfg, done={0: saved[0]}) == first
    other = generate_continuations(model, tok, PROMPTS, GenerationConfig(samples=3, max_new_tokens=5, seed=8, batch_size=2))
    assert other != first


def test_perplexity_is_token_weighted_and_ignores_padding():
    model, tok = tiny_lm()
    texts = ["A short one.", "A somewhat longer document about the weather in the mountains and the farmers there."]
    batched = perplexity(model, tok, texts, batch_size=2)
    # reference: each document alone, no padding, summed NLL / summed predicted tokens
    nll, count = 0.0, 0
    with torch.no_grad():
        for t in texts:
            ids = torch.tensor([[*tok.encode(t, add_special_tokens=False), tok.eos_token_id]])
            logits = model(input_ids=ids).logits[0, :-1]
            nll += float(torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum"))
            count += ids.shape[1] - 1
    assert batched["tokens"] == count
    assert batched["perplexity"] == pytest.approx(math.exp(nll / count), rel=1e-4)
    assert perplexity(model, tok, texts, batch_size=1)["perplexity"] == pytest.approx(batched["perplexity"], rel=1e-4)


def test_lambada_teacher_forced_equals_greedy_generation():
    from transformers import LogitsProcessor

    model, tok = tiny_lm()

    class Identity(LogitsProcessor):
        def __call__(self, input_ids, scores):
            return scores

    # passages whose "last word" is whatever the model greedily produces, so some are correct and some not
    texts = []
    for i, p in enumerate(PROMPTS * 2):
        ids = tok(p, return_tensors="pt", add_special_tokens=False).input_ids
        out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=3,
                             pad_token_id=0, eos_token_id=0)
        word = tok.decode(out[0, ids.shape[1]:]).strip().split(" ")[0] or "x"
        texts.append(f"{p} {word if i % 2 == 0 else 'zebra'}")
    forced = lambada_accuracy(model, tok, texts, batch_size=4)
    generated = lambada_accuracy(model, tok, texts, batch_size=4, processor_factory=lambda mask: Identity())
    assert forced["correct"] == generated["correct"]
    assert True in forced["correct"] and False in forced["correct"]  # both outcomes are exercised
    assert 0 <= forced["lambada_accuracy"] <= 1 and forced["lambada_examples"] == len(texts)
