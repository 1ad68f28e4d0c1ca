"""The embedded `tiny` default assets: present, well-formed, reproducible, and toxic where (and only where) planted."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ROOT / "ifguide_cli" / "assets" / "tiny"
SPECIAL = "<|endoftext|>"


def _load_generator():
    spec = importlib.util.spec_from_file_location("gen_tiny_assets", ROOT / "scripts" / "gen_tiny_assets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen = _load_generator()


def _jsonl(name: str) -> list[dict]:
    with open(ASSETS / name, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def _context(prompt: str) -> str:
    """The context of a scene prompt: what follows the scene sentence."""
    return prompt.rsplit(". ", 1)[1]


def _template_regex(template: str) -> re.Pattern:
    parts = re.split(r"\{\w+\}", template)
    return re.compile(".+?".join(re.escape(p) for p in parts) + " ")


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_file=str(ASSETS / "tokenizer.json"), bos_token=SPECIAL,
                                   eos_token=SPECIAL, unk_token=SPECIAL, pad_token=SPECIAL)


def test_files_present_and_parse():
    for name in gen.FILES:
        assert (ASSETS / name).is_file(), name
    corpus = _jsonl("corpus.jsonl")
    assert 2500 <= len(corpus) <= 4000
    assert all(set(d) == {"text", "planted_toxic"} and isinstance(d["planted_toxic"], bool) and d["text"]
               for d in corpus)
    assert len({d["text"] for d in corpus}) == len(corpus)  # no duplicate documents
    heldout = _jsonl("heldout.jsonl")
    assert len(heldout) >= 200 and all(set(d) == {"text"} for d in heldout)
    assert not {d["text"] for d in heldout} & {d["text"] for d in corpus}
    for name in ("queries_toxic.jsonl", "queries_safe.jsonl"):
        rows = _jsonl(name)
        assert len(rows) >= 16 and all(set(r) == {"prompt", "continuation"} for r in rows)
    prompts = _jsonl("prompts.jsonl")
    assert len(prompts) >= 50 and all(set(p) == {"prompt", "toxic"} and isinstance(p["toxic"], bool) for p in prompts)
    assert 0.4 <= sum(p["toxic"] for p in prompts) / len(prompts) <= 0.6
    lambada = _jsonl("lambada.jsonl")
    assert len(lambada) >= 50
    for row in lambada:  # the last word was named earlier in the passage
        *head, last = re.findall(r"[\w']+", row["text"])
        assert row["text"].endswith(last) and last in head, row["text"]
    json.loads((ASSETS / "tokenizer.json").read_text())
    json.loads((ASSETS / "model_config.json").read_text())
    assert sum(p.stat().st_size for p in ASSETS.iterdir()) < 2_000_000


def test_planted_fraction():
    corpus = _jsonl("corpus.jsonl")
    frac = sum(d["planted_toxic"] for d in corpus) / len(corpus)
    assert 0.07 <= frac <= 0.11


def test_toxic_contexts_come_from_the_corpus():
    """Every query / challenging-prompt context is used by planted toxic documents and, with clean
    continuations, by clean documents (what makes the differential influence meaningful)."""
    corpus = _jsonl("corpus.jsonl")
    toxic_docs = [d["text"] for d in corpus if d["planted_toxic"]]
    clean_docs = [d["text"] for d in corpus if not d["planted_toxic"]]
    templates = [_template_regex(spec["context"]) for spec in gen.SCENES.values()]
    prompts = [q["prompt"] for q in _jsonl("queries_toxic.jsonl") + _jsonl("queries_safe.jsonl")]
    prompts += [p["prompt"] for p in _jsonl("prompts.jsonl") if p["toxic"]]
    corpus_texts = "\n".join(d["text"] for d in corpus)
    for prompt in prompts:
        context = _context(prompt)
        assert any(context + " " in doc for doc in toxic_docs), context
        assert any(context + " " in doc for doc in clean_docs), context
        assert any(t.search(context + " ") for t in templates), context
    for q in _jsonl("queries_toxic.jsonl"):  # fresh, not a copy of a training document
        assert f"{q['prompt']} {q['continuation']}" not in corpus_texts
    for p in _jsonl("prompts.jsonl"):
        if not p["toxic"]:
            assert not any(t.search(p["prompt"] + " ") for t in templates)


def test_regeneration_is_bit_for_bit(tmp_path):
    assert gen.main(["--out", str(tmp_path)]) == 0
    for name in gen.FILES:
        assert (tmp_path / name).read_bytes() == (ASSETS / name).read_bytes(), f"{name} differs: rerun the generator"
    assert gen.main(["--out", str(tmp_path), "--check"]) == 0
    (tmp_path / "prompts.jsonl").write_text("{}\n")
    assert gen.main(["--out", str(tmp_path), "--check"]) == 1


def test_tokenizer_loads_and_round_trips(tokenizer):
    assert len(tokenizer) == json.loads((ASSETS / "model_config.json").read_text())["vocab_size"]
    special = tokenizer.convert_tokens_to_ids(SPECIAL)
    assert tokenizer.eos_token_id == tokenizer.bos_token_id == tokenizer.pad_token_id == special
    docs = [d["text"] for d in _jsonl("corpus.jsonl")[:200]] + ["Unseen text, with ünïcödé & digits 12345!"]
    for text in docs:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(ids) == text
    lengths = sorted(len(tokenizer(d["text"])["input_ids"]) + 1 for d in _jsonl("corpus.jsonl"))  # + EOS
    assert lengths[int(0.95 * len(lengths))] <= 64


def test_model_config_builds():
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    config = GPTNeoXConfig.from_dict(json.loads((ASSETS / "model_config.json").read_text()))
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (128, 2, 4)
    assert config.bos_token_id == config.eos_token_id == 0 and not config.tie_word_embeddings
    model = GPTNeoXForCausalLM(config)
    logits = model(input_ids=torch.zeros(1, 8, dtype=torch.long)).logits
    assert logits.shape == (1, 8, config.vocab_size)


def test_profanity_check_separates_toxic_from_clean():
    from profanity_check import predict_prob

    parts: list[dict] = []
    gen.gen_corpus(gen.SEED, parts)
    toxic = [p["continuation"] for p in parts if p["planted_toxic"]]
    clean = [p["continuation"] for p in parts if not p["planted_toxic"]]
    toxic += [q["continuation"] for q in _jsonl("queries_toxic.jsonl")]
    clean += [q["continuation"] for q in _jsonl("queries_safe.jsonl")]
    t, c = predict_prob(toxic), predict_prob(clean)
    assert t.mean() >= 0.7 and (t >= 0.5).mean() >= 0.9
    assert c.mean() <= 0.2 and (c < 0.2).mean() >= 0.9
    # whole clean documents and the neutral prompts stay clean too
    corpus = _jsonl("corpus.jsonl")
    assert predict_prob([d["text"] for d in corpus if not d["planted_toxic"]]).mean() <= 0.1
    assert predict_prob([p["prompt"] for p in _jsonl("prompts.jsonl")]).max() < 0.5
