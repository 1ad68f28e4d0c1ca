"""Scoring backends: every classifier turns texts into one probability per text and attribute.

Each backend is a loader registered in `extensions.CLASSIFIER_BACKENDS` under the `backend` a resolved classifier
names (`spec.ClassifierSpec.backend`); a new backend is a loader here (or in its own module) and one entry there.

- `profanity`: alt-profanity-check's linear SVM (shipped inside the PyPI package, so it works offline).
  It detects profanity, not toxicity in general; it is the stand-in that lets the `tiny` pipeline and CI
  run with no network, and its numbers are NOT comparable with Detoxify's.
- Detoxify: `sigmoid(logits)` per class (multi-label), as `Detoxify.predict`.
- ToxiGen-RoBERTa (`tomh/toxigen_roberta`) or any transformers sequence classifier:
  `softmax(logits)[:, toxic]` (label 1 = toxic unless the config names a toxic label).
"""

from __future__ import annotations

from ifguide_cli.core.classifiers.detoxify_models import load_detoxify
from ifguide_cli.core.classifiers.spec import BUILTIN, ClassifierSpec
from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.extensions import CLASSIFIER_BACKENDS
from ifguide_cli.core.progress import NULL


class Classifier:
    """Scores texts (`score(texts) -> {attribute: [float]}`); `attributes[0]` is the headline attribute."""

    name: str = ""
    attributes: list[str]

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

    def _probabilities(self, chunk: list[str]) -> list[list[float]]:
        import torch

        enc = self.tokenizer(chunk, return_tensors="pt", truncation=True, padding=True,
                             max_length=self.max_length).to(self.device)
        logits = self.model(**enc).logits.float()
        if self.activation == "softmax":
            return torch.softmax(logits, dim=-1)[:, self.toxic_index:self.toxic_index + 1].cpu().tolist()
        return torch.sigmoid(logits).cpu().tolist()

    def score(self, texts, reporter=NULL):
        import torch

        out = {a: [0.0] * len(texts) for a in self.attributes}
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths together: less padding
        with reporter.task(f"classifying ({self.name})", total=len(texts)) as task, torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                idx = order[start:start + self.batch_size]
                probs = self._probabilities([texts[i] or " " for i in idx])
                for row, i in zip(probs, idx, strict=True):
                    for j, attr in enumerate(self.attributes):
                        out[attr][i] = row[j]
                task.advance(len(idx))
        return out


def load_classifier(spec: ClassifierSpec, *, device: str = "cpu", batch_size: int = 64) -> Classifier:
    """The scoring backend of a resolved classifier: its `backend`'s loader in `extensions.CLASSIFIER_BACKENDS`."""
    load = CLASSIFIER_BACKENDS.get(spec.backend)
    return load(spec, device=device, batch_size=batch_size)


def load_profanity(spec: ClassifierSpec, *, device: str, batch_size: int) -> Classifier:
    """alt-profanity-check's SVM (CPU; its own batch size)."""
    return ProfanityClassifier()


def load_detoxify_classifier(spec: ClassifierSpec, *, device: str, batch_size: int) -> Classifier:
    """A Detoxify checkpoint (multi-label, sigmoid), or a registered one saved as a plain transformers folder."""
    if spec.meta:  # registered: a plain transformers folder + classifier.json
        assert spec.model_dir is not None, "a registered classifier is resolved to its folder"
        model, tok = load_seqcls_dir(spec.model_dir, spec.name)
        classes = spec.meta["attributes"]
    else:
        assert spec.checkpoint is not None, "a Detoxify classifier is resolved to its checkpoint"
        model, tok, classes = load_detoxify(spec.checkpoint, base_dir=spec.model_dir, model_type=spec.detoxify_type,
                                            name=spec.name)
    return SequenceClassifier(spec.name, model, tok, classes, "sigmoid", device=device, batch_size=batch_size)


def load_sequence_classifier(spec: ClassifierSpec, *, device: str, batch_size: int) -> Classifier:
    """A transformers sequence classifier (ToxiGen-RoBERTa or any other) from a folder or the hub id."""
    if spec.model_dir:
        model, tok = load_seqcls_dir(spec.model_dir, spec.name)
    else:
        assert spec.hub_id is not None, "a sequence classifier is resolved to a folder or a hub id"
        model, tok = _load_seqcls_hub(spec.hub_id)
    return seqcls_classifier(spec, model, tok, device, batch_size)


def seqcls_classifier(spec: ClassifierSpec, model, tok, device, batch_size) -> SequenceClassifier:
    """A ToxiGen-style classifier: softmax over the labels, the toxic one scored (one label: sigmoid)."""
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


def _load_seqcls_hub(hub_id: str):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ifguide_cli.core.models import quiet_loading

    quiet_loading()
    from ifguide_cli.core.hub import hub_resource

    with hub_resource("classifier", hub_id, "--classifier-path DIR (a local copy of the classifier)"):
        tok = AutoTokenizer.from_pretrained(hub_id, trust_remote_code=False)
        model = AutoModelForSequenceClassification.from_pretrained(hub_id, trust_remote_code=False)
    return model, tok


def load_seqcls_dir(folder: str, name: str):
    """(model, tokenizer) of a transformers classifier folder, with one clear line for what is missing."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ifguide_cli.core.models import quiet_loading

    quiet_loading()
    try:
        tok = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
    except Exception as exc:
        raise IfguideError(f"classifier {name}: no usable tokenizer in {folder} ({type(exc).__name__})",
                           hint="save the tokenizer into the same folder (tokenizer.json or vocab files)") from None
    try:
        model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=False)
    except Exception as exc:
        raise IfguideError(f"classifier {name}: cannot load the weights in {folder}: {str(exc).splitlines()[0][:160]}",
                           hint="the folder needs config.json and model.safetensors (or pytorch_model.bin)") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    return model, tok
