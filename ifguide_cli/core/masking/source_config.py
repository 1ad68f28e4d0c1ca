"""The parameters of the cheap mask sources (a toxicity classifier, a word list), declared once, and their
registry entries (`extensions.MASK_SOURCES`).

They share Alg. 1's token budget (`token_budget`), so `--max-tokens` selects the same way whatever found
the tokens. The classifier's weight options (`--classifier-checkpoint/-base/-path/-batch-size`) are those
`ifguide eval` takes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ifguide_cli.core.classifiers.spec import ClassifierOptions
from ifguide_cli.core.config import Config, param
from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.masking.config import token_budget
from ifguide_cli.core.masking.source import MaskSourceEntry


@dataclass(frozen=True)
class ClassifierMaskConfig(ClassifierOptions):
    """Which classifier flags what (whole documents, or spans of tokens), and the token budget."""

    classifier: str = param("profanity", "Classifier: profanity (built in, works offline), detoxify-unbiased or another "
                                         "detoxify-*, toxigen-roberta, a name registered with `ifguide eval add-classifier`, "
                                         "or a local transformers folder.", complete="classifiers")
    level: Literal["document", "token"] = param(
        "token", "token: score spans of --window tokens every --stride tokens and mark the tokens of flagged spans; "
                 "document: score each source document whole and mark the tokens of flagged documents.")
    window: int = param(16, "Tokens per scored span (token level).", low=1)
    stride: int = param(8, "Tokens from one span's start to the next (token level; at most --window).", low=1)
    threshold: float = param(0.5, "Classifier score at or above which a span (or document) is flagged.", low=0.0, high=1.0)
    max_tokens: int = token_budget()
    device: str = param("auto", "Where the classifier runs: auto | cpu | cuda[:N].")

    def check(self) -> None:
        if self.stride > self.window:
            raise IfguideError(f"--stride {self.stride} is longer than --window {self.window}: spans would skip tokens",
                               hint=f"pass --stride {self.window} or less", exit_code=2)

    @property
    def spans(self) -> tuple[int, int] | None:
        """(window, stride) of the scored spans; None at document level, where they play no part."""
        return (self.window, self.stride) if self.level == "token" else None


@dataclass(frozen=True)
class WordlistMaskConfig(Config):
    """The user's word list and the token budget."""

    wordlist: str | None = param(None, "Text file (UTF-8), one word or phrase per line; blank lines and lines starting "
                                       "with # are skipped. Matched case-insensitively, at word boundaries.")
    max_tokens: int = token_budget()

    def check(self) -> None:
        if self.wordlist is None:
            raise IfguideError("--wordlist FILE is required", hint="pass a text file with one word or phrase per line",
                               exit_code=2)


_DATA_SOURCE_NOTE = ("The mask is an ordinary mask artifact: `mask show/browse/export`, `train --mask` and `finetune --mask` "
                     "take it, and --max-tokens selects as for `mask select` (documents in rank order, their marked "
                     "tokens left to right, until the budget).")
CLASSIFIER_SOURCE = MaskSourceEntry(
    "classifier", ClassifierMaskConfig, "ifguide_cli.core.masking.sources:ClassifierMaskStage", "data",
    command="classifier",
    help="Build a mask from a toxicity classifier: the tokens of flagged spans (--level token) or of flagged "
         "documents (--level document).\n\n" + _DATA_SOURCE_NOTE,
    examples=("ifguide mask classifier --data tiny --classifier profanity --name tiny-cls",
              "ifguide mask classifier --data tiny --level document --threshold 0.8",
              "ifguide mask classifier --data comments.jsonl --model pythia-160m --classifier detoxify-unbiased"))
WORDLIST_SOURCE = MaskSourceEntry(
    "wordlist", WordlistMaskConfig, "ifguide_cli.core.masking.sources:WordlistMaskStage", "data", command="wordlist",
    help="Build a mask from a word list: the tokens of every listed word or phrase (case-insensitive, at word "
         "boundaries); documents rank by their number of matches.\n\n" + _DATA_SOURCE_NOTE,
    examples=("ifguide mask wordlist --data tiny --wordlist slurs.txt --name tiny-words",
              "ifguide mask wordlist --data comments.jsonl --model pythia-160m --wordlist slurs.txt -L 100000"))
