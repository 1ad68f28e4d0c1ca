"""Toxic-token selection, paper Alg. 1: from per-token influence scores to the mask penalised in training.

The rooms, in the order the data flows:
- `config`: `MaskConfig` (quantile p, window w, budget L), the single source of the `mask select` options.
- `scorefile`: score tensors read memory-mapped from .safetensors / .npy files (`open_scores`: a block of rows
  at a time), and .safetensors written.
- `row_blocks`: tensors in files read and written a block of rows at a time (what keeps the mask stage's
  memory from growing with the corpus); `mask_file`: the `masks` artifact's tensor file, filled in place.
- `radix`: τ, numpy's linear quantile computed exactly by chunked radix selection.
- `select`: Alg. 1 itself (`select_toxic_tokens`: sparsity, strength, harmonic ranking, budgeted walk).
- `stage`: the workspace stage (`create_mask_artifact`): scores artifact or file + dataset → `masks` artifact.
- `source`: the mask-source contract (`MaskSourceEntry`, `MaskSourceStage`, `make_mask`): every source is one
  entry of `extensions.MASK_SOURCES`, from which the CLI commands and pipeline arms are generated.
- the cheap sources, each making an ordinary `masks` artifact through the same budgeted walk:
  `source_config` (`ClassifierMaskConfig`, `WordlistMaskConfig`), `row_text` (rows back as text, token by token),
  `wordlist` (reading and matching a word list), `evidence` (what a classifier or word list marks),
  `sources` (`build_classifier_mask`, `build_wordlist_mask`).

The names below are re-exported lazily (PEP 562): `cli/mask.py` imports `MaskConfig` to build its options,
and `ifguide --help` must not import numpy for that.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CHUNK_ELEMENTS": "arrays", "check_finite": "arrays",
    "MaskConfig": "config",
    "quantile": "radix",
    "SCORE_KEYS": "scorefile", "load_safetensors_array": "scorefile", "load_scores": "scorefile",
    "safetensors_keys": "scorefile", "save_safetensors": "scorefile",
    "MaskResult": "select", "harmonic_rank": "select", "select_marked": "select", "select_toxic_tokens": "select",
    "walk_budget": "select",
    "ClassifierMaskConfig": "source_config", "WordlistMaskConfig": "source_config",
    "build_classifier_mask": "sources", "build_wordlist_mask": "sources", "mask_dataset": "sources",
    "DataRefs": "source", "MaskRefs": "source", "MaskSourceEntry": "source", "make_mask": "source",
    "stored_mask": "source",
    "MaskSource": "stage", "create_mask_artifact": "stage", "dataset_arrays": "stage", "planted_precision": "stage",
    "resolve_mask_source": "stage", "write_mask": "stage",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
