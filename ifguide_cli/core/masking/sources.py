"""The cheap mask sources as stages: a toxicity classifier or a word list → an ordinary `masks` artifact.

What a source finds (`evidence`) goes through Alg. 1's budgeted walk (`publish` → `select.select_marked`), and
the artifact has the files and summary fields of an influence mask, so `mask show/browse/export`, `train --mask`
and `finetune --mask` take it unchanged; its summary says which `source` made it and scores its ranking against
the dataset's labels the way the influence mask's is (`stage.label_summary`). The stages follow `core.stage`'s
contract; `build_classifier_mask` and `build_wordlist_mask` run them from references and return (artifact,
reused): reused is True when an identical mask (same source settings, dataset and budget) was already stored.

DATA is a dataset artifact, or a source (registry name, file, hub id) laid out by the same rules as for
`ifguide factors`: with `model`'s tokenizer, else `--tokenizer`, else (for the packaged `tiny` sets) the tiny
model's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.masking.source import DataRefs, MaskSourceStage, make_mask
from ifguide_cli.core.masking.source_config import ClassifierMaskConfig, WordlistMaskConfig
from ifguide_cli.core.masking.wordlist import load_wordlist
from ifguide_cli.core.progress import NULL
from ifguide_cli.core.stage import ArtifactKey
from ifguide_cli.core.store.artifact_files import MASK_FILE

if TYPE_CHECKING:
    from ifguide_cli.core.store.workspace import BuildContext, Workspace

SOURCES_ALGORITHM = "ifguide mask sources v1"  # recorded in the config: a new version must not reuse old masks


def mask_dataset(ws: Workspace, data_ref: str, *, model: str | None = None, corpus: dict | None = None, reporter=NULL):
    """The `datasets` artifact a mask source reads: the one DATA names, or DATA tokenized (built once)."""
    from ifguide_cli.core.data import corpus_options, is_source_ref, model_corpus, resolve_corpus
    from ifguide_cli.core.data.sources import is_packaged
    from ifguide_cli.core.models import resolve_model

    options = corpus_options(corpus)
    if model is not None:
        return model_corpus(ws, data_ref, resolve_model(model, ws), options, reporter=reporter).artifact
    mref = None
    if options.get("tokenizer") is None and is_source_ref(data_ref):
        if not is_packaged(data_ref):
            raise IfguideError(f"--data {data_ref} is a source dataset: it needs a tokenizer to be laid out as rows",
                               hint="pass --model MODEL (its tokenizer and rows) or --tokenizer, or a dataset artifact",
                               exit_code=2)
        mref = resolve_model("tiny", ws)
    seq_len = options.pop("seq_len", None)
    result = resolve_corpus(ws, data_ref, mref, seq_len, reporter=reporter, **options)
    assert result is not None, "resolve_corpus builds the dataset unless asked for a lookup only"
    return result.artifact


def _classifier_spec(ws: Workspace, config: ClassifierMaskConfig):
    from ifguide_cli.core.classifiers import resolve_classifier

    return resolve_classifier(config.classifier, ws, checkpoint=config.classifier_checkpoint,
                              base=config.classifier_base, path=config.classifier_path)


@dataclass(frozen=True)
class ClassifierMaskKey(ArtifactKey):
    """What identifies a classifier mask: the classifier (its weights' identity), how it scores, the budget, the data."""

    kind: ClassVar[str] = "masks"
    source: str = "classifier"
    classifier: dict[str, Any] = field(default_factory=dict)
    level: str = "token"
    window: int | None = None
    stride: int | None = None
    threshold: float = 0.5
    max_tokens: int = 0
    dataset: str = ""
    algorithm: str = SOURCES_ALGORITHM


@dataclass(frozen=True)
class WordlistMaskKey(ArtifactKey):
    """What identifies a word-list mask: the words (by the hash of the set), the budget, the data."""

    kind: ClassVar[str] = "masks"
    source: str = "wordlist"
    wordlist_sha256: str = ""
    max_tokens: int = 0
    dataset: str = ""
    algorithm: str = SOURCES_ALGORITHM


@dataclass(frozen=True)
class SourceInputs:
    """The dataset a cheap source reads, and the workspace its config's classifier or word list is found in."""

    ws: Any
    dataset: Any  # the `datasets` artifact


class DataSourceStage(MaskSourceStage):
    """A source that reads the training data (`DataRefs`); DATA naming a source is laid out first."""

    def inputs(self, ws: Workspace, refs: DataRefs) -> SourceInputs:
        return SourceInputs(ws, mask_dataset(ws, refs.data, model=refs.model, corpus=dict(refs.corpus or {}) or None,
                                             reporter=self.reporter))


class ClassifierMaskStage(DataSourceStage):
    """`ifguide mask classifier`: the tokens of the spans (or documents) a toxicity classifier flags in DATA."""

    def prepare(self, ws: Workspace, config: ClassifierMaskConfig) -> None:
        _classifier_spec(ws, config)

    def key(self, inputs: SourceInputs, config: ClassifierMaskConfig) -> ClassifierMaskKey:
        spec = _classifier_spec(inputs.ws, config)
        window, stride = config.spans or (None, None)
        return ClassifierMaskKey(parents=(inputs.dataset.id, *spec.parents), classifier=spec.identity,
                                 level=config.level, window=window, stride=stride, threshold=config.threshold,
                                 max_tokens=config.max_tokens, dataset=inputs.dataset.id)

    def describe(self, inputs: SourceInputs, config: ClassifierMaskConfig) -> str:
        return f"mark the {config.level}s {config.classifier} flags (≥ {config.threshold:g})"

    def build(self, ctx: BuildContext, inputs: SourceInputs, config: ClassifierMaskConfig) -> dict[str, Any]:
        from ifguide_cli.core.classifiers import load_classifier
        from ifguide_cli.core.dist import resolve_device
        from ifguide_cli.core.masking.evidence import classifier_evidence
        from ifguide_cli.core.masking.row_text import RowText

        spec = _classifier_spec(inputs.ws, config)
        classifier = load_classifier(spec, device=resolve_device(config.device), batch_size=config.classifier_batch_size)

        def classify(texts: list[str]) -> list[float]:
            return classifier.score(texts)[classifier.primary]

        with ctx.timed("classify"):
            ev = classifier_evidence(RowText(inputs.ws, inputs.dataset), classify, config, self.reporter)
        window, stride = config.spans or (None, None)
        described = {"source": "classifier", "classifier": spec.name, "attribute": classifier.primary,
                     "level": config.level, "threshold": config.threshold, "window": window, "stride": stride}
        return publish(ctx, inputs.dataset, ev, config.max_tokens, config.threshold, described)


class WordlistMaskStage(DataSourceStage):
    """`ifguide mask wordlist`: the tokens of DATA that spell a word or phrase of the user's word list."""

    def prepare(self, ws: Workspace, config: WordlistMaskConfig) -> None:
        _words(config)

    def key(self, inputs: SourceInputs, config: WordlistMaskConfig) -> WordlistMaskKey:
        return WordlistMaskKey(parents=(inputs.dataset.id,), wordlist_sha256=_words(config).sha256,
                               max_tokens=config.max_tokens, dataset=inputs.dataset.id)

    def describe(self, inputs: SourceInputs, config: WordlistMaskConfig) -> str:
        return f"mark the words of {config.wordlist}"

    def build(self, ctx: BuildContext, inputs: SourceInputs, config: WordlistMaskConfig) -> dict[str, Any]:
        from ifguide_cli.core.masking.evidence import wordlist_evidence
        from ifguide_cli.core.masking.row_text import RowText

        words = _words(config)
        with ctx.timed("search"):
            ev = wordlist_evidence(RowText(inputs.ws, inputs.dataset), words, self.reporter)
        described = {"source": "wordlist", "wordlist": str(words.path), "wordlist_sha256": words.sha256,
                     "wordlist_words": len(words.words), "threshold": None, "window": None}
        return publish(ctx, inputs.dataset, ev, config.max_tokens, 0.0, described)


def _words(config: WordlistMaskConfig):
    """The word list the config names (its `check` has made sure it names one)."""
    assert config.wordlist is not None
    return load_wordlist(config.wordlist)


def build_classifier_mask(ws: Workspace, data_ref: str, config: ClassifierMaskConfig, *, name: str | None = None,
                          force: bool = False, reporter=NULL, model: str | None = None, corpus: dict | None = None):
    """The `masks` artifact of the spans (or documents) `config.classifier` flags in DATA. Returns (artifact, reused)."""
    res = make_mask(ws, "classifier", DataRefs(data_ref, model, corpus), config, name=name, force=force, reporter=reporter)
    return res.artifact, res.reused


def build_wordlist_mask(ws: Workspace, data_ref: str, config: WordlistMaskConfig, *, name: str | None = None,
                        force: bool = False, reporter=NULL, model: str | None = None, corpus: dict | None = None):
    """The `masks` artifact of the tokens of DATA that spell a word of `config.wordlist`. Returns (artifact, reused)."""
    res = make_mask(ws, "wordlist", DataRefs(data_ref, model, corpus), config, name=name, force=force, reporter=reporter)
    return res.artifact, res.reused


def publish(ctx, dataset, ev, max_tokens: int, threshold_value: float, described: dict[str, Any]) -> dict[str, Any]:
    """The budgeted walk (Alg. 1's, `select_marked`) over the evidence, the mask file written, and the summary: the
    selection's figures (those of an influence mask), what the source found, and the ranking against the dataset's
    labels. Every source that marks tokens ends here."""
    from ifguide_cli.core.masking.mask_file import MaskFile
    from ifguide_cli.core.masking.select import select_marked
    from ifguide_cli.core.masking.stage import label_summary, write_mask

    with ctx.timed("select"):
        res = select_marked(ev.marks, ev.key, ev.strength, max_tokens, threshold_value=threshold_value,
                            num_scores=ev.text_tokens, out=MaskFile(ctx.staging / MASK_FILE, ev.marks.shape))
    with ctx.timed("write"):
        write_mask(ctx.staging / MASK_FILE, res)
    return {**res.summary(), **described, **ev.stats, "dataset": dataset.id, **label_summary(dataset, res)}
