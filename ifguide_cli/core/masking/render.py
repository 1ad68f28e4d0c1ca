"""Reading a mask artifact back and showing it: decoded tokens, mask bits, scores; rich text, plain text, JSON, HTML.

Everything is memory-mapped and read one document at a time, so inspecting a mask of a
billion-token corpus costs one row, not the tensor. A row is shown with its source (FILE:LINE, from the
dataset's row source map) and its label, and its text is decoded whole: a character split across
byte-level tokens is shown once, on the token where it ends (never as "��").
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ifguide_cli.core.data import recorded_dataset
from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.masking import dataset_arrays, load_safetensors_array, safetensors_keys
from ifguide_cli.core.masking.row_blocks import RowBlocks
from ifguide_cli.core.masking.scorefile import open_scores
from ifguide_cli.core.notes import warn
from ifguide_cli.core.store.artifact_files import MASK_FILE, SCORES_FILE

if TYPE_CHECKING:
    from ifguide_cli.core.store.workspace import Workspace

PLAIN_OPEN, PLAIN_CLOSE = "[[", "]]"  # masked spans in plain (non-terminal) output
SCORES_GONE = "the scores of this mask are no longer available; showing the mask only"


@dataclass
class DocView:
    """One document as shown: only real tokens (padding dropped), with their row positions."""

    doc: int
    rank: int
    positions: np.ndarray  # int64: position of each shown token in the row
    token_ids: np.ndarray | None  # None when the mask has no dataset
    pieces: list[str]  # decoded text per token (or `#position` without a tokenizer)
    masked: np.ndarray  # bool per shown token
    scores: np.ndarray | None  # float per shown token, when requested and available
    stats: dict[str, Any]
    source: dict[str, Any] | None = None  # where the row came from (see `data.RowSources.source`), when known

    def to_json(self) -> dict[str, Any]:
        return {
            "doc": self.doc,
            "rank": self.rank,
            **self.stats,
            "positions": self.positions.tolist(),
            "token_ids": None if self.token_ids is None else self.token_ids.tolist(),
            "tokens": self.pieces,
            "masked": self.masked.tolist(),
            "scores": None if self.scores is None else [float(s) for s in self.scores],
            "source": self.source,
        }


class MaskInspector:
    """A mask artifact with its ranking, per-document statistics, tokens, tokenizer and (lazily) scores."""

    def __init__(self, ws: Workspace, mask_ref: str, data_ref: str | None = None):
        self.ws = ws
        self.art = ws.resolve(mask_ref, "masks")
        self._read_mask_file(self.art.file(MASK_FILE))
        self.summary = self.art.summary
        self.dataset = self._dataset(data_ref)
        self.arrays: dict[str, np.ndarray] = dataset_arrays(self.dataset) if self.dataset is not None else {}
        if "input_ids" in self.arrays and tuple(self.arrays["input_ids"].shape) != (self.docs, self.seq_len):
            raise IfguideError(f"dataset {self.dataset.id} has shape {tuple(self.arrays['input_ids'].shape)} but mask "
                               f"{self.art.id} has {(self.docs, self.seq_len)}", exit_code=2)

    def _read_mask_file(self, path: Path) -> None:
        """The mask (memory-mapped), the ranking and the per-document statistics the stage stored."""
        keys = safetensors_keys(path)
        if "mask" not in keys:
            raise IfguideError(f"mask artifact {self.art.id} has no `mask` tensor", hint="rebuild it with `ifguide mask ... --force`")
        self.mask = load_safetensors_array(path, "mask")
        if self.mask.ndim != 2:
            raise IfguideError(f"mask artifact {self.art.id}: mask has shape {tuple(self.mask.shape)}, expected (docs, seq_len)")
        self.docs, self.seq_len = self.mask.shape
        self.ranking = np.asarray(load_safetensors_array(path, "ranking")) if "ranking" in keys else np.arange(self.docs)
        self._stats = {k: np.asarray(load_safetensors_array(path, k)) for k in ("sparsity", "strength", "harmonic", "selected")
                       if k in keys}
        if "selected" not in self._stats:
            self._stats["selected"] = np.asarray(self.mask.sum(axis=1))

    def _dataset(self, data_ref: str | None):
        """The dataset whose tokens are shown: the recorded one, or `data_ref` for a mask of a plain score file.

        A recorded dataset that was deleted still lets the mask be shown, by token position, with a note.
        """
        given = self.ws.resolve(data_ref, "datasets") if data_ref is not None else None
        try:
            return recorded_dataset(self.ws, self.art, given, what=f"mask {self.art.id}",
                                    hint="leave out --data (the mask knows its dataset)")
        except IfguideError as exc:
            if given is not None:
                raise
            warn(f"{exc.message}; showing token positions only")
            return None

    # ---- ranking ------------------------------------------------------------------------
    @cached_property
    def rank_of(self) -> np.ndarray:
        inv = np.empty(self.docs, dtype=np.int64)
        inv[self.ranking] = np.arange(self.docs)
        return inv

    @property
    def documents_selected(self) -> int:
        return int(np.count_nonzero(self._stats["selected"]))

    def check_rank(self, rank: int) -> int:
        if not 0 <= rank < self.docs:
            raise IfguideError(f"--rank must be in [0, {self.docs - 1}]; got {rank}", exit_code=2)
        return int(self.ranking[rank])

    def check_doc(self, doc: int) -> int:
        if not 0 <= doc < self.docs:
            raise IfguideError(f"--doc must be in [0, {self.docs - 1}]; got {doc}", exit_code=2)
        return doc

    def stats(self, doc: int) -> dict[str, Any]:
        out: dict[str, Any] = {"masked_tokens": int(self._stats["selected"][doc])}
        if "sparsity" in self._stats:
            out["tokens_above_threshold"] = int(self._stats["sparsity"][doc])
        if "strength" in self._stats:
            out["strength"] = float(self._stats["strength"][doc])
        if "harmonic" in self._stats:
            out["harmonic"] = float(self._stats["harmonic"][doc])
        if "planted_toxic" in self.arrays:
            out["planted_toxic"] = bool(self.arrays["planted_toxic"][doc])
        if self.labels is not None:
            out["label"] = bool(self.labels[doc])
        return out

    # ---- the dataset's labels and source map -------------------------------------------
    @cached_property
    def labels(self) -> np.ndarray | None:
        """The --label-field of each row's document (None when the dataset has no labels)."""
        from ifguide_cli.core.data import row_labels

        return None if self.dataset is None else row_labels(self.dataset)

    @property
    def label_field(self) -> str | None:
        if self.labels is None:
            return None
        return self.dataset.config.get("label_field") or "planted_toxic"

    @cached_property
    def sources(self):
        """The dataset's row source map (None for a dataset built before datasets kept one)."""
        from ifguide_cli.core.data import ROWS_FILE, RowSources

        if self.dataset is None or not (self.dataset.path / ROWS_FILE).is_file():
            return None
        return RowSources(self.dataset)

    def top(self, n: int) -> list[dict[str, Any]]:
        """The first n documents of the ranking with their statistics."""
        rows = []
        for r in range(min(n, self.docs)):
            doc = int(self.ranking[r])
            where = {} if self.sources is None else {"where": self.sources.location(doc)}
            rows.append({"rank": r, "doc": doc, **self.stats(doc), **where})
        return rows

    def pick(self, rank: int | None = None, doc: int | None = None) -> int:
        """The document `mask show` prints: by --doc index or by --rank (default: rank 0, the most toxic)."""
        if rank is not None and doc is not None:
            raise IfguideError("give --rank or --doc, not both", exit_code=2)
        return self.check_doc(doc) if doc is not None else self.check_rank(rank or 0)

    # ---- tokens and scores --------------------------------------------------------------
    @cached_property
    def tokenizer(self):
        """Decodes token ids: the dataset's tokenizer (its tokenizer.json read directly when available, which
        avoids importing transformers; else transformers' AutoTokenizer)."""
        if self.dataset is None:
            return None
        tok = self.dataset.config.get("tokenizer")
        if not tok:
            return None
        return _decoder(tok)

    @cached_property
    def scores(self) -> RowBlocks | None:
        """The score tensor the mask was computed from (a row read at a time: a bf16 file is widened row by row),
        or None when it is gone."""
        sid = self.art.config.get("scores")
        try:
            if sid:
                sart = self.ws.by_id(sid)
                if sart is None:
                    return None
                return open_scores(sart.file(SCORES_FILE), self.art.config.get("scores_key"))
            sfile = (self.art.config.get("scores_file") or {}).get("path")
            if sfile and Path(sfile).is_file():
                arr = open_scores(sfile, self.art.config.get("scores_key"))
                return arr if tuple(arr.shape) == (self.docs, self.seq_len) else None
        except IfguideError:
            return None
        return None

    def wants_scores(self, requested: bool) -> bool:
        """Whether scores are shown: when requested and still available (a note says so when they are gone)."""
        if requested and self.scores is None:
            warn(SCORES_GONE)
        return requested and self.scores is not None

    def decode(self, ids: np.ndarray) -> list[str]:
        """One string per token, whose concatenation is the ids decoded whole (see `whole_pieces`)."""
        tok = self.tokenizer
        if tok is None:
            return [f"#{int(i)}" for i in ids]
        return whole_pieces(tok, [int(i) for i in ids])

    def view(self, doc: int, with_scores: bool = False) -> DocView:
        row_mask = np.asarray(self.mask[doc], dtype=bool)
        if "attention_mask" in self.arrays:
            positions = np.flatnonzero(np.asarray(self.arrays["attention_mask"][doc]))
        else:
            positions = np.arange(self.seq_len)
        token_ids = None
        if "input_ids" in self.arrays:
            token_ids = np.asarray(self.arrays["input_ids"][doc])[positions].astype(np.int64)
            pieces = self.decode(token_ids)
        else:
            pieces = [f"#{int(p)}" for p in positions]
        scores = None
        if with_scores and self.scores is not None:
            scores = np.asarray(self.scores[doc], dtype=np.float64)[positions]
        source = self.sources.source(doc) if self.sources is not None else None
        return DocView(doc, int(self.rank_of[doc]), positions, token_ids, pieces, row_mask[positions], scores,
                       self.stats(doc), source)

    def top_views(self, n: int, with_scores: bool = False) -> list[DocView]:
        """The first n documents of the ranking, as shown."""
        return [self.view(int(self.ranking[r]), with_scores=with_scores) for r in range(min(n, self.docs))]

    def doc_json(self, v: DocView) -> dict[str, Any]:
        """The `mask show --json` object: the mask, its dataset and τ, then the document."""
        return {"mask": self.art.id, "dataset": self.dataset.id if self.dataset is not None else None,
                "threshold_value": self.summary.get("threshold_value"), **v.to_json()}

    def find(self, needle: str, start_rank: int = 0, limit: int = 5000, backwards: bool = False) -> int | None:
        """The first rank from `start_rank` (inclusive) whose decoded text contains `needle` (case-insensitive).

        A needle like `#123` (or a bare number without a tokenizer) also matches token id 123. At most `limit`
        documents are decoded.
        """
        needle_l = needle.lower()
        token_id = int(needle[1:]) if needle.startswith("#") and needle[1:].isdigit() else None
        step = -1 if backwards else 1
        rank = start_rank
        for _ in range(min(limit, self.docs)):
            if not 0 <= rank < self.docs:
                return None
            doc = int(self.ranking[rank])
            if token_id is not None and "input_ids" in self.arrays:
                if (np.asarray(self.arrays["input_ids"][doc]) == token_id).any():
                    return rank
            else:
                v = self.view(doc)
                if needle_l in "".join(v.pieces).lower():
                    return rank
            rank += step
        return None

    def header(self, v: DocView) -> str:
        s = v.stats
        parts = [f"document {v.doc}"]
        if v.source is not None:
            parts.append(_where(v.source))
        parts += [f"rank {v.rank} of {self.docs}", f"{s['masked_tokens']} of {len(v.pieces)} tokens masked"]
        if "tokens_above_threshold" in s:
            parts.append(f"{s['tokens_above_threshold']} above τ={self.summary.get('threshold_value', float('nan')):.4g}")
        if "harmonic" in s:
            parts.append(f"h={s['harmonic']:.3f}")
        if s.get("planted_toxic") is not None:
            parts.append("planted toxic" if s["planted_toxic"] else "clean")
        elif s.get("label") is not None:
            parts.append(f"labelled {self.label_field}" if s["label"] else f"not labelled {self.label_field}")
        return " · ".join(parts)


def _where(source: dict[str, Any]) -> str:
    """FILE:LINE of a row, with the share of its document it holds (or how many documents a packed row holds)."""
    pieces = source.get("pieces")
    if pieces is not None and len(pieces) > 1:
        return f"{source['where']} and {len(pieces) - 1} more document(s)"
    part = "" if source["char_start"] == 0 and source["char_end"] == source["doc_chars"] else \
        f" (characters {source['char_start']:,}–{source['char_end']:,} of {source['doc_chars']:,})"
    return source["where"] + part


def whole_pieces(decode_batch, ids: list[int]) -> list[str]:
    """Token-by-token text that never splits a character: a token whose bytes end inside a multi-byte character
    is decoded together with the tokens that complete it, and the text goes to the last of them ("" before).

    `decode_batch(list of id lists) -> list of str`. The pieces join to the ids decoded as one sequence.
    """
    singles = decode_batch([[i] for i in ids])
    out: list[str] = []
    i = 0
    while i < len(ids):
        if _INCOMPLETE not in singles[i]:
            out.append(singles[i])
            i += 1
            continue
        j, text = i + 1, singles[i]
        while _INCOMPLETE in text and j < min(len(ids), i + _MAX_SPLIT):
            j += 1
            text = decode_batch([ids[i:j]])[0]
        out += [""] * (j - i - 1) + [text]
        i = j
    return out


_INCOMPLETE = "\ufffd"  # what decoding a token that holds part of a character gives
_MAX_SPLIT = 8  # a character's bytes span at most this many tokens (4 bytes; emoji sequences a few more)


def _tokenizer_json(tok: str) -> Path | None:
    from ifguide_cli.core.registry import tiny_asset

    if tok == "tiny":
        return tiny_asset("tokenizer.json")
    if Path(tok).expanduser().is_dir():
        path = Path(tok).expanduser() / "tokenizer.json"
        return path if path.is_file() else None
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(tok, "tokenizer.json")
    except Exception:  # not a valid repo id, or no hub client: fall back to transformers
        return None
    return Path(cached) if isinstance(cached, str) else None


def _decoder(tok: str):
    """A function list of id lists → one decoded string each."""
    path = _tokenizer_json(tok)
    if path is not None:
        from tokenizers import Tokenizer

        fast = Tokenizer.from_file(str(path))
        return lambda seqs: fast.decode_batch(seqs, skip_special_tokens=False)
    from ifguide_cli.core.models import ModelRef, load_tokenizer

    hf = load_tokenizer(ModelRef(tok, "dataset", tok, tok))
    return lambda seqs: hf.batch_decode(seqs, clean_up_tokenization_spaces=False)


# ---- renderers ---------------------------------------------------------------------------
# The columns listing ranked documents (`mask select`, `mask browse`): header and cell of a `MaskInspector.top` row.
_RANK_COLUMNS: tuple[tuple[str, Any], ...] = (
    ("rank", lambda r: str(r["rank"])),
    ("doc", lambda r: str(r["doc"])),
    ("masked", lambda r: str(r["masked_tokens"])),
    ("above τ", lambda r: str(r.get("tokens_above_threshold", ""))),
    ("strength", lambda r: f"{r.get('strength', float('nan')):.4g}"),
    ("h", lambda r: f"{r.get('harmonic', float('nan')):.3f}"),
    ("planted", lambda r: "yes" if r.get("planted_toxic") else ""),
    ("labelled", lambda r: "yes" if r.get("label") else ""),
    ("source", lambda r: os.path.basename(r.get("where", ""))),
)


def ranked_table(rows: list[dict[str, Any]], without: tuple[str, ...] = ()) -> tuple[list[str], list[list[str]]]:
    """(headers, text cells) of ranked documents; `planted` (the tiny corpus) or `labelled` (a --label-field) only
    when the dataset has those labels, `source` when rows carry their FILE:LINE."""
    first = rows[0] if rows else {}
    shown = {"planted": "planted_toxic" in first, "labelled": "label" in first and "planted_toxic" not in first,
             "source": "where" in first}
    columns = [(head, cell) for head, cell in _RANK_COLUMNS if head not in without and shown.get(head, True)]
    return [head for head, _ in columns], [[cell(r) for _, cell in columns] for r in rows]


def _heat(scores: np.ndarray) -> np.ndarray:
    """Scores → [-1, 1] by the document's largest |score| (0 where all are 0)."""
    scale = float(np.max(np.abs(scores))) if scores.size else 0.0
    return scores / scale if scale > 0 else np.zeros_like(scores)


def _heat_rgb(h: float) -> tuple[int, int, int]:
    """Positive scores: dark → amber; negative: dark → blue."""
    h = max(-1.0, min(1.0, h))
    if h >= 0:
        return int(40 + 215 * h), int(40 + 150 * h), 40
    return 40, int(40 + 60 * -h), int(40 + 200 * -h)


def rich_text(v: DocView, heat: bool = False, search: str | None = None):
    """A rich Text: masked tokens red (bold white on red; bold red on the score heat with `heat`)."""
    from rich.color import Color
    from rich.style import Style
    from rich.text import Text

    text = Text()
    heats = _heat(v.scores) if heat and v.scores is not None else None
    for i, piece in enumerate(v.pieces):
        style = Style()
        if heats is not None:
            style += Style(bgcolor=Color.from_rgb(*_heat_rgb(float(heats[i]))))
            if v.masked[i]:
                style += Style(color="bright_red", bold=True, underline=True)
        elif v.masked[i]:
            style += Style(color="bright_white", bgcolor="red", bold=True)
        text.append(piece, style=style)
    if search:
        text.highlight_words([search], style=Style(reverse=True), case_sensitive=False)
    return text


def plain_text(v: DocView) -> str:
    """Plain text with masked spans between [[ and ]] (for pipes and files)."""
    out = []
    inside = False
    for piece, m in zip(v.pieces, v.masked, strict=True):
        if m and not inside:
            out.append(PLAIN_OPEN)
            inside = True
        elif not m and inside:
            out.append(PLAIN_CLOSE)
            inside = False
        out.append(piece)
    if inside:
        out.append(PLAIN_CLOSE)
    return "".join(out)


_HTML_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:60em;color:#222;background:#fafafa}
h1{font-size:1.4em} table.sum{border-collapse:collapse;margin-bottom:1.5em} table.sum td{padding:2px 12px;border-bottom:1px solid #ddd}
section{background:#fff;border:1px solid #ddd;border-radius:6px;padding:1em;margin:1em 0}
section h2{font-size:1em;margin:0 0 .6em 0;color:#555;font-weight:600}
.doc{font-family:ui-monospace,Menlo,Consolas,monospace;white-space:pre-wrap;line-height:1.6;font-size:.9em}
.m{background:#d62728;color:#fff;border-radius:2px}
.heat .m{background:none;color:#b00;font-weight:700;text-decoration:underline}
.legend span{padding:0 .4em;margin-right:.5em}
"""


def _html_token(piece: str, masked: bool, heat: float | None, score: float | None) -> str:
    esc = html.escape(piece)
    attrs = []
    if masked:
        attrs.append('class="m"')
    if heat is not None:
        if heat >= 0:
            bg = f"rgba(255,165,0,{min(1.0, heat):.3f})"
        else:
            bg = f"rgba(60,120,255,{min(1.0, -heat):.3f})"
        attrs.append(f'style="background-color:{bg}"')
    if score is not None:
        attrs.append(f'title="{score:.4g}"')
    if not attrs:
        return esc
    return f"<span {' '.join(attrs)}>{esc}</span>"


def _selection_rows(s: dict) -> dict:
    """How the mask chose its tokens, in its source's own terms: Alg. 1's quantile, τ and window for influence; the
    classifier, level, spans and score threshold; or the word list."""
    source = s.get("source", "influence")
    if source == "classifier":
        return {"source": f"classifier {s.get('classifier')} ({s.get('level')})", "score threshold": s.get("threshold"),
                "span window / stride": f"{s.get('window')} / {s.get('stride')}" if s.get("window") else "-"}
    if source == "wordlist":
        return {"source": "word list", "word list": s.get("wordlist"), "words": s.get("wordlist_words")}
    return {"source": "influence", "quantile p": s.get("threshold"), "threshold τ": s.get("threshold_value"),
            "window w": s.get("window")}


def html_page(inspector: MaskInspector, views: list[DocView], heat: bool = False) -> str:
    """A self-contained HTML page (inline CSS, no scripts or external resources) of the given documents."""
    s = inspector.summary
    rows = {"mask": inspector.art.id, "dataset": inspector.art.config.get("dataset") or "-", **_selection_rows(s),
        "token budget": s.get("max_tokens"),
        "tokens selected": s.get("tokens_selected"),
        "documents selected": s.get("documents_selected"),
        "budget used": s.get("budget_used"),
    }
    if "planted_precision_at_k" in s:
        rows["planted precision@k"] = s["planted_precision_at_k"]
    if s.get("label_field"):
        rows[f"labelled documents ({s['label_field']})"] = f"{s.get('label_positive_documents')} of {s.get('label_documents')}"
        for key, label in (("label_base_rate", "label base rate"), ("label_precision_at_k", "label precision@k"),
                           ("label_auc", "label AUC")):
            rows[label] = s.get(key)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>ifguide mask {html.escape(inspector.art.id)}</title>",
        f"<style>{_HTML_STYLE}</style></head><body>",
        f"<h1>Toxic-token mask {html.escape(inspector.art.id)}</h1>",
        '<table class="sum">' + "".join(
            f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(_fmt(v))}</td></tr>" for k, v in rows.items()) + "</table>",
        '<p class="legend"><span class="m">masked token</span>'
        + (' background: score heat (<span style="background:rgba(255,165,0,.8)">high</span>'
           '<span style="background:rgba(60,120,255,.6)">negative</span>; hover for the score)' if heat else "")
        + "</p>",
    ]
    for v in views:
        heats = _heat(v.scores) if heat and v.scores is not None else None
        body = "".join(
            _html_token(p, bool(m), None if heats is None else float(heats[i]),
                        None if v.scores is None else float(v.scores[i]))
            for i, (p, m) in enumerate(zip(v.pieces, v.masked, strict=True)))
        parts.append(f'<section id="rank-{v.rank}"><h2>{html.escape(inspector.header(v))}</h2>'
                     f'<div class="doc{" heat" if heats is not None else ""}">{body}</div></section>')
    parts.append("</body></html>")
    return "\n".join(parts)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "-" if v is None else str(v)
