"""Your own corpus end to end through the CLI: a jsonl of short documents with a label field, your tokenizer, the
layout given once; and every case that used to be silently wrong is now an error or a visible note."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from clikit import assert_one_line_error, invoke_cli

from ifguide_cli.core.errors import IfguideError

WORDS = ["garden", "coffee", "weather", "tomorrow", "friendly", "river", "music", "letter"]
ODD = "Café crème à Noël 🎉😀 — naïve déjà vu, ünïcödé!"  # characters that byte-level tokens split


def _corpus(path: Path, n: int = 120) -> Path:
    """n short comments, every 10th labelled toxic (it holds the word `idiot`), one with emoji and accents."""
    records = []
    for i in range(n):
        toxic = i % 10 == 3
        text = f"the {WORDS[i % 8]} and the {WORDS[(i * 3) % 8]} were {'idiot' if toxic else 'fine'} number {i % 7}"
        records.append({"text": ODD if i == 5 else text, "toxic": toxic})
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture
def corpus(tmp_path):
    return _corpus(tmp_path / "comments.jsonl")


def _json(result) -> dict:
    assert result.exit_code == 0, result.stderr
    return result.json


# ---- nothing silent: errors before any work -----------------------------------------------------------
def test_zero_optimizer_steps_is_an_error_that_says_why(cli, tmp_path, workspace_dir):
    small = _corpus(tmp_path / "small.jsonl", 20)
    err = assert_one_line_error(cli("--json", "train", "tiny", "--data", small, "--batch-size", "32"),
                                "0 optimizer steps", "fewer than one batch of 32", "--batch-size", code=2)
    assert "20 documents" in err and not (workspace_dir / "checkpoints").exists()


def test_rows_longer_than_the_model_context_are_refused_before_tokenizing(cli, corpus, workspace_dir):
    assert_one_line_error(cli("train", "tiny", "--data", corpus, "--seq-len", "1024"), "--seq-len 1024", "128-token context",
                          code=2)
    assert not (workspace_dir / "datasets").exists()


def test_a_contradicting_layout_option_names_both_values(cli, corpus, workspace_dir):
    from ifguide_cli.core.data import resolve_corpus
    from ifguide_cli.core.models import resolve_model
    from ifguide_cli.core.store.workspace import Workspace

    ds = resolve_corpus(Workspace(workspace_dir), str(corpus), resolve_model("tiny"), 32, layout="documents").artifact
    assert_one_line_error(cli("train", "tiny", "--data", ds.id, "--layout", "packed"), "--layout documents",
                          "--layout packed", code=2)
    assert_one_line_error(cli("train", "tiny", "--data", ds.id, "--seq-len", "48"), "--seq-len 32", "--seq-len 48", code=2)


@pytest.mark.parametrize("args", [
    ("factors", "tiny", "--data", "tiny"),  # (scores start from factors: refused there)
    ("eval", "toxicity", "tiny", "--classifier", "profanity"),
    ("eval", "fluency", "tiny"),
])
def test_untrained_registry_models_are_refused_before_any_work(cli, workspace_dir, args):
    assert_one_line_error(cli(*args), "'tiny' has no trained weights", "--allow-random", "ifguide train tiny", code=2)
    assert not (workspace_dir / "datasets").exists() and not (workspace_dir / "evals").exists()


def test_allow_random_insists(cli, tmp_path):
    # past the refusal: the next problem is the data
    assert_one_line_error(cli("factors", "tiny", "--data", tmp_path / "none.jsonl", "--allow-random"), "no such file", code=2)
    assert_one_line_error(cli("eval", "toxicity", "tiny", "--allow-random", "--prompts", "nope", "--classifier", "profanity"),
                          "unknown prompt set", code=2)


def test_probe_pass_has_a_flag_and_is_cheap_by_default(cli):
    from ifguide_cli.core.training import PROFILES, RunOptions

    assert RunOptions().probe_docs == 32 and PROFILES["tiny"]["finetune"]["probe_docs"] == 256  # tiny: as before
    assert "--probe-docs" in cli("finetune", "--help").stdout
    assert_one_line_error(cli("finetune", "x", "--data", "tiny", "--probe-docs", "-1"), "--probe-docs", code=2)


def test_probe_pass_off_reports_no_masked_nll():
    import torch

    from ifguide_cli.core.training.metrics import final_metrics

    class Model(torch.nn.Module):  # a stand-in LM: uniform logits
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, input_ids, attention_mask):
            return type("Out", (), {"logits": torch.zeros(*input_ids.shape, 11) + self.w})

    ids = torch.randint(0, 11, (6, 8))
    corpus = type("Corpus", (), {"input_ids": ids, "attention_mask": torch.ones_like(ids)})
    mask = torch.zeros(6, 8, dtype=torch.bool)
    mask[:3, 4] = True
    on = final_metrics(Model(), corpus, mask, None, list(range(6)), 2, "fp32", 4)
    off = final_metrics(Model(), corpus, mask, None, list(range(6)), 0, "fp32", 4)
    assert on["masked_token_nll"] == pytest.approx(np.log(11)) and on["masked_tokens"] == 3
    assert off == {"masked_tokens": 3}


# ---- partial scores -------------------------------------------------------------------------------------
def test_rows_file_is_read_and_checked(tmp_path):
    from ifguide_cli.core.influence.subset import scored_rows

    assert scored_rows(None, None, 10) is None and scored_rows(20, None, 10) is None
    assert scored_rows(4, None, 10).indices == [0, 1, 2, 3]
    text = tmp_path / "rows.txt"
    text.write_text("7\n\n2\n7\n")
    picked = scored_rows(None, str(text), 10)
    assert picked.indices == [2, 7] and picked.how["count"] == 2
    np.save(tmp_path / "rows.npy", np.array([9, 0]))
    assert scored_rows(None, str(tmp_path / "rows.npy"), 10).indices == [0, 9]
    for content, needle in (("3\nfour\n", "rows.txt:2"), ("12\n", "row 12, outside")):
        text.write_text(content)
        with pytest.raises(IfguideError, match=needle):
            scored_rows(None, str(text), 10)


@pytest.fixture
def labelled(workspace_dir, corpus):
    """The corpus as a dataset artifact (tiny tokenizer, one document per row, labels) and scores on it in which the
    emoji document scores highest and the toxic documents high; only the first `SCORED` rows were scored."""
    from ifguide_cli.core.data import load_corpus, resolve_corpus
    from ifguide_cli.core.masking import save_safetensors
    from ifguide_cli.core.models import resolve_model
    from ifguide_cli.core.store.workspace import Workspace

    ws = Workspace(workspace_dir)
    ds = resolve_corpus(ws, str(corpus), resolve_model("tiny"), 64, layout="documents", label_field="toxic").artifact
    data = load_corpus(ds)
    att = data.attention_mask.numpy().astype(bool)
    scores = np.where(att, 0.01, 0.0).astype(np.float32)
    scores[data.labels.numpy(), 3:6] = 5.0
    scores[5, 2:20] = 9.0  # the emoji document
    scores[100:, :] = 50.0  # rows the partial scoring left out must never be selected, whatever they hold
    scores[:, 0] = 0.0

    def build(ctx):
        save_safetensors(ctx.staging / "scores.safetensors", {"scores": scores, "rows": np.arange(100, dtype=np.int64)})
        return {}

    art, _ = ws.create("scores", {"dataset": ds.id, "test": "partial"}, [ds.id], build, name="partial")
    return {"dataset": ds, "scores": art, "corpus": corpus}


def test_mask_of_partial_scores_reports_label_metrics(cli, labelled):
    out = _json(cli("--json", "mask", "partial", "-p", "0.9", "--max-tokens", "400", "--name", "m"))
    s = out["summary"]
    assert s["scored_rows"] == 100
    assert s["label_field"] == "toxic" and s["label_documents"] == 100 and s["label_positive_documents"] == 10
    assert s["label_base_rate"] == pytest.approx(0.1)
    assert s["label_precision_at_k"] == s["precision_at_k"] == pytest.approx(0.9)  # 9 toxic + the emoji document
    assert s["label_auc"] > 0.9 and s["source_documents_selected"] == s["documents_selected"]
    from ifguide_cli.core.masking import load_safetensors_array

    mask = np.asarray(load_safetensors_array(Path(out["path"]) / "mask.safetensors", "mask"))
    assert mask[:100].any() and not mask[100:].any()  # unscored rows are never selected
    top = out["top_documents"][0]
    assert top["doc"] == 5 and top["label"] is False and top["where"].endswith("comments.jsonl:6")


def test_mask_show_prints_the_source_line_and_the_whole_text(cli, labelled):
    _json(cli("--json", "mask", "partial", "-p", "0.9", "--max-tokens", "400", "--name", "m"))
    shown = cli("mask", "show", "m", "--rank", "0")
    assert shown.exit_code == 0, shown.stderr
    header, text = shown.stdout.split("\n", 1)
    assert f"{labelled['corpus'].resolve()}:6" in header and "not labelled toxic" in header
    assert "\ufffd" not in shown.stdout
    assert text.replace("[[", "").replace("]]", "").startswith(ODD)
    doc = _json(cli("--json", "mask", "show", "m", "--rank", "0"))
    assert "".join(doc["tokens"]).startswith(ODD) and len(doc["tokens"]) == len(doc["token_ids"])
    assert doc["source"]["line"] == 6 and doc["source"]["text"] == ODD and doc["label"] is False
    toxic = _json(cli("--json", "mask", "show", "m", "--rank", "1"))
    assert toxic["label"] is True and "idiot" in toxic["source"]["text"]
    assert "labelled toxic" in cli("mask", "show", "m", "--rank", "1").stdout.split("\n")[0]


def test_whole_pieces_never_split_a_character():
    from ifguide_cli.core.masking.render import _decoder, whole_pieces
    from ifguide_cli.core.models import load_tokenizer, resolve_model

    ids = load_tokenizer(resolve_model("tiny"))(ODD, add_special_tokens=False)["input_ids"]
    pieces = whole_pieces(_decoder("tiny"), ids)
    assert len(pieces) == len(ids) and "".join(pieces) == ODD and not any("\ufffd" in p for p in pieces)


# ---- the chain, through the CLI ------------------------------------------------------------------------
@pytest.mark.slow
def test_own_corpus_from_tokenizer_to_mask(cli, corpus, workspace_dir):
    """tokenizer train → train (tiny architecture, the tokenizer's vocabulary) → factors → scores (part) → mask,
    the layout given once; the later commands reuse the dataset and refuse a contradicting option."""
    from ifguide_cli.core.store.workspace import Workspace
    from ifguide_cli.core.tokenizer import TokenizerTrainConfig, train_tokenizer

    tok = train_tokenizer(Workspace(workspace_dir), str(corpus), TokenizerTrainConfig(vocab_size=300), name="tok").artifact
    base = _json(cli("--json", "train", "tiny", "--data", corpus, "--tokenizer", "tok", "--label-field", "toxic",
                     "--layout", "documents", "--seq-len", "24", "--max-steps", "2", "--batch-size", "8", "--name", "base"))
    model_dir = Path(base["model_dir"])
    assert json.loads((model_dir / "config.json").read_text())["vocab_size"] == 300  # the tokenizer's vocabulary
    assert (model_dir / "tokenizer.json").read_bytes() == (tok.path / "tokenizer" / "tokenizer.json").read_bytes()
    assert base["summary"]["validation"].startswith("held-out rows") and base["config"]["eval_dataset"] is None
    dataset = base["config"]["dataset"]
    assert tok.id in _json(cli("--json", "workspace", "show", dataset))["manifest"]["parents"]

    factors = _json(cli("--json", "factors", "base", "--data", corpus, "--strategy", "identity", "--name", "f"))
    assert factors["config"]["dataset"] == dataset  # found again: no layout option repeated
    assert_one_line_error(cli("factors", "base", "--data", corpus, "--layout", "packed"), "--layout documents",
                          "--layout packed", code=2)
    assert_one_line_error(cli("finetune", "base", "--data", corpus, "--seq-len", "32"), "--seq-len 24", "--seq-len 32",
                          code=2)
    assert_one_line_error(cli("factors", "base", "--data", corpus, "--tokenizer", "tiny"), "is not the tokenizer", code=2)

    queries = corpus.with_name("queries.jsonl")
    queries.write_text("".join(json.dumps({"prompt": f"the {w} and the river were", "continuation": " idiot"}) + "\n"
                               for w in WORDS))
    scores = _json(cli("--json", "scores", "f", "-t", queries, "--max-rows", "60", "--name", "s"))
    assert scores["summary"]["scored_rows"] == 60 and scores["config"]["rows"] == {"first": 60}
    mask = _json(cli("--json", "mask", "s", "--max-tokens", "200"))
    assert mask["summary"]["label_documents"] <= 60 and "label_auc" in mask["summary"]
    shown = cli("mask", "show", mask["id"], "--rank", "0")
    assert f"{corpus.resolve()}:" in shown.stdout.split("\n")[0]


def test_model_config_file_trains_with_the_tokenizers_vocabulary(cli, corpus, tmp_path):
    from ifguide_cli.core.registry import tiny_asset

    config = json.loads(tiny_asset("model_config.json").read_text())
    config.update(hidden_size=64, intermediate_size=128, vocab_size=99)
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(config))
    assert_one_line_error(cli("train", "--model-config", path, "--data", corpus), "--model-config needs --tokenizer", code=2)
    assert_one_line_error(cli("train", "tiny", "--model-config", path, "--data", corpus), "either MODEL or --model-config",
                          code=2)
    out = _json(cli("--json", "train", "--model-config", path, "--tokenizer", "tiny", "--data", corpus, "--max-steps", "1",
                    "--batch-size", "8"))
    model = json.loads((Path(out["model_dir"]) / "config.json").read_text())
    assert model["vocab_size"] == 2048 and model["hidden_size"] == 64  # the tokenizer's vocabulary, the file's shape
    assert out["config"]["model"]["source"] == "config" and out["config"]["tokenizer"] == "tiny"


def test_validation_data_is_named_in_the_training_summary(cli):
    out = _json(cli("--json", "train", "tiny", "--data", "tiny", "--max-steps", "1", "--batch-size", "8",
                    "--eval-docs", "8"))
    assert out["summary"]["validation"].startswith("tiny-heldout (dataset ") and "first 8 rows" in out["summary"]["validation"]
    shown = invoke_cli(Path(out["path"]).parents[1], "train", "tiny", "--data", "tiny", "--max-steps", "1", "--batch-size",
                       "8", "--eval-docs", "8")
    assert "validation" in shown.stdout and "tiny-heldout" in shown.stdout
