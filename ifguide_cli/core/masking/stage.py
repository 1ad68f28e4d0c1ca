"""The `mask` stage: scores (artifact or plain file) + their dataset → Alg. 1 → a `masks` artifact."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..artifact_files import CORPUS_FILE, MASK_FILE, SCORES_FILE
from ..data import file_identity, recorded_dataset
from ..errors import ArtifactNotFound, IfguideError
from ..progress import NULL
from .config import MaskConfig
from .scorefile import load_safetensors_array, load_scores, safetensors_keys, save_safetensors
from .select import MaskResult, select_toxic_tokens

ALGORITHM = "IF-Guide Alg. 1 (ifguide masking v1)"  # recorded in the config: a new version must not reuse old masks


@dataclass
class MaskSource:
    """Where a selection's scores (and, when known, the token data) come from."""

    scores: np.ndarray
    scores_art: Any | None  # the `scores` artifact, or None for a plain file
    scores_file: Path
    dataset: Any | None  # the `datasets` artifact the scores index, if known
    valid: np.ndarray | None


def dataset_arrays(dataset) -> dict[str, np.ndarray]:
    """The dataset artifact's token tensors, memory-mapped: input_ids, attention_mask (+ planted_toxic)."""
    path = dataset.file(CORPUS_FILE)
    keys = safetensors_keys(path)
    return {k: load_safetensors_array(path, k) for k in ("input_ids", "attention_mask", "planted_toxic") if k in keys}


def _as_bool_view(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == bool:
        return arr
    if arr.dtype == np.uint8:
        return arr.view(bool)  # 0/1 bytes: no copy
    return arr != 0


def _read_scores(ws, scores_ref: str, key: str | None) -> tuple[np.ndarray, Any | None, Path]:
    """(scores, scores artifact or None, file) for a score file path or a scores artifact reference."""
    path = Path(scores_ref).expanduser()
    if path.is_file():
        return load_scores(path, key, check_finite_values=False), None, path
    try:
        scores_art = ws.resolve(scores_ref, "scores")
    except ArtifactNotFound:
        if path.suffix.lower() in (".safetensors", ".npy") or "/" in scores_ref:
            raise IfguideError(f"score file not found: {path}") from None
        raise
    scores_file = scores_art.file(SCORES_FILE)
    return load_scores(scores_file, key, check_finite_values=False), scores_art, scores_file


def _valid_positions(dataset, shape: tuple[int, ...], use_attention_mask: bool) -> np.ndarray | None:
    """The dataset's attention mask as the valid positions (None to count every position); shapes must agree."""
    arrays = dataset_arrays(dataset)
    data_shape = tuple(arrays["input_ids"].shape)
    if data_shape != tuple(shape):
        raise IfguideError(f"scores have shape {tuple(shape)} but dataset {dataset.id} has {data_shape} (docs × seq_len)",
                           hint="the scores must be computed on this dataset, same order and --seq-len", exit_code=2)
    if use_attention_mask and "attention_mask" in arrays:
        return _as_bool_view(arrays["attention_mask"])
    return None


def resolve_mask_source(ws, scores_ref: str, data_ref: str | None = None, key: str | None = None,
                        use_attention_mask: bool = True) -> MaskSource:
    """A scores artifact (id, name, `latest`) or a score file; the dataset from the artifact or `data_ref`."""
    scores, scores_art, scores_file = _read_scores(ws, scores_ref, key)
    given = ws.resolve(data_ref, "datasets") if data_ref is not None else None
    dataset = recorded_dataset(ws, scores_art, given, what=f"scores {scores_art.id}" if scores_art is not None else "",
                               hint="leave out --data (the scores artifact knows its dataset)",
                               missing_hint="recreate it, or pass the score file itself without a dataset")
    valid = _valid_positions(dataset, scores.shape, use_attention_mask) if dataset is not None else None
    return MaskSource(scores, scores_art, scores_file, dataset, valid)


def planted_precision(ranking: np.ndarray, planted: np.ndarray) -> dict[str, Any]:
    """Precision@k of the ranking against planted toxic documents (k = number planted)."""
    planted = np.asarray(planted).astype(bool)
    k = int(planted.sum())
    if k == 0:
        return {}
    return {"planted_toxic_documents": k, "planted_precision_at_k": float(planted[ranking[:k]].mean())}


def _stage_config(src: MaskSource, config: MaskConfig, key: str | None) -> dict[str, Any]:
    """What identifies a mask (its reuse key): Alg. 1's parameters, the scores and the positions counted."""
    return {
        **config.to_dict(),
        "scores": src.scores_art.id if src.scores_art is not None else None,
        "scores_file": None if src.scores_art is not None else file_identity(src.scores_file),
        "scores_key": key,
        "dataset": src.dataset.id if src.dataset is not None else None,
        "positions": "attention_mask" if src.valid is not None else "all",
        "algorithm": ALGORITHM,
    }


def _write_mask(path: Path, res: MaskResult) -> None:
    save_safetensors(path, {"mask": res.mask, "ranking": res.ranking, "sparsity": res.sparsity, "strength": res.strength,
                            "harmonic": res.harmonic, "selected": res.selected_counts})


def _summary(res: MaskResult, src: MaskSource, stage_config: dict[str, Any]) -> dict[str, Any]:
    """The artifact's summary: the selection's figures, its inputs, and precision@k on a planted corpus."""
    summary = res.summary()
    summary["dataset"] = stage_config["dataset"]
    summary["scores"] = stage_config["scores"] or str(src.scores_file)
    if src.dataset is not None:
        arrays = dataset_arrays(src.dataset)
        if "planted_toxic" in arrays:
            summary.update(planted_precision(res.ranking, np.asarray(arrays["planted_toxic"])))
    return summary


def create_mask_artifact(ws, scores_ref: str, config: MaskConfig, *, data_ref: str | None = None, key: str | None = None,
                         all_positions: bool = False, name: str | None = None, force: bool = False, reporter=NULL):
    """The `mask` stage: run Alg. 1 on a scores artifact or file and store a `masks` artifact. Returns (artifact, reused)."""
    src = resolve_mask_source(ws, scores_ref, data_ref, key, use_attention_mask=not all_positions)
    stage_config = _stage_config(src, config, key)
    parents = [src.scores_art.id] if src.scores_art is not None else ([src.dataset.id] if src.dataset is not None else [])

    def build(ctx):
        with ctx.timed("select"):
            res = select_toxic_tokens(src.scores, config, src.valid, reporter=reporter)
        with ctx.timed("write"):
            _write_mask(ctx.staging / MASK_FILE, res)
        return _summary(res, src, stage_config)

    return ws.create("masks", stage_config, parents, build, name=name, force=force)
