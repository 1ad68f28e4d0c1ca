"""Tiny stand-ins for the eval tests: the tiny LM, and classifier / reward-model weights built from config.

They prove the loading and decoding code, not accuracy: every network is randomly initialised.
"""

from __future__ import annotations

import functools
import json
import shutil
import zipfile
from pathlib import Path

import torch

DETOXIFY_CLASSES_2018 = ["toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate"]
UNBIASED = ["toxicity", "severe_toxicity", "obscene", "identity_attack", "insult", "threat", "sexual_explicit"]


@functools.cache
def tiny_lm():
    from ifguide_cli.core.models import load_model, load_tokenizer, resolve_model

    mref = resolve_model("tiny")
    return load_model(mref).eval(), load_tokenizer(mref)


def tiny_tokenizer():
    return tiny_lm()[1]


def save_tokenizer(folder: Path) -> None:
    tiny_tokenizer().save_pretrained(str(folder))


@functools.cache
def roberta_tokenizer():
    """A RoBERTa tokenizer built locally (byte-level BPE with RoBERTa's special tokens, trained on the packaged
    held-out text): what `RobertaTokenizer.from_pretrained(base)` reads in a Detoxify base folder."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import RobertaTokenizer

    from ifguide_cli.core.data import load_records

    texts = [r["text"] for r in load_records("tiny-heldout")[0]]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=400, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                       show_progress=False))
    trained = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in trained["merges"]]
    return RobertaTokenizer(vocab=trained["vocab"], merges=merges)


def roberta_config(num_labels: int):
    from transformers import RobertaConfig

    tok = roberta_tokenizer()
    return RobertaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=130, num_labels=num_labels,
                         pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         type_vocab_size=1, initializer_range=0.5)  # wide init: scores that differ between texts


def _roberta_classifier(num_labels: int, seed: int):
    """A random RoBERTa classifier (its wide init spreads the scores over (0, 1) instead of ≈ 0.5)."""
    from transformers import RobertaForSequenceClassification

    torch.manual_seed(seed)
    return RobertaForSequenceClassification(roberta_config(num_labels)).eval()


def save_roberta_folder(folder: Path, num_labels: int) -> Path:
    """A base-model folder: config.json (`num_labels` outputs) and the tokenizer files, no weights."""
    folder.mkdir(parents=True, exist_ok=True)
    roberta_config(num_labels).save_pretrained(str(folder))
    roberta_tokenizer().save_pretrained(str(folder))
    return folder


def make_detoxify(tmp: Path, *, num_classes: int = 16, classes=None, fmt: str = "ckpt", seed: int = 0,
                  model_type: str = "roberta-base"):
    """A Detoxify checkpoint in the layout of its releases (convert_weights.py: {"state_dict", "config"}, keys
    without Lightning's `model.` prefix) and a base folder (config.json saying 2 labels + tokenizer).

    `model_type` is the base model the checkpoint's config names (`str(tmp / "roberta-base")` makes detoxify's
    own loader find it offline). Returns (checkpoint path, base folder, the model the weights came from).
    """
    model = _roberta_classifier(num_classes, seed)
    classes = classes or UNBIASED
    config = {"arch": {"type": "ROBERTA", "args": {"num_classes": num_classes, "model_type": model_type,
                                                   "model_name": "RobertaForSequenceClassification",
                                                   "tokenizer_name": "RobertaTokenizer"}},
              "dataset": {"type": "JigsawDataBias", "args": {"classes": classes, "loss_weight": 0.75}}}
    state = {k: v.clone().contiguous() for k, v in model.state_dict().items()}
    tmp.mkdir(parents=True, exist_ok=True)
    if fmt == "ckpt":
        ckpt = tmp / "toxic_debiased-test.ckpt"
        torch.save({"state_dict": state, "config": config}, ckpt)
    else:
        from safetensors.torch import save_file

        ckpt = tmp / "toxic_debiased-test.safetensors"
        save_file(state, str(ckpt), metadata={"config": json.dumps(config)})
    base = save_roberta_folder(tmp / "roberta-base", 2)  # the base config says 2 labels; the checkpoint decides
    return ckpt, base, model


def make_toxigen(folder: Path, seed: int = 1):
    """A ToxiGen-RoBERTa-shaped classifier folder (2 labels, label 1 = toxic)."""
    model = _roberta_classifier(2, seed)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder))
    roberta_tokenizer().save_pretrained(str(folder))
    return model


def tiny_reward_model(seed: int = 0, n_embd: int = 64, vocab_size: int | None = None):
    """A random GPT-2 reward model with 7 outputs over the tiny tokenizer's vocabulary (64-dim heads, like GPT-2).

    The head is scaled so that the toxicity output spreads over [0, 1] instead of sitting at 0 after clamping.
    """
    from transformers import GPT2Config

    from ifguide_cli.core.rad.decoding import RewardModel

    tok = tiny_tokenizer()
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=vocab_size or len(tok), n_embd=n_embd, n_layer=2, n_head=max(1, n_embd // 64),
                        n_positions=128, bos_token_id=0, eos_token_id=0)
    rm = RewardModel(config, 7).eval()
    with torch.no_grad():
        rm.head.bias.fill_(0.5)
        rm.head.weight.mul_(20)
    return rm


def save_rad_release(rm, folder: Path) -> Path:
    """RAD's release layout: saved_models/gpt2_toxicity/pytorch_model.bin holding GPT2RewardModel's state dict
    (keys `model.transformer.*`, `model.lm_head.{weight,bias}`), zipped as saved_models.zip."""
    target = folder / "saved_models" / "gpt2_toxicity"
    target.mkdir(parents=True, exist_ok=True)
    state = {}
    for k, v in rm.state_dict().items():
        state["model." + ("lm_head." + k.split(".", 1)[1] if k.startswith("head.") else k)] = v
    state["model.transformer.h.0.attn.bias"] = torch.tril(torch.ones(1, 1, 8, 8))  # old GPT-2 buffer, to be ignored
    torch.save(state, target / "pytorch_model.bin")
    (folder / "sentiment").mkdir(exist_ok=True)
    archive = folder / "saved_models.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(target / "pytorch_model.bin", "saved_models/gpt2_toxicity/pytorch_model.bin")
        zf.writestr("saved_models/gpt2_sentiment/pytorch_model.bin", b"not this one")
    tok_dir = folder / "gpt2-tokenizer"
    save_tokenizer(tok_dir)
    return archive


def copy_tree(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, dirs_exist_ok=True)


def make_checkpoint(workspace_root: Path, name: str = "tiny-ckpt") -> str:
    """A checkpoint artifact holding the tiny model (model/ = save_pretrained + tokenizer), as training writes it."""
    from ifguide_cli.core.store.workspace import Workspace

    model, tok = tiny_lm()

    def build(ctx):
        model.save_pretrained(str(ctx.staging / "model"))
        tok.save_pretrained(str(ctx.staging / "model"))
        return {"steps": 0}

    art, _ = Workspace(workspace_root).create("checkpoints", {"tokenizer": "tiny", "family": "gpt_neox", "test": name},
                                              [], build, name=name)
    return art.id
