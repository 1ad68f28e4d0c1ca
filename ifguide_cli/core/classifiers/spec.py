"""What the user asked for (`--classifier NAME` and its files), resolved to where the weights are.

Where the weights come from, in order: explicit files (`--classifier-checkpoint FILE --classifier-base DIR`,
or `--classifier-path DIR`), a `classifiers` artifact registered once into the workspace under the
classifier's name (`ifguide eval add-classifier`), the local caches (torch hub / Hugging Face), the network.
Offline with none of them: one line naming the exact files to supply — before any model is loaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ifguide_cli.core.classifiers.detoxify_models import (
    DETOXIFY_BASES,
    cached_checkpoint,
    detoxify_missing,
    detoxify_missing_hint,
    offline,
    release_file,
    release_url,
)
from ifguide_cli.core.config import Config, param
from ifguide_cli.core.errors import IfguideError, OfflineResourceMissing

if TYPE_CHECKING:
    from ifguide_cli.core.store.workspace import Workspace

TOXIGEN_HUB_ID = "tomh/toxigen_roberta"
BUILTIN = "profanity"
CLASSIFIER_FILE = "classifier.json"  # in a registered `classifiers` artifact, next to model/
DEFAULT_DETOXIFY = "unbiased"  # `--classifier detoxify`


def known_names() -> list[str]:
    return [BUILTIN, *[f"detoxify-{t}" for t in DETOXIFY_BASES], "toxigen-roberta"]


@dataclass(frozen=True)
class ClassifierOptions(Config):
    """Where a classifier's weights are when they are not registered or cached, and its batch size."""

    classifier_checkpoint: str | None = param(None, "Detoxify checkpoint file (.ckpt or .safetensors).")
    classifier_base: str | None = param(None, "Local base-model folder for Detoxify (config.json + tokenizer).")
    classifier_path: str | None = param(None, "Local transformers folder of a (ToxiGen-style) classifier.")
    classifier_batch_size: int = param(64, "Texts per classifier forward.", low=1)


@dataclass(frozen=True)
class ClassifierSpec:
    """A classifier resolved to its weights; `identity` goes into eval configs, `parents` into lineage."""

    name: str
    backend: str  # profanity | detoxify | seqcls
    identity: dict
    parents: list = field(default_factory=list)
    model_dir: str | None = None  # transformers folder (registered artifact, --classifier-path, base dir)
    checkpoint: str | None = None  # Detoxify checkpoint file
    hub_id: str | None = None  # hub id of a sequence classifier to load through the hub/cache
    detoxify_type: str | None = None
    meta: dict = field(default_factory=dict)  # classifier.json of a registered artifact


def detoxify_type_of(name: str) -> str | None:
    """The Detoxify model type a classifier name asks for (None: not a Detoxify name); unknown types are an error."""
    if name != "detoxify" and not name.startswith("detoxify-"):
        return None
    model_type = name.removeprefix("detoxify-") if name != "detoxify" else DEFAULT_DETOXIFY
    if model_type not in DETOXIFY_BASES:
        raise IfguideError(f"unknown Detoxify model type {model_type!r}",
                           hint=f"use one of: {', '.join('detoxify-' + t for t in DETOXIFY_BASES)}", exit_code=2)
    return model_type


def resolve_classifier(name: str, workspace: Workspace | None = None, *, checkpoint: str | None = None, base: str | None = None,
                       path: str | None = None) -> ClassifierSpec:
    """Find the weights of classifier `name` (see the module docstring for the order)."""
    name = name.strip()
    if name == BUILTIN:
        if checkpoint or base or path:
            raise IfguideError("the built-in `profanity` classifier takes no weights",
                               hint="drop --classifier-checkpoint/--classifier-base/--classifier-path", exit_code=2)
        return ClassifierSpec(BUILTIN, "profanity", {"backend": "profanity", "package": _profanity_version()})
    model_type = detoxify_type_of(name)
    if model_type is not None:
        if path:
            raise IfguideError("--classifier-path is for transformers classifier folders, not Detoxify checkpoints",
                               hint="use --classifier-checkpoint FILE --classifier-base DIR", exit_code=2)
        return _resolve_detoxify(f"detoxify-{model_type}", model_type, workspace, checkpoint, base)
    if checkpoint or base:
        raise IfguideError("--classifier-checkpoint/--classifier-base are for Detoxify classifiers",
                           hint="for a transformers classifier folder use --classifier-path DIR", exit_code=2)
    return _resolve_seqcls(name, workspace, path)


def _resolve_seqcls(name: str, workspace: Workspace | None, path: str | None) -> ClassifierSpec:
    """A transformers sequence classifier: given folder, registered artifact, ToxiGen, local folder or hub id."""
    if path:
        return _folder_spec(name, check_model_dir(path, name), with_name=True)
    art = _registered(workspace, name)
    if art is not None:
        return _spec_from_artifact(name, art)
    local_flag = "--classifier-path DIR (a local copy of the classifier)"
    if name == "toxigen-roberta":
        _require_hub("classifier", TOXIGEN_HUB_ID, local_flag)
        return ClassifierSpec(name, "seqcls", {"backend": "seqcls", "name": name, "hub_id": TOXIGEN_HUB_ID},
                              hub_id=TOXIGEN_HUB_ID)
    local = Path(name).expanduser()
    if local.exists():
        folder = check_model_dir(str(local), name)
        return _folder_spec(folder.name, folder, with_name=False)
    if "/" in name and not name.startswith((".", "/", "~")):
        _require_hub("classifier", name, local_flag)
        return ClassifierSpec(name, "seqcls", {"backend": "seqcls", "hub_id": name}, hub_id=name)
    raise IfguideError(f"unknown classifier {name!r}",
                       hint=f"use one of {', '.join(known_names())}, a classifier registered with "
                            "`ifguide eval add-classifier`, a local transformers folder or a hub id", exit_code=2)


def _folder_spec(name: str, folder: Path, *, with_name: bool) -> ClassifierSpec:
    ident = {"backend": "seqcls", **({"name": name} if with_name else {}), "path": str(folder),
             "fingerprint": _dir_fingerprint(folder)}
    return ClassifierSpec(name, "seqcls", ident, model_dir=str(folder))


def _resolve_detoxify(name: str, model_type: str, workspace: Workspace | None, checkpoint: str | None, base: str | None) -> ClassifierSpec:
    if checkpoint:
        return _detoxify_from_files(name, model_type, checkpoint, base)
    if base:
        raise IfguideError("--classifier-base needs --classifier-checkpoint",
                           hint=f"pass the Detoxify checkpoint ({release_file(model_type)}) with --classifier-checkpoint",
                           exit_code=2)
    art = _registered(workspace, name)
    if art is not None:
        return _spec_from_artifact(name, art)
    cached = cached_checkpoint(model_type)
    if not cached.is_file() and offline():  # say so now, before any model is loaded
        raise detoxify_missing(model_type, name)
    _require_detoxify_base(model_type, name)
    ident = {"backend": "detoxify", "model_type": model_type, "checkpoint": cached.name, "base": DETOXIFY_BASES[model_type]}
    return ClassifierSpec(name, "detoxify", ident, checkpoint=str(cached), detoxify_type=model_type)


def _detoxify_from_files(name: str, model_type: str, checkpoint: str, base: str | None) -> ClassifierSpec:
    from ifguide_cli.core.store.workspace import sha256_file

    ckpt = Path(checkpoint).expanduser()
    if not ckpt.is_file():
        from ifguide_cli.core.store.folders import not_a_file

        raise IfguideError(f"classifier checkpoint {checkpoint} {not_a_file(ckpt)}",
                           hint=f"pass the Detoxify checkpoint file ({release_file(model_type)}, from "
                                f"{release_url(model_type)})", exit_code=2)
    base_dir = None
    if base:
        base_dir = str(check_model_dir(base, f"{DETOXIFY_BASES[model_type]} base", need_weights=False))
    else:
        _require_detoxify_base(model_type, name)
    ident = {"backend": "detoxify", "model_type": model_type, "checkpoint_sha256": sha256_file(ckpt),
             "base": DETOXIFY_BASES[model_type]}
    return ClassifierSpec(name, "detoxify", ident, checkpoint=str(ckpt.resolve()), model_dir=base_dir,
                          detoxify_type=model_type)


def _require_hub(what: str, hub_id: str, local_flag: str) -> None:
    """Offline and not in the HF cache: the one-line error now, before anything is loaded."""
    from ifguide_cli.core.hub import is_offline, missing_hint

    if not is_offline() or _hub_cached(hub_id):
        return
    raise OfflineResourceMissing(f"{what} {hub_id!r} is not available", hint=missing_hint(what, hub_id, local_flag))


def _hub_cached(hub_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(hub_id, "config.json"), str)
    except Exception:
        return False


def _require_detoxify_base(model_type: str, name: str) -> None:
    from ifguide_cli.core.hub import is_offline

    base = DETOXIFY_BASES[model_type]
    if is_offline() and not _hub_cached(base):
        raise OfflineResourceMissing(f"the {base} config/tokenizer that Detoxify `{model_type}` needs is not "
                                     "available offline", hint=detoxify_missing_hint(model_type, name))


def _spec_from_artifact(name: str, art) -> ClassifierSpec:
    meta = json.loads(art.file(CLASSIFIER_FILE).read_text())
    backend = meta.get("backend", "seqcls")
    if backend == "rad-reward":
        raise IfguideError(f"{art.id} is the RAD reward model, not a toxicity classifier",
                           hint="use it with --defense rad; classify with e.g. --classifier detoxify-unbiased", exit_code=2)
    return ClassifierSpec(name, backend, {"backend": backend, "artifact": art.id}, parents=[art.id],
                          model_dir=str(art.file("model")), detoxify_type=meta.get("detoxify_type"), meta=meta)


def _registered(workspace: Workspace | None, name: str):
    """A `classifiers` artifact registered under this name (or referenced by id), if any."""
    if workspace is None:
        return None
    from ifguide_cli.core.errors import ArtifactNotFound, WrongArtifactKind

    try:
        return workspace.resolve(name, "classifiers")
    except WrongArtifactKind:
        raise
    except (ArtifactNotFound, IfguideError):
        return None


def check_model_dir(path: str, what: str, need_weights: bool = True) -> Path:
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


def _profanity_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("alt-profanity-check")
    except metadata.PackageNotFoundError:
        return "missing"
