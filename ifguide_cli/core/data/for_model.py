"""The corpus a model is trained, fit or scored on: DATA tokenized with the model's tokenizer, in rows it can take.

`train`, `finetune`, `factors` and `scores` all come here, so the layout options (`CorpusConfig`) mean the
same everywhere and the dataset artifact is found again by the next command: a checkpoint's or a factors
artifact's own dataset is preferred when DATA is its source (`prefer`), and an option contradicting it is an
error naming both values.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.progress import NULL

if TYPE_CHECKING:
    from ifguide_cli.core.store.workspace import Workspace

_FIELDS = ("layout", "seq_len", "overflow", "text_field", "label_field", "max_examples", "split", "tokenizer", "heldout")


def corpus_options(values: dict | None) -> dict:
    """The `CorpusConfig` options given (None = not given), checked like the config checks them (one line each)."""
    from ifguide_cli.core.data.layout import CorpusConfig

    given = {k: v for k, v in (values or {}).items() if v is not None}
    unknown = sorted(set(given) - set(_FIELDS))
    if unknown:
        raise ValueError(f"not corpus options: {unknown}")
    CorpusConfig(**given)  # validates every value (ranges, choices, packed + overflow)
    return given


def model_tokenizer(ws: Workspace, mref, asked: str | None) -> str:
    """The tokenizer name DATA is tokenized with for this model: --tokenizer must be the model's own."""
    if asked is None:
        return mref.tokenizer
    from ifguide_cli.core.tokenizer import resolve_tokenizer

    name = resolve_tokenizer(asked, ws).name
    if name != mref.tokenizer:
        raise IfguideError(f"--tokenizer {asked} is not the tokenizer of model {mref.ref!r} ({mref.tokenizer})",
                           hint="a model reads only its own tokenizer's ids: leave out --tokenizer (--tokenizer changes "
                                "the vocabulary only of a model trained from scratch)", exit_code=2)
    return name


def model_corpus(ws: Workspace, data_ref: str, mref, options: dict | None = None, *, prefer=None, reporter=NULL,
                 barrier=lambda: None, context: int | None = None, lookup: bool = False):
    """The dataset artifact of DATA for model `mref` (a `stage.Result`), whose context is `context` tokens.

    `options`: the `CorpusConfig` options given (see `corpus_options`). A row length left to the data is
    fitted under the model's context, and rows longer than the context are refused before any work.
    `lookup`: only find a stored dataset (None when it would be built).
    """
    from ifguide_cli.core.data.stage import resolve_corpus

    options = corpus_options(options)
    model_tokenizer(ws, mref, options.get("tokenizer"))
    if prefer is not None and prefer.config.get("tokenizer") != mref.tokenizer:
        prefer = None  # e.g. an architecture trained from scratch again with another tokenizer
    seq_len = options.pop("seq_len", None)
    if context is not None and seq_len is not None and seq_len > context:  # before anything is tokenized
        raise IfguideError(f"--seq-len {seq_len} is longer than the {context}-token context of model {mref.ref!r}",
                           hint=f"pass --seq-len {context} or less", exit_code=2)
    result = resolve_corpus(ws, data_ref, mref, seq_len, reporter=reporter, barrier=barrier, prefer=prefer,
                            max_seq_len=context, lookup=lookup, **options)
    if result is None:
        return None
    art = result.artifact
    rows = art.config.get("seq_len")
    if context is not None and rows is not None and rows > context:
        raise IfguideError(f"dataset {art.id} has rows of {rows} tokens, longer than the {context}-token context of "
                           f"model {mref.ref!r}", hint=f"pass --seq-len {context} or less (with the source data)", exit_code=2)
    return result
