"""Resolve what the user calls a model (registry name, checkpoint artifact, local folder, hub id) and load it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.hub import hub_resource
from ifguide_cli.core.lora import ADAPTER_DIR, has_adapter, load_with_adapter
from ifguide_cli.core.model_files import check_buildable, reading_model_files
from ifguide_cli.core.registry import MODELS, is_packaged_model, tiny_asset

if TYPE_CHECKING:
    from ifguide_cli.core.store.workspace import Workspace

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
    pretrained: bool = True  # False: only a config exists (registry models trained from scratch, --model-config)
    # set when `tokenizer` is not the model's own (--tokenizer of a model trained from scratch): the
    # tokenizer is loaded by that name and a model built from the config takes its vocabulary
    own_tokenizer: bool = False
    config_sha256: str | None = None  # a --model-config file's content
    adapter: str | None = None  # a LoRA checkpoint: its adapter folder, merged into `base` when loaded
    base: ModelRef | None = None

    def identity(self) -> dict:
        """What goes into a stage's config: enough to tell two models apart (a checkpoint by its id alone).

        The fields added for --tokenizer / --model-config appear only when set, so the identity of every
        other model (and the ids of the artifacts built on it) stays what it was.
        """
        if self.source == "checkpoint":
            out = {"source": "checkpoint", "artifact_id": self.artifact_id, "family": self.family}
            return {**out, "tokenizer": self.tokenizer} if self.own_tokenizer else out
        optional = {"own_tokenizer": False, "config_sha256": None, "adapter": None, "base": None}
        return {k: v for k, v in asdict(self).items() if k != "ref" and optional.get(k, ...) != v}

    @property
    def parents(self) -> list[str]:
        return [self.artifact_id] if self.artifact_id else []


def resolve_model(ref: str, workspace: Workspace | None = None) -> ModelRef:
    """Registry name → checkpoint artifact → local folder → hub id, in that order."""
    if ref in MODELS:
        entry = MODELS[ref]
        return ModelRef(ref, "registry", ref, entry.tokenizer, entry.family, pretrained=not entry.from_scratch)
    if workspace is not None:
        from ifguide_cli.core.errors import ArtifactNotFound

        try:
            art = workspace.resolve(ref, "checkpoints")
        except ArtifactNotFound:
            art = None
        if art is not None:
            return _checkpoint_ref(ref, art, workspace)
    path = Path(ref).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise IfguideError(f"{ref} is not a model folder (no config.json)",
                               hint="pass a folder written by save_pretrained, a registry name (`ifguide registry models`), or a hub id")
        refuse_custom_code(path, ref)
        return ModelRef(ref, "local", str(path.resolve()), str(path.resolve()), _family_from_config(path / "config.json"))
    if "/" in ref and not ref.startswith((".", "/", "~")):
        return ModelRef(ref, "hub", ref, ref)
    raise IfguideError(f"unknown model {ref!r}",
                       hint="use a registry name (`ifguide registry models`), a checkpoint id, a local folder, or a hub id like org/name",
                       exit_code=2)


def _checkpoint_ref(ref: str, art, workspace: Workspace) -> ModelRef:
    """A checkpoint artifact; a LoRA one (adapter only) also resolves the base model its manifest records."""
    model_dir = art.path / "model"
    # the checkpoint keeps its base model's tokenizer identity, so data tokenized for the base is reused
    mref = ModelRef(ref, "checkpoint", str(model_dir), art.config.get("tokenizer", str(model_dir)),
                    art.config.get("family"), art.id)
    if not has_adapter(art.path):
        return mref
    base = art.config.get("model", {})
    base_ref = base.get("artifact_id") if base.get("source") == "checkpoint" else base.get("location")
    return replace(mref, adapter=str(art.path / ADAPTER_DIR), base=resolve_model(str(base_ref), workspace))


def config_model_ref(path: str, tokenizer: str | None) -> ModelRef:
    """An architecture from a transformers config.json file (--model-config), trained from scratch with `tokenizer`."""
    from ifguide_cli.core.store.workspace import sha256_file

    file = Path(path).expanduser()
    if not file.is_file():
        from ifguide_cli.core.store.folders import not_a_file

        raise IfguideError(f"--model-config {path} {not_a_file(file)}", hint="pass a transformers config.json file",
                           exit_code=2)
    family = _family_from_config(file)
    if family is None:
        raise IfguideError(f"--model-config {path} is not a transformers config (no model_type)",
                           hint='a JSON object like {"model_type": "gpt_neox", "hidden_size": 128, ...}', exit_code=2)
    if tokenizer is None:
        raise IfguideError("--model-config needs --tokenizer (the vocabulary of a model built from a config)",
                           hint="e.g. --tokenizer tiny, a tokenizer artifact (`ifguide tokenizer train`), a folder or a hub id",
                           exit_code=2)
    return ModelRef(str(file), "config", str(file.resolve()), tokenizer, family, pretrained=False, own_tokenizer=True,
                    config_sha256=sha256_file(file))


def with_tokenizer(mref: ModelRef, tokenizer: str) -> ModelRef:
    """The model to be trained from scratch with another tokenizer (its vocabulary becomes the tokenizer's)."""
    if tokenizer == mref.tokenizer:
        return mref
    return replace(mref, tokenizer=tokenizer, own_tokenizer=True)


def require_trained(mref: ModelRef, allow_random: bool, what: str) -> None:
    """Refuse, before any work, to use the random initialisation of a model that has no trained weights."""
    if mref.pretrained or allow_random:
        return
    raise IfguideError(f"{mref.ref!r} has no trained weights: {what} would use its random initialisation",
                       hint=f"train it first (`ifguide train {mref.ref} --data ...`) and pass the checkpoint, or add "
                            f"--allow-random to insist", exit_code=2)


def model_context(mref: ModelRef) -> int | None:
    """The longest row the model takes (max_position_embeddings or its equivalent), None when its config has none."""
    config = load_config(mref)
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def trained_dataset(ws: Workspace | None, mref: ModelRef):
    """The dataset artifact a checkpoint was trained on (None for other models, or when it is gone)."""
    if mref.source != "checkpoint" or ws is None or mref.artifact_id is None:
        return None
    art = ws.by_id(mref.artifact_id)
    dataset = art.config.get("dataset") if art is not None else None
    return ws.by_id(dataset) if dataset else None


def refuse_custom_code(folder: Path, ref: str) -> None:
    """A model or tokenizer folder that needs its own Python code (`auto_map` for a class transformers lacks) is refused
    before transformers sees it: transformers would ask on the terminal whether to run that code (or fail with a long
    message where nobody can answer), and ifguide never runs code that comes with a model."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING
    from transformers.models.auto.tokenization_auto import tokenizer_class_from_name

    built_in = {"config.json": lambda c: c.get("model_type") in CONFIG_MAPPING,
                "tokenizer_config.json": lambda c: tokenizer_class_from_name(str(c.get("tokenizer_class"))) is not None}
    for name, known in built_in.items():
        try:
            content = json.loads((folder / name).read_text())
            custom = isinstance(content, dict) and "auto_map" in content and not known(content)
        except (OSError, ValueError, RecursionError, TypeError):  # unreadable here: the loader names the problem
            continue
        if custom:
            raise IfguideError(f"{ref}: {name} asks to run the model's own Python code (auto_map); ifguide never runs "
                               "code shipped with a model", hint="use a model of an architecture transformers has built in",
                               exit_code=2)


def _family_from_config(path: Path) -> str | None:
    try:
        values = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return None
    family = values.get("model_type") if isinstance(values, dict) else None
    return family if isinstance(family, str) else None


def load_tokenizer(mref: ModelRef):
    """The model's tokenizer, with a pad token (left as eos when the model has none)."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if mref.source == "checkpoint" and not mref.own_tokenizer:
        with reading_model_files(f"model folder {mref.location}"):
            tok = AutoTokenizer.from_pretrained(mref.location, trust_remote_code=False)
    elif mref.tokenizer == "tiny":
        tok = PreTrainedTokenizerFast(tokenizer_file=str(tiny_asset("tokenizer.json")), bos_token=TINY_SPECIAL,
                                      eos_token=TINY_SPECIAL, unk_token=TINY_SPECIAL, pad_token=TINY_SPECIAL)
    elif Path(mref.tokenizer).is_dir():
        refuse_custom_code(Path(mref.tokenizer), mref.tokenizer)
        with reading_model_files(f"tokenizer folder {mref.tokenizer}"):
            tok = AutoTokenizer.from_pretrained(mref.tokenizer, trust_remote_code=False)
    else:
        with hub_resource("tokenizer", mref.tokenizer, "a local tokenizer folder"):
            tok = AutoTokenizer.from_pretrained(mref.tokenizer, trust_remote_code=False)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def _hub_id(mref: ModelRef) -> str:
    """The hub id of a hub model or of a registry model with hub weights (one without is built from its config)."""
    hub_id = MODELS[mref.location].hub_id if mref.source == "registry" else mref.location
    if hub_id is None:
        raise IfguideError(f"model {mref.ref} is packaged and has no weights on the Hugging Face Hub",
                           hint="train it from scratch (ifguide train) and use the checkpoint", exit_code=2)
    return hub_id


def load_config(mref: ModelRef):
    from transformers import AutoConfig, GPTNeoXConfig

    if mref.source == "registry" and is_packaged_model(mref.location):
        return _with_registry_settings(GPTNeoXConfig.from_dict(json.loads(tiny_asset("model_config.json").read_text())), mref)
    if mref.source == "config":
        where = f"--model-config {mref.ref}"
        with reading_model_files(where):
            values = json.loads(Path(mref.location).read_text())
            config = AutoConfig.for_model(values.pop("model_type"), **values)
        check_buildable(config, where)
        return config
    if mref.source in ("checkpoint", "local"):
        with reading_model_files(f"model folder {mref.location}"):
            return AutoConfig.from_pretrained(mref.location, trust_remote_code=False)
    hub_id = _hub_id(mref)
    with hub_resource("model config", hub_id, "a local model folder"):
        config = AutoConfig.from_pretrained(hub_id, trust_remote_code=False)
    return _with_registry_settings(config, mref)


def _with_registry_settings(config, mref: ModelRef):
    """A registry variant's own settings over the hub config (e.g. the Pythia vocabulary for a Llama)."""
    if mref.source == "registry":
        for key, value in MODELS[mref.location].config.items():
            setattr(config, key, value)
    return config


def quiet_loading() -> None:
    """No `Loading weights: 100%|███|` bar from transformers: it lands in every eval's stderr and every log file,
    and says nothing a user acts on (ifguide reports its own progress)."""
    from transformers.utils import logging

    logging.disable_progress_bar()


def load_model(mref: ModelRef, *, from_scratch: bool | None = None, dtype=None, seed: int = 0):
    """The model with weights; registry models the paper trains from scratch start from a seeded random init."""
    import torch
    from transformers import AutoModelForCausalLM

    quiet_loading()
    from_scratch = (not mref.pretrained) if from_scratch is None else from_scratch
    dtype = dtype or torch.float32
    if from_scratch:
        config = load_config(mref)
        if mref.own_tokenizer:
            _take_vocabulary(config, load_tokenizer(mref))
        with _seeded(seed):
            model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    elif mref.adapter is not None and mref.base is not None:
        model = load_with_adapter(load_model(mref.base, from_scratch=False, dtype=dtype), Path(mref.adapter))
    elif mref.source in ("checkpoint", "local"):
        with reading_model_files(f"model folder {mref.location}"):
            model = AutoModelForCausalLM.from_pretrained(mref.location, dtype=dtype, trust_remote_code=False)
    else:
        _refuse_hub_weights_of_a_variant(mref)
        hub_id = _hub_id(mref)
        with hub_resource("model", hub_id, "a local model folder"):
            model = AutoModelForCausalLM.from_pretrained(hub_id, dtype=dtype, trust_remote_code=False)
    if not from_scratch:
        check_finite_weights(model, mref.ref)
    return model


def check_finite_weights(model, ref: str) -> None:
    """A model whose weights hold NaN or infinity (a diverged run saved by another tool) is one line, not an evaluation
    of garbage (perplexity NaN, shown as "—") or a fine-tuning that cannot start."""
    import torch

    bad = [name for name, p in model.named_parameters() if not bool(torch.isfinite(p.detach()).all())]
    if bad:
        raise IfguideError(f"model {ref!r} has non-finite (NaN or infinite) weights ({len(bad)} tensor(s), e.g. {bad[0]})",
                           hint="it comes from a diverged training run: retrain it with a lower learning rate", exit_code=2)


def _take_vocabulary(config, tokenizer) -> None:
    """A config built for another tokenizer gets this one's vocabulary size and special tokens."""
    config.vocab_size = len(tokenizer)
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        value = getattr(tokenizer, key, None)
        if value is not None:
            setattr(config, key, value)


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
