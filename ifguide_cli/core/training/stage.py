"""Step 4 of IF-Guide: `ifguide train` / `ifguide finetune` resolve their inputs and build (or reuse) a checkpoint.

This module only decides WHAT to train (model, corpus, mask, configuration, the artifact's identity: the
`TrainStage`); `checkpoint.py` trains it, and is imported only then (it imports transformers). The training
settings are resolved from the options given, the profile and the data, so the stage's `TrainConfig` is part
of its inputs (`TrainInputs.train`) and `run_stage` is given that one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ifguide_cli.core import notes
from ifguide_cli.core.dist import barrier, check_fsdp, rank_and_world, resolve_device
from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.lora import check_lora_applies
from ifguide_cli.core.progress import NULL, Reporter
from ifguide_cli.core.stage import ArtifactKey, Result, Stage, run_stage
from ifguide_cli.core.store.artifact_files import MASK_FILE
from ifguide_cli.core.store.folders import check_output_file
from ifguide_cli.core.training.config import (
    RunOptions,
    TrainConfig,
    default_profile,
    load_config_file,
    option_values,
    resolve_config,
    run_size,
    split_rows,
)
from ifguide_cli.core.training.trackers import resolve_trackers

if TYPE_CHECKING:
    from ifguide_cli.core.store.workspace import Artifact, BuildContext, Workspace

FEW_STEPS = 10  # fewer optimizer steps than this (training by epochs) get a note
MANY_EPOCHS = 10  # --max-steps making more passes over the data than this get a note


@dataclass(frozen=True)
class DropSelection:
    """`--suppression drop`: the training rows kept and left out (every row/document holding a masked token)."""

    kept: list[int]  # training rows trained on, in order
    dropped: list[int]  # training rows left out
    unit: str  # "document" (one-document-per-row data: a document's every row goes) or "row" (packed rows)
    documents: int | None  # documents left out (None for packed rows, whose documents are not counted)

    def summary(self) -> dict:
        return {"dropped_rows": len(self.dropped), "dropped_documents": self.documents, "drop_unit": self.unit,
                "kept_rows": len(self.kept)}


@dataclass(frozen=True)
class TrainRefs:
    """What `ifguide train` / `ifguide finetune` are given: the mode, MODEL, DATA, the mask, the options given (field
    or option names; None = not given; `profile`, `seq_len`, `batch_tokens` and `model_config` may be among them)
    over the `config_file` YAML, and the `CorpusConfig` options of DATA."""

    mode: str  # pretrain | finetune
    model: str | None
    data: str
    mask: str | None = None
    values: dict[str, Any] | None = None
    corpus: dict[str, Any] | None = None
    config_file: str | None = None


@dataclass
class TrainInputs:
    """Everything a checkpoint build needs, resolved (what `checkpoint.build_checkpoint` trains). The token tensors
    and the mask are read when first used (`check`, the build), so resolving the inputs stays cheap."""

    mref: Any  # models.ModelRef
    profile: str
    dataset: Artifact
    shape: tuple[int, int]  # the dataset's rows × seq_len
    mask_art: Artifact | None
    eval_art: Artifact | None  # the dataset artifact to evaluate on, or None
    train: TrainConfig
    run: RunOptions
    validation: str | None = None  # what the eval loss is computed on, in words (the summary names it)
    notes: tuple[str, ...] = ()  # what to say before the work (options that change nothing)
    restart: bool = False
    reporter: Any = NULL
    name: str | None = None  # the artifact's name, the trackers' run name (else its id)

    @cached_property
    def corpus(self):
        """The training corpus (input_ids, attention_mask; docs × seq_len)."""
        from ifguide_cli.core.data import load_corpus

        return load_corpus(self.dataset)

    @cached_property
    def mask(self):
        """The mask as bool (docs × seq_len), checked to index the dataset's tensor; None without one."""
        return None if self.mask_art is None else load_mask(self.mask_art, self.dataset, self.shape)

    @cached_property
    def drop(self) -> DropSelection | None:
        """--suppression drop: the rows left out of training."""
        mask = self.mask
        return drop_selection(self.dataset, mask, self.train) if mask is not None and self.train.suppression == "drop" else None

    def check(self) -> None:
        """The mask lines up with the data, and the run takes enough optimizer steps (a note when few or very many)."""
        check_steps(self.shape[0], self.train, self.dataset, self.drop)


@dataclass(frozen=True, kw_only=True)
class CheckpointKey(ArtifactKey):
    """The checkpoint's identity: what was trained from what, with which settings. ``lam`` is recorded as ``lambda``."""

    kind: ClassVar[str] = "checkpoints"
    mode: str
    model: dict[str, Any]
    tokenizer: str
    family: str | None
    profile: str
    dataset: str
    mask: str | None
    lam: float | None
    seed: int
    eval_dataset: str | None
    train: dict[str, Any]

    def config(self) -> dict[str, Any]:
        return {("lambda" if k == "lam" else k): v for k, v in super().config().items()}


class TrainStage(Stage[TrainRefs, TrainInputs, TrainConfig, dict[str, Any]]):
    """`ifguide train` / `ifguide finetune`: a `checkpoints` artifact trained with the penalty objective (Eq. 9).

    `lookup`: only find stored datasets (a dry run): an evaluation dataset that would have to be built makes the
    inputs unresolvable rather than building it."""

    kind = "checkpoints"

    def __init__(self, reporter: Reporter = NULL, restart: bool = False, lookup: bool = False):
        self.reporter, self.restart, self.lookup = reporter, restart, lookup

    def inputs(self, ws: Workspace, refs: TrainRefs) -> TrainInputs:
        from ifguide_cli.core.data import corpus_options, corpus_shape, model_corpus
        from ifguide_cli.core.models import model_context, trained_dataset

        if refs.mode not in ("pretrain", "finetune"):
            raise ValueError(refs.mode)
        file_values = load_config_file(refs.config_file)
        values = option_values(refs.values)  # checked now: a bad value fails before any work
        corpus_opts = corpus_options(refs.corpus)
        setup = {**file_values, **values}
        check_trainable_dtype(setup)
        if setup.get("log_file"):
            check_output_file(setup["log_file"], "--log-file", ws.root)
        check_lambda_applies(setup)
        check_lora_applies(refs.mode, setup)
        check_fsdp(setup.get("fsdp"))
        resolve_trackers(setup.get("report_to"))  # an unknown or missing tracker fails before any work

        mref = training_model(ws, refs.model, refs.mode, refs.data, setup.get("model_config"), corpus_opts.get("tokenizer"))
        profile = setup.get("profile") or _default_profile(ws, mref, refs.model or "", refs.data)
        mask_art = ws.resolve(refs.mask, "masks") if refs.mask is not None else None
        context = model_context(mref)
        masked_on = ws.by_id(mask_art.config["dataset"]) if mask_art is not None and mask_art.config.get("dataset") else None
        ds_art = model_corpus(ws, refs.data, mref, {**corpus_opts, "seq_len": setup.get("seq_len")},
                              prefer=masked_on or trained_dataset(ws, mref), reporter=self.reporter, barrier=barrier,
                              context=context).artifact
        shape = corpus_shape(ds_art)
        if mask_art is not None:
            check_mask_dataset(ws, mask_art, ds_art)
        tc, ro = resolve_config(refs.mode, profile, file_values, values, shape[1], packaged_data=packaged_dataset(ds_art))
        tc, idle = _without_idle_knobs(tc, mask_art)
        eval_art = self._eval_dataset(ws, tc, mref, {"seq_len": shape[1], "layout": ds_art.config.get("layout")}, context)
        return TrainInputs(mref, profile, ds_art, shape, mask_art, eval_art, tc, ro,
                           validation=_validation(tc, ds_art, eval_art, shape[0]), notes=idle, restart=self.restart,
                           reporter=self.reporter)

    def _eval_dataset(self, ws: Workspace, tc: TrainConfig, mref, options: dict, context: int | None):
        """The `--eval-data` dataset artifact (built once), or None; with `lookup`, only a stored one."""
        from ifguide_cli.core.data import model_corpus

        if not tc.eval_data:
            return None
        found = model_corpus(ws, tc.eval_data, mref, options, reporter=self.reporter, barrier=barrier, context=context,
                             lookup=self.lookup)
        if found is None:
            raise IfguideError(f"the --eval-data dataset {tc.eval_data} is not built yet")
        return found.artifact

    def key(self, inputs: TrainInputs, config: TrainConfig) -> CheckpointKey:
        from ifguide_cli.core.models import model_family

        mref, mask_art, eval_art = inputs.mref, inputs.mask_art, inputs.eval_art
        return CheckpointKey(
            parents=(*mref.parents, inputs.dataset.id, *([mask_art.id] if mask_art else [])), mode=config.mode,
            model=mref.identity(), tokenizer=mref.tokenizer,
            family=mref.family if mref.family is not None else model_family(mref), profile=inputs.profile,
            dataset=inputs.dataset.id, mask=mask_art.id if mask_art else None,
            lam=config.lam if mask_art and config.suppression == "penalty" else None, seed=config.seed,
            eval_dataset=eval_art.id if eval_art else None, train=config.to_dict())

    def describe(self, inputs: TrainInputs, config: TrainConfig) -> str:
        how = "fine-tune" if config.mode == "finetune" else "train from scratch"
        mask = f" with mask {inputs.mask_art.id}" if inputs.mask_art is not None else ""
        return f"{how} {inputs.mref.ref} on dataset {inputs.dataset.id}{mask}"

    def build(self, ctx: BuildContext, inputs: TrainInputs, config: TrainConfig) -> dict[str, Any]:
        from ifguide_cli.core.training.checkpoint import build_checkpoint

        return build_checkpoint(ctx, inputs, self.key(inputs, config).config())


def run_training(ws: Workspace, *, mode: str, model_ref: str | None, data_ref: str, mask_ref: str | None = None,
                 values: dict | None = None, corpus: dict | None = None, config_file: str | None = None,
                 force: bool = False, restart: bool = False, name: str | None = None,
                 reporter=NULL) -> Result[dict[str, Any]]:
    """`ifguide train` / `ifguide finetune`: resolve inputs, then build (or reuse) the checkpoint artifact.

    `values` are the options given (field or option names; None = not given), over the `config_file`
    YAML, over the profile's defaults. `corpus`: the `CorpusConfig` options of the data (layout, tokenizer,
    label field, …; see `data.model_corpus`); a checkpoint fine-tuned on its own source data reuses its dataset.
    """
    stage = TrainStage(reporter, restart)
    inputs = replace(stage.inputs(ws, TrainRefs(mode, model_ref, data_ref, mask_ref, values, corpus, config_file)),
                     name=name)
    for note in inputs.notes:
        notes.warn(note)
    inputs.check()
    return run_stage(ws, stage, inputs, inputs.train, name=name, force=force, device=_device())


def check_trainable_dtype(setup: dict) -> None:
    """bf16 weights where they cannot be trained (no GPU, no bf16 compute): one line before any data is read."""
    if setup.get("weights_dtype", "fp32") != "fp32":
        from ifguide_cli.core.config import resolve_precision
        from ifguide_cli.core.training.config import check_weights_dtype

        device = resolve_device("auto")
        check_weights_dtype(setup["weights_dtype"], device, resolve_precision(setup.get("precision", "auto"), device))


def training_model(ws: Workspace, model_ref: str | None, mode: str, data_ref: str, model_config: str | None, tokenizer: str | None):
    """The model to train: MODEL (or --model-config's architecture); trained from scratch it takes the vocabulary of
    --tokenizer, else of the dataset artifact DATA names (fine-tuning keeps the model's own tokenizer)."""
    from ifguide_cli.core.models import config_model_ref, with_tokenizer

    if model_config is not None:
        if mode == "finetune" or model_ref is not None:
            raise IfguideError("--model-config replaces MODEL of `ifguide train` (an architecture trained from scratch)",
                               hint="give either MODEL or --model-config FILE", exit_code=2)
        return config_model_ref(model_config, _scratch_tokenizer(ws, tokenizer, data_ref))
    if model_ref is None:
        raise IfguideError("missing MODEL", hint="name a model (e.g. tiny, pythia-160m, a checkpoint) or pass --model-config FILE",
                           exit_code=2)
    mref = prepare_model_ref(ws, model_ref, mode)
    name = _scratch_tokenizer(ws, tokenizer, data_ref) if mode == "pretrain" else None
    return with_tokenizer(mref, name) if name is not None else mref


def _scratch_tokenizer(ws: Workspace, asked: str | None, data_ref: str) -> str | None:
    """The tokenizer of a model trained from scratch: --tokenizer, else the one DATA (a dataset artifact) was made with."""
    from ifguide_cli.core.data import is_source_ref
    from ifguide_cli.core.errors import ArtifactNotFound

    if asked is not None:
        from ifguide_cli.core.tokenizer import resolve_tokenizer

        return resolve_tokenizer(asked, ws).name
    if is_source_ref(data_ref):
        return None
    try:
        return ws.resolve(data_ref, "datasets").config.get("tokenizer")
    except ArtifactNotFound:
        return None


def packaged_dataset(ds_art) -> bool:
    """The dataset comes from a set shipped in the package (the `tiny` family)."""
    from ifguide_cli.core.data.sources import is_packaged

    data = ds_art.config.get("data") or {}
    return data.get("source") == "registry" and is_packaged(str(data.get("name")))


SMALL_SHARE = 0.1  # a run that sees less than this share of its corpus's rows gets a warning


def check_steps(n_rows: int, tc: TrainConfig, ds_art, drop: DropSelection | None = None) -> None:
    """Zero optimizer steps is an error that says why; very few steps, or very many passes over little data, a note."""
    train_rows = len(split_rows(n_rows, tc)[0]) if drop is None else len(drop.kept)
    s = ds_art.summary
    where = (f"dataset {ds_art.id}: {s.get('documents', n_rows):,} documents in {n_rows:,} rows of "
             f"{ds_art.config.get('seq_len')} tokens, {s.get('layout', '?')} layout"
             + (", less the validation rows" if len(split_rows(n_rows, tc)[1]) else "")
             + (f", less {len(drop.dropped):,} rows with masked tokens (--suppression drop)" if drop else ""))
    if train_rows < tc.batch_size:
        hint = f"lower --batch-size (to at most {train_rows})" if train_rows else "use more data"
        if s.get("layout") == "packed":
            hint += ", or lay short documents out one per row (--layout documents) or lower --seq-len"
        raise IfguideError(f"the training data has {train_rows:,} rows ({where}), fewer than one batch of {tc.batch_size} "
                           f"(--batch-size): training would take 0 optimizer steps", hint=hint, exit_code=2)
    per_epoch = train_rows // tc.batch_size
    steps = tc.max_steps if tc.max_steps is not None else math.ceil(tc.epochs * per_epoch)
    covered = run_size(steps, tc.batch_size, train_rows, int(ds_art.config.get("seq_len") or 0))
    if covered["epochs"] < SMALL_SHARE:
        notes.warn(f"this run covers {covered['epochs']:.1%} of its corpus: {covered['words']} ({where}); "
                   f"--max-steps {math.ceil(per_epoch)} is one pass, or leave --max-steps out and set --epochs")
    if tc.max_steps is None and math.ceil(tc.epochs * per_epoch) < FEW_STEPS:
        notes.warn(f"only {math.ceil(tc.epochs * per_epoch)} optimizer step(s): {train_rows:,} training rows ({where}) in "
                   f"batches of {tc.batch_size} for {tc.epochs:g} epoch(s); raise --epochs or lower --batch-size")
    elif tc.max_steps is not None and tc.max_steps / per_epoch > MANY_EPOCHS:
        notes.warn(f"{tc.max_steps} optimizer steps make {tc.max_steps / per_epoch:.0f} passes over the {train_rows:,} "
                   f"training rows ({where}); the model may learn them by heart (--epochs N without --max-steps "
                   "trains by passes)")


def _validation(tc: TrainConfig, ds_art, eval_art, n_rows: int) -> str | None:
    """What the eval loss is computed on, in words: another dataset, held-out rows of the corpus, or nothing."""
    if eval_art is not None:
        return f"{tc.eval_data} (dataset {eval_art.id}, first {min(tc.eval_docs, eval_art.summary.get('rows', tc.eval_docs)):,} rows)"
    val = split_rows(n_rows, tc)[1]
    if val:
        return f"held-out rows {val[0]:,}–{val[-1]:,} of dataset {ds_art.id} ({len(val):,} rows, not trained on)"
    return None


def prepare_model_ref(ws: Workspace, model_ref: str, mode: str):
    """Resolve MODEL for `train` (architecture) or `finetune` (weights), with one clear line when it cannot be used."""
    from ifguide_cli.core.models import resolve_model
    from ifguide_cli.core.registry import MODELS, is_packaged_model

    path = Path(model_ref).expanduser()
    if not path.exists() and model_ref not in MODELS and len(model_ref) >= 4 and all(c in "0123456789abcdef" for c in model_ref):
        ws.resolve(model_ref, "checkpoints")  # an id that is not there: "no checkpoint ..." rather than "unknown model"
    mref = resolve_model(model_ref, ws)
    if mode == "finetune" and mref.source == "registry" and is_packaged_model(mref.location):
        raise IfguideError(f"{model_ref!r} has no pretrained weights to fine-tune",
                           hint=f"train it first (`ifguide train {model_ref} --data ...`) and fine-tune that checkpoint",
                           exit_code=2)
    return mref


def _default_profile(ws: Workspace, mref, model_ref: str, data_ref: str) -> str:
    """The profile by model and data; a checkpoint keeps the profile it was trained with."""
    base_profile = None
    if mref.source == "checkpoint":
        base = ws.by_id(mref.artifact_id)
        base_profile = base.config.get("profile") if base else None
    return default_profile(model_ref if mref.source == "registry" else "", data_ref, base_profile)


def check_mask_dataset(ws: Workspace, mask_art, dataset_art) -> None:
    """The mask was computed on this dataset (its manifest says which)."""
    from ifguide_cli.core.data import recorded_dataset

    recorded_dataset(ws, mask_art, dataset_art, what=f"mask {mask_art.id}",
                     hint="recompute the mask on this data")


def load_mask(mask_art, dataset_art, corpus_shape):
    """The boolean (docs × seq_len) mask of a mask artifact, checked to index the same tensor as the training data."""
    from safetensors.torch import load_file

    tensors = load_file(str(mask_art.file(MASK_FILE)))
    if "mask" not in tensors:
        raise IfguideError(f"mask artifact {mask_art.id} has no `mask` tensor in {MASK_FILE}",
                           hint="rebuild it with `ifguide mask ... --force`")
    mask = tensors["mask"].bool()
    if tuple(mask.shape) != tuple(corpus_shape):
        raise IfguideError(f"mask {mask_art.id} has shape {tuple(mask.shape)} but dataset {dataset_art.id} has "
                           f"{tuple(corpus_shape)} (docs × seq_len)",
                           hint="the mask must come from scores on the same data, same order and --seq-len", exit_code=2)
    return mask


def check_lambda_applies(given: dict) -> None:
    """A λ given with --suppression filter/drop is an error, not a note: the user asked for a penalty weight and
    for an objective without a penalty, and either one may be the mistake (`given`: values by field name)."""
    suppression = given.get("suppression", TrainConfig.suppression)
    if suppression != "penalty" and "lam" in given:
        raise IfguideError(f"--lambda applies to --suppression penalty only, not {suppression}",
                           hint="drop --lambda (filter gives masked tokens weight 0; drop leaves their rows out), "
                                "or use --suppression penalty", exit_code=2)


def _without_idle_knobs(tc: TrainConfig, mask_art) -> tuple[TrainConfig, tuple[str, ...]]:
    """λ and --suppression act on masked tokens only: without a mask they change nothing, so they must not change
    the artifact id (and a note says so: the notes are returned)."""
    if mask_art is not None:
        return tc, ()
    idle = []
    if tc.lam != TrainConfig.lam:
        idle.append("--lambda has no effect without --mask (plain language-model training)")
    if tc.suppression != TrainConfig.suppression:
        idle.append(f"--suppression {tc.suppression} has no effect without --mask (plain language-model training)")
    return replace(tc, lam=TrainConfig.lam, suppression=TrainConfig.suppression), tuple(idle)


def drop_selection(ds_art, mask, tc: TrainConfig) -> DropSelection:
    """The training rows `--suppression drop` keeps: whole documents with a masked token go where rows are
    documents (the dataset's source map), single rows in packed data. Validation rows are never touched, so
    every arm is validated on the same rows."""
    from ifguide_cli.core.data.rows import rows_without_masked

    train_rows, _ = split_rows(mask.shape[0], tc)
    doc_ids = _document_ids(ds_art)
    kept, dropped = rows_without_masked(train_rows, mask, doc_ids)
    if not dropped:
        notes.warn("--suppression drop left out no row: the mask marks no token in the training rows")
    documents = None if doc_ids is None else len({int(doc_ids[r]) for r in dropped})
    return DropSelection(kept, dropped, "row" if doc_ids is None else "document", documents)


def _document_ids(ds_art):
    """Each row's document id where a row holds one document (documents layout), else None (packed rows, or a
    dataset built before datasets kept a source map)."""
    from ifguide_cli.core.data.stage import RowSources

    if ds_art.config.get("layout") == "packed":
        return None
    try:
        return RowSources(ds_art).columns["doc_id"]
    except (IfguideError, KeyError):
        return None


def _device() -> str:
    from ifguide_cli.core.dist import device_label

    return device_label(resolve_device("auto"), rank_and_world()[1])
