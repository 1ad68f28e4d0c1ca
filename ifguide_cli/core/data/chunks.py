"""A reference subset of pre-tokenized chunks (owt-train-1b, owt-valid, owt-test) as a `datasets` artifact.

The paper trains, fits and scores on `ztcoalson/openwebtext-gptneox-2048-chunks`: OpenWebText already
tokenized with the Pythia tokenizer and packed into 2048-token chunks. Its rows are used as they are —
one chunk per row, in the reference's order, no re-tokenization and no padding — so the artifact is a
`packed` dataset whose row length is the chunk length. The layout options that shape text (documents,
overflow, text and label fields, split) do not apply and are refused in one line; `--max-examples N`
keeps the first N chunks. The artifact has no row source map (there is no text to point back to): a
row's source is the hub row the subset's index file names.
"""

from __future__ import annotations

from collections.abc import Iterator

from ifguide_cli.core.data.layout import CorpusConfig
from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.progress import NULL

_TEXT_OPTIONS = {"overflow": "--overflow", "label_field": "--label-field", "split": "--split"}


def check_chunk_options(ref: str, config: CorpusConfig) -> None:
    """One line for a layout option that cannot shape pre-tokenized chunks."""
    given = [flag for key, flag in _TEXT_OPTIONS.items() if getattr(config, key) is not None]
    given += ["--layout documents"] if config.layout == "documents" else []
    given += ["--text-field"] if config.text_field != "text" else []
    if given:
        raise IfguideError(f"{given[0]} does not apply to {ref}: it is a fixed set of pre-tokenized chunks, used as rows "
                           "as they are", hint=f"leave out {given[0]}", exit_code=2)


def chunk_length(ref: str) -> int:
    """Tokens per chunk, read off the subset's first row (cheap: the source is memory-mapped)."""
    from ifguide_cli.core.paper import subsets

    return int(next(subsets.token_blocks(ref, rows_per_block=1)).shape[1])


def chunk_config(ref: str, config: CorpusConfig, tokenizer_name: str, max_seq_len: int | None = None) -> CorpusConfig:
    """The `CorpusConfig` of a chunk subset's dataset artifact: packed rows of the chunk length, tokenized (already)
    for `tokenizer_name`. A different --seq-len, or chunks longer than the model's context (`max_seq_len`), are
    refused before anything is read whole."""
    check_chunk_options(ref, config)
    length = chunk_length(ref)
    if config.seq_len is not None and config.seq_len != length:
        raise IfguideError(f"--seq-len {config.seq_len} does not apply to {ref}: its chunks are {length} tokens",
                           hint=f"leave out --seq-len (or pass {length})", exit_code=2)
    if max_seq_len is not None and length > max_seq_len:
        raise IfguideError(f"{ref} has chunks of {length} tokens, longer than the {max_seq_len}-token context of the model",
                           hint="use a model with a context of at least the chunk length", exit_code=2)
    return config.replace(layout="packed", seq_len=length, tokenizer=tokenizer_name)


def build_chunks(folder, ref: str, config: CorpusConfig, tokenizer, reporter=NULL) -> dict:
    """Write the first `config.max_examples` chunks (all by default) into an artifact folder, checked against the
    vocabulary of `tokenizer` (the loaded tokenizer), a block of chunks at a time; the summary."""
    from ifguide_cli.core.data.rowfiles import write_chunks
    from ifguide_cli.core.paper import subsets

    subsets.note_foreign_tokenizer(ref, config.tokenizer)
    rows = min(config.max_examples or subsets.get(ref).rows, subsets.get(ref).rows)
    return chunk_summary(ref, write_chunks(folder, chunk_blocks(ref, rows, len(tokenizer), reporter)))


def chunk_blocks(ref: str, rows: int, vocab: int, reporter=NULL) -> Iterator:
    """The first `rows` chunks of the subset, a block of rows at a time (int arrays, rows × chunk length), ids checked
    against `vocab`."""
    from ifguide_cli.core.paper import subsets

    filled = 0
    with reporter.task(f"reading {ref}", total=rows) as task:
        for block in subsets.token_blocks(ref):
            block = block[: rows - filled]
            _check_ids(ref, block, vocab)
            yield block
            filled += len(block)
            task.advance(len(block))
            if filled >= rows:
                break


def _check_ids(ref: str, block, vocab: int) -> None:
    top = int(block.max()) if block.size else 0
    if top >= vocab or (block.size and int(block.min()) < 0):
        raise IfguideError(f"{ref} holds token id {top}, outside the {vocab}-token vocabulary of the model's tokenizer",
                           hint="its chunks are Pythia (GPT-NeoX) token ids: use a model with the Pythia tokenizer "
                                "(pythia-160m, llama-3.2-1b-pythia-tok, …)", exit_code=2)


def chunk_summary(ref: str, shape: tuple[int, int]) -> dict:
    """What the manifest says: the same keys as a tokenized corpus's summary, a chunk per row, nothing cut or padded."""
    from ifguide_cli.core.paper import subsets

    rows, seq_len = shape
    subset = subsets.get(ref)
    return {"rows": rows, "documents": rows, "seq_len": seq_len, "layout": "packed", "overflow": None,
            "tokens": rows * seq_len, "padding_fraction": 0.0, "source": ref, "file": subset.hub_id, "positions": "record",
            "layout_rule": f"pre-tokenized {seq_len}-token chunks of {subset.hub_id}, one per row, in the reference's order",
            "skipped_empty": 0, "truncated_documents": 0, "truncated_tokens": 0, "split_documents": 0}
