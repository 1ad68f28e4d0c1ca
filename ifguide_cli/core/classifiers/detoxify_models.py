"""Detoxify classifiers, built by the `detoxify` package's own code.

A Detoxify checkpoint is what Detoxify's convert_weights.py writes: `{"state_dict": …, "config": …}`, the
config being the training JSON: `config["arch"]["args"]` holds `model_type` (the base model: config and
tokenizer), `model_name` (the transformers class), `tokenizer_name` and `num_classes`; the class names are
in `config["dataset"]["args"]["classes"]` (newer configs: `config["arch"]["args"]["classes"]`). Scores are
`sigmoid(logits)` of the first len(classes) outputs, exactly as `Detoxify.predict`.

From `detoxify`: the release URLs (`detoxify.detoxify.MODEL_URLS`, downloaded into torch hub's cache where
`Detoxify(model_type)` caches them too) and the model and tokenizer construction
(`detoxify.detoxify.get_model_and_tokenizer(**config["arch"]["args"], state_dict=…)`).

Ours, and why (the thin offline path):
- reading the file: `detoxify.detoxify.load_checkpoint` unpickles it with `torch.load(weights_only=False)`;
  here the same file loads with `weights_only=True` (plain dicts, lists, strings and tensors, so no pickle
  code runs), and a `.safetensors` file with the config as JSON under the metadata key `config` works too;
- offline: `get_model_and_tokenizer` calls `from_pretrained(model_type)` for the config even when given a
  `huggingface_config_path`, so it needs the hub or its cache. With a local base-model folder
  (`--classifier-base DIR`: config.json + tokenizer files) that folder is passed as `model_type`, and the
  same function builds the model and tokenizer from local files only;
- the class names: `load_checkpoint` renames the Jigsaw-2018 names inline (no public function), so the
  three renames are repeated here;
- a fit check: transformers initialises missing weights at random with a warning; a checkpoint that does
  not fit its base model is refused in one line instead.
"""

from __future__ import annotations

import inspect
import json
import os
from contextlib import contextmanager
from pathlib import Path

from ifguide_cli.core.errors import IfguideError, OfflineResourceMissing

# The base model of each released type, for the hints that name what to download (the checkpoint's own
# config names it too, but only once the checkpoint is there). The types are detoxify's MODEL_URLS keys.
DETOXIFY_BASES = {"original": "bert-base-uncased", "unbiased": "roberta-base", "multilingual": "xlm-roberta-base",
                  "original-small": "albert-base-v2", "unbiased-small": "albert-base-v2"}
# detoxify.detoxify.load_checkpoint's renaming of the Jigsaw-2018 column names
_RENAME = {"toxic": "toxicity", "identity_hate": "identity_attack", "severe_toxic": "severe_toxicity"}


def release_url(model_type: str) -> str:
    from detoxify.detoxify import MODEL_URLS

    return MODEL_URLS[model_type]


def release_file(model_type: str) -> str:
    return release_url(model_type).rsplit("/", 1)[-1]


def cached_checkpoint(model_type: str) -> Path:
    """Where torch hub (and so `Detoxify(model_type)`) keeps the released checkpoint."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / release_file(model_type)


def detoxify_missing_hint(model_type: str, name: str) -> str:
    base = DETOXIFY_BASES[model_type]
    return (f"supply the checkpoint {release_file(model_type)} ({release_url(model_type)}) with --classifier-checkpoint "
            f"FILE and a {base} folder (config.json + tokenizer files) with --classifier-base DIR, or register them once "
            f"with `ifguide eval add-classifier {name} --checkpoint FILE --base DIR`; "
            f"or use the built-in offline classifier --classifier profanity")


def detoxify_missing(model_type: str, name: str) -> OfflineResourceMissing:
    target = cached_checkpoint(model_type)
    return OfflineResourceMissing(f"Detoxify `{model_type}` weights are not available offline "
                                  f"(no {target.name} in {target.parent})", hint=detoxify_missing_hint(model_type, name))


def offline() -> bool:
    from ifguide_cli.core.hub import is_offline

    return is_offline() or os.environ.get("IFGUIDE_OFFLINE") == "1"


def download_checkpoint(model_type: str, name: str) -> Path:
    """The released checkpoint in torch hub's cache, downloaded when missing; offline: one line naming the files."""
    import socket

    import torch

    target = cached_checkpoint(model_type)
    if target.is_file():
        return target
    if offline():
        raise detoxify_missing(model_type, name)
    target.parent.mkdir(parents=True, exist_ok=True)
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(20)
    try:
        torch.hub.download_url_to_file(release_url(model_type), str(target), progress=False)
    except Exception:
        raise detoxify_missing(model_type, name) from None
    finally:
        socket.setdefaulttimeout(old)
    return target


# ---- the checkpoint --------------------------------------------------------------------------
def read_detoxify_checkpoint(path: str | Path) -> tuple[dict, dict]:
    """(state_dict, config) of a Detoxify checkpoint: torch file (weights_only) or safetensors."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors import safe_open
        from safetensors.torch import load_file

        with safe_open(str(path), "pt") as fh:
            meta = fh.metadata() or {}
        loaded = {"state_dict": load_file(str(path)), "config": json.loads(meta["config"]) if "config" in meta else None}
    else:
        loaded = _torch_load(path)
    if not isinstance(loaded, dict) or not loaded.get("state_dict") or not loaded.get("config"):
        raise IfguideError(f"{path} is not a Detoxify checkpoint (expected `state_dict` and the training `config`)",
                           hint="use a released .ckpt (Detoxify's GitHub releases) or a file written by its "
                                "convert_weights.py", exit_code=2)
    return loaded["state_dict"], loaded["config"]


def _torch_load(path: Path):
    import pickle

    import torch

    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        raise IfguideError(f"{path} is not a loadable Detoxify checkpoint ({str(exc).splitlines()[0][:160]})",
                           hint="use the released .ckpt from Detoxify's GitHub releases (it loads with "
                                "weights_only=True), or convert it to .safetensors", exit_code=2) from None


def detoxify_layout(config: dict) -> tuple[dict, list[str]]:
    """(the arguments of detoxify's `get_model_and_tokenizer`, the standardised class names) of a checkpoint config."""
    from detoxify.detoxify import get_model_and_tokenizer

    arch = (config.get("arch") or {}).get("args") or {}
    wanted = [p for p in inspect.signature(get_model_and_tokenizer).parameters if p not in ("state_dict",
                                                                                           "huggingface_config_path")]
    classes = ((config.get("dataset") or {}).get("args") or {}).get("classes") or arch.get("classes")
    if not classes or any(p not in arch for p in wanted):
        raise IfguideError("the Detoxify checkpoint's config does not name its architecture and classes "
                           f"(config['arch']['args'] needs {', '.join(wanted)})", exit_code=2)
    return {p: arch[p] for p in wanted}, [_RENAME.get(c, c) for c in classes]


# ---- the model ---------------------------------------------------------------------------------
@contextmanager
def _quiet_transformers():
    """No load report or progress bar from `from_pretrained`: the fit is checked, and reported, here."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def _model_class(model_name: str):
    import transformers

    cls = getattr(transformers, model_name, None)
    if cls is None:
        raise IfguideError(f"transformers has no class {model_name} (named by the Detoxify checkpoint)", exit_code=2)
    return cls


def _check_base_folder(base_dir: str, model_class, misfit_hint: str) -> None:
    """A base folder of another architecture would be read into the checkpoint's class with only a warning."""
    wanted = getattr(model_class.config_class, "model_type", None)
    found = json.loads((Path(base_dir) / "config.json").read_text()).get("model_type")
    if wanted and found != wanted:
        raise IfguideError(f"the Detoxify checkpoint needs a {wanted} base config, the base folder has {found}",
                           hint=misfit_hint, exit_code=2)


def _check_fit(model, state: dict, model_name: str, base: str, misfit_hint: str) -> None:
    """Every weight of the model comes from the checkpoint and every checkpoint weight is used."""
    ignore = ("position_ids",)  # buffers that old checkpoints carry and new models rebuild
    have = {k for k in model.state_dict() if not k.endswith(ignore)}
    given = {k for k in state if not k.endswith(ignore)}
    missing, unexpected = sorted(have - given), sorted(given - have)
    if missing or unexpected:
        raise IfguideError(f"the Detoxify checkpoint does not fit {model_name} built from the {base} config "
                           f"(missing {missing[:3]}, unexpected {unexpected[:3]})", hint=misfit_hint, exit_code=2)


def build_detoxify(state_dict: dict, config: dict, *, base_dir: str | None = None, name: str = "detoxify",
                   model_type: str | None = None):
    """(model, tokenizer, class names) through detoxify's `get_model_and_tokenizer`; with `base_dir` from local files."""
    from detoxify.detoxify import get_model_and_tokenizer

    from ifguide_cli.core.hub import is_offline

    args, classes = detoxify_layout(config)
    base = args["model_type"]
    misfit_hint = f"pass a {base} folder (the checkpoint's base model type) as --classifier-base"
    model_class = _model_class(args["model_name"])
    if base_dir:
        _check_base_folder(base_dir, model_class, misfit_hint)
        args["model_type"] = base_dir
    else:
        is_offline()  # decide once, so that a hub miss fails at once instead of after the network timeouts
    state = {k.removeprefix("model."): v for k, v in state_dict.items()}  # convert_weights.py's step, if not done yet
    try:
        with _quiet_transformers():
            model, tok = get_model_and_tokenizer(**args, state_dict=state)
    except RuntimeError as exc:  # weight shapes that differ from the base config's
        raise IfguideError(f"the Detoxify checkpoint does not fit {args['model_name']} built from the {base} config "
                           f"({str(exc).splitlines()[0][:160]})", hint=misfit_hint, exit_code=2) from None
    except OSError as exc:  # the base model's config or tokenizer is not there
        raise _base_unavailable(base, base_dir, model_type, name, exc) from None
    _check_fit(model, state, args["model_name"], base, misfit_hint)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    return model.eval(), tok, classes[:args["num_classes"]]


def _base_unavailable(base: str, base_dir: str | None, model_type: str | None, name: str, exc: OSError) -> IfguideError:
    from ifguide_cli.core.hub import is_offline, missing_hint

    if base_dir:
        return IfguideError(f"classifier {name}: cannot load the base model in {base_dir} ({str(exc).splitlines()[0][:160]})",
                            hint="the folder needs config.json and the tokenizer files of " + base, exit_code=2)
    if not is_offline():
        return OfflineResourceMissing(f"could not load classifier base model {base!r}: {str(exc).splitlines()[0][:160]}",
                                      hint="check the network, or pass --classifier-base DIR")
    if model_type in DETOXIFY_BASES:
        return OfflineResourceMissing(f"the {base} config/tokenizer that Detoxify `{model_type}` needs is not available "
                                      "offline", hint=detoxify_missing_hint(model_type, name))
    return OfflineResourceMissing(f"classifier base model {base!r} is not available",
                                  hint=missing_hint("classifier base model", base, "--classifier-base DIR"))


def load_detoxify(checkpoint: str, *, base_dir: str | None, model_type: str | None, name: str):
    """(model, tokenizer, class names) of a Detoxify checkpoint file (a released one is downloaded when online)."""
    path = Path(checkpoint)
    if not path.is_file() and model_type in DETOXIFY_BASES:
        path = download_checkpoint(model_type, name)
    state, config = read_detoxify_checkpoint(path)
    return build_detoxify(state, config, base_dir=base_dir, name=name, model_type=model_type)
