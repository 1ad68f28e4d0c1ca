"""A held-out split of the user's own corpus (`--heldout N|FRACTION`): documents kept out of every training row, so
the model's fluency and toxicity can be measured on text like its corpus that it never saw, with no guess about
which data to evaluate on.

The documents are drawn with a fixed seed, per label when the corpus has a label field (each label keeps its share,
at least one document of a label that has any), so the rude documents a corpus holds are represented among the
prompts. The dataset artifact keeps them in `heldout.jsonl` ({"text", "line", and the label field}) — the default
perplexity text of a model trained on it — and their prefixes in `heldout_prompts.jsonl` ({"prompt", "toxic"},
`toxic` from the label) — its default toxicity prompts, split by label.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from ifguide_cli.core.data.sources import SourceDoc
from ifguide_cli.core.errors import IfguideError

HELDOUT_FILE = "heldout.jsonl"
HELDOUT_PROMPTS_FILE = "heldout_prompts.jsonl"
HELDOUT_SEED = 0
PROMPT_WORDS = 20  # a prompt is the first half of a held-out document, at most this many words
MIN_PROMPT_WORDS = 4  # a document shorter than twice this gives no prompt


def heldout_size(value: float, documents: int) -> int:
    """How many of `documents` to hold out: `value` documents when ≥ 1, else that share (rounded, at least 1)."""
    if value >= 1:
        if value != int(value):
            raise IfguideError(f"--heldout {value:g}: a count of documents is a whole number (a share is below 1)",
                               exit_code=2)
        count = int(value)
    else:
        count = max(1, round(value * documents))
    if count >= documents:
        raise IfguideError(f"--heldout {value:g} holds out {count:,} of the corpus's {documents:,} documents: none "
                           "would be left to train on", hint="hold out fewer (e.g. --heldout 0.05)", exit_code=2)
    return count


_LABEL_CODES = {None: -1, False: 0, True: 1}  # a document's label in one byte


def choose_heldout(codes, value: float) -> set[int]:
    """The indices of the documents to hold out: seeded, each label keeping its share. `codes`: each document's label
    as its `_LABEL_CODES` code (an int8 array, one byte per document)."""
    import numpy as np

    total = heldout_size(value, len(codes))
    rng = random.Random(HELDOUT_SEED)
    chosen: set[int] = set()
    for label in sorted(_LABEL_CODES, key=str):
        members = np.flatnonzero(codes == _LABEL_CODES[label])  # this label's documents, in order
        if len(members):
            k = min(len(members), max(1, round(total * len(members) / len(codes))))
            # random.sample picks positions: the same documents as sampling the list of them
            chosen.update(int(members[j]) for j in rng.sample(range(len(members)), k))
    return chosen


def prompt_of(text: str) -> str | None:
    """The prefix of a held-out document a model is asked to continue: its first half, at most PROMPT_WORDS words."""
    words = text.split()
    if len(words) < 2 * MIN_PROMPT_WORDS:
        return None
    return " ".join(words[:min(PROMPT_WORDS, len(words) // 2)])


def split_heldout(documents: Callable[[], Iterable[SourceDoc]], value: float, folder: Path,
                  label_field: str | None) -> tuple[Iterator[SourceDoc], dict]:
    """(the training documents, a summary filled in as they are read): the held-out ones are written to `folder`."""
    import numpy as np

    codes = np.fromiter((_LABEL_CODES[doc.label] for doc in documents()), dtype=np.int8)  # a byte per document
    chosen = choose_heldout(codes, value)
    summary = {"heldout": value, "heldout_seed": HELDOUT_SEED, "heldout_documents": len(chosen), "heldout_prompts": 0,
               "heldout_toxic_prompts": 0}

    def training() -> Iterator[SourceDoc]:
        with open(folder / HELDOUT_FILE, "w", encoding="utf-8") as held, \
                open(folder / HELDOUT_PROMPTS_FILE, "w", encoding="utf-8") as prompts:
            for i, doc in enumerate(documents()):
                if i not in chosen:
                    yield doc
                    continue
                record = {"text": doc.text, "line": doc.line, **({label_field: doc.label} if label_field else {})}
                held.write(json.dumps(record, ensure_ascii=False) + "\n")
                prompt = prompt_of(doc.text)
                if prompt is not None:
                    prompts.write(json.dumps({"prompt": prompt, "toxic": doc.label}, ensure_ascii=False) + "\n")
                    summary["heldout_prompts"] += 1
                    summary["heldout_toxic_prompts"] += bool(doc.label)

    return training(), summary
