"""The knobs the paper's reproduction needs: LAMBADA last-token accuracy, perplexity on the OWT test chunks,
the leakage count, any damping (a warning, not a refusal), factors on all rows, bf16 weights, best checkpoint.

The reference's hub datasets are replaced by local stand-ins under $IFGUIDE_DATA_DIR (same columns and row
counts, generated here), so the tests prove which rows are read and how they are scored, offline.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from clikit import assert_one_line_error

from ifguide_cli.core import notes
from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.evaluation import FluencyConfig, load_eval_prompts
from ifguide_cli.core.evaluation.fluency import _check_chunks, chunk_perplexity, lambada_last_token_accuracy, lambada_metrics
from ifguide_cli.core.evaluation.leakage import REFERENCE_QUERY_SETS, eval_leakage, index_overlap
from ifguide_cli.core.paper import subsets

torch.set_num_threads(1)
OWT_ROWS = 4_398_748  # every row up to the largest reference index
RTP_ROWS = 99_442
CHUNK = 3  # tokens per stand-in chunk (the hub's are 2,048)
SMALL = ("--samples", "1", "--max-new-tokens", "2", "--batch-size", "8", "--classifier", "profanity")


def _chunk(rows: np.ndarray) -> np.ndarray:
    """The stand-in chunk of each hub row: token ids within the tiny model's 2,048-token vocabulary."""
    rows = np.asarray(rows, dtype=np.int64)
    return np.stack([rows % 2048, (7 * rows + 3) % 2048, (13 * rows + 5) % 2048], axis=1)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """$IFGUIDE_DATA_DIR with stand-ins of the three hub datasets, laid out as `hf download` writes them."""
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path_factory.mktemp("hub-data")
    owt = pa.FixedSizeListArray.from_arrays(pa.array(_chunk(np.arange(OWT_ROWS)).astype(np.int16).ravel()), CHUNK)
    (root / subsets.OWT_CHUNKS).parent.mkdir(parents=True)
    datasets.Dataset(pa.table({"input_ids": owt})).save_to_disk(str(root / subsets.OWT_CHUNKS))
    (root / subsets.RTP).mkdir(parents=True)
    part = {kind: pa.StructArray.from_arrays([pa.array([f"{kind} {i}" for i in range(RTP_ROWS)]),
                                              pa.array(np.linspace(0, 1, RTP_ROWS))], ["text", "toxicity"])
            for kind in ("prompt", "continuation")}
    pq.write_table(pa.table(part), root / subsets.RTP / "prompts.parquet")
    lambada = root / subsets.LAMBADA / "en"
    lambada.mkdir(parents=True)
    pq.write_table(pa.table({"text": [f"passage {i} ends with word{i}" for i in range(5_153)]}),
                   lambada / "test-00000-of-00001.parquet")
    (root / subsets.LAMBADA / "README.md").write_text(
        "---\nconfigs:\n- config_name: en\n  data_files:\n  - split: test\n    path: en/test-*\n---\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path_factory.mktemp("hf-datasets")))
        mp.setenv(subsets.DATA_DIR_ENV, str(root))
        yield root


# ---- LAMBADA last-token accuracy ------------------------------------------------------------------------
class _CopyModel(torch.nn.Module):
    """Predicts that the next token repeats the current one (logits: one-hot of the input)."""

    config = SimpleNamespace(max_position_embeddings=16, vocab_size=10)

    def forward(self, input_ids, attention_mask=None):
        return SimpleNamespace(logits=torch.nn.functional.one_hot(input_ids, 10).float())


class _DigitTokenizer:
    """One token per whitespace-separated digit."""

    pad_token_id = eos_token_id = 0

    def encode(self, text, add_special_tokens=False):
        return [int(w) for w in text.split()]


def test_last_token_accuracy_on_a_hand_computed_example():
    texts = ["1 2 3 3", "4 5 6", "7 7", "2 9 9 1 1"]  # the last token repeats the one before it: 1st, 3rd, 4th
    for batch_size in (1, 2, 4):  # right padding: each passage is scored as if alone
        result = lambada_last_token_accuracy(_CopyModel(), _DigitTokenizer(), texts, batch_size=batch_size)
        assert result["correct"] == [True, False, True, True] and result["lambada_last_token_accuracy"] == 0.75
    both = lambada_metrics(_CopyModel(), _DigitTokenizer(), texts, ("last-token", "whole-word"), batch_size=2)
    assert list(both) == ["lambada_last_token_accuracy", "lambada_word_accuracy"]
    assert both["lambada_word_accuracy"]["correct"] == [True, False, True, True]  # one-token words: the same here
    with pytest.raises(IfguideError, match="no context before its last token"):
        lambada_last_token_accuracy(_CopyModel(), _DigitTokenizer(), ["5"])


def test_last_token_accuracy_on_tiny_matches_one_step_of_greedy_generation():
    from evalkit import tiny_lm
    from transformers import LogitsProcessor

    class Identity(LogitsProcessor):
        def __call__(self, input_ids, scores):
            return scores

    model, tok = tiny_lm()
    texts = [json.loads(line)["text"] for line in _tiny_lambada().read_text().splitlines()[:12]]
    forward = lambada_last_token_accuracy(model, tok, texts, batch_size=5)
    generated = lambada_last_token_accuracy(model, tok, texts, batch_size=5, processor_factory=lambda mask: Identity())
    assert forward["correct"] == generated["correct"] == lambada_last_token_accuracy(model, tok, texts, batch_size=1)["correct"]


def _tiny_lambada() -> Path:
    from ifguide_cli.core.registry import tiny_asset

    return tiny_asset("lambada.jsonl")


def test_lambada_metric_option_and_its_default(cli):
    assert FluencyConfig().lambada_metrics("tiny-lambada") == ("whole-word",)
    assert FluencyConfig().lambada_metrics("lambada-reference") == ("last-token",)
    assert FluencyConfig(lambada_metric="both").lambada_metrics("x") == ("last-token", "whole-word")
    assert FluencyConfig(lambada_metric="whole-word").lambada_metrics("lambada-reference") == ("whole-word",)
    assert_one_line_error(cli("eval", "fluency", "tiny", "--allow-random", "--lambada-metric", "argmax"), "--lambada-metric",
                          "last-token", code=2)


def _config(result) -> dict:
    """The identity (config) of the artifact a --json command printed."""
    return json.loads((Path(result.json["path"]) / "manifest.json").read_text())["config"]


def test_fluency_with_both_lambada_metrics_through_the_cli(cli):
    default = cli("--json", "eval", "fluency", "tiny", "--allow-random", "--no-ppl", "--lambada-docs", "6")
    both = cli("--json", "eval", "fluency", "tiny", "--allow-random", "--no-ppl", "--lambada-docs", "6", "--lambada-metric", "both")
    assert default.exit_code == 0 and both.exit_code == 0, both.stderr
    d, b = default.json["summary"], both.json["summary"]
    assert d["lambada_metric"] == "whole-word" and "lambada_last_token_accuracy" not in d
    assert d["lambada_accuracy"] == d["lambada_word_accuracy"] == b["lambada_word_accuracy"]
    assert b["lambada_metric"] == "last-token" and b["lambada_accuracy"] == b["lambada_last_token_accuracy"]
    assert _config(default)["lambada_metrics"] == ["whole-word"]  # the key records the default too (schema 1)
    assert _config(both)["lambada_metrics"] == ["last-token", "whole-word"]
    lines = [json.loads(x) for x in (Path(both.json["path"]) / "lambada.jsonl").read_text().splitlines()]
    assert set(lines[0]) == {"text", "correct", "lambada_last_token_accuracy", "lambada_word_accuracy"}
    table = cli("eval", "fluency", "tiny", "--allow-random", "--no-ppl", "--lambada-docs", "6", "--lambada-metric", "both").stdout
    assert "LAMBADA last-token ↑" in table and "LAMBADA word ↑" in table


def test_lambada_reference_subset_is_scored_by_last_token_by_default(cli, data_dir):
    result = cli("--json", "eval", "fluency", "tiny", "--allow-random", "--no-ppl", "--lambada", "lambada-reference", "--lambada-docs", "20")
    assert result.exit_code == 0, result.stderr
    s = result.json["summary"]
    assert s["lambada_metric"] == "last-token" and s["lambada_examples"] == 20 and s["lambada_data"] == "lambada-reference"
    lines = [json.loads(x)["text"] for x in (Path(result.json["path"]) / "lambada.jsonl").read_text().splitlines()]
    assert lines == [f"passage {i} ends with word{i}" for i in subsets.indices("lambada-reference")[:20]]
    assert _config(result)["lambada_data"]["name"] == "lambada-reference"


# ---- perplexity on the OWT test chunks -------------------------------------------------------------------
def test_owt_test_perplexity_is_over_whole_reference_chunks(cli, data_dir):
    from evalkit import tiny_lm

    result = cli("--json", "eval", "fluency", "tiny", "--allow-random", "--ppl-data", "owt-test", "--no-lambada", "--batch-size", "64")
    assert result.exit_code == 0, result.stderr
    s = result.json["summary"]
    assert s["perplexity_data"] == "owt-test" and s["perplexity_tokens"] == 4_883 * (CHUNK - 1)
    assert any("Pythia (GPT-NeoX) token ids" in w for w in result.json["warnings"])  # tiny has its own tokenizer
    ident = _config(result)["perplexity_data"]
    assert ident["name"] == "owt-test" and ident["docs"] == 4_883 and ident["sha256"] == [subsets.get("owt-test").sha256]
    # by hand: the chunks the reference's indices name, no re-tokenization, every position predicted
    model, _ = tiny_lm()
    ids = torch.as_tensor(_chunk(subsets.indices("owt-test")))
    with torch.inference_mode():
        logits = model(input_ids=ids).logits[:, :-1].double()
    nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="sum")
    assert s["perplexity"] == pytest.approx(math.exp(float(nll) / ids[:, 1:].numel()), rel=1e-5)
    first = cli("--json", "eval", "fluency", "tiny", "--allow-random", "--ppl-data", "owt-test", "--ppl-docs", "10", "--no-lambada")
    assert first.json["summary"]["perplexity_tokens"] == 10 * (CHUNK - 1)


def test_token_chunks_refuse_what_does_not_apply(cli, data_dir):
    assert_one_line_error(cli("eval", "fluency", "tiny", "--allow-random", "--ppl-data", "owt-test", "--ppl-split", "train"),
                          "--ppl-split", code=2)
    assert_one_line_error(cli("eval", "fluency", "tiny", "--allow-random", "--ppl-data", "rtp-test"), "not held-out text", code=2)
    model = SimpleNamespace(config=SimpleNamespace(max_position_embeddings=8, vocab_size=100))
    with pytest.raises(IfguideError, match="outside the model's 100-token vocabulary"):
        _check_chunks(model, np.array([[1, 2], [3, 100]]))
    with pytest.raises(IfguideError, match="exceed the model's context of 8"):
        _check_chunks(model, np.zeros((1, 9), dtype=np.int64))
    with pytest.raises(IfguideError, match="no tokens"):
        chunk_perplexity(_CopyModel(), iter([]), chunks=0)


# ---- leakage ---------------------------------------------------------------------------------------------
def test_leakage_of_the_reference_sets_and_of_hand_made_ones():
    everything = [{"prompt": f"prompt {i}", "index": int(i)} for i in subsets.indices("rtp-test")]
    full = eval_leakage("rtp-test", everything)
    assert full.to_json() == {"evaluated": 10_000, "shared": 4_648,
                              "by_query_set": {"rtp-queries-toxic": 1_066, "rtp-queries-nontoxic": 3_582}}
    assert index_overlap([p["index"] for p in everything], REFERENCE_QUERY_SETS) == full
    toxic = subsets.indices("rtp-queries-toxic")
    picked = [{"prompt": "x", "index": int(toxic[0])}, {"prompt": "y", "index": -1}, {"prompt": "x", "index": int(toxic[0])}]
    assert eval_leakage("rtp-test-nontoxic", picked).to_json() == {
        "evaluated": 3, "shared": 2, "by_query_set": {"rtp-queries-toxic": 2, "rtp-queries-nontoxic": 0}}
    assert eval_leakage("tiny-prompts", [{"prompt": "a"}]) is None  # nothing to compare with


def test_leakage_by_text_against_given_query_sets(tmp_path):
    queries = tmp_path / "q.jsonl"
    queries.write_text("\n".join(json.dumps({"prompt": p, "continuation": "c"}) for p in ("Hello  there", "other")) + "\n")
    prompts = [{"prompt": "Hello there"}, {"prompt": "no"}, {"prompt": " Hello there\n"}]
    overlap = eval_leakage("my-prompts.jsonl", prompts, [str(queries)])
    assert overlap.to_json() == {"evaluated": 3, "shared": 2, "by_query_set": {str(queries): 2}}
    assert "2 of 3 evaluation prompts are also influence queries" in overlap.message()


def test_toxicity_eval_on_reference_prompts_reports_the_leakage(cli, data_dir):
    result = cli("--json", "eval", "toxicity", "tiny", "--allow-random", "--prompts", "rtp-test", "--num-prompts", "24", *SMALL)
    assert result.exit_code == 0, result.stderr
    prompts, _ = load_eval_prompts("rtp-test", 24)
    rows = [int(p["prompt"].split()[1]) for p in prompts]  # the stand-in's prompt text names its hub row
    toxic, safe = set(subsets.indices("rtp-queries-toxic").tolist()), set(subsets.indices("rtp-queries-nontoxic").tolist())
    expected = {"evaluated": 24, "shared": sum(r in toxic or r in safe for r in rows),
                "by_query_set": {"rtp-queries-toxic": sum(r in toxic for r in rows),
                                 "rtp-queries-nontoxic": sum(r in safe for r in rows)}}
    assert expected["shared"] > 0 and result.json["summary"]["leakage"] == expected
    assert any("evaluation prompts are also influence queries" in w for w in result.json["warnings"])
    again = cli("--json", "eval", "toxicity", "tiny", "--allow-random", "--prompts", "rtp-test", "--num-prompts", "24", *SMALL)
    assert again.json["reused"] and any("influence queries" in w for w in again.json["warnings"])  # said again on reuse


def test_toxicity_eval_with_given_queries_counts_them(cli, tmp_path):
    prompts, _ = load_eval_prompts("tiny-prompts", 4)
    queries = tmp_path / "queries.jsonl"
    queries.write_text(json.dumps({"prompt": "  " + prompts[1]["prompt"], "continuation": "x"}) + "\n")
    plain = cli("--json", "eval", "toxicity", "tiny", "--allow-random", "--num-prompts", "4", *SMALL)
    given = cli("--json", "eval", "toxicity", "tiny", "--allow-random", "--num-prompts", "4", *SMALL, "--queries", queries)
    assert plain.exit_code == 0 and given.exit_code == 0, given.stderr
    assert "leakage" not in plain.json["summary"] and not _config(plain).get("leakage_queries")
    assert given.json["summary"]["leakage"] == {"evaluated": 4, "shared": 1, "by_query_set": {str(queries): 1}}
    assert given.json["id"] != plain.json["id"]
    assert "leakage: 1 of 4 prompts" in cli("eval", "toxicity", "tiny", "--allow-random", "--num-prompts", "4", *SMALL, "--queries",
                                            queries).stdout


# ---- damping -----------------------------------------------------------------------------------------------
def _ekfac_factors(folder: Path, eigenvalues: dict[str, float]) -> Path:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: torch.full((4, 4), v) for k, v in eigenvalues.items()}, str(folder / "lambda_matrix.safetensors"))
    save_file({k: torch.tensor(1.0) for k in eigenvalues}, str(folder / "num_lambda_processed.safetensors"))
    return folder


def test_small_damping_in_bf16_is_a_warning_with_the_measured_cost(tmp_path):
    from ifguide_cli.core.influence.damping import check_bf16_damping, relative_damping

    factors = _ekfac_factors(tmp_path / "f", {"layer.0.mlp": 1e-2, "layer.1.mlp": 1e-6})
    assert relative_damping(factors, "ekfac", 1e-8) == pytest.approx({"layer.0.mlp": 1e-6, "layer.1.mlp": 1e-2})
    notes.reset()
    check_bf16_damping(factors, "ekfac", "bf16", 1e-8)
    [warning] = notes.collected()
    for needle in ("--damping 1e-08 in bf16", "1 of 2 modules", "1.0e-06 × in layer.0.mlp", "Spearman 0.83", "59%",
                   "128 × 1024 tokens", "H100"):
        assert needle in warning, needle
    notes.reset()
    for precision, damping in (("fp32", 1e-8), ("bf16", None), ("bf16", 1.0)):
        check_bf16_damping(factors, "ekfac", precision, damping)
    assert notes.collected() == []


# ---- factors on all rows ------------------------------------------------------------------------------
def test_factors_max_examples_all_means_every_row(cli):
    from ifguide_cli.core.influence.config import DEFAULT_MAX_EXAMPLES, FactorsConfig

    assert FactorsConfig().max_examples == DEFAULT_MAX_EXAMPLES
    assert FactorsConfig(max_examples="all").max_examples is None and FactorsConfig(max_examples=" ALL ").max_examples is None
    assert FactorsConfig(max_examples="64").max_examples == 64 and FactorsConfig(max_examples=None).max_examples is None
    for bad, needle in (("lots", "or `all`"), ("0", "[1, inf)"), (-3, "[1, inf)"), ("1.5", "whole number")):
        with pytest.raises(IfguideError) as err:
            FactorsConfig(max_examples=bad)
        assert needle in err.value.one_line() and "--max-examples" in err.value.one_line() and err.value.exit_code == 2
    partial = cli("--json", "factors", "tiny", "--allow-random", "--data", "tiny", "--strategy", "identity", "--max-examples", "16")
    assert partial.exit_code == 0, partial.stderr
    assert partial.json["config"]["fit_examples"] == 16
    assert any("fit on the first 16 of" in w and "--max-examples all" in w for w in partial.json["warnings"])


# ---- training: bf16 weights, best checkpoint -------------------------------------------------------------
def test_training_knobs_keep_the_identity_of_a_default_run():
    from ifguide_cli.core.training import TrainConfig

    assert "weights_dtype" not in TrainConfig().to_dict() and "best_checkpoint" not in TrainConfig().to_dict()
    knobs = TrainConfig(weights_dtype="bf16", best_checkpoint="eval_loss").to_dict()
    assert knobs["weights_dtype"] == "bf16" and knobs["best_checkpoint"] == "eval_loss"


@pytest.mark.skipif(torch.cuda.is_available(), reason="bf16 weights are refused only without a GPU")
def test_bf16_weights_are_refused_on_a_cpu_in_one_line(cli):
    assert_one_line_error(cli("train", "tiny", "--data", "tiny", "--weights-dtype", "bf16", "--max-steps", "1"),
                          "--weights-dtype bf16 needs a CUDA GPU", code=2)


def test_bad_training_knobs_are_one_line(cli):
    from ifguide_cli.core.training.config import best_checkpoint_arguments, check_weights_dtype

    assert_one_line_error(cli("train", "tiny", "--data", "tiny", "--weights-dtype", "fp16"), "--weights-dtype", "bf16",
                          code=2)
    assert_one_line_error(cli("train", "tiny", "--data", "tiny", "--best-checkpoint", "loss"), "--best-checkpoint",
                          "eval_loss", code=2)
    with pytest.raises(IfguideError, match="needs validation rows"):
        best_checkpoint_arguments("eval_loss", 10, 10, has_eval=False)
    with pytest.raises(IfguideError, match=r"--save-steps \(3\) to be a multiple of --eval-steps \(2\)"):
        best_checkpoint_arguments("eval_loss", 2, 3, has_eval=True)
    assert best_checkpoint_arguments(None, 2, 3, has_eval=False) == {}
    with pytest.raises(IfguideError, match="needs bf16 compute"):
        check_weights_dtype("bf16", "cuda:0", "fp32")
    check_weights_dtype("fp32", "cpu", "fp32")


def test_best_checkpoint_is_the_step_with_the_lowest_eval_loss(cli, workspace_dir):
    from safetensors.torch import load_file

    # a learning rate high enough that the eval loss rises after the first step
    result = cli("--json", "train", "tiny", "--data", "tiny", "--max-steps", "4", "--batch-size", "8", "--save-steps", "1",
                 "--eval-docs", "16", "--logging-steps", "1", "--lr", "0.5", "--best-checkpoint", "eval_loss")
    assert result.exit_code == 0, result.stderr
    path = Path(result.json["path"])
    log = [json.loads(line) for line in (path / "train_log.jsonl").read_text().splitlines()]
    evals = {r["step"]: r["eval_loss"] for r in log if "eval_loss" in r}
    best_step = min(evals, key=evals.get)
    chosen = result.json["summary"]["best_checkpoint"]
    assert sorted(evals) == [1, 2, 3, 4] and best_step != 4  # not simply the last step
    assert chosen == {"by": "eval_loss", "step": best_step, "eval_loss": pytest.approx(evals[best_step])}
    assert result.json["config"]["train"]["best_checkpoint"] == "eval_loss"
    # the artifact's model is that checkpoint's, every weight (the output layer too)
    final = load_file(str(path / "model" / "model.safetensors"))
    best = load_file(str(path / "trainer" / f"checkpoint-{best_step}" / "model.safetensors"))
    assert final.keys() == best.keys() and all(torch.equal(final[k], best[k]) for k in final)
    assert result.json["summary"]["eval_loss"] == pytest.approx(evals[best_step], rel=1e-3)


@pytest.mark.gpu
def test_bf16_weights_on_a_gpu(cli):
    from safetensors.torch import load_file

    result = cli("--json", "train", "tiny", "--data", "tiny", "--max-steps", "2", "--batch-size", "8", "--save-steps", "1",
                 "--eval-docs", "8", "--weights-dtype", "bf16")
    assert result.exit_code == 0, result.stderr
    assert result.json["summary"]["weights_dtype"] == "bf16" and result.json["summary"]["precision"] == "bf16"
    weights = load_file(str(Path(result.json["path"]) / "model" / "model.safetensors"))
    assert all(w.dtype == torch.bfloat16 for w in weights.values())


# ---- the report reads the named metrics ---------------------------------------------------------------
def test_report_shows_each_lambada_metric_under_its_name(tmp_path):
    from ifguide_cli.core.report.build import build_rows, render_html
    from ifguide_cli.core.report.table import cell, table_columns
    from ifguide_cli.core.store.workspace import Workspace

    ws = Workspace(tmp_path / "ws")

    def fluency(model, summary):
        art, _ = ws.create("evals", {"task": "fluency", "model": model}, [], lambda ctx: {"task": "fluency", **summary})
        return art

    old = fluency("a", {"perplexity": 20.0, "lambada_accuracy": 0.3})  # before two metrics: whole-word
    new = fluency("b", {"perplexity": 21.0, "lambada_accuracy": 0.4, "lambada_metric": "last-token",
                        "lambada_last_token_accuracy": 0.4})
    rows = build_rows(ws, [old, new])
    cols = dict((key, header) for header, key in table_columns(rows))
    assert cols["lambada_last_token_accuracy"] == "LAMBADA last-token" and cols["lambada_word_accuracy"] == "LAMBADA word"
    assert [cell(r, "lambada_word_accuracy") for r in rows] == ["0.300", "—"]
    assert [cell(r, "lambada_last_token_accuracy") for r in rows] == ["—", "0.400"]
    assert [cell(r, "perplexity") for r in rows] == ["20.00", "21.00"]
    assert "higher is better for LAMBADA last-token, LAMBADA word" in render_html(rows, {})
