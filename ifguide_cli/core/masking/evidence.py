"""What a cheap mask source found in the rows, token by token: the input of the budgeted walk (`select_marked`).

- classifier, token level: spans of `window` text tokens every `stride` tokens (the last one flush with the
  document's end, so every token is scored) within each document part of a row; a span scoring at least the
  threshold is flagged and its tokens marked. A token's score is the highest of the spans covering it.
- classifier, document level: each source document scored whole (the text of all its rows, in order); a
  flagged document has every text token marked, in every row it spans.
- word list: the tokens of every match, and the number of matches.

Each row's rank key is its highest token score (classifier) or its number of matches (word list); its
strength is the sum of its marked tokens' scores (classifier) or its number of matches (word list).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.masking.row_text import RowText, Segment
from ifguide_cli.core.masking.source_config import ClassifierMaskConfig
from ifguide_cli.core.masking.wordlist import WordList, matched_tokens
from ifguide_cli.core.progress import NULL

BATCH_TEXTS = 4096  # texts handed to the classifier at once

Targets = list[tuple[int, np.ndarray]]  # (row, token positions) that a text's score goes to


@dataclass
class Evidence:
    """Per token: marked or not, and a score; per row: the rank key and the strength; and what was counted."""

    marks: np.ndarray  # bool (rows, seq_len)
    scores: np.ndarray  # float32 (rows, seq_len): the classifier's score per token (0 where there is none)
    key: np.ndarray  # float64 (rows,)
    strength: np.ndarray  # float64 (rows,)
    text_tokens: int = 0  # the tokens any text was read from (the positions counted)
    stats: dict = field(default_factory=dict)

    @classmethod
    def empty(cls, shape: tuple[int, int]) -> Evidence:
        return cls(np.zeros(shape, dtype=bool), np.zeros(shape, dtype=np.float32), np.zeros(shape[0]), np.zeros(shape[0]))


class _Scorer:
    """Classifies texts in batches and hands each score to the tokens the text covers."""

    def __init__(self, ev: Evidence, classify: Callable[[list[str]], list[float]], threshold: float):
        self.ev, self.classify, self.threshold = ev, classify, threshold
        self.texts: list[str] = []
        self.targets: list[Targets] = []
        self.scored = self.flagged = 0

    def add(self, text: str, targets: Targets) -> None:
        if not text.strip():
            return
        self.texts.append(text)
        self.targets.append(targets)
        if len(self.texts) >= BATCH_TEXTS:
            self.flush()

    def flush(self) -> None:
        scores = self.classify(self.texts) if self.texts else []
        bad = [t for t, v in zip(self.texts, scores, strict=True) if not np.isfinite(v)]
        if bad:
            raise IfguideError(f"the classifier scored {len(bad)} text(s) NaN or inf, e.g. {bad[0][:60]!r}",
                               hint="check the classifier's weights (a --classifier-path folder or a registered one)")
        for score, targets in zip(scores, self.targets, strict=True):
            flagged = score >= self.threshold
            for row, positions in targets:
                cells = self.ev.scores[row, positions]
                self.ev.scores[row, positions] = np.maximum(cells, score)
                if flagged:
                    self.ev.marks[row, positions] = True
            self.flagged += flagged
        self.scored += len(self.texts)
        self.texts, self.targets = [], []


def span_bounds(n: int, window: int, stride: int) -> list[tuple[int, int]]:
    """[start, end) of the spans over n tokens: every `stride` tokens, the last flush with the end."""
    if n <= window:
        return [(0, n)]
    starts = list(range(0, n - window + 1, stride))
    if starts[-1] + window < n:
        starts.append(n - window)
    return [(a, a + window) for a in starts]


def _segments(text: RowText, reporter, what: str) -> Iterator[Segment]:
    rows = text.shape[0]
    with reporter.task(what, total=rows) as task:
        for row in range(rows):
            yield from text.segments(row)
            task.advance(1)


def _documents(segments: Iterator[Segment]) -> Iterator[list[Segment]]:
    """Consecutive segments of one source document, grouped (a document's rows follow each other)."""
    group: list[Segment] = []
    for seg in segments:
        if group and seg.doc != group[-1].doc:
            yield group
            group = []
        group.append(seg)
    if group:
        yield group


def classifier_evidence(text: RowText, classify: Callable[[list[str]], list[float]], config: ClassifierMaskConfig,
                        reporter=NULL) -> Evidence:
    """Spans (token level) or documents (document level) scored by `classify` (texts → one score each)."""
    ev = Evidence.empty(text.shape)
    scorer = _Scorer(ev, classify, config.threshold)
    unit = "documents" if config.level == "document" else "spans"
    segments = _segments(text, reporter, f"classifying {unit}")
    if config.level == "document":
        for doc in _documents(segments):
            ev.text_tokens += sum(s.positions.size for s in doc)
            scorer.add("".join(s.text for s in doc), [(s.row, s.positions) for s in doc])
    else:
        for seg in segments:
            ev.text_tokens += seg.positions.size
            for a, b in span_bounds(seg.positions.size, config.window, config.stride):
                scorer.add("".join(seg.pieces[a:b]), [(seg.row, seg.positions[a:b])])
    scorer.flush()
    ev.key = ev.scores.max(axis=1).astype(np.float64)
    ev.strength = np.where(ev.marks, ev.scores, 0).sum(axis=1, dtype=np.float64)
    ev.stats = {f"{unit}_scored": scorer.scored, f"{unit}_flagged": scorer.flagged}
    return ev


def wordlist_evidence(text: RowText, words: WordList, reporter=NULL) -> Evidence:
    """The tokens of every match of the word list, and the matches per row."""
    ev = Evidence.empty(text.shape)
    pattern = words.pattern()
    for seg in _segments(text, reporter, "searching the word list"):
        ev.text_tokens += seg.positions.size
        marked, count = matched_tokens(seg.offsets, pattern, seg.text)
        ev.marks[seg.row, seg.positions[marked]] = True
        ev.key[seg.row] += count
    ev.strength = ev.key.copy()
    ev.stats = {"matches": int(ev.key.sum()), "documents_matched": int(np.count_nonzero(ev.key))}
    return ev
