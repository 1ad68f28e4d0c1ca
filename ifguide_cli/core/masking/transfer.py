"""`ifguide mask transfer`: a mask carried to another tokenizer through the characters its tokens hold.

A mask is a grid over one tokenizer's rows, so a model with another tokenizer cannot train on it (the paper
retrained Llama-3.2-1B with Pythia's tokenizer for exactly that reason). Characters are what every tokenizer
shares: the masked tokens' character spans, in document coordinates (the dataset's row source map), are laid
over the same documents tokenized with the new tokenizer (`data.retokenize`, a new `datasets` artifact), and a
new token is masked when at least half of its characters are masked (`--rule majority`) or when any is (`any`).
Agreement is counted in characters: kept (masked before and after), lost (masked before only: a boundary that
fell the other way, or text the new rows no longer hold, counted apart as `chars_not_in_rows`) and added (masked after only: a new token reaching
past the old span). A masked end-of-document token (EOS, no characters) masks the EOS that ends the same
document in the new rows. The new mask ranks rows as the original ranked their documents and marks every mapped token
(no new budget: the original's budget chose the characters).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.masking.export import MaskRows, open_mask
from ifguide_cli.core.masking.row_text import RowText, Segment, masked_spans
from ifguide_cli.core.masking.transfer_config import MaskTransferConfig
from ifguide_cli.core.progress import NULL, Reporter
from ifguide_cli.core.stage import ArtifactKey, Result, Stage, run_stage
from ifguide_cli.core.store.artifact_files import MASK_FILE

if TYPE_CHECKING:
    from ifguide_cli.core.store.workspace import BuildContext, Workspace

TRANSFER_ALGORITHM = "ifguide mask transfer v1"  # recorded in the config: a new version must not reuse old masks
_ROW_BLOCK = 4096


@dataclass
class MaskedChars:
    """The original mask as character spans per document, and each document's best rank (of its rows')."""

    spans: dict[int, list[tuple[int, int]]] = field(default_factory=dict)
    best_rank: dict[int, int] = field(default_factory=dict)
    ends: set[int] = field(default_factory=set)  # documents whose end-of-document token (EOS) is masked: no characters

    def holds(self, doc: int) -> bool:
        return doc in self.spans or doc in self.ends

    @property
    def total(self) -> int:
        return sum(b - a for spans in self.spans.values() for a, b in spans)


def masked_chars(rows: MaskRows, reporter: Reporter = NULL) -> MaskedChars:
    """The characters the mask's tokens hold, in document coordinates (rows of one document tile it: no overlap)."""
    out = MaskedChars()
    n = rows.shape[0]
    with reporter.task("reading the mask", total=n) as task:
        for r0 in range(0, n, _ROW_BLOCK):
            block = np.asarray(rows.mask[r0:r0 + _ROW_BLOCK]).astype(bool)
            for r in range(r0, min(n, r0 + _ROW_BLOCK)):
                for doc, _ in rows.text.parts(r):
                    out.best_rank[doc] = min(out.best_rank.get(doc, n), int(rows.rank_of[r]))
            for r in (r0 + np.flatnonzero(block.any(axis=1))).tolist():
                for seg in rows.text.segments(r):
                    spans = [(seg.char_start + a, seg.char_start + b) for a, b in masked_spans(seg, block[r - r0])]
                    if spans:
                        out.spans.setdefault(seg.doc, []).extend(spans)
                    end = rows.text.end_token(seg)
                    if end is not None and block[r - r0, end]:
                        out.ends.add(seg.doc)
            task.advance(min(n, r0 + _ROW_BLOCK) - r0)
    return out


def _token_masked_chars(seg: Segment, spans: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """(masked characters, characters) of each token of the segment, given a document's masked spans."""
    lo = seg.char_start
    chars = np.zeros(int(seg.offsets[-1]), dtype=np.int64)
    for a, b in spans:
        chars[max(a - lo, 0):max(min(b - lo, chars.size), 0)] = 1
    cum = np.concatenate([[0], np.cumsum(chars)])
    return cum[seg.offsets[1:]] - cum[seg.offsets[:-1]], np.diff(seg.offsets)


@dataclass
class Mapped:
    """The new dataset's marks and the character agreement with the original."""

    marks: np.ndarray  # bool (rows, seq_len) of the new dataset
    key: np.ndarray  # float64 (rows,): rank key from the original's best rank of the row's documents (higher first)
    kept: int = 0
    added: int = 0
    held: int = 0  # masked characters the new rows hold at all (the rest were cut: a shorter row in new tokens)


def map_marks(text: RowText, chars: MaskedChars, rule: str, reporter: Reporter = NULL) -> Mapped:
    """Mark the tokens of the new rows whose characters the original mask held (see the module docstring)."""
    n, t = text.shape
    out = Mapped(np.zeros((n, t), dtype=bool), np.zeros(n, dtype=np.float64))
    worst = max(chars.best_rank.values(), default=0) + 1
    with reporter.task("mapping characters", total=n) as task:
        for r in range(n):
            docs = [d for d, _ in text.parts(r)]
            out.key[r] = worst - min(chars.best_rank.get(d, worst) for d in docs)
            if any(chars.holds(d) for d in docs):
                for seg in text.segments(r):
                    _mark_segment(out, seg, chars.spans.get(seg.doc, []), rule)
                    end = text.end_token(seg) if seg.doc in chars.ends else None
                    if end is not None:
                        out.marks[r, end] = True
            task.advance()
    return out


def _mark_segment(out: Mapped, seg: Segment, spans: list[tuple[int, int]], rule: str) -> None:
    masked, length = _token_masked_chars(seg, spans)
    mark = (masked > 0) & ((2 * masked >= length) if rule == "majority" else True)
    out.marks[seg.row, seg.positions[mark]] = True
    out.held += int(masked.sum())
    out.kept += int(masked[mark].sum())
    out.added += int((length - masked)[mark].sum())


def agreement(total: int, mapped: Mapped) -> dict[str, Any]:
    """Masked characters kept / lost / added by the transfer, as counts and as shares of the original's."""
    lost = total - mapped.kept
    return {"masked_chars": total, "chars_kept": mapped.kept, "chars_lost": lost, "chars_added": mapped.added,
            "kept_share": round(mapped.kept / total, 6), "lost_share": round(lost / total, 6),
            "added_share": round(mapped.added / total, 6), "chars_not_in_rows": total - mapped.held}


@dataclass(frozen=True)
class TransferKey(ArtifactKey):
    """What identifies a transferred mask: the original mask, the dataset it now indexes and the mapping rule."""

    kind: ClassVar[str] = "masks"
    source_mask: str = ""
    dataset: str = ""  # the new dataset (what `train --mask` checks the data against)
    rule: str = "majority"
    algorithm: str = TRANSFER_ALGORITHM


@dataclass(frozen=True)
class TransferRefs:
    """The mask to carry over, the dataset of the new tokenizer, and the original's dataset for a plain-file mask."""

    mask: str
    dataset: str
    data: str | None = None


@dataclass(frozen=True)
class TransferInputs:
    source: MaskRows
    dataset: Any  # the new `datasets` artifact (`data.retokenize`)


class TransferMaskStage(Stage[TransferRefs, TransferInputs, MaskTransferConfig, dict[str, Any]]):
    """A mask and the same documents in another tokenizer's rows → a `masks` artifact over those rows."""

    kind = "masks"

    def __init__(self, reporter: Reporter = NULL):
        self.reporter = reporter

    def inputs(self, ws: Workspace, refs: TransferRefs) -> TransferInputs:
        source = open_mask(ws, refs.mask, refs.data)
        dataset = ws.resolve(refs.dataset, "datasets")
        if dataset.config.get("retokenized_from") != source.dataset.id:
            raise IfguideError(f"dataset {dataset.id} is not dataset {source.dataset.id} tokenized again",
                               hint="let `ifguide mask transfer` build the dataset", exit_code=2)
        return TransferInputs(source, dataset)

    def key(self, inputs: TransferInputs, config: MaskTransferConfig) -> TransferKey:
        return TransferKey(parents=(inputs.source.art.id, inputs.dataset.id), source_mask=inputs.source.art.id,
                           dataset=inputs.dataset.id, rule=config.rule)

    def describe(self, inputs: TransferInputs, config: MaskTransferConfig) -> str:
        return f"carry mask {inputs.source.art.id} over to {inputs.dataset.config.get('tokenizer')} ({config.rule} rule)"

    def build(self, ctx: BuildContext, inputs: TransferInputs, config: MaskTransferConfig) -> dict[str, Any]:
        from ifguide_cli.core.masking.mask_file import MaskFile
        from ifguide_cli.core.masking.select import select_marked
        from ifguide_cli.core.masking.stage import label_summary, write_mask

        with ctx.timed("read"):
            chars = masked_chars(inputs.source, self.reporter)
        if not chars.spans and not chars.ends:
            raise IfguideError(f"mask {inputs.source.art.id} masks no characters: there is nothing to transfer",
                               exit_code=2)
        text = RowText(inputs.source.ws, inputs.dataset)
        with ctx.timed("map"):
            mapped = map_marks(text, chars, config.rule, self.reporter)
        marked = int(mapped.marks.sum())
        tokens = int(np.count_nonzero(text.attention)) if text.attention is not None else mapped.marks.size
        res = select_marked(mapped.marks, mapped.key, mapped.marks.sum(axis=1).astype(np.float64), marked,
                            threshold_value=0.0, num_scores=tokens, out=MaskFile(ctx.staging / MASK_FILE, mapped.marks.shape))
        with ctx.timed("write"):
            write_mask(ctx.staging / MASK_FILE, res)
        return {**res.summary(), "source": "transfer", "source_mask": inputs.source.art.id,
                "source_dataset": inputs.source.dataset.id, "tokenizer": inputs.dataset.config.get("tokenizer"),
                "source_tokenizer": inputs.source.dataset.config.get("tokenizer"), "rule": config.rule,
                **agreement(chars.total, mapped), "dataset": inputs.dataset.id, **label_summary(inputs.dataset, res)}


def transfer_mask(ws: Workspace, mask_ref: str, tokenizer: str, config: MaskTransferConfig, *, data_ref: str | None = None,
                  name: str | None = None, force: bool = False, reporter: Reporter = NULL) -> tuple[Result, Result]:
    """`ifguide mask transfer`: the original's documents in the new tokenizer's rows (a `datasets` artifact, built
    once), then the mask carried over to them (a `masks` artifact). Returns (dataset result, mask result)."""
    from ifguide_cli.core.data.retokenize import RetokenizeRefs, RetokenizeStage

    source = open_mask(ws, mask_ref, data_ref)
    data_stage = RetokenizeStage(reporter)
    data = run_stage(ws, data_stage, data_stage.inputs(ws, RetokenizeRefs(source.dataset, tokenizer, config.seq_len)), None,
                     name=name, force=force)
    stage = TransferMaskStage(reporter)
    inputs = stage.inputs(ws, TransferRefs(source.art.id, data.artifact.id, source.dataset.id if data_ref else None))
    return data, run_stage(ws, stage, inputs, config, name=name, force=force)
