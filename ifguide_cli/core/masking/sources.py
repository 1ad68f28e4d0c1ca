"""The cheap mask sources, as workspace stages: a toxicity classifier or a word list → an ordinary `masks` artifact.

What a source finds (`evidence`) goes through Alg. 1's budgeted walk (`select.select_marked`), and the artifact
has the files and summary fields of an influence mask, so `mask show/browse/export`, `train --mask` and
`finetune --mask` take it unchanged; its summary says which `source` made it and scores its ranking against the
dataset's labels the way the influence mask's is (`stage.label_summary`). `build_classifier_mask` and
`build_wordlist_mask` return (artifact, reused) like `create_mask_artifact`: reused is True when an identical
mask (same source settings, dataset and budget) was already stored and nothing was computed.

DATA is a dataset artifact, or a source (registry name, file, hub id) laid out by the same rules as for
`ifguide factors`: with `model`'s tokenizer, else `--tokenizer`, else (for the packaged `tiny` sets) the tiny
model's.
"""

from __future__ import annotations

from typing import Any

from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.masking.source_config import ClassifierMaskConfig, WordlistMaskConfig
from ifguide_cli.core.progress import NULL
from ifguide_cli.core.store.artifact_files import MASK_FILE

SOURCES_ALGORITHM = "ifguide mask sources v1"  # recorded in the config: a new version must not reuse old masks


def mask_dataset(ws, data_ref: str, *, model: str | None = None, corpus: dict | None = None, reporter=NULL):
    """The `datasets` artifact a mask source reads: the one DATA names, or DATA tokenized (built once)."""
    from ifguide_cli.core.data import corpus_options, is_source_ref, model_corpus, resolve_corpus
    from ifguide_cli.core.data.sources import is_packaged
    from ifguide_cli.core.models import resolve_model

    options = corpus_options(corpus)
    if model is not None:
        return model_corpus(ws, data_ref, resolve_model(model, ws), options, reporter=reporter)[0]
    mref = None
    if options.get("tokenizer") is None and is_source_ref(data_ref):
        if not is_packaged(data_ref):
            raise IfguideError(f"--data {data_ref} is a source dataset: it needs a tokenizer to be laid out as rows",
                               hint="pass --model MODEL (its tokenizer and rows) or --tokenizer, or a dataset artifact",
                               exit_code=2)
        mref = resolve_model("tiny", ws)
    seq_len = options.pop("seq_len", None)
    return resolve_corpus(ws, data_ref, mref, seq_len, reporter=reporter, **options)[0]


def _classifier_spec(ws, config: ClassifierMaskConfig):
    from ifguide_cli.core.classifiers import resolve_classifier

    return resolve_classifier(config.classifier, ws, checkpoint=config.classifier_checkpoint,
                              base=config.classifier_base, path=config.classifier_path)


def classifier_mask_key(ws, dataset_id: str, config: ClassifierMaskConfig, spec=None) -> tuple[dict, list[str]]:
    """(identity, parents) of the classifier mask of a dataset: what makes its artifact id, so a plan can find a
    stored one without building it."""
    spec = spec or _classifier_spec(ws, config)
    window, stride = config.spans or (None, None)
    identity = {"source": "classifier", "classifier": spec.identity, "level": config.level, "window": window,
                "stride": stride, "threshold": config.threshold, "max_tokens": config.max_tokens,
                "dataset": dataset_id, "algorithm": SOURCES_ALGORITHM}
    return identity, [dataset_id, *spec.parents]


def wordlist_mask_key(dataset_id: str, config: WordlistMaskConfig, words=None) -> tuple[dict, list[str]]:
    """(identity, parents) of the word-list mask of a dataset (the word list counts by the hash of its words)."""
    from ifguide_cli.core.masking.wordlist import load_wordlist

    words = words or load_wordlist(config.wordlist)
    identity = {"source": "wordlist", "wordlist_sha256": words.sha256, "max_tokens": config.max_tokens,
                "dataset": dataset_id, "algorithm": SOURCES_ALGORITHM}
    return identity, [dataset_id]


def build_classifier_mask(ws, data_ref: str, config: ClassifierMaskConfig, *, name: str | None = None,
                          force: bool = False, reporter=NULL, model: str | None = None, corpus: dict | None = None):
    """The `masks` artifact of the spans (or documents) `config.classifier` flags in DATA. Returns (artifact, reused)."""
    from ifguide_cli.core.classifiers import load_classifier
    from ifguide_cli.core.dist import resolve_device
    from ifguide_cli.core.masking.evidence import classifier_evidence
    from ifguide_cli.core.masking.row_text import RowText

    spec = _classifier_spec(ws, config)  # before the data: fails fast
    dataset = mask_dataset(ws, data_ref, model=model, corpus=corpus, reporter=reporter)
    window, stride = config.spans or (None, None)
    identity, parents = classifier_mask_key(ws, dataset.id, config, spec)

    def build(ctx):
        classifier = load_classifier(spec, device=resolve_device(config.device), batch_size=config.classifier_batch_size)

        def classify(texts: list[str]) -> list[float]:
            return classifier.score(texts)[classifier.primary]

        with ctx.timed("classify"):
            ev = classifier_evidence(RowText(ws, dataset), classify, config, reporter)
        described = {"source": "classifier", "classifier": spec.name, "attribute": classifier.primary,
                     "level": config.level, "threshold": config.threshold, "window": window, "stride": stride}
        return _publish(ctx, dataset, ev, config.max_tokens, config.threshold, described)

    return ws.create("masks", identity, parents, build, name=name, force=force)


def build_wordlist_mask(ws, data_ref: str, config: WordlistMaskConfig, *, name: str | None = None,
                        force: bool = False, reporter=NULL, model: str | None = None, corpus: dict | None = None):
    """The `masks` artifact of the tokens of DATA that spell a word of `config.wordlist`. Returns (artifact, reused)."""
    from ifguide_cli.core.masking.evidence import wordlist_evidence
    from ifguide_cli.core.masking.row_text import RowText
    from ifguide_cli.core.masking.wordlist import load_wordlist

    words = load_wordlist(config.wordlist)  # before the data: a bad word list is one line, at once
    dataset = mask_dataset(ws, data_ref, model=model, corpus=corpus, reporter=reporter)
    identity, parents = wordlist_mask_key(dataset.id, config, words)

    def build(ctx):
        with ctx.timed("search"):
            ev = wordlist_evidence(RowText(ws, dataset), words, reporter)
        described = {"source": "wordlist", "wordlist": str(words.path), "wordlist_sha256": words.sha256,
                     "wordlist_words": len(words.words), "threshold": None, "window": None}
        return _publish(ctx, dataset, ev, config.max_tokens, 0.0, described)

    return ws.create("masks", identity, parents, build, name=name, force=force)


def _publish(ctx, dataset, ev, max_tokens: int, threshold_value: float, described: dict[str, Any]) -> dict[str, Any]:
    """The budgeted walk over the evidence, the mask file written, and the summary: the selection's figures (those
    of an influence mask), what the source found, and the ranking against the dataset's labels."""
    from ifguide_cli.core.masking.select import select_marked
    from ifguide_cli.core.masking.stage import label_summary, write_mask

    with ctx.timed("select"):
        res = select_marked(ev.marks, ev.key, ev.strength, max_tokens, threshold_value=threshold_value,
                            num_scores=ev.text_tokens)
    with ctx.timed("write"):
        write_mask(ctx.staging / MASK_FILE, res)
    return {**res.summary(), **described, **ev.stats, "dataset": dataset.id, **label_summary(dataset, res)}
