"""Toxicity classifiers: Detoxify, ToxiGen-RoBERTa, and the built-in offline profanity classifier.

Every backend turns a list of texts into one probability per text and attribute
(`Classifier.score(texts) -> {attribute: [float]}`); the first attribute is the headline one
(`toxicity` for Detoxify and ToxiGen, `profanity` for the built-in classifier).

Backends
- `detoxify-<type>` (type: original, unbiased, multilingual, original-small, unbiased-small): Detoxify's
  released checkpoint, a dict `{"state_dict": …, "config": …}` written by Detoxify's convert_weights.py
  (the config is the training JSON: `config["arch"]["args"]` names the transformers class, the base model
  type and the number of outputs; `config["dataset"]["args"]["classes"]` — in newer configs
  `config["arch"]["args"]["classes"]` — names the outputs). Scores are `sigmoid(logits)` per class,
  exactly as `Detoxify.predict`. The package's own loader calls `from_pretrained(model_type)` and so cannot
  work offline; here the transformers class is built from a local config folder (or the hub cache) and the
  checkpoint's `state_dict` is loaded with `torch.load(weights_only=True)` (its contents are plain
  dicts, lists, strings and tensors, so no pickle code runs). A `.safetensors` file is accepted too (its
  metadata may carry the Detoxify config as JSON under the key `config`).
- `toxigen-roberta` (`tomh/toxigen_roberta`) or any local folder / hub id of a sequence classifier:
  `softmax(logits)[:, 1]` (label 1 = toxic), the implicit-toxicity score used by the paper.
- `profanity`: alt-profanity-check's linear SVM (shipped inside the PyPI package, so it works offline).
  It detects profanity, not toxicity in general; it is the stand-in that lets the `tiny` pipeline and CI
  run with no network, and its numbers are NOT comparable with Detoxify's.

Where the weights come from, in order: explicit files (`--classifier-checkpoint FILE --classifier-base DIR`,
or `--classifier-path DIR`), a `classifiers` artifact registered once into the workspace under the
classifier's name (`ifguide eval add-classifier`), the local caches (torch hub / Hugging Face), the network.
Offline with none of them: one line naming the exact files to supply.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import IfguideError, OfflineResourceMissing
from .progress import NULL

DETOXIFY_RELEASES = "https://github.com/unitaryai/detoxify/releases/download/"

_UNBIASED_CLASSES = ["toxicity", "severe_toxicity", "obscene", "identity_attack", "insult", "threat", "sexual_explicit"]
_ORIGINAL_CLASSES = ["toxicity", "severe_toxicity", "obscene", "threat", "insult", "identity_attack"]
# Detoxify's renaming of the Jigsaw 2018 column names (detoxify.detoxify.load_checkpoint)
_DETOXIFY_RENAME = {"toxic": "toxicity", "identity_hate": "identity_attack", "severe_toxic": "severe_toxicity"}


@dataclass(frozen=True)
class DetoxifyType:
    model_type: str  # Detoxify's name
    file: str  # released checkpoint file name
    release: str  # GitHub release tag
    base: str  # transformers base model (config + tokenizer)
    model_class: str
    num_classes: int
    classes: tuple[str, ...]

    @property
    def url(self) -> str:
        return f"{DETOXIFY_RELEASES}{self.release}/{self.file}"


DETOXIFY_TYPES = {t.model_type: t for t in [
    DetoxifyType("original", "toxic_original-c1212f89.ckpt", "v0.1-alpha", "bert-base-uncased",
                 "BertForSequenceClassification", 6, tuple(_ORIGINAL_CLASSES)),
    DetoxifyType("unbiased", "toxic_debiased-c7548aa0.ckpt", "v0.3-alpha", "roberta-base",
                 "RobertaForSequenceClassification", 16, tuple(_UNBIASED_CLASSES)),
    DetoxifyType("multilingual", "multilingual_debiased-0b549669.ckpt", "v0.4-alpha", "xlm-roberta-base",
                 "XLMRobertaForSequenceClassification", 16, tuple(_UNBIASED_CLASSES)),
    DetoxifyType("original-small", "original-albert-0e1d6498.ckpt", "v0.1.2", "albert-base-v2",
                 "AlbertForSequenceClassification", 6, tuple(_ORIGINAL_CLASSES)),
    DetoxifyType("unbiased-small", "unbiased-albert-c8519128.ckpt", "v0.1.2", "albert-base-v2",
                 "AlbertForSequenceClassification", 16, tuple(_UNBIASED_CLASSES)),
]}

TOXIGEN_HUB_ID = "tomh/toxigen_roberta"
BUILTIN = "profanity"
CLASSIFIER_FILE = "classifier.json"  # in a registered `classifiers` artifact, next to model/


def known_names() -> list[str]:
    return [BUILTIN, *[f"detoxify-{t}" for t in DETOXIFY_TYPES], "toxigen-roberta"]


# ---- what the user asked for, resolved to where the weights are --------------------------------
@dataclass(frozen=True)
class ClassifierSpec:
    """A classifier resolved to its weights; `identity` goes into eval configs, `parents` into lineage."""

    name: str
    backend: str  # profanity | detoxify | seqcls
    identity: dict
    parents: list = field(default_factory=list)
    model_dir: str | None = None  # transformers folder (registered artifact, --classifier-path, base dir)
    checkpoint: str | None = None  # Detoxify checkpoint file
    hub_id: str | None = None  # hub id (seqcls) or base model type (detoxify) to load through the hub/cache
    detoxify_type: str | None = None
    meta: dict = field(default_factory=dict)  # classifier.json of a registered artifact


def resolve_classifier(name: str, workspace=None, *, checkpoint: str | None = None, base: str | None = None,
                       path: str | None = None) -> ClassifierSpec:
    """Find the weights of classifier `name` (see the module docstring for the order)."""
    name = name.strip()
    if name == BUILTIN:
        if checkpoint or base or path:
            raise IfguideError("the built-in `profanity` classifier takes no weights",
                               hint="drop --classifier-checkpoint/--classifier-base/--classifier-path", exit_code=2)
        return ClassifierSpec(BUILTIN, "profanity", {"backend": "profanity", "package": _profanity_version()})

    if name.startswith("detoxify-") or name == "detoxify":
        if path:
            raise IfguideError("--classifier-path is for transformers classifier folders, not Detoxify checkpoints",
                               hint="use --classifier-checkpoint FILE --classifier-base DIR", exit_code=2)
        model_type = name[len("detoxify-"):] if name != "detoxify" else "unbiased"
        if model_type not in DETOXIFY_TYPES:
            raise IfguideError(f"unknown Detoxify model type {model_type!r}",
                               hint=f"use one of: {', '.join('detoxify-' + t for t in DETOXIFY_TYPES)}", exit_code=2)
        return _resolve_detoxify(f"detoxify-{model_type}", DETOXIFY_TYPES[model_type], workspace, checkpoint, base)

    if checkpoint or base:
        raise IfguideError("--classifier-checkpoint/--classifier-base are for Detoxify classifiers",
                           hint="for a transformers classifier folder use --classifier-path DIR", exit_code=2)
    if path:
        folder = _check_model_dir(path, name)
        return ClassifierSpec(name, "seqcls", {"backend": "seqcls", "name": name, "path": str(folder),
                                               "fingerprint": _dir_fingerprint(folder)}, model_dir=str(folder))
    art = _registered(workspace, name)
    if art is not None:
        return _spec_from_artifact(name, art)
    if name == "toxigen-roberta":
        _require_hub("classifier", TOXIGEN_HUB_ID, "--classifier-path DIR (a local copy of the classifier)")
        return ClassifierSpec(name, "seqcls", {"backend": "seqcls", "name": name, "hub_id": TOXIGEN_HUB_ID},
                              hub_id=TOXIGEN_HUB_ID)
    local = Path(name).expanduser()
    if local.exists():
        folder = _check_model_dir(str(local), name)
        return ClassifierSpec(folder.name, "seqcls", {"backend": "seqcls", "path": str(folder),
                                                      "fingerprint": _dir_fingerprint(folder)}, model_dir=str(folder))
    if "/" in name and not name.startswith((".", "/", "~")):
        _require_hub("classifier", name, "--classifier-path DIR (a local copy of the classifier)")
        return ClassifierSpec(name, "seqcls", {"backend": "seqcls", "hub_id": name}, hub_id=name)
    raise IfguideError(f"unknown classifier {name!r}",
                       hint=f"use one of {', '.join(known_names())}, a classifier registered with "
                            "`ifguide eval add-classifier`, a local transformers folder or a hub id", exit_code=2)


def _resolve_detoxify(name: str, dtype: DetoxifyType, workspace, checkpoint: str | None, base: str | None) -> ClassifierSpec:
    ident = {"backend": "detoxify", "model_type": dtype.model_type}
    if checkpoint:
        ckpt = Path(checkpoint).expanduser()
        if not ckpt.is_file():
            raise IfguideError(f"classifier checkpoint {checkpoint} does not exist",
                               hint=f"pass the Detoxify checkpoint file ({dtype.file}, from {dtype.url})", exit_code=2)
        base_dir = None
        if base:
            base_dir = str(_check_model_dir(base, f"{dtype.base} base", need_weights=False))
        else:
            _require_detoxify_base(dtype, name)
        from .workspace import sha256_file

        ident.update(checkpoint_sha256=sha256_file(ckpt), base=dtype.base)
        return ClassifierSpec(name, "detoxify", ident, checkpoint=str(ckpt.resolve()), model_dir=base_dir,
                              hub_id=None if base_dir else dtype.base, detoxify_type=dtype.model_type)
    if base:
        raise IfguideError("--classifier-base needs --classifier-checkpoint",
                           hint=f"pass the Detoxify checkpoint ({dtype.file}) with --classifier-checkpoint", exit_code=2)
    art = _registered(workspace, name)
    if art is not None:
        return _spec_from_artifact(name, art)
    cached = _torch_hub_dir() / dtype.file
    if not cached.is_file():
        from .hub import is_offline

        if is_offline() or os.environ.get("IFGUIDE_OFFLINE") == "1":  # say so now, before any model is loaded
            raise _detoxify_missing(dtype, cached, name)
    _require_detoxify_base(dtype, name)
    ident.update(checkpoint=dtype.file, base=dtype.base)
    return ClassifierSpec(name, "detoxify", ident, checkpoint=str(cached), hub_id=dtype.base,
                          detoxify_type=dtype.model_type)


def _require_hub(what: str, hub_id: str, local_flag: str) -> None:
    """Offline and not in the HF cache: the one-line error now, before anything is loaded."""
    from .hub import is_offline, missing_hint

    if not is_offline() or _hub_cached(hub_id):
        return
    raise OfflineResourceMissing(f"{what} {hub_id!r} is not available", hint=missing_hint(what, hub_id, local_flag))


def _hub_cached(hub_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(hub_id, "config.json"), str)
    except Exception:
        return False


def _require_detoxify_base(dtype: DetoxifyType, name: str) -> None:
    from .hub import is_offline

    if is_offline() and not _hub_cached(dtype.base):
        raise OfflineResourceMissing(f"the {dtype.base} config/tokenizer that Detoxify `{dtype.model_type}` needs is not "
                                     "available offline", hint=detoxify_missing_hint(dtype, name))


def _spec_from_artifact(name: str, art) -> ClassifierSpec:
    meta = json.loads(art.file(CLASSIFIER_FILE).read_text())
    backend = meta.get("backend", "seqcls")
    if backend == "rad-reward":
        raise IfguideError(f"{art.id} is the RAD reward model, not a toxicity classifier",
                           hint="use it with --defense rad; classify with e.g. --classifier detoxify-unbiased", exit_code=2)
    return ClassifierSpec(name, backend, {"backend": backend, "artifact": art.id}, parents=[art.id],
                          model_dir=str(art.file("model")), detoxify_type=meta.get("detoxify_type"), meta=meta)


def _registered(workspace, name: str):
    """A `classifiers` artifact registered under this name (or referenced by id), if any."""
    if workspace is None:
        return None
    from .errors import ArtifactNotFound, WrongArtifactKind

    try:
        return workspace.resolve(name, "classifiers")
    except WrongArtifactKind:
        raise
    except (ArtifactNotFound, IfguideError):
        return None


def _check_model_dir(path: str, what: str, need_weights: bool = True) -> Path:
    folder = Path(path).expanduser()
    if not folder.is_dir() or not (folder / "config.json").is_file():
        raise IfguideError(f"{path} is not a transformers folder for {what} (no config.json)",
                           hint="pass a folder written by save_pretrained (config.json and tokenizer files"
                                + (", weights" if need_weights else "") + ")", exit_code=2)
    return folder.resolve()


def _dir_fingerprint(folder: Path) -> dict:
    """Size and mtime of the weight files: cheap, changes when the weights change."""
    return {p.name: [p.stat().st_size, int(p.stat().st_mtime)] for p in sorted(folder.iterdir())
            if p.suffix in (".safetensors", ".bin")}


def _torch_hub_dir() -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def _profanity_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("alt-profanity-check")
    except metadata.PackageNotFoundError:
        return "missing"


# ---- loading ------------------------------------------------------------------------------
class Classifier:
    """Scores texts; `attributes[0]` is the headline attribute."""

    name: str = ""
    attributes: list[str] = []

    @property
    def primary(self) -> str:
        return self.attributes[0]

    def score(self, texts: list[str], reporter=NULL) -> dict[str, list[float]]:
        raise NotImplementedError


class ProfanityClassifier(Classifier):
    """alt-profanity-check's linear SVM: P(profane) per text. Offline, CPU, fast."""

    def __init__(self, batch_size: int = 4096):
        try:
            from profanity_check import predict_prob
        except ImportError:
            raise IfguideError("the built-in classifier needs the alt-profanity-check package",
                               hint="pip install alt-profanity-check") from None
        self._predict = predict_prob
        self.name, self.attributes, self.batch_size = BUILTIN, ["profanity"], batch_size

    def score(self, texts, reporter=NULL):
        out: list[float] = []
        with reporter.task(f"classifying ({self.name})", total=len(texts)) as task:
            for start in range(0, len(texts), self.batch_size):
                chunk = list(texts[start:start + self.batch_size])  # it takes a list, not a string
                out += [float(p) for p in self._predict(chunk)] if chunk else []
                task.advance(len(chunk))
        return {"profanity": out}


class SequenceClassifier(Classifier):
    """A transformers sequence classifier. `activation`: sigmoid (multi-label, Detoxify) or softmax
    (ToxiGen: the toxic probability is class `toxic_index`)."""

    def __init__(self, name, model, tokenizer, attributes, activation="sigmoid", toxic_index=1,
                 device="cpu", batch_size=64, max_length=512):
        self.name, self.model, self.tokenizer = name, model.eval().to(device), tokenizer
        self.attributes, self.activation, self.toxic_index = list(attributes), activation, toxic_index
        self.device, self.batch_size = device, batch_size
        model_max = getattr(tokenizer, "model_max_length", max_length) or max_length
        pos = getattr(model.config, "max_position_embeddings", max_length) or max_length
        offset = 2 if getattr(model.config, "model_type", "") in ("roberta", "xlm-roberta", "camembert") else 0
        self.max_length = int(min(max_length, model_max, pos - offset))  # RoBERTa positions start after padding_idx

    def score(self, texts, reporter=NULL):
        import torch

        out = {a: [0.0] * len(texts) for a in self.attributes}
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths together: less padding
        with reporter.task(f"classifying ({self.name})", total=len(texts)) as task, torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                idx = order[start:start + self.batch_size]
                chunk = [texts[i] or " " for i in idx]
                enc = self.tokenizer(chunk, return_tensors="pt", truncation=True, padding=True,
                                     max_length=self.max_length).to(self.device)
                logits = self.model(**enc).logits.float()
                if self.activation == "softmax":
                    probs = torch.softmax(logits, dim=-1)[:, self.toxic_index:self.toxic_index + 1]
                else:
                    probs = torch.sigmoid(logits)
                probs = probs.cpu().tolist()
                for row, i in zip(probs, idx):
                    for j, attr in enumerate(self.attributes):
                        out[attr][i] = row[j]
                task.advance(len(chunk))
        return out


def load_classifier(spec: ClassifierSpec, *, device: str = "cpu", batch_size: int = 64) -> Classifier:
    if spec.backend == "profanity":
        return ProfanityClassifier()
    if spec.backend == "detoxify":
        if spec.meta:  # registered: a plain transformers folder + classifier.json
            model, tok = _load_seqcls_dir(spec.model_dir, spec.name)
            return SequenceClassifier(spec.name, model, tok, spec.meta["attributes"], "sigmoid",
                                      device=device, batch_size=batch_size)
        model, tok, classes = load_detoxify(spec)
        return SequenceClassifier(spec.name, model, tok, classes, "sigmoid", device=device, batch_size=batch_size)
    # seqcls (ToxiGen-style)
    if spec.model_dir:
        model, tok = _load_seqcls_dir(spec.model_dir, spec.name)
    else:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from .hub import hub_resource

        with hub_resource("classifier", spec.hub_id, "--classifier-path DIR (a local copy of the classifier)"):
            tok = AutoTokenizer.from_pretrained(spec.hub_id)
            model = AutoModelForSequenceClassification.from_pretrained(spec.hub_id)
    return _seqcls_classifier(spec, model, tok, device, batch_size)


def _seqcls_classifier(spec, model, tok, device, batch_size) -> SequenceClassifier:
    meta = spec.meta or {}
    n = int(model.config.num_labels)
    if n < 2 and not meta:
        return SequenceClassifier(spec.name, model, tok, ["toxicity"], "sigmoid", device=device, batch_size=batch_size)
    toxic_index = meta.get("toxic_index", _toxic_label_index(model.config))
    return SequenceClassifier(spec.name, model, tok, meta.get("attributes", ["toxicity"]), "softmax",
                              toxic_index=toxic_index, device=device, batch_size=batch_size)


def _toxic_label_index(config) -> int:
    """Label 1 is toxic (ToxiGen-RoBERTa's LABEL_1) unless the config names a toxic/hate label."""
    for idx, label in (getattr(config, "id2label", None) or {}).items():
        if str(label).lower() in ("toxic", "toxicity", "hate", "hateful", "offensive"):
            return int(idx)
    return 1


def _load_seqcls_dir(folder: str, name: str):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(folder)
    except Exception as exc:
        raise IfguideError(f"classifier {name}: no usable tokenizer in {folder} ({type(exc).__name__})",
                           hint="save the tokenizer into the same folder (tokenizer.json or vocab files)") from None
    try:
        model = AutoModelForSequenceClassification.from_pretrained(folder)
    except Exception as exc:
        raise IfguideError(f"classifier {name}: cannot load the weights in {folder}: {str(exc).splitlines()[0][:160]}",
                           hint="the folder needs config.json and model.safetensors (or pytorch_model.bin)") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    return model, tok


# ---- Detoxify, offline ------------------------------------------------------------------------
def detoxify_missing_hint(dtype: DetoxifyType, name: str) -> str:
    return (f"supply the checkpoint {dtype.file} ({dtype.url}) with --classifier-checkpoint FILE and a {dtype.base} "
            f"folder (config.json + tokenizer files) with --classifier-base DIR, or register them once with "
            f"`ifguide eval add-classifier {name} --checkpoint FILE --base DIR`; "
            f"or use the built-in offline classifier --classifier profanity")


def read_detoxify_checkpoint(path: str | Path) -> tuple[dict, dict]:
    """(state_dict, config) of a Detoxify checkpoint: torch file (weights_only) or safetensors."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors import safe_open
        from safetensors.torch import load_file

        with safe_open(str(path), "pt") as fh:
            meta = fh.metadata() or {}
        config = json.loads(meta["config"]) if "config" in meta else {}
        return load_file(str(path)), config
    import pickle

    import torch

    try:
        loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        raise IfguideError(f"{path} is not a loadable Detoxify checkpoint ({str(exc).splitlines()[0][:160]})",
                           hint="use the released .ckpt from Detoxify's GitHub releases (it loads with "
                                "weights_only=True), or convert it to .safetensors", exit_code=2) from None
    if not isinstance(loaded, dict) or "state_dict" not in loaded:
        if isinstance(loaded, dict) and all(hasattr(v, "shape") for v in loaded.values()):
            return loaded, {}  # a bare state dict: class names come from the model type
        raise IfguideError(f"{path} is not a Detoxify checkpoint (expected a dict with `state_dict` and `config`)",
                           exit_code=2)
    return loaded["state_dict"], loaded.get("config") or {}


def detoxify_layout(config: dict, dtype: DetoxifyType | None) -> tuple[str, str, int, list[str]]:
    """(transformers class, base model type, number of outputs, class names) from a Detoxify config."""
    arch = (config.get("arch") or {}).get("args") or {}
    model_class = arch.get("model_name") or (dtype.model_class if dtype else None)
    base = arch.get("model_type") or (dtype.base if dtype else None)
    num = arch.get("num_classes") or (dtype.num_classes if dtype else None)
    classes = ((config.get("dataset") or {}).get("args") or {}).get("classes") or arch.get("classes") \
        or (list(dtype.classes) if dtype else None)
    if not (model_class and base and num and classes):
        raise IfguideError("the Detoxify checkpoint's config does not name its architecture and classes",
                           hint="pass --classifier detoxify-<type> so the defaults of that type apply", exit_code=2)
    return model_class, base, int(num), [_DETOXIFY_RENAME.get(c, c) for c in classes]


def build_detoxify_model(state_dict: dict, config: dict, dtype: DetoxifyType | None, base_dir: str | None,
                         base_hub: str | None, name: str):
    """The transformers model and tokenizer with the checkpoint's weights, built without `from_pretrained(model_type)`."""
    import transformers
    from transformers import AutoConfig, AutoTokenizer

    model_class_name, base, num, classes = detoxify_layout(config, dtype)
    model_class = getattr(transformers, model_class_name, None)
    if model_class is None:
        raise IfguideError(f"transformers has no class {model_class_name} (named by the Detoxify checkpoint)")
    if base_dir:
        hf_config = AutoConfig.from_pretrained(base_dir, num_labels=num)
        tok = AutoTokenizer.from_pretrained(base_dir)
    else:
        from .hub import hub_resource

        hub_id = base_hub or base
        try:
            with hub_resource("classifier base model", hub_id, "--classifier-base DIR"):
                hf_config = AutoConfig.from_pretrained(hub_id, num_labels=num)
                tok = AutoTokenizer.from_pretrained(hub_id)
        except OfflineResourceMissing:
            if dtype is None:
                raise
            raise OfflineResourceMissing(f"the {base} config/tokenizer that Detoxify `{dtype.model_type}` needs is not "
                                         "available offline", hint=detoxify_missing_hint(dtype, name)) from None
    misfit_hint = f"pass a {base} folder (the checkpoint's base model type) as --classifier-base"
    wanted_type = getattr(model_class.config_class, "model_type", None)
    if wanted_type and hf_config.model_type != wanted_type:
        raise IfguideError(f"the Detoxify checkpoint needs a {wanted_type} base config, the base folder has "
                           f"{hf_config.model_type}", hint=misfit_hint, exit_code=2)
    model = model_class(hf_config)
    state = {k[len("model."):] if k.startswith("model.") else k: v for k, v in state_dict.items()}
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise IfguideError(f"the Detoxify checkpoint does not fit {model_class_name} built from the base config "
                           f"({str(exc).splitlines()[1].strip()[:160] if len(str(exc).splitlines()) > 1 else exc})",
                           hint=misfit_hint, exit_code=2) from None
    missing = [k for k in result.missing_keys if not k.endswith("position_ids")]
    unexpected = [k for k in result.unexpected_keys if not k.endswith("position_ids")]
    if missing or unexpected:
        raise IfguideError(f"the Detoxify checkpoint does not fit {model_class_name} built from the {base} config "
                           f"(missing {missing[:3]}, unexpected {unexpected[:3]})", hint=misfit_hint, exit_code=2)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    return model.eval(), tok, classes[:num]


def load_detoxify(spec: ClassifierSpec):
    """(model, tokenizer, class names) for an unregistered Detoxify spec; downloads only when online."""
    dtype = DETOXIFY_TYPES.get(spec.detoxify_type or "")
    ckpt = Path(spec.checkpoint)
    if not ckpt.is_file():
        _download_detoxify(dtype, ckpt, spec.name)
    state, config = read_detoxify_checkpoint(ckpt)
    return build_detoxify_model(state, config, dtype, spec.model_dir, spec.hub_id, spec.name)


def _detoxify_missing(dtype: DetoxifyType, target: Path, name: str) -> OfflineResourceMissing:
    return OfflineResourceMissing(f"Detoxify `{dtype.model_type}` weights are not available offline "
                                  f"(no {dtype.file} in {target.parent})", hint=detoxify_missing_hint(dtype, name))


def _download_detoxify(dtype: DetoxifyType, target: Path, name: str) -> None:
    from .hub import is_offline

    missing = _detoxify_missing(dtype, target, name)
    if is_offline() or os.environ.get("IFGUIDE_OFFLINE") == "1":
        raise missing
    import socket

    import torch

    target.parent.mkdir(parents=True, exist_ok=True)
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(20)
    try:
        torch.hub.download_url_to_file(dtype.url, str(target), progress=False)
    except Exception:
        raise missing from None
    finally:
        socket.setdefaulttimeout(old)


# ---- registration into the workspace -----------------------------------------------------------
def register_classifier(workspace, name: str, *, checkpoint: str | None = None, base: str | None = None,
                        path: str | None = None, force: bool = False):
    """Validate a classifier's weights once and store them as a `classifiers` artifact named `name`.

    Detoxify: the checkpoint is loaded into its transformers class (offline route above) and saved with
    save_pretrained + the tokenizer, so later evals load a plain folder. Other classifiers: the folder is
    loaded and re-saved. Returns (artifact, reused).
    """
    from .workspace import sha256_file

    if name == BUILTIN:
        raise IfguideError("`profanity` is built in and needs no registration", exit_code=2)
    is_detoxify = name.startswith("detoxify-")
    if is_detoxify:
        model_type = name[len("detoxify-"):]
        if model_type not in DETOXIFY_TYPES:
            raise IfguideError(f"unknown Detoxify model type {model_type!r}",
                               hint=f"use one of: {', '.join('detoxify-' + t for t in DETOXIFY_TYPES)}", exit_code=2)
        if not checkpoint:
            raise IfguideError(f"registering {name} needs --checkpoint FILE ({DETOXIFY_TYPES[model_type].file})",
                               hint=detoxify_missing_hint(DETOXIFY_TYPES[model_type], name), exit_code=2)
        spec = resolve_classifier(name, None, checkpoint=checkpoint, base=base)
        config = {"backend": "detoxify", "name": name, "model_type": model_type,
                  "checkpoint_sha256": spec.identity["checkpoint_sha256"], "base": base and str(Path(base).resolve())}
    else:
        if checkpoint or base:
            raise IfguideError("--checkpoint/--base are for Detoxify classifiers (name them detoxify-<type>)",
                               hint="for a transformers folder use --from DIR", exit_code=2)
        if not path:
            raise IfguideError(f"registering {name} needs --from DIR (a transformers classifier folder)", exit_code=2)
        folder = _check_model_dir(path, name)
        spec = ClassifierSpec(name, "seqcls", {}, model_dir=str(folder))
        weights = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin"))
        config = {"backend": "seqcls", "name": name, "weights_sha256": {p.name: sha256_file(p) for p in weights}}

    def build(ctx):
        if is_detoxify:
            model, tok, classes = load_detoxify(spec)
            meta = {"backend": "detoxify", "detoxify_type": model_type, "attributes": classes, "activation": "sigmoid"}
        else:
            model, tok = _load_seqcls_dir(spec.model_dir, name)
            clf = _seqcls_classifier(spec, model, tok, "cpu", 1)
            meta = {"backend": "seqcls", "attributes": clf.attributes, "activation": clf.activation,
                    "toxic_index": clf.toxic_index}
        out = ctx.staging / "model"
        model.save_pretrained(str(out))
        tok.save_pretrained(str(out))
        (ctx.staging / CLASSIFIER_FILE).write_text(json.dumps(meta, indent=2))
        return {"name": name, "backend": meta["backend"], "attributes": meta["attributes"],
                "params": sum(p.numel() for p in model.parameters())}

    return workspace.create("classifiers", config, [], build, name=name, force=force)
