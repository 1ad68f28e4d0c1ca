"""The `mask` stage: scores (artifact or plain file) + their dataset → Alg. 1 → a `masks` artifact."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ifguide_cli.core.data import file_identity, recorded_dataset
from ifguide_cli.core.errors import ArtifactNotFound, IfguideError
from ifguide_cli.core.masking.arrays import CHUNK_ELEMENTS
from ifguide_cli.core.masking.config import MaskConfig
from ifguide_cli.core.masking.mask_file import MaskFile, write_mask
from ifguide_cli.core.masking.row_blocks import FileRows, RowBlocks, ScoredRows
from ifguide_cli.core.masking.scorefile import load_safetensors_array, open_scores, safetensors_keys
from ifguide_cli.core.masking.select import MaskResult, select_toxic_tokens
from ifguide_cli.core.masking.source import MaskRefs, MaskSourceStage
from ifguide_cli.core.progress import NULL, Reporter
from ifguide_cli.core.stage import ArtifactKey, Result, run_stage
from ifguide_cli.core.store.artifact_files import CORPUS_FILE, MASK_FILE, ROWS_KEY, SCORES_FILE

if TYPE_CHECKING:
    from ifguide_cli.core.store.workspace import BuildContext, Workspace

ALGORITHM = "IF-Guide Alg. 1 (ifguide masking v1)"  # recorded in the config: a new version must not reuse old masks


@dataclass
class MaskSource:
    """Where a selection's scores (and, when known, the token data) come from. The scores and the positions
    counted are read a block of rows at a time (`row_blocks`): `view[:]` reads them whole."""

    scores: RowBlocks
    scores_art: Any | None  # the `scores` artifact, or None for a plain file
    scores_file: Path
    dataset: Any | None  # the `datasets` artifact the scores index, if known
    valid: RowBlocks | None
    rows: np.ndarray | None = None  # the rows that were scored (`scores --max-rows/--rows`); None: all


def dataset_arrays(dataset) -> dict[str, np.ndarray]:
    """The dataset artifact's token tensors, memory-mapped: input_ids, attention_mask (+ planted_toxic)."""
    path = dataset.file(CORPUS_FILE)
    keys = safetensors_keys(path)
    return {k: load_safetensors_array(path, k) for k in ("input_ids", "attention_mask", "planted_toxic") if k in keys}


def _as_bool(block: np.ndarray) -> np.ndarray:
    """A block of an attention mask as a new bool array (0/1 bytes are taken as they are)."""
    if block.dtype in (bool, np.uint8):
        return np.array(block).view(bool)
    return np.asarray(block) != 0


def _read_scores(ws: Workspace, scores_ref: str, key: str | None) -> tuple[RowBlocks, Any | None, Path]:
    """(scores, scores artifact or None, file) for a score file path or a scores artifact reference."""
    path = Path(scores_ref).expanduser()
    if path.is_file():
        return open_scores(path, key), None, path
    try:
        scores_art = ws.resolve(scores_ref, "scores")
    except ArtifactNotFound:
        if path.suffix.lower() in (".safetensors", ".npy") or "/" in scores_ref:
            from ifguide_cli.core.store.folders import not_a_file

            raise IfguideError(f"score file {path} {not_a_file(path)}", exit_code=2) from None
        raise
    scores_file = scores_art.file(SCORES_FILE)
    return open_scores(scores_file, key), scores_art, scores_file


def scored_rows(scores_file: Path, n_rows: int) -> np.ndarray | None:
    """The rows a partial scoring covered (the file's `rows` tensor, see influence/subset.py); None: every row."""
    if scores_file.suffix.lower() != ".safetensors" or ROWS_KEY not in safetensors_keys(scores_file):
        return None
    rows = np.asarray(load_safetensors_array(scores_file, ROWS_KEY), dtype=np.int64)
    if rows.ndim != 1 or (rows.size and (rows.min() < 0 or rows.max() >= n_rows)):
        raise IfguideError(f"{scores_file}: its `{ROWS_KEY}` tensor is not a list of rows 0–{n_rows - 1}",
                           hint="recompute the scores", exit_code=2)
    return rows


def _only_scored(valid: RowBlocks | None, rows: np.ndarray | None, shape: tuple[int, int]) -> RowBlocks | None:
    """The valid positions restricted to the scored rows: the other rows never count nor get selected."""
    if rows is None:
        return valid
    scored = np.zeros(shape[0], dtype=bool)
    scored[rows] = True
    return ScoredRows(valid, scored, shape)


def _valid_positions(dataset, shape: tuple[int, int], use_attention_mask: bool) -> RowBlocks | None:
    """The dataset's attention mask as the valid positions, read a block of rows at a time (None to count every
    position); shapes must agree."""
    arrays = dataset_arrays(dataset)
    data_shape = tuple(arrays["input_ids"].shape)
    if data_shape != tuple(shape):
        raise IfguideError(f"scores have shape {tuple(shape)} but dataset {dataset.id} has {data_shape} (docs × seq_len)",
                           hint="the scores must be computed on this dataset, same order and --seq-len", exit_code=2)
    if use_attention_mask and "attention_mask" in arrays:
        path = dataset.file(CORPUS_FILE)
        return FileRows(partial(load_safetensors_array, path, "attention_mask"), shape, np.dtype(bool), _as_bool)
    return None


def resolve_mask_source(ws: Workspace, scores_ref: str, data_ref: str | None = None, key: str | None = None,
                        use_attention_mask: bool = True) -> MaskSource:
    """A scores artifact (id, name, `latest`) or a score file; the dataset from the artifact or `data_ref`."""
    scores, scores_art, scores_file = _read_scores(ws, scores_ref, key)
    given = ws.resolve(data_ref, "datasets") if data_ref is not None else None
    dataset = recorded_dataset(ws, scores_art, given, what=f"scores {scores_art.id}" if scores_art is not None else "",
                               hint="leave out --data (the scores artifact knows its dataset)",
                               missing_hint="recreate it, or pass the score file itself without a dataset")
    valid = _valid_positions(dataset, scores.shape, use_attention_mask) if dataset is not None else None
    rows = scored_rows(scores_file, scores.shape[0])
    return MaskSource(scores, scores_art, scores_file, dataset, _only_scored(valid, rows, scores.shape), rows)


def planted_precision(ranking: np.ndarray, planted: np.ndarray) -> dict[str, Any]:
    """Precision@k of the ranking against planted toxic documents (k = number planted)."""
    planted = np.asarray(planted).astype(bool)
    k = int(planted.sum())
    if k == 0:
        return {}
    return {"planted_toxic_documents": k, "planted_precision_at_k": float(planted[ranking[:k]].mean())}


@dataclass(frozen=True)
class MaskKey(ArtifactKey):
    """What identifies an influence mask: Alg. 1's parameters, the scores and the positions counted."""

    kind: ClassVar[str] = "masks"
    threshold: float = 0.99
    window: int = 1
    max_tokens: int = 0
    scores: str | None = None  # the scores artifact, or None for a plain file (then `scores_file` identifies it)
    scores_file: dict[str, Any] | None = None
    scores_key: str | None = None
    dataset: str | None = None
    positions: str = "all"  # "attention_mask": padding never counts nor gets selected
    algorithm: str = ALGORITHM


@dataclass(frozen=True)
class MaskInputs:
    """The scores to select from (with their dataset, when known) and the tensor key read from a plain file."""

    source: MaskSource
    scores_key: str | None = None


class InfluenceMaskStage(MaskSourceStage):
    """`ifguide mask select`: run Alg. 1 on a scores artifact or file and store a `masks` artifact.

    The scores, the positions counted and the output mask are each read or written `chunk_elements` scores'
    worth of rows at a time (an execution setting: the mask is the same for any value)."""

    def __init__(self, reporter: Reporter = NULL, chunk_elements: int = CHUNK_ELEMENTS):
        super().__init__(reporter)
        self.chunk_elements = chunk_elements

    def inputs(self, ws: Workspace, refs: MaskRefs) -> MaskInputs:
        src = resolve_mask_source(ws, refs.scores, refs.data, refs.scores_key, use_attention_mask=not refs.all_positions)
        return MaskInputs(src, refs.scores_key)

    def key(self, inputs: MaskInputs, config: MaskConfig) -> MaskKey:
        src = inputs.source
        parents = [src.scores_art.id] if src.scores_art is not None else ([src.dataset.id] if src.dataset is not None else [])
        return MaskKey(
            parents=tuple(parents), **config.to_dict(),
            scores=src.scores_art.id if src.scores_art is not None else None,
            scores_file=None if src.scores_art is not None else file_identity(src.scores_file),
            scores_key=inputs.scores_key, dataset=src.dataset.id if src.dataset is not None else None,
            positions="attention_mask" if src.valid is not None else "all")

    def describe(self, inputs: MaskInputs, config: MaskConfig) -> str:
        return f"select toxic tokens (Alg. 1, p {config.threshold}, w {config.window}, L {config.max_tokens:,})"

    def build(self, ctx: BuildContext, inputs: MaskInputs, config: MaskConfig) -> dict[str, Any]:
        src = inputs.source
        with ctx.timed("select"):
            try:
                res = select_toxic_tokens(src.scores, config, src.valid, reporter=self.reporter,
                                          chunk_elements=self.chunk_elements,
                                          out=MaskFile(ctx.staging / MASK_FILE, src.scores.shape))
            except IfguideError as exc:  # about the scores' values (NaN, none valid): name their file
                # the mask file was made at full size before the values were read; a selection does not resume, so
                # nothing of it is kept (the empty staging folder is then removed, as for an input refused earlier)
                (ctx.staging / MASK_FILE).unlink(missing_ok=True)
                raise IfguideError(f"{src.scores_file}: {exc.message}", hint=exc.hint, exit_code=exc.exit_code) from None
        with ctx.timed("write"):
            write_mask(ctx.staging / MASK_FILE, res)
        return _summary(res, src)


def _summary(res: MaskResult, src: MaskSource) -> dict[str, Any]:
    """The artifact's summary: the selection's figures, its inputs, and how the ranking finds the dataset's labels."""
    summary = res.summary()
    summary["source"] = "influence"
    if src.scores_art is not None:  # the paper's ablation (toxic queries only) is "standard influence"
        summary["differential"] = src.scores_art.config.get("safe_queries") is not None
    summary["dataset"] = src.dataset.id if src.dataset is not None else None
    summary["scores"] = src.scores_art.id if src.scores_art is not None else str(src.scores_file)
    if src.rows is not None:
        summary["scored_rows"] = len(src.rows)
    if src.dataset is not None:
        summary.update(label_summary(src.dataset, res, src.rows))
    return summary


def label_summary(dataset, res: MaskResult, rows: np.ndarray | None = None) -> dict[str, Any]:
    """The ranking against the dataset's --label-field, per source document (`data.dataset_label_metrics`):
    label_base_rate, label_precision_at_k, label_auc (ties in the rank key share their rank), over the scored
    rows only. `precision_at_k` repeats the label precision for readers of older summaries; the tiny corpus
    keeps its `planted_precision_at_k` (per row) too. Also how many source documents the selected rows hold."""
    from ifguide_cli.core.data import dataset_label_metrics

    ranking = res.ranking if rows is None else res.ranking[np.isin(res.ranking, rows)]
    out: dict[str, Any] = {}
    metrics = dataset_label_metrics(dataset, ranking, scores=res.harmonic)
    if metrics:
        out.update(metrics)
        out["precision_at_k"] = metrics["label_precision_at_k"]
    arrays = dataset_arrays(dataset)
    if "planted_toxic" in arrays:
        out.update(planted_precision(ranking, np.asarray(arrays["planted_toxic"])))
    documents = selected_documents(dataset, res.selected_counts)
    if documents is not None:
        out["source_documents_selected"] = documents
    return out


def selected_documents(dataset, selected_counts: np.ndarray) -> int | None:
    """Source documents in the rows that hold selected tokens (a packed row holds parts of several); None
    for a dataset without a row source map."""
    from ifguide_cli.core.data import ROWS_FILE

    path = dataset.path / ROWS_FILE
    if not path.is_file():
        return None
    from safetensors.numpy import load_file

    columns = load_file(str(path))
    rows = np.flatnonzero(np.asarray(selected_counts) > 0)
    if "piece_start" not in columns:
        return int(np.unique(columns["doc_id"][rows]).size)
    starts, docs = columns["piece_start"], columns["piece_doc_id"]
    pieces = np.concatenate([np.arange(starts[r], starts[r + 1]) for r in rows]) if rows.size else np.zeros(0, np.int64)
    return int(np.unique(docs[pieces]).size)


def create_mask_artifact(ws: Workspace, scores_ref: str, config: MaskConfig, *, data_ref: str | None = None,
                         key: str | None = None, all_positions: bool = False, name: str | None = None, force: bool = False,
                         reporter: Reporter = NULL) -> Result[dict[str, Any]]:
    """The `mask` stage from references: resolve the scores (and dataset), then `run_stage`."""
    stage = InfluenceMaskStage(reporter)
    inputs = stage.inputs(ws, MaskRefs(scores_ref, data_ref, key, all_positions))
    return run_stage(ws, stage, inputs, config, name=name, force=force)
