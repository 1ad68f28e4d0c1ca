"""`ifguide eval add-classifier`: validate a classifier's weights once and store them in the workspace.

Detoxify: the checkpoint is built into its transformers model (through detoxify's own code, see
`detoxify_models`) and saved with save_pretrained + the tokenizer, so later evals load a plain folder.
Other classifiers: the folder is loaded and re-saved.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from ifguide_cli.core.classifiers.backends import load_seqcls_dir, seqcls_classifier
from ifguide_cli.core.classifiers.detoxify_models import detoxify_missing_hint, load_detoxify, release_file
from ifguide_cli.core.classifiers.spec import (
    BUILTIN,
    CLASSIFIER_FILE,
    ClassifierSpec,
    check_model_dir,
    detoxify_type_of,
    resolve_classifier,
)
from ifguide_cli.core.errors import IfguideError

if TYPE_CHECKING:
    from ifguide_cli.core.store.workspace import Workspace


def _detoxify_source(name: str, model_type: str, checkpoint: str | None, base: str | None):
    """(stage config, loader) of a Detoxify checkpoint to register."""
    if not checkpoint:
        raise IfguideError(f"registering {name} needs --checkpoint FILE ({release_file(model_type)})",
                           hint=detoxify_missing_hint(model_type, name), exit_code=2)
    spec = resolve_classifier(name, None, checkpoint=checkpoint, base=base)
    config = {"backend": "detoxify", "name": name, "model_type": model_type,
              "checkpoint_sha256": spec.identity["checkpoint_sha256"], "base": base and str(Path(base).resolve())}

    def load():
        model, tok, classes = load_detoxify(spec.checkpoint, base_dir=spec.model_dir, model_type=model_type, name=name)
        return model, tok, {"backend": "detoxify", "detoxify_type": model_type, "attributes": classes, "activation": "sigmoid"}

    return config, load


def _folder_source(name: str, path: str | None, checkpoint: str | None, base: str | None):
    """(stage config, loader) of a transformers classifier folder to register."""
    from ifguide_cli.core.store.workspace import sha256_file

    if checkpoint or base:
        raise IfguideError("--checkpoint/--base are for Detoxify classifiers (name them detoxify-<type>)",
                           hint="for a transformers folder use --from DIR", exit_code=2)
    if not path:
        raise IfguideError(f"registering {name} needs --from DIR (a transformers classifier folder)", exit_code=2)
    folder = check_model_dir(path, name)
    weights = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin"))
    config = {"backend": "seqcls", "name": name, "weights_sha256": {p.name: sha256_file(p) for p in weights}}

    def load():
        model, tok = load_seqcls_dir(str(folder), name)
        clf = seqcls_classifier(ClassifierSpec(name, "seqcls", {}, model_dir=str(folder)), model, tok, "cpu", 1)
        return model, tok, {"backend": "seqcls", "attributes": clf.attributes, "activation": clf.activation,
                            "toxic_index": clf.toxic_index}

    return config, load


def register_classifier(workspace: Workspace, name: str, *, checkpoint: str | None = None, base: str | None = None,
                        path: str | None = None, force: bool = False):
    """Store a classifier's weights as a `classifiers` artifact named `name`. Returns (artifact, reused)."""
    if name == BUILTIN:
        raise IfguideError("`profanity` is built in and needs no registration", exit_code=2)
    model_type = detoxify_type_of(name) if name.startswith("detoxify-") else None
    if model_type is not None:
        config, load = _detoxify_source(name, model_type, checkpoint, base)
    else:
        config, load = _folder_source(name, path, checkpoint, base)

    def build(ctx):
        model, tok, meta = load()
        out = ctx.staging / "model"
        model.save_pretrained(str(out))
        tok.save_pretrained(str(out))
        (ctx.staging / CLASSIFIER_FILE).write_text(json.dumps(meta, indent=2))
        return {"name": name, "backend": meta["backend"], "attributes": meta["attributes"],
                "params": sum(p.numel() for p in model.parameters())}

    return workspace.create("classifiers", config, [], build, name=name, force=force)
