"""The inputs of the influence stages: the model (and a fingerprint of its weights), the training rows,
and a factors artifact's kronfluence folder."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from ifguide_cli.core import dist
from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.influence.staging import KRON_DIR
from ifguide_cli.core.progress import NULL

if TYPE_CHECKING:
    from ifguide_cli.core.store.workspace import Artifact, Workspace


def model_fingerprint(model) -> str:
    """A cheap, deterministic fingerprint of the weights (shapes, float64 sums, strided samples), computed on CPU."""
    import torch

    digest = hashlib.sha256()
    with torch.no_grad():
        for name, tensor in sorted(model.state_dict().items()):
            t = tensor.detach().to("cpu")
            digest.update(f"{name}:{tuple(t.shape)}".encode())
            if t.numel() == 0:
                continue
            flat = t.reshape(-1)
            if flat.is_floating_point():
                flat64 = flat.double()
                digest.update(f"{flat64.sum().item():.12e}:{flat64.abs().sum().item():.12e}".encode())
                sample = flat[:: max(1, flat.numel() // 257)][:257].float()
            else:
                sample = flat[:: max(1, flat.numel() // 257)][:257].long()
            digest.update(sample.numpy().tobytes())
    return digest.hexdigest()[:16]


def load_model_for_influence(mref, family):
    """The model in fp32 (GPT-2 Conv1D layers converted to nn.Linear), its tracked modules and weight fingerprint."""
    from transformers.utils import logging as hf_logging

    from ifguide_cli.core.influence.families import convert_conv1d_to_linear, select_modules
    from ifguide_cli.core.models import load_model

    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # transformers' "Loading weights" bar
    try:
        model = load_model(mref)
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    convert_conv1d_to_linear(model)  # GPT-2 style Conv1D layers → equivalent nn.Linear (kronfluence tracks Linear)
    fingerprint = model_fingerprint(model)
    modules = select_modules(model, family)
    return model, modules, fingerprint


def model_from_identity(identity: dict, ws: Workspace):
    """Re-resolve the model a factors artifact was fit on, from its recorded identity."""
    from ifguide_cli.core.models import config_model_ref, resolve_model, with_tokenizer

    if identity.get("source") == "checkpoint":
        return resolve_model(identity["artifact_id"], ws)
    if identity.get("source") == "config":
        return config_model_ref(identity["location"], identity["tokenizer"])
    mref = resolve_model(identity["location"], ws)
    return with_tokenizer(mref, identity["tokenizer"]) if identity.get("own_tokenizer") else mref


def describe_model(identity: dict) -> str:
    """A model identity as users name it: a checkpoint artifact, else its location."""
    if identity.get("source") == "checkpoint":
        return f"checkpoint {identity.get('artifact_id')}"
    return str(identity.get("location"))


def resolve_dataset(ws: Workspace, data_ref: str, mref, options: dict, dinfo: dist.DistInfo, *, prefer=None, reporter=NULL):
    """The training rows' `datasets` artifact (built once by rank 0 under torchrun; the other ranks then find it).

    `options`: the `CorpusConfig` options given; `prefer`: the dataset to reuse when DATA is its source.
    """
    from ifguide_cli.core.data import model_corpus
    from ifguide_cli.core.models import model_context

    return model_corpus(ws, data_ref, mref, options, prefer=prefer, reporter=reporter if dinfo.main else NULL,
                        barrier=dist.barrier, context=model_context(mref)).artifact


def factors_dir_of(art: Artifact) -> Path:
    """The kronfluence factors folder inside a factors artifact (an error if it holds none)."""
    strategy = art.config.get("strategy")
    path = art.path / KRON_DIR / f"factors_{strategy}"
    if not (path / "factor_arguments.json").is_file():
        raise IfguideError(f"factors artifact {art.id} has no kronfluence factors in {path}",
                           hint=f"rebuild it with `ifguide factors ... --force` or remove it (`ifguide workspace rm {art.id}`)")
    return path
