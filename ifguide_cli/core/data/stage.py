"""The dataset artifact (kind `datasets`): a corpus tokenized once, in one layout, with each row's source map.

Files: `input_ids.safetensors` (input_ids int32, attention_mask uint8, and `planted_toxic` for the tiny
corpus), `rows.safetensors` (the source map, int64 columns, and `labels` uint8 with --label-field) and
`texts.bin` (the rows' own text, UTF-8), written a block of rows at a time (`rowfiles`: memory does not grow
with the corpus). The artifact's config is the corpus's whole recipe: the source's
identity, the tokenizer (name and fingerprint) and the `CorpusConfig` as decided (layout, seq_len, …), so
every later stage that names the same data and options finds the same artifact, and one that names the
artifact gets its layout — an option contradicting it is an error naming both values.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from ifguide_cli.core.config import flag_of
from ifguide_cli.core.data.heldout import split_heldout
from ifguide_cli.core.data.labels import label_metrics
from ifguide_cli.core.data.layout import (
    CorpusConfig,
    CorpusTally,
    TokenizedCorpus,
    default_corpus_config,
    plan_layout,
    sample_lengths,
)
from ifguide_cli.core.data.sources import Source, dataset_identity, is_packaged, is_token_subset, iter_documents, reference_subset
from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.progress import NULL, Reporter
from ifguide_cli.core.stage import ArtifactKey, Result, Stage, run_stage, stored
from ifguide_cli.core.store.artifact_files import CORPUS_FILE, ROWS_FILE, TEXTS_FILE

if TYPE_CHECKING:
    from ifguide_cli.core.store.workspace import BuildContext, Workspace


# ---- files ---------------------------------------------------------------------------------
def _check_kind(art) -> None:
    from ifguide_cli.core.store.workspace import kind_noun, with_article

    if art.kind != "datasets":
        raise IfguideError(f"{art.id} is {with_article(kind_noun(art.kind))} artifact, not a dataset", exit_code=2)


def load_corpus(art) -> TokenizedCorpus:
    """The token tensors of a `datasets` artifact (with the rows' labels when it has them; the map is left on disk)."""
    import torch
    from safetensors.torch import load_file

    _check_kind(art)
    t = load_file(str(art.file(CORPUS_FILE)))
    planted = t.get("planted_toxic")
    labels = row_labels(art)
    return TokenizedCorpus(t["input_ids"].long(), t["attention_mask"].long(), None if planted is None else planted.bool(),
                           None if labels is None else torch.from_numpy(labels))


def corpus_shape(art) -> tuple[int, int]:
    """(rows, seq_len) of a `datasets` artifact's tokens, read from the file's header (nothing is loaded)."""
    from safetensors import safe_open

    _check_kind(art)
    with safe_open(str(art.file(CORPUS_FILE)), "np") as fh:
        rows, seq_len = fh.get_slice("input_ids").get_shape()
    return int(rows), int(seq_len)


def mapped_corpus(art) -> TokenizedCorpus:
    """The token tensors of a `datasets` artifact memory-mapped, not loaded: input_ids int32 and attention_mask
    uint8 as stored (torch tensors over the file's pages), the tiny corpus's `planted_toxic` loaded. For stages
    that read the rows one batch at a time (scores), so that memory does not grow with the corpus."""
    import torch

    from ifguide_cli.core.masking.scorefile import load_safetensors_array, safetensors_keys

    _check_kind(art)
    path = art.file(CORPUS_FILE)
    keys = safetensors_keys(path)

    def tensor(key: str):
        arr = load_safetensors_array(path, key)
        with warnings.catch_warnings():  # a read-only map: nothing writes to these tensors
            warnings.simplefilter("ignore", UserWarning)
            return torch.from_numpy(arr)

    planted = tensor("planted_toxic").bool() if "planted_toxic" in keys else None
    return TokenizedCorpus(tensor("input_ids"), tensor("attention_mask"), planted)


def _rows_columns(art, required: bool = True) -> dict | None:
    from safetensors.numpy import load_file

    path = art.path / ROWS_FILE
    if not path.is_file():
        if not required:
            return None
        raise IfguideError(f"dataset {art.id} has no row source map (it was built before datasets kept one)",
                           hint="rebuild it: the same command with --force", exit_code=2)
    return load_file(str(path))


def row_labels(art):
    """The --label-field of each row's document (numpy bool), or None when the dataset has no labels.

    The tiny corpus's `planted_toxic` is its label; tiny datasets made before the row source map held labels keep
    it only in their token file, under that name.
    """
    import numpy as np

    _check_kind(art)
    columns = _rows_columns(art, required=False)
    if columns is not None and "labels" in columns:
        return columns["labels"].astype(bool)
    if art.config.get("label_field") == "planted_toxic":
        from safetensors import safe_open

        with safe_open(str(art.file(CORPUS_FILE)), "np") as fh:
            if "planted_toxic" in fh.keys():  # noqa: SIM118 -- safe_open has no __contains__
                return np.asarray(fh.get_tensor("planted_toxic")).astype(bool)
    return None


def dataset_label_metrics(art, ranking, scores=None) -> dict:
    """`label_metrics` of a row ranking against the dataset's labels, per document; {} when it has none.

    Rows of one document (a split document) count once, at their best rank. The label field is named too.
    """
    labels = row_labels(art)
    if labels is None:
        return {}
    columns = _rows_columns(art, required=False)
    doc_ids = None if columns is None or art.config.get("layout") == "packed" else columns["doc_id"]
    return {"label_field": art.config.get("label_field"),
            **label_metrics(ranking, labels, scores=scores, doc_ids=doc_ids)}


# ---- a row's source ------------------------------------------------------------------------
class RowSources:
    """The source map of a dataset artifact, read once: `source(row)` for as many rows as needed."""

    def __init__(self, art):
        _check_kind(art)
        self.art = art
        self.columns = _rows_columns(art)
        self.file = art.summary.get("file", "")
        self.positions = art.summary.get("positions", "line")
        self.rows = len(self.columns["doc_id"])

    def where(self, line: int) -> str:
        return f"{self.file}:{line}" if self.positions == "line" else f"{self.file} record {line}"

    def location(self, row: int) -> str:
        """FILE:LINE of the row's (first) document, without reading its text."""
        return self.where(int(self.columns["line"][row]))

    def _text(self, start: int, end: int) -> str:
        with open(self.art.file(TEXTS_FILE), "rb") as fh:
            fh.seek(start)
            return fh.read(end - start).decode("utf-8")

    def _part(self, prefix: str, i: int) -> dict[str, Any]:
        c = self.columns
        line = int(c[prefix + "line"][i])
        return {"doc_id": int(c[prefix + "doc_id"][i]), "line": line, "where": self.where(line),
                "char_start": int(c[prefix + "char_start"][i]), "char_end": int(c[prefix + "char_end"][i]),
                "doc_chars": int(c[prefix + "doc_chars"][i]),
                "text": self._text(int(c[prefix + "text_start"][i]), int(c[prefix + "text_end"][i]))}

    def source(self, row: int) -> dict[str, Any]:
        """{row, file, line, where, doc_id, char_start, char_end, doc_chars, text, label}; packed rows add `pieces`
        (each document part with its own line and span) and their `text` is the parts joined by newlines."""
        if not 0 <= row < self.rows:
            raise IfguideError(f"row {row} is outside dataset {self.art.id} (rows 0–{self.rows - 1})", exit_code=2)
        out: dict[str, Any] = {"row": row, "file": self.file, **self._part("", row)}
        if "piece_start" in self.columns:
            lo, hi = int(self.columns["piece_start"][row]), int(self.columns["piece_start"][row + 1])
            out["pieces"] = [self._part("piece_", i) for i in range(lo, hi)]
            out["text"] = "\n".join(p["text"] for p in out["pieces"])
        labels = self.columns.get("labels")
        out["label"] = None if labels is None else bool(labels[row])
        return out


def row_source(art, row: int) -> dict[str, Any]:
    """Where row `row` of a dataset artifact came from, and its own text decoded whole (see `RowSources.source`)."""
    return RowSources(art).source(row)


# ---- finding or building the dataset artifact ----------------------------------------------
def is_source_ref(data_ref: str) -> bool:
    """A dataset to load (registry name, local path, hub id), as opposed to a `datasets` artifact reference."""
    from ifguide_cli.core.registry import DATASETS

    return data_ref in DATASETS or reference_subset(data_ref) is not None or Path(data_ref).expanduser().exists() or (
        "/" in data_ref and not data_ref.startswith((".", "/", "~")))


@dataclass(frozen=True)
class _Tokenizer:
    """The tokenizer a corpus is tokenized with: the one asked for (--tokenizer), else the model's."""

    name: str
    fingerprint: str | None
    parents: list
    load: Callable[[], Any]


def _corpus_tokenizer(workspace: Workspace, mref, asked: str | None) -> _Tokenizer:
    from ifguide_cli.core.tokenizer import resolve_tokenizer, tokenizer_fingerprint

    if asked is not None:
        tref = resolve_tokenizer(asked, workspace)
        return _Tokenizer(tref.name, tref.fingerprint(), tref.parents, tref.load)
    if mref is None:
        raise IfguideError("no tokenizer for the data", hint="pass --tokenizer (tiny, a folder, a hub id or a tokenizer artifact)",
                           exit_code=2)
    from ifguide_cli.core.models import load_tokenizer

    return _Tokenizer(mref.tokenizer, tokenizer_fingerprint(mref.tokenizer), [], lambda: load_tokenizer(mref))


@dataclass(frozen=True)
class DatasetRefs:
    """What the data stage is given: DATA as a source (registry name, reference subset, local path, hub id), the model
    whose tokenizer it is tokenized with (None when `config.tokenizer` names one), the `CorpusConfig` as asked (the
    source's defaults under the options given) and the model's context (a row length fitted to the data stays under it)."""

    data: str
    model: Any  # models.ModelRef | None
    config: CorpusConfig
    max_seq_len: int | None = None


@dataclass
class DatasetInputs:
    """The source, its tokenizer and the `CorpusConfig` as decided (what `config` left open is chosen from the first
    documents, see `plan_layout`; `rule` says why, None when nothing was left open)."""

    data: str
    identity: dict[str, Any]  # the source's identity (file hash, registry entry, hub id, …)
    tokenizer: _Tokenizer
    config: CorpusConfig
    rule: str | None = None
    source: Source | None = None  # None: a reference subset of pre-tokenized chunks (see `chunks`)

    @cached_property
    def loaded_tokenizer(self):
        return self.tokenizer.load()


@dataclass(frozen=True, kw_only=True)
class DatasetKey(ArtifactKey):
    """A corpus's whole recipe: the source, the tokenizer (name and fingerprint) and the `CorpusConfig` as decided."""

    kind: ClassVar[str] = "datasets"
    data: dict[str, Any]
    tokenizer_sha256: str | None
    layout: str | None
    seq_len: int | None
    overflow: str | None
    text_field: str
    label_field: str | None
    max_examples: int | None
    split: str | None
    tokenizer: str | None
    heldout: float | None = None  # recorded only when given, so datasets without a held-out split keep their ids

    def config(self) -> dict[str, Any]:
        out = super().config()
        if self.heldout is None:
            del out["heldout"]
        return out


class DatasetStage(Stage[DatasetRefs, DatasetInputs, CorpusConfig, dict[str, Any]]):
    """The data stage: a source tokenized once, in one layout, with each row's source map (a `datasets` artifact).

    The `CorpusConfig` is decided from the data (`DatasetInputs.config`), so `run_stage` is given that one."""

    kind = "datasets"

    def __init__(self, reporter: Reporter = NULL):
        self.reporter = reporter

    def inputs(self, ws: Workspace, refs: DatasetRefs) -> DatasetInputs:
        tok = _corpus_tokenizer(ws, refs.model, refs.config.tokenizer)
        if is_token_subset(refs.data):
            from ifguide_cli.core.data.chunks import chunk_config
            from ifguide_cli.core.paper import subsets

            return DatasetInputs(refs.data, subsets.identity(refs.data), tok,
                                 chunk_config(refs.data, refs.config, tok.name, refs.max_seq_len))
        source = Source(refs.data, refs.config.split)
        inputs = DatasetInputs(refs.data, source.identity, tok, refs.config, source=source)
        planned, inputs.rule = plan_layout(refs.config, lambda: sample_lengths(
            iter_documents(source, refs.config.text_field), inputs.loaded_tokenizer, what=source.file), refs.max_seq_len)
        inputs.config = planned.replace(tokenizer=tok.name)
        return inputs

    def key(self, inputs: DatasetInputs, config: CorpusConfig) -> DatasetKey:
        return DatasetKey(parents=tuple(inputs.tokenizer.parents), data=inputs.identity,
                          tokenizer_sha256=inputs.tokenizer.fingerprint, **config.to_dict())

    def describe(self, inputs: DatasetInputs, config: CorpusConfig) -> str:
        verb = "read chunks of" if inputs.source is None else "tokenize"
        return f"{verb} {inputs.data}"

    def build(self, ctx: BuildContext, inputs: DatasetInputs, config: CorpusConfig) -> dict[str, Any]:
        if inputs.source is None:
            from ifguide_cli.core.data.chunks import build_chunks

            return build_chunks(ctx.staging, inputs.data, config, inputs.loaded_tokenizer, self.reporter)
        source = inputs.source
        docs = iter_documents(source, config.text_field, config.label_field)
        held: dict[str, Any] = {}
        if config.heldout is not None:
            docs, held = split_heldout(lambda: iter_documents(source, config.text_field, config.label_field),
                                       config.heldout, ctx.staging, config.label_field)
        from ifguide_cli.core.data.rowfiles import write_corpus  # numpy loads when a dataset is built, not for --help

        tally = write_corpus(docs, inputs.loaded_tokenizer, config, ctx.staging, self.reporter, what=source.file)
        summary = {**corpus_summary(tally, config, source, inputs.rule), **held}
        if not is_packaged(inputs.data):  # the packaged sets are cut to 64 tokens by design
            _note_build(summary, inputs.data)
        return summary


def _recorded(art, key: str) -> Any:
    """A layout option as the artifact records it (datasets from before `layout` recorded `packing`)."""
    if key == "layout" and "layout" not in art.config and "packing" in art.config:
        return "packed" if art.config["packing"] else "documents"
    return art.config.get(key)


_REBUILD_HINT = "leave the option out to use the dataset as it is, or pass the source dataset to build another layout"


def check_corpus(art, asked: dict, tokenizer_name: str | None = None, hint: str = _REBUILD_HINT) -> None:
    """Every option given (not None) must be what the dataset artifact records: else one line naming both values."""
    if tokenizer_name is not None and art.config.get("tokenizer") != tokenizer_name:
        raise IfguideError(f"dataset {art.id} was tokenized with {art.config.get('tokenizer')!r}, not {tokenizer_name!r}",
                           hint="pass the source dataset to tokenize it again", exit_code=2)
    flags = {f.name: flag_of(f) for f in dataclasses.fields(CorpusConfig)}
    for key, value in asked.items():
        if value is not None and key != "tokenizer" and _recorded(art, key) != value:
            raise IfguideError(f"dataset {art.id} has {flags[key]} {_recorded(art, key)}, not {flags[key]} {value}",
                               hint=hint, exit_code=2)


def _check_reuse(workspace: Workspace, art, mref, asked: dict, hint: str = _REBUILD_HINT) -> None:
    """A stored dataset about to be reused: tokenized as asked (--tokenizer, else the model's), with the options given."""
    if asked.get("tokenizer") is not None:
        check_corpus(art, asked, _corpus_tokenizer(workspace, mref, asked["tokenizer"]).name, hint)
        return
    if mref is not None and art.config.get("tokenizer") != mref.tokenizer:
        raise IfguideError(f"dataset {art.id} was tokenized with {art.config.get('tokenizer')!r}, but the model uses "
                           f"{mref.tokenizer!r}", hint="pass the source dataset instead", exit_code=2)
    check_corpus(art, asked, hint=hint)


def existing_corpus(workspace: Workspace, data_ref: str, mref, seq_len: int | None = None, **asked):
    """The `datasets` artifact DATA names, checked against the tokenizer and the options given (`asked`: the
    `CorpusConfig` fields, None = not given); None when DATA is a source to be tokenized."""
    from ifguide_cli.core.errors import ArtifactNotFound

    if is_source_ref(data_ref):
        return None
    try:
        art = workspace.resolve(data_ref, "datasets")
    except ArtifactNotFound:
        return None
    _check_reuse(workspace, art, mref, {"seq_len": seq_len, **asked})
    return art


def resolve_corpus(workspace: Workspace, data_ref: str, mref, seq_len: int | None = None, *, reporter=NULL, force: bool = False,
                   barrier=lambda: None, prefer=None, max_seq_len: int | None = None, lookup: bool = False,
                   **asked) -> Result[dict[str, Any]] | None:
    """The `datasets` artifact for DATA: the one it names, else `prefer` when built from DATA, else the source
    tokenized for the model (the data stage, built once).

    `asked`: the `CorpusConfig` options given (layout, overflow, text_field, label_field, max_examples, split,
    tokenizer; None = not given). `prefer` (a dataset artifact, e.g. the one a checkpoint was trained on) is
    reused when DATA is its source — an option contradicting it is an error naming both values. `max_seq_len`
    (the model's context) caps a row length fitted to the data. `mref` may be None when `tokenizer` is given.
    `lookup`: only find a stored dataset (None when it would be built). Under torchrun rank 0 builds and calls
    `barrier()` after; the other ranks call `barrier()` first, then find it stored.
    """
    from ifguide_cli.core.dist import is_main_process

    art = existing_corpus(workspace, data_ref, mref, seq_len, **asked)
    if art is not None:
        return Result(art, True)
    if prefer is not None and prefer.config.get("data") == dataset_identity(data_ref, asked.get("split")):
        _check_reuse(workspace, prefer, mref, {"seq_len": seq_len, **asked},
                     hint=f"{data_ref} is laid out as dataset {prefer.id} for this model (it was trained or fit on it): "
                          f"leave the option out to reuse it, or pass --data {prefer.id}")
        return Result(prefer, True)
    laid_out = stored_layout(workspace, data_ref, _corpus_tokenizer(workspace, mref, asked.get("tokenizer")),
                             {"seq_len": seq_len, **asked})
    if laid_out is not None:
        return Result(laid_out, True)
    config = default_corpus_config(data_ref, seq_len=seq_len, **asked)
    if lookup:
        stage = DatasetStage()
        inputs = stage.inputs(workspace, DatasetRefs(data_ref, mref, config, max_seq_len))
        found = stored(workspace, stage.key(inputs, inputs.config))
        return Result(found, True) if found is not None else None
    main = is_main_process()
    if not main:
        barrier()
    result = corpus_artifact(workspace, data_ref, mref, config, reporter=reporter if main else NULL, force=force and main,
                             max_seq_len=max_seq_len)
    if main:
        barrier()
    return result


def stored_layout(workspace: Workspace, data_ref: str, tok: _Tokenizer, asked: dict):
    """The dataset artifact already built from DATA's content with this tokenizer and every option given (None =
    not given), so a command that leaves the layout out reuses the layout chosen first instead of fitting another;
    None when there is none (or DATA is packaged: its layout is fixed, never fitted). Several: one line listing them."""
    if is_packaged(data_ref) or is_token_subset(data_ref):
        return None
    identity = dataset_identity(data_ref, asked.get("split"))
    found = [art for art in workspace.list("datasets")
             if art.config.get("data") == identity and art.config.get("tokenizer") == tok.name
             and art.config.get("tokenizer_sha256") == tok.fingerprint
             and all(v is None or k == "tokenizer" or _recorded(art, k) == v for k, v in asked.items())]
    if len(found) <= 1:
        return found[0] if found else None
    flags = {f.name: flag_of(f) for f in dataclasses.fields(CorpusConfig)}
    differ = [k for k in ("layout", "seq_len", "overflow", "text_field", "label_field", "max_examples", "heldout")
              if len({str(_recorded(a, k)) for a in found}) > 1]
    listing = "; ".join(f"{a.id}" + (f" ({a.name})" if a.name else "") + ": "
                        + ", ".join(f"{flags[k]} {_recorded(a, k)}" for k in differ) for a in found)
    raise IfguideError(f"{data_ref} is already tokenized in {len(found)} layouts: {listing}",
                       hint=f"pass --data DATASET_ID (one of them) or the option that picks one ({', '.join(flags[k] for k in differ)})",
                       exit_code=2)


def corpus_artifact(workspace: Workspace, data_ref: str, mref, config: CorpusConfig, *, reporter=NULL, force: bool = False,
                    max_seq_len: int | None = None) -> Result[dict[str, Any]]:
    """The tokenized corpus for (dataset, tokenizer, layout), built once and reused (the data stage).

    What `config` leaves open (layout, seq_len) is decided from the first documents (see `plan_layout`);
    the decision and its reason are recorded in the summary and shown as a note when the artifact is built.
    A reference subset of pre-tokenized chunks is stored as its chunks (see `chunks`).
    """
    stage = DatasetStage(reporter)
    inputs = stage.inputs(workspace, DatasetRefs(data_ref, mref, config, max_seq_len))
    return run_stage(workspace, stage, inputs, inputs.config, force=force)


class SourceNames(Protocol):
    """What a dataset's summary records about where its documents came from (a `Source`, or a stored summary's)."""

    @property
    def ref(self) -> str | None: ...
    @property
    def file(self) -> str: ...
    @property
    def positions(self) -> str: ...


def corpus_summary(tally: CorpusTally, config: CorpusConfig, source: SourceNames, rule: str | None) -> dict:
    """What the dataset artifact's manifest says about it: sizes, layout and why, source, labels, what was cut."""
    rows, seq_len, tokens = tally.rows, tally.seq_len, tally.tokens
    summary = {"rows": rows, "documents": tally.stats["documents"], "seq_len": seq_len, "layout": config.layout,
               "overflow": config.overflow, "tokens": tokens, "padding_fraction": round(1 - tokens / (rows * seq_len), 4),
               "source": source.ref, "file": source.file, "positions": source.positions, "layout_rule": rule,
               **{k: v for k, v in tally.stats.items() if k != "documents"}}
    if tally.positive_labels is not None:
        summary["label_field"] = config.label_field
        summary["label_positive_rows"] = tally.positive_labels
    if config.label_field == "planted_toxic":
        summary["planted_toxic_documents"] = tally.positive_labels
    return summary


def _note_build(summary: dict, data_ref: str) -> None:
    """Say what a user would not guess: a layout chosen from the data, documents cut or left out."""
    from ifguide_cli.core.notes import warn

    if summary["layout_rule"]:
        warn(f"{data_ref}: {summary['layout_rule']} (set --layout / --seq-len to choose)")
    if summary["truncated_documents"]:
        warn(f"{data_ref}: {summary['truncated_documents']:,} documents longer than {summary['seq_len']} tokens were cut "
             f"({summary['truncated_tokens']:,} tokens left out); --overflow split keeps them on more rows")
    if summary["skipped_empty"]:
        warn(f"{data_ref}: {summary['skipped_empty']:,} documents without text were left out")


def recorded_dataset(ws: Workspace, art, given=None, *, what: str, hint: str, missing_hint: str | None = None):
    """The dataset artifact `art` (scores, mask) was computed on, checked against one the user gave.

    `given` (a dataset artifact or None) must be the recorded one when the artifact records a dataset;
    without `given`, the recorded dataset is returned (None when the artifact records none).
    `what` names the artifact in messages ("scores 1a2b…", "mask 1a2b…"), `hint` says what to do on a mismatch,
    `missing_hint` what to do when the recorded dataset was removed.
    """
    recorded = art.config.get("dataset") if art is not None else None
    if given is not None:
        if recorded and recorded != given.id:
            raise _other_dataset(ws, what, recorded, given, hint)
        return given
    if not recorded:
        return None
    dataset = ws.by_id(recorded)
    if dataset is None:
        raise IfguideError(f"dataset {recorded} of {what} is no longer in the workspace",
                           hint=missing_hint or "recreate it (the same `--data` and `--seq-len`), or rebuild this artifact")
    return dataset


def _source_file(art) -> str | None:
    """The file a dataset artifact was read from (its summary; older ones also name it in their identity)."""
    return art.summary.get("file") or (art.config.get("data") or {}).get("path")


def _other_dataset(ws: Workspace, what: str, recorded: str, given, hint: str) -> IfguideError:
    """An artifact computed on dataset `recorded` used with dataset `given`: when both were read from the same file,
    the file changed in between (say so, and how to go on); else name the dataset that works."""
    old = ws.by_id(recorded)
    if old is not None and _source_file(old) and _source_file(old) == _source_file(given):
        return IfguideError(f"{_source_file(given)} changed since {what} was computed on it (as dataset {recorded}; "
                            f"its content now is dataset {given.id})",
                            hint=f"pass --data {recorded} to use the data as it was then, or recompute {what.split()[0]} "
                                 "on the file as it is now", exit_code=2)
    return IfguideError(f"{what} was computed on dataset {recorded}, not {given.id}",
                        hint=f"pass --data {recorded} (the dataset it was computed on), or {hint}", exit_code=2)
