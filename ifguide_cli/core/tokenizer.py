"""Tokenizers: what `--tokenizer` names, how it is loaded and fingerprinted, and training one on a corpus.

`--tokenizer` takes `tiny` (the packaged BPE), a tokenizer artifact (id, name, `latest`), a local folder
(save_pretrained) or a hub id, resolved in that order like a model. `ifguide tokenizer train` fits a
byte-level BPE (the `tokenizers` library, GPT-2/Pythia style: every byte is in the alphabet, so no text is
ever unknown) on a corpus streamed in batches, and stores it as a `transformers` folder inside a
`tokenizers` artifact whose config is the corpus's identity: the same corpus and settings reuse it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ifguide_cli.core.config import Config, param
from ifguide_cli.core.errors import ArtifactNotFound, IfguideError
from ifguide_cli.core.progress import NULL, Reporter
from ifguide_cli.core.stage import ArtifactKey, Result, Stage, run_stage

if TYPE_CHECKING:
    from ifguide_cli.core.store.workspace import BuildContext, Workspace

EOS = "<|endoftext|>"  # end of document; also BOS/UNK (byte-level BPE never needs UNK), as in the tiny tokenizer
PAD = "<|padding|>"  # padding of document rows, distinct from EOS (Pythia's name for it)
TOKENIZER_DIR = "tokenizer"  # the transformers folder inside a tokenizers artifact
MEASURE_DOCUMENTS = 10_000  # documents the tokens-per-document comparison reads
_BATCH = 1000
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "tokenizer.model")


@dataclass(frozen=True)
class TokenizerRef:
    """A tokenizer the user named. `name` is what stage configs record: `tiny`, a folder's absolute path, a hub id."""

    name: str
    source: str  # builtin | artifact | folder | hub
    artifact_id: str | None = None

    @property
    def parents(self) -> list[str]:
        return [self.artifact_id] if self.artifact_id else []

    def load(self):
        """The tokenizer (a pad token is set to EOS when it has none)."""
        from ifguide_cli.core.models import ModelRef, load_tokenizer

        return load_tokenizer(ModelRef(self.name, "tokenizer", self.name, self.name))

    def fingerprint(self) -> str | None:
        return tokenizer_fingerprint(self.name)


def resolve_tokenizer(ref: str, ws: Workspace | None = None) -> TokenizerRef:
    """`tiny` → tokenizer artifact → local folder → hub id, with one line saying what is wrong otherwise."""
    if ref == "tiny":
        return TokenizerRef("tiny", "builtin")
    if ws is not None:
        try:
            art = ws.resolve(ref, "tokenizers")
        except ArtifactNotFound:
            art = None
        if art is not None:
            return TokenizerRef(str((art.path / TOKENIZER_DIR).resolve()), "artifact", art.id)
    path = Path(ref).expanduser()
    if path.is_dir():
        if not any((path / f).is_file() for f in _TOKENIZER_FILES):
            raise IfguideError(f"{ref} is not a tokenizer folder (no tokenizer.json or tokenizer_config.json)",
                               hint="pass a folder written by save_pretrained, `tiny`, a tokenizer artifact or a hub id",
                               exit_code=2)
        return TokenizerRef(str(path.resolve()), "folder")
    if path.exists():
        raise IfguideError(f"--tokenizer {ref} is a file", hint="pass the folder that holds it (save_pretrained layout)",
                           exit_code=2)
    if "/" in ref and not ref.startswith((".", "/", "~")):
        return TokenizerRef(ref, "hub")
    raise IfguideError(f"unknown tokenizer {ref!r}",
                       hint="use tiny, a tokenizer artifact (`ifguide tokenizer train`), a local folder or a hub id",
                       exit_code=2)


def tokenizer_fingerprint(name: str) -> str | None:
    """sha256 of the packaged or local tokenizer files (hub tokenizers are pinned by their id)."""
    from ifguide_cli.core.registry import tiny_asset
    from ifguide_cli.core.store.workspace import sha256_file

    if name == "tiny":
        return sha256_file(tiny_asset("tokenizer.json"))
    folder = Path(name)
    if folder.is_dir():
        return "".join(sha256_file(folder / n)[:16] for n in _TOKENIZER_FILES if (folder / n).is_file()) or None
    return None


# ---- training ------------------------------------------------------------------------------
@dataclass(frozen=True)
class TokenizerTrainConfig(Config):
    vocab_size: int = param(4096, "Vocabulary size, special tokens included (at least 258: 256 bytes + 2 special tokens). "
                                  "4096 suits thousands to a few 100k short documents and small models; raise it for "
                                  "larger corpora.", low=258, high=1_000_000)
    min_frequency: int = param(2, "A merge is learned only from a pair seen at least this often.", low=1)
    text_field: str = param("text", "Field holding the text (for `text`, a `content` or `document` field also works).")
    max_examples: int | None = param(None, "Train on at most this many documents (the first ones).", low=1)
    split: str | None = param(None, "Split of a hub dataset or save_to_disk folder.")


@dataclass(frozen=True)
class TokenizerRefs:
    """What `ifguide tokenizer train` is given: CORPUS (a local file or folder, registry dataset or hub id) and its split."""

    corpus: str
    split: str | None = None


@dataclass(frozen=True)
class TokenizerInputs:
    """The corpus to train on, resolved (its identity is part of the key)."""

    ref: str
    source: Any  # data.sources.Source


@dataclass(frozen=True, kw_only=True)
class TokenizerKey(ArtifactKey):
    """What identifies a trained tokenizer: the corpus, the training settings, the model and its special tokens."""

    kind: ClassVar[str] = "tokenizers"
    data: dict[str, Any]
    vocab_size: int
    min_frequency: int
    text_field: str
    max_examples: int | None
    split: str | None
    model: str = "byte-level BPE"
    special_tokens: tuple[str, ...] = (EOS, PAD)


class TokenizerStage(Stage[TokenizerRefs, TokenizerInputs, TokenizerTrainConfig, dict[str, Any]]):
    """`ifguide tokenizer train`: a byte-level BPE trained on CORPUS, stored as a `tokenizers` artifact."""

    kind = "tokenizers"

    def __init__(self, reporter: Reporter = NULL):
        self.reporter = reporter

    def inputs(self, ws: Workspace, refs: TokenizerRefs) -> TokenizerInputs:
        from ifguide_cli.core.data.sources import Source

        return TokenizerInputs(refs.corpus, Source(refs.corpus, refs.split))

    def key(self, inputs: TokenizerInputs, config: TokenizerTrainConfig) -> TokenizerKey:
        return TokenizerKey(data=inputs.source.identity, **config.to_dict())

    def describe(self, inputs: TokenizerInputs, config: TokenizerTrainConfig) -> str:
        return f"train a {config.vocab_size:,}-token byte-level BPE on {inputs.ref}"

    def build(self, ctx: BuildContext, inputs: TokenizerInputs, config: TokenizerTrainConfig) -> dict[str, Any]:
        from transformers import PreTrainedTokenizerFast

        source = inputs.source
        with ctx.timed("train"):
            trained, read = _train_bpe(source, config, self.reporter)
        fast = PreTrainedTokenizerFast(tokenizer_object=trained, bos_token=EOS, eos_token=EOS, unk_token=EOS, pad_token=PAD)
        fast.save_pretrained(str(ctx.staging / TOKENIZER_DIR))
        with ctx.timed("measure"):
            per_doc = tokens_per_document(_texts(source, config, MEASURE_DOCUMENTS), {"trained": fast, "tiny": _tiny()})
        summary = {"vocab_size": trained.get_vocab_size(), "requested_vocab_size": config.vocab_size, **read,
                   "source": inputs.ref, "tokens_per_document": per_doc["trained"],
                   "tiny_tokens_per_document": per_doc["tiny"], "measured_documents": per_doc["documents"]}
        if summary["vocab_size"] < config.vocab_size:
            from ifguide_cli.core.notes import warn

            warn(f"the corpus yields only {summary['vocab_size']:,} tokens at --min-frequency {config.min_frequency} "
                 f"(asked {config.vocab_size:,}); a model trained with this tokenizer gets that vocabulary")
        return summary


def train_tokenizer(ws: Workspace, corpus_ref: str, config: TokenizerTrainConfig, *, name: str | None = None, force: bool = False,
                    reporter=NULL) -> Result[dict[str, Any]]:
    """The `tokenizers` artifact of a byte-level BPE trained on CORPUS (reused when identical)."""
    stage = TokenizerStage(reporter)
    inputs = stage.inputs(ws, TokenizerRefs(corpus_ref, config.split))
    return run_stage(ws, stage, inputs, config, name=name, force=force)


def _train_bpe(source, config: TokenizerTrainConfig, reporter):
    """Fit the BPE on the corpus streamed in batches; returns (tokenizers.Tokenizer, {documents, characters})."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    from ifguide_cli.core.data.layout import batched

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)  # the tiny tokenizer's pipeline
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=config.vocab_size, min_frequency=config.min_frequency,
                                  special_tokens=[EOS, PAD], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    read = {"documents": 0, "characters": 0}

    def batches() -> Iterator[list[str]]:
        with reporter.task("reading documents") as task:
            for batch in batched(_texts(source, config, config.max_examples), _BATCH):
                read["documents"] += len(batch)
                read["characters"] += sum(map(len, batch))
                task.advance(len(batch))
                yield batch

    tok.train_from_iterator(batches(), trainer=trainer)
    if read["documents"] == 0:
        raise IfguideError(f"{source.file} has no document with text", hint="check --text-field", exit_code=2)
    return tok, read


def _texts(source, config: TokenizerTrainConfig, limit: int | None) -> Iterator[str]:
    """The non-empty texts of the corpus, in order (at most `limit`)."""
    from ifguide_cli.core.data.sources import iter_documents

    n = 0
    for doc in iter_documents(source, config.text_field):
        if limit is not None and n >= limit:
            return
        if doc.text.strip():
            n += 1
            yield doc.text


def _tiny():
    return TokenizerRef("tiny", "builtin").load()


def tokens_per_document(texts, tokenizers: dict) -> dict:
    """Mean tokens per document (no special tokens) of each named tokenizer over the same texts, in batches."""
    from ifguide_cli.core.data.layout import batched

    totals = dict.fromkeys(tokenizers, 0)
    n = 0
    for batch in batched(texts, _BATCH):
        for key, tok in tokenizers.items():
            totals[key] += sum(map(len, tok(batch, add_special_tokens=False)["input_ids"]))
        n += len(batch)
    return {**{k: (round(v / n, 2) if n else None) for k, v in totals.items()}, "documents": n}
