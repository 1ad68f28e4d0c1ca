"""A user's word list: read safely, matched in text at word boundaries, and turned into marked tokens.

A word (or phrase) matches case-insensitively where no letter, digit or underscore touches it on either side,
so `ass` does not match inside `class`; the words of a phrase may be separated by any whitespace. Every token
whose text overlaps a match is marked, so a word cut into several tokens is marked whole.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ifguide_cli.core.errors import IfguideError

MAX_BYTES = 16 << 20  # a word list larger than this is not a word list
_HINT = "pass a UTF-8 text file with one word or phrase per line (lines starting with # are comments)"


@dataclass(frozen=True)
class WordList:
    """The words, lower-cased and without repeats, in the file's order, and what identifies them."""

    path: Path
    words: tuple[str, ...]

    @property
    def sha256(self) -> str:
        """The identity of the words themselves: comments, order, case and repeats do not change it."""
        return hashlib.sha256("\n".join(sorted(self.words)).encode("utf-8")).hexdigest()

    def pattern(self) -> re.Pattern:
        """One regular expression for every word; longer words first, so a phrase wins over its first word."""
        alternatives = [r"\s+".join(map(re.escape, w.split())) for w in sorted(self.words, key=len, reverse=True)]
        return re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)", re.IGNORECASE)


def load_wordlist(path: str) -> WordList:
    """The word list in FILE; one line naming the file for a missing, unreadable, binary or empty one."""
    file = Path(path).expanduser()
    if not file.exists():
        raise IfguideError(f"word list not found: {path}", hint=_HINT, exit_code=2)
    if not file.is_file():
        raise IfguideError(f"word list {path} is not a file", hint=_HINT, exit_code=2)
    if file.stat().st_size > MAX_BYTES:
        raise IfguideError(f"word list {path} is larger than {MAX_BYTES >> 20} MB", hint=_HINT, exit_code=2)
    raw = file.read_bytes()
    binary = IfguideError(f"word list {path} is not UTF-8 text (a binary file?)", hint=_HINT, exit_code=2)
    if b"\x00" in raw:
        raise binary
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise binary from None
    lines = (" ".join(line.split()).lower() for line in text.splitlines())
    words = tuple(dict.fromkeys(w for w in lines if w and not w.startswith("#")))
    if not words:
        raise IfguideError(f"word list {path} has no words", hint=_HINT, exit_code=2)
    return WordList(file.resolve(), words)


def matched_tokens(offsets: np.ndarray, pattern: re.Pattern, text: str) -> tuple[np.ndarray, int]:
    """(which tokens overlap a match, how many matches) for a text whose token i spans offsets[i]:offsets[i+1].

    A token with no text of its own (the first bytes of a character split across tokens) counts where it
    stands: it is marked when the character it begins lies in a match.
    """
    lo, hi = offsets[:-1], offsets[1:]
    marked = np.zeros(lo.shape, dtype=bool)
    count = 0
    for match in pattern.finditer(text):
        s, e = match.span()
        marked |= ((lo < e) & (hi > s)) | ((lo == hi) & (lo >= s) & (lo < e))
        count += 1
    return marked, count
