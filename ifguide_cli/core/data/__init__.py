"""Datasets: records from the registry, a reference subset, a local file or the hub; the training corpus tokenized
once, as rows.

- `sources`: reading records and documents with their file and line (`Source`, `load_records`, …).
- `layout`: documents → (rows × seq_len) tokens, packed or one document per row (`CorpusConfig`, `tokenize_corpus`).
- `rowfiles`: the dataset artifact's files written a block of rows at a time (`write_corpus`, `write_chunks`).
- `labels`: a 0/1 field per document and how a ranking finds it (`parse_label`, `label_metrics`).
- `stage`: the `datasets` artifact: building, finding, checking it, and each row's source (`resolve_corpus`,
  `load_corpus`, `row_source`, `dataset_label_metrics`).
- `chunks`: a reference subset of pre-tokenized chunks (owt-train-1b, …) as a dataset artifact, rows as they are.
- `for_model`: the corpus of a model (`model_corpus`): its tokenizer, rows within its context, the options checked.

Scores, masks and training all index the same stored tensor, so a mask always lines up with its data.
"""

from ifguide_cli.core.data.for_model import corpus_options, model_corpus, model_tokenizer
from ifguide_cli.core.data.labels import label_metrics, parse_label
from ifguide_cli.core.data.layout import (
    CorpusConfig,
    RowMap,
    TokenizedCorpus,
    default_corpus_config,
    plan_layout,
    tokenize_corpus,
)
from ifguide_cli.core.data.sources import (
    LOCAL_SUFFIXES,
    Source,
    SourceDoc,
    dataset_identity,
    iter_documents,
    load_prompts,
    load_queries,
    load_records,
    record_text,
)
from ifguide_cli.core.data.stage import (
    ROWS_FILE,
    TEXTS_FILE,
    RowSources,
    check_corpus,
    corpus_artifact,
    corpus_shape,
    dataset_label_metrics,
    existing_corpus,
    is_source_ref,
    load_corpus,
    mapped_corpus,
    recorded_dataset,
    resolve_corpus,
    row_labels,
    row_source,
)
from ifguide_cli.core.store.artifact_files import CORPUS_FILE
from ifguide_cli.core.store.file_integrity import file_identity

__all__ = [
    "CORPUS_FILE", "LOCAL_SUFFIXES", "ROWS_FILE", "TEXTS_FILE", "CorpusConfig", "RowMap", "RowSources", "Source",
    "SourceDoc", "TokenizedCorpus", "check_corpus", "corpus_artifact", "corpus_options", "corpus_shape", "dataset_identity", "dataset_label_metrics",
    "default_corpus_config", "existing_corpus", "file_identity", "is_source_ref", "iter_documents", "label_metrics",
    "load_corpus", "load_prompts", "load_queries", "load_records", "mapped_corpus", "model_corpus", "model_tokenizer", "parse_label", "plan_layout", "record_text",
    "recorded_dataset", "resolve_corpus", "row_labels", "row_source", "tokenize_corpus",
]
