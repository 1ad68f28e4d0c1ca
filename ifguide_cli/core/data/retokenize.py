"""A dataset artifact tokenized again with another tokenizer, from its own stored text (the data of `mask transfer`).

The documents are the texts the dataset's rows hold (`texts.bin`, addressed by the row source map): each
document's parts joined back in order. The new rows therefore cover exactly the characters the old rows did
(what a document lost to truncation stays lost, and nothing the mask never saw is added), and the original
source file is not needed. Each document keeps its id, line and label (a packed dataset keeps labels per row
only, so its documents have none here). The new source map's character spans are in the ORIGINAL document's
coordinates, so a character span of one dataset names the same characters in the other.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from ifguide_cli.core.data.layout import CorpusConfig
from ifguide_cli.core.data.rowfiles import write_corpus
from ifguide_cli.core.data.sources import SourceDoc
from ifguide_cli.core.data.stage import ROWS_FILE, TEXTS_FILE, RowSources, corpus_summary
from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.progress import NULL, Reporter
from ifguide_cli.core.stage import ArtifactKey, Stage

if TYPE_CHECKING:
    from ifguide_cli.core.store.workspace import BuildContext, Workspace
    from ifguide_cli.core.tokenizer import TokenizerRef


class RecordedSource(NamedTuple):
    """Where the retokenized dataset's documents came from, as its summary recorded it."""

    ref: str | None
    file: str
    positions: str


def stored_documents(art) -> Iterator[SourceDoc]:
    """The documents of a dataset artifact rebuilt from its rows' own text, in order (parts of one document are
    consecutive in the source map and tile its text). Each keeps where its stored text starts in the original
    document and that document's length, so the new source map's spans are in the original's coordinates."""
    columns = RowSources(art).columns
    prefix = "piece_" if "piece_start" in columns else ""
    labels = None if prefix else columns.get("labels")
    doc_ids = columns[prefix + "doc_id"]
    with open(art.file(TEXTS_FILE), "rb") as fh:
        start = 0
        while start < len(doc_ids):
            end = start + 1
            while end < len(doc_ids) and doc_ids[end] == doc_ids[start]:
                end += 1
            fh.seek(int(columns[prefix + "text_start"][start]))
            text = fh.read(int(columns[prefix + "text_end"][end - 1] - columns[prefix + "text_start"][start])).decode("utf-8")
            label = None if labels is None else bool(labels[start])
            yield SourceDoc(int(doc_ids[start]), int(columns[prefix + "line"][start]), text, label,
                            char_offset=int(columns[prefix + "char_start"][start]),
                            doc_chars=int(columns[prefix + "doc_chars"][start]))
            start = end


@dataclass(frozen=True)
class RetokenizedKey(ArtifactKey):
    """A dataset's stored text tokenized with another tokenizer: the original's source and layout, the new tokenizer."""

    kind: ClassVar[str] = "datasets"
    data: Any = None  # the source's identity, as the original dataset records it
    retokenized_from: str = ""
    tokenizer: str = ""
    tokenizer_sha256: str | None = None
    layout: str | None = None
    seq_len: int | None = None
    overflow: str | None = None
    text_field: str = "text"
    label_field: str | None = None
    split: str | None = None


@dataclass(frozen=True)
class RetokenizeRefs:
    """What `mask transfer` names for its data: the original dataset and the new tokenizer (and row length)."""

    dataset: Any  # the original `datasets` artifact
    tokenizer: str
    seq_len: int | None = None  # None: the original's


@dataclass(frozen=True)
class RetokenizeInputs:
    dataset: Any
    tokenizer: TokenizerRef
    seq_len: int


class RetokenizeStage(Stage[RetokenizeRefs, RetokenizeInputs, None, dict[str, Any]]):
    """A dataset artifact's stored text → the same documents as rows of another tokenizer (a `datasets` artifact)."""

    kind = "datasets"

    def __init__(self, reporter: Reporter = NULL):
        self.reporter = reporter

    def inputs(self, ws: Workspace, refs: RetokenizeRefs) -> RetokenizeInputs:
        from ifguide_cli.core.tokenizer import resolve_tokenizer

        art = refs.dataset
        if not (art.path / ROWS_FILE).is_file() or not (art.path / TEXTS_FILE).is_file():
            raise IfguideError(f"dataset {art.id} keeps no row text (it was built before datasets kept a source map)",
                               hint="rebuild it (the same command with --force) and the mask on it", exit_code=2)
        return RetokenizeInputs(art, resolve_tokenizer(refs.tokenizer, ws), refs.seq_len or int(art.config["seq_len"]))

    def _layout(self, inputs: RetokenizeInputs) -> CorpusConfig:
        c = inputs.dataset.config
        packed = c.get("layout") == "packed"
        return CorpusConfig(layout=c.get("layout"), seq_len=inputs.seq_len, overflow=c.get("overflow"),
                            text_field=c.get("text_field", "text"), label_field=None if packed else c.get("label_field"),
                            split=c.get("split"), tokenizer=inputs.tokenizer.name)

    def key(self, inputs: RetokenizeInputs, config: None = None) -> RetokenizedKey:
        layout = self._layout(inputs)
        return RetokenizedKey(parents=(inputs.dataset.id, *inputs.tokenizer.parents), data=inputs.dataset.config.get("data"),
                              retokenized_from=inputs.dataset.id, tokenizer=inputs.tokenizer.name,
                              tokenizer_sha256=inputs.tokenizer.fingerprint(), layout=layout.layout, seq_len=layout.seq_len,
                              overflow=layout.overflow, text_field=layout.text_field, label_field=layout.label_field,
                              split=layout.split)

    def describe(self, inputs: RetokenizeInputs, config: None = None) -> str:
        return f"tokenize dataset {inputs.dataset.id}'s text again with {inputs.tokenizer.name}"

    def build(self, ctx: BuildContext, inputs: RetokenizeInputs, config: None = None) -> dict[str, Any]:
        layout = self._layout(inputs)
        with ctx.timed("tokenize"):
            tally = write_corpus(stored_documents(inputs.dataset), inputs.tokenizer.load(), layout, ctx.staging,
                                 self.reporter, what=f"dataset {inputs.dataset.id}")
        s = inputs.dataset.summary
        source = RecordedSource(s.get("source"), s.get("file", ""), s.get("positions", "line"))
        return {**corpus_summary(tally, layout, source, None), "retokenized_from": inputs.dataset.id}
