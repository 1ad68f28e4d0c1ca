"""Resolve what the user calls a model (registry name, checkpoint artifact, local folder, hub id) and load it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import IfguideError
from .hub import hub_resource
from .registry import MODELS, tiny_asset

TINY_SPECIAL = "<|endoftext|>"


@dataclass(frozen=True)
class ModelRef:
    """A model the user named, resolved to where its config, weights and tokenizer live."""

    ref: str
    source: str  # registry | checkpoint | local | hub
    location: str  # registry name, folder, or hub id
    tokenizer: str  # "tiny", a folder, or a hub id
    family: str | None = None
    artifact_id: str | None = None
    pretrained: bool = True  # False: only a config exists (registry models trained from scratch)

    def identity(self) -> dict:
        """What goes into a stage's config: enough to tell two models apart (a checkpoint by its id alone)."""
        if self.source == "checkpoint":
            return {"source": "checkpoint", "artifact_id": self.artifact_id, "family": self.family}
        return {k: v for k, v in asdict(self).items() if k != "ref"}

    @property
    def parents(self) -> list[str]:
        return [self.artifact_id] if self.artifact_id else []


def resolve_model(ref: str, workspace=None) -> ModelRef:
    """Registry name → checkpoint artifact → local folder → hub id, in that order."""
    if ref in MODELS:
        entry = MODELS[ref]
        return ModelRef(ref, "registry", ref, entry.tokenizer, entry.family, pretrained=not entry.from_scratch)
    if workspace is not None:
        from .errors import ArtifactNotFound

        try:
            art = workspace.resolve(ref, "checkpoints")
        except ArtifactNotFound:
            art = None
        if art is not None:
            model_dir = art.path / "model"
            # the checkpoint keeps its base model's tokenizer identity, so data tokenized for the base is reused
            return ModelRef(ref, "checkpoint", str(model_dir), art.config.get("tokenizer", str(model_dir)),
                            art.config.get("family"), art.id)
    path = Path(ref).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise IfguideError(f"{ref} is not a model folder (no config.json)",
                               hint="pass a folder written by save_pretrained, a registry name (`ifguide registry models`), or a hub id")
        return ModelRef(ref, "local", str(path.resolve()), str(path.resolve()), _family_from_config(path / "config.json"))
    if "/" in ref and not ref.startswith((".", "/", "~")):
        return ModelRef(ref, "hub", ref, ref)
    raise IfguideError(f"unknown model {ref!r}",
                       hint="use a registry name (`ifguide registry models`), a checkpoint id, a local folder, or a hub id like org/name",
                       exit_code=2)


def _family_from_config(path: Path) -> str | None:
    try:
        return json.loads(path.read_text()).get("model_type")
    except (OSError, ValueError):
        return None


def load_tokenizer(mref: ModelRef):
    """The model's tokenizer, with a pad token (left as eos when the model has none)."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if mref.source == "checkpoint":
        tok = AutoTokenizer.from_pretrained(mref.location)
    elif mref.tokenizer == "tiny":
        tok = PreTrainedTokenizerFast(tokenizer_file=str(tiny_asset("tokenizer.json")), bos_token=TINY_SPECIAL,
                                      eos_token=TINY_SPECIAL, unk_token=TINY_SPECIAL, pad_token=TINY_SPECIAL)
    elif Path(mref.tokenizer).is_dir():
        tok = AutoTokenizer.from_pretrained(mref.tokenizer)
    else:
        with hub_resource("tokenizer", mref.tokenizer, "a local tokenizer folder"):
            tok = AutoTokenizer.from_pretrained(mref.tokenizer)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_config(mref: ModelRef):
    from transformers import AutoConfig, GPTNeoXConfig

    if mref.source == "registry" and mref.location == "tiny":
        return GPTNeoXConfig.from_dict(json.loads(tiny_asset("model_config.json").read_text()))
    if mref.source in ("checkpoint", "local"):
        return AutoConfig.from_pretrained(mref.location)
    hub_id = MODELS[mref.location].hub_id if mref.source == "registry" else mref.location
    with hub_resource("model config", hub_id, "a local model folder"):
        config = AutoConfig.from_pretrained(hub_id)
    return _with_registry_settings(config, mref)


def _with_registry_settings(config, mref: ModelRef):
    """A registry variant's own settings over the hub config (e.g. the Pythia vocabulary for a Llama)."""
    if mref.source == "registry":
        for key, value in MODELS[mref.location].config.items():
            setattr(config, key, value)
    return config


def load_model(mref: ModelRef, *, from_scratch: bool | None = None, dtype=None, seed: int = 0):
    """The model with weights; registry models the paper trains from scratch start from a seeded random init."""
    import torch
    from transformers import AutoModelForCausalLM

    from_scratch = (not mref.pretrained) if from_scratch is None else from_scratch
    dtype = dtype or torch.float32
    if from_scratch:
        config = load_config(mref)
        with _seeded(seed):
            model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    elif mref.source in ("checkpoint", "local"):
        model = AutoModelForCausalLM.from_pretrained(mref.location, dtype=dtype)
    else:
        _refuse_hub_weights_of_a_variant(mref)
        hub_id = MODELS[mref.location].hub_id if mref.source == "registry" else mref.location
        with hub_resource("model", hub_id, "a local model folder"):
            model = AutoModelForCausalLM.from_pretrained(hub_id, dtype=dtype)
    return model


def _refuse_hub_weights_of_a_variant(mref: ModelRef) -> None:
    """A registry variant that changes the hub config (another vocabulary) has no pretrained weights on the hub."""
    if mref.source == "registry" and MODELS[mref.location].config:
        raise IfguideError(f"{mref.ref!r} changes {MODELS[mref.location].hub_id}'s config, so it has no pretrained weights",
                           hint=f"train it from scratch first (`ifguide train {mref.ref} --data ...`)", exit_code=2)


class _seeded:
    """Seed torch for a deterministic init without disturbing the caller's RNG stream."""

    def __init__(self, seed: int):
        self.seed = seed

    def __enter__(self):
        import torch

        self.state = torch.random.get_rng_state()
        torch.manual_seed(self.seed)

    def __exit__(self, *exc):
        import torch

        torch.random.set_rng_state(self.state)


def model_family(mref: ModelRef, model=None) -> str:
    """The influence-task family: the registry's, the checkpoint's, or the config's model_type."""
    if mref.family:
        return mref.family
    if model is not None:
        return model.config.model_type
    return load_config(mref).model_type
