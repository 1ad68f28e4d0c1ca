"""What the tool knows by name: the paper's models, datasets and classifiers, plus the embedded `tiny` default.

Anything not named here can still be used as a hub id or a local path. A leaf of the import graph: the data,
model and tokenizer modules read these tables, so this module imports none of them (the reference's fixed
subsets are listed by `paper.subsets.subset_table`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

PYTHIA_TOKENIZER = "EleutherAI/pythia-160m"
# what a model trained with the Pythia tokenizer sets in its config: the reference's 50,304 rows (the
# tokenizer's 50,277 tokens padded, as Pythia's own embeddings are) and <|endoftext|> (id 0) as BOS/EOS
PYTHIA_VOCAB = {"vocab_size": 50_304, "bos_token_id": 0, "eos_token_id": 0}


def tiny_asset(name: str) -> Path:
    """Path of a file shipped in the package's embedded `tiny` default."""
    return Path(str(resources.files("ifguide_cli") / "assets" / "tiny" / name))


@dataclass(frozen=True)
class ModelEntry:
    name: str
    hub_id: str | None  # None: built from the packaged config
    params: str
    family: str  # the influence task's module family (see influence_task)
    tokenizer: str  # hub id, or "tiny" for the packaged tokenizer
    from_scratch: bool  # the paper trains it from scratch (else fine-tunes pretrained weights)
    description: str
    config: dict = field(default_factory=dict)  # set on the hub config (e.g. the vocabulary of another tokenizer)


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    hub_id: str | None  # None: shipped in the package
    role: str  # train | heldout | queries | prompts | lambada
    description: str
    config: str | None = None
    split: str = "train"
    text_field: str = "text"
    files: dict = field(default_factory=dict)  # packaged file for a `tiny` entry


@dataclass(frozen=True)
class ClassifierEntry:
    name: str
    backend: str  # detoxify | toxigen | profanity | rad-reward
    source: str  # what must be supplied offline
    description: str


MODELS = {m.name: m for m in [
    ModelEntry("tiny", None, "0.9M", "gpt_neox", "tiny", True,
               "2-layer GPT-NeoX built from the packaged config, packaged BPE tokenizer; runs offline on a CPU"),
    ModelEntry("tiny-4x", None, "4.2M", "gpt_neox", "tiny", True,
               "4-layer, 256-wide GPT-NeoX over the packaged tiny config and tokenizer (4.6x tiny's parameters): a "
               "target for a `tiny` proxy (influence.proxy), offline on a CPU",
               config=dict(hidden_size=256, num_hidden_layers=4, intermediate_size=1024)),
    ModelEntry("pythia-160m", "EleutherAI/pythia-160m", "160M", "gpt_neox", PYTHIA_TOKENIZER, True,
               "Pythia-160M architecture, trained from scratch in the paper"),
    ModelEntry("pythia-410m", "EleutherAI/pythia-410m", "410M", "gpt_neox", PYTHIA_TOKENIZER, True,
               "Pythia-410M architecture, trained from scratch in the paper"),
    ModelEntry("pythia-1b", "EleutherAI/pythia-1b", "1.0B", "gpt_neox", PYTHIA_TOKENIZER, True,
               "Pythia-1B architecture, trained from scratch in the paper"),
    ModelEntry("llama-3.2-1b", "meta-llama/Llama-3.2-1B", "1.2B", "llama", PYTHIA_TOKENIZER, True,
               "Llama-3.2-1B architecture with its own 128,256-token vocabulary and the Pythia tokenizer (the paper's "
               "model is llama-3.2-1b-pythia-tok)"),
    ModelEntry("llama-3.2-1b-pythia-tok", "meta-llama/Llama-3.2-1B", "1.1B", "llama", PYTHIA_TOKENIZER, True,
               "Llama-3.2-1B architecture with the Pythia tokenizer at a 50,304-token vocabulary, trained from scratch "
               "as in the paper", config=dict(PYTHIA_VOCAB)),
    ModelEntry("pythia-2.8b", "EleutherAI/pythia-2.8b", "2.8B", "gpt_neox", "EleutherAI/pythia-2.8b", False,
               "pretrained Pythia-2.8B"),
    ModelEntry("pythia-2.8b-deduped", "EleutherAI/pythia-2.8b-deduped", "2.8B", "gpt_neox",
               "EleutherAI/pythia-2.8b-deduped", False,
               "pretrained Pythia-2.8B trained on the deduplicated Pile, the model the paper fine-tunes"),
]}

DATASETS = {d.name: d for d in [
    DatasetEntry("tiny", None, "train", "packaged synthetic corpus with planted toxic documents",
                 files={"train": "corpus.jsonl"}),
    DatasetEntry("tiny-heldout", None, "heldout", "packaged clean held-out text for perplexity",
                 files={"train": "heldout.jsonl"}),
    DatasetEntry("tiny-queries-toxic", None, "queries", "packaged toxic prompt+continuation queries",
                 files={"train": "queries_toxic.jsonl"}),
    DatasetEntry("tiny-queries-safe", None, "queries", "packaged non-toxic prompt+continuation queries",
                 files={"train": "queries_safe.jsonl"}),
    DatasetEntry("tiny-prompts", None, "prompts", "packaged evaluation prompts labelled toxic / non-toxic",
                 files={"train": "prompts.jsonl"}),
    DatasetEntry("tiny-lambada", None, "lambada", "packaged LAMBADA-style last-word passages",
                 files={"train": "lambada.jsonl"}),
    DatasetEntry("openwebtext", "Skylion007/openwebtext", "train",
                 "OpenWebText, packed into 2048-token chunks (the paper's pre-training data)"),
    DatasetEntry("rtp", "allenai/real-toxicity-prompts", "prompts",
                 "RealToxicityPrompts; prompts with toxicity ≥ 0.5 count as toxic"),
    DatasetEntry("attaq", "ibm/AttaQ", "prompts", "AttaQ adversarial questions", text_field="input"),
    DatasetEntry("bold", "AlexaAI/bold", "prompts", "BOLD bias-in-open-ended-generation prompts", text_field="prompts"),
    DatasetEntry("lambada", "EleutherAI/lambada_openai", "lambada", "LAMBADA (OpenAI version)",
                 config="default", split="test"),
]}

CLASSIFIERS = {c.name: c for c in [
    ClassifierEntry("profanity", "profanity", "alt-profanity-check (ships its model; offline)",
                    "linear SVM profanity classifier from the alt-profanity-check package; the built-in offline default"),
    ClassifierEntry("detoxify-unbiased", "detoxify", "checkpoint toxic_debiased-c7548aa0.ckpt + roberta-base config/tokenizer",
                    "Detoxify `unbiased` (RoBERTa), the paper's explicit-toxicity classifier"),
    ClassifierEntry("detoxify-original", "detoxify", "checkpoint toxic_original-c1212f89.ckpt + bert-base-uncased config/tokenizer",
                    "Detoxify `original` (BERT)"),
    ClassifierEntry("detoxify-multilingual", "detoxify", "checkpoint multilingual_debiased-0b549669.ckpt + xlm-roberta-base config/tokenizer",
                    "Detoxify `multilingual` (XLM-RoBERTa)"),
    ClassifierEntry("detoxify-original-small", "detoxify", "checkpoint original-albert-0e1d6498.ckpt + albert-base-v2 config/tokenizer",
                    "Detoxify `original-small` (ALBERT)"),
    ClassifierEntry("detoxify-unbiased-small", "detoxify", "checkpoint unbiased-albert-c8519128.ckpt + albert-base-v2 config/tokenizer",
                    "Detoxify `unbiased-small` (ALBERT)"),
    ClassifierEntry("toxigen-roberta", "toxigen", "hub id tomh/toxigen_roberta or a local folder",
                    "ToxiGen-RoBERTa, the paper's implicit-toxicity classifier"),
    ClassifierEntry("rad-reward", "rad-reward", "GPT-2 reward model checkpoint (see `ifguide rad download`)",
                    "RAD's GPT-2 toxicity reward model (7 outputs)"),
]}


TABLES: dict[str, dict[str, Any]] = {"models": MODELS, "datasets": DATASETS, "classifiers": CLASSIFIERS}


def is_packaged_model(name: str) -> bool:
    """A registry model built from the packaged config (`tiny` and its variants): no pretrained weights, no
    download, sized for a CPU."""
    return name in MODELS and MODELS[name].hub_id is None


def as_rows(table: str) -> list[dict]:
    """The entries of one table (`models`, `datasets`, `classifiers`) as plain dicts, in registry order."""
    return [asdict(entry) for entry in TABLES[table].values()]
