"""The artifact kinds and the file names inside artifacts, defined once: every reader and writer imports them here."""

# the artifact kinds, one workspace folder each (`<root>/<kind>/<id>`), in the order listings walk them
KINDS = ("datasets", "tokenizers", "factors", "scores", "masks", "checkpoints", "evals", "classifiers", "reports")

CORPUS_FILE = "input_ids.safetensors"  # datasets: input_ids, attention_mask (docs, seq_len)
ROWS_FILE = "rows.safetensors"  # datasets: the rows' source map (+ labels)
TEXTS_FILE = "texts.bin"  # datasets: the rows' text, UTF-8, addressed by the map's text_start/text_end
SCORES_FILE = "scores.safetensors"  # scores: key `scores`, float32 (docs, seq_len), label-aligned
ROWS_KEY = "rows"  # in a scores file: int64 indices of the rows a partial scoring covered (absent when all were)
MODULE_SCORES_FILE = "module_scores.safetensors"  # scores --per-module: one key per tracked module
MASK_FILE = "mask.safetensors"  # masks: mask, ranking, sparsity, strength, harmonic, selected
IGNORE_INDEX = -100  # the label of a position that has no loss (padding, prompts): PyTorch's cross-entropy default
# evals (fluency): one JSON line per held-out document, {"nll": summed next-token NLL, "tokens": predicted tokens},
# in the order of the perplexity data, so that a report can resample documents
PERPLEXITY_DOCS_FILE = "perplexity_docs.jsonl"
