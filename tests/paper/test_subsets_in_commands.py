"""The reference subsets wired through the commands: `train`, `factors`, `scores`, `eval toxicity`, `eval fluency`
and `run --dry-run` take them by name, read from local stand-ins of the hub datasets under $IFGUIDE_DATA_DIR
(the OWT chunks as rows as they are, the RTP and LAMBADA rows as records); offline with nothing there, every
missing input is one line naming its hub id and how to supply it, before any stage starts."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from clikit import assert_one_line_error, invoke_cli
from paper_standins import data_dir, owt_rows

from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.paper import subsets
from ifguide_cli.core.store.workspace import Workspace

TRAIN_ROWS = 48
CHUNK = 8  # tokens per stand-in chunk


@pytest.fixture(scope="module")
def standins(tmp_path_factory):
    """$IFGUIDE_DATA_DIR with the three stand-ins; the arrow caches of local files kept out of the user's HF cache."""
    import datasets

    root = data_dir(tmp_path_factory.mktemp("hub-data"), owt_width=CHUNK)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path_factory.mktemp("hf-datasets")))
        mp.setenv(subsets.DATA_DIR_ENV, str(root))
        yield root


@pytest.fixture(scope="module")
def trained(tmp_path_factory, standins):
    """`ifguide train tiny --data owt-train-1b` on the first 48 chunks: (workspace root, checkpoint payload)."""
    root = tmp_path_factory.mktemp("ws")
    res = invoke_cli(root, "--json", "train", "tiny", "--data", "owt-train-1b", "--max-examples", TRAIN_ROWS,
                     "--max-steps", 2, "--batch-size", 8, "--name", "base")
    assert res.exit_code == 0, res.stderr
    return root, res.json


def _dataset(root, name: str):
    return next(a for a in Workspace(root).list("datasets") if a.config["data"].get("name") == name)


def _tensor(art, key: str):
    from safetensors.numpy import load_file

    return load_file(str(art.path / "input_ids.safetensors"))[key]


# ---- train / factors / scores --------------------------------------------------------------------------
def test_train_reads_the_reference_chunks_as_rows_in_order(trained):
    root, payload = trained
    art = _dataset(root, "owt-train-1b")
    ids = _tensor(art, "input_ids")
    assert ids.shape == (TRAIN_ROWS, CHUNK) and _tensor(art, "attention_mask").all()  # no padding, no EOS added
    assert np.array_equal(owt_rows(ids), subsets.indices("owt-train-1b")[:TRAIN_ROWS])
    assert art.config["layout"] == "packed" and art.config["seq_len"] == CHUNK and art.config["tokenizer"] == "tiny"
    assert art.summary["tokens"] == TRAIN_ROWS * CHUNK and art.summary["padding_fraction"] == 0
    assert payload["summary"]["steps"] == 2
    assert any("Pythia (GPT-NeoX) token ids" in w for w in payload["warnings"])  # the tiny tokenizer reads them as they are


def test_factors_on_all_rows_then_scores_with_the_reference_queries(trained):
    root, _ = trained
    some = invoke_cli(root, "--json", "factors", "base", "--data", "owt-train-1b", "--max-examples", 16)
    assert some.exit_code == 0, some.stderr
    assert some.json["config"]["fit_examples"] == 16
    fac = invoke_cli(root, "--json", "factors", "base", "--data", "owt-train-1b", "--max-examples", "all", "--name", "f")
    assert fac.exit_code == 0, fac.stderr
    assert fac.json["config"]["fit_examples"] == TRAIN_ROWS  # every row
    assert fac.json["config"]["dataset"] == _dataset(root, "owt-train-1b").id  # the checkpoint's chunks, reused
    sco = invoke_cli(root, "--json", "scores", "f", "-t", "rtp-queries-toxic", "-s", "rtp-queries-nontoxic",
                     "--max-queries", 6)
    assert sco.exit_code == 0, sco.stderr
    toxic, safe = sco.json["config"]["toxic_queries"], sco.json["config"]["safe_queries"]
    assert (toxic["name"], toxic["source"], toxic["queries"]) == ("rtp-queries-toxic", "reference-subset", 6)
    assert (safe["name"], safe["rows"]) == ("rtp-queries-nontoxic", 64_327)


def test_factors_max_examples_takes_a_number_or_all_and_nothing_else(cli):
    assert_one_line_error(cli("factors", "tiny", "--data", "tiny", "--max-examples", "-3"), "--max-examples", "-3", code=2)
    assert_one_line_error(cli("factors", "tiny", "--data", "tiny", "--max-examples", "foo"), "--max-examples", "all", code=2)


# ---- evaluation ------------------------------------------------------------------------------------
def test_eval_toxicity_on_the_reference_prompts_counts_the_shared_queries(trained):
    root, _ = trained
    res = invoke_cli(root, "--json", "eval", "toxicity", "base", "--prompts", "rtp-test", "--num-prompts", 12,
                     "--classifier", "profanity", "--samples", 1, "--max-new-tokens", 3)
    assert res.exit_code == 0, res.stderr
    summary = res.json["summary"]
    assert summary["prompts"] == 12 and summary["prompt_set"] == "rtp-test"
    lines = [json.loads(x) for x in (Workspace(root).by_id(res.json["id"]).path / "continuations.jsonl").read_text().splitlines()]
    rows = {int(x["prompt"].split()[1]) for x in lines}  # stand-in prompts are "prompt <hub row> …"
    assert rows <= set(subsets.indices("rtp-test").tolist()) and len(rows) == 12
    picked = np.asarray(sorted(rows))
    shared = np.isin(picked, subsets.indices("rtp-queries-toxic")) | np.isin(picked, subsets.indices("rtp-queries-nontoxic"))
    assert summary["leakage"]["shared"] == int(shared.sum())


def test_eval_fluency_on_the_owt_test_chunks_and_the_lambada_subset(trained):
    root, _ = trained
    res = invoke_cli(root, "--json", "eval", "fluency", "base", "--ppl-data", "owt-test", "--lambada", "lambada-reference",
                     "--ppl-docs", 10, "--lambada-docs", 6)
    assert res.exit_code == 0, res.stderr
    summary = res.json["summary"]
    assert summary["perplexity_tokens"] == 10 * (CHUNK - 1)  # whole chunks, each predicting its tokens 2..L
    assert summary["lambada_examples"] == 6 and summary["lambada_metric"] == "last-token"


# ---- the plan, and what is missing offline ---------------------------------------------------------------
SUBSET_INPUTS = {"data": "owt-train-1b", "baseline.train.eval_data": "owt-valid", "influence.toxic_queries": "rtp-queries-toxic",
                 "influence.safe_queries": "rtp-queries-nontoxic", "eval.prompts": "rtp-test", "eval.ppl_data": "owt-test",
                 "eval.lambada": "lambada-reference"}


def _inputs(cli) -> dict:
    res = cli("--json", "run", "--preset", "paper", "--dry-run")
    return {i["role"]: i for i in res.json["inputs"]}


def test_dry_run_finds_every_subset_in_the_data_dir(cli, standins):
    inputs = _inputs(cli)
    for role, name in SUBSET_INPUTS.items():
        item = inputs[role]
        assert item["ref"] == name and item["available"], item
        assert item["where"].startswith(f"local copy {standins}")


@pytest.fixture
def nothing_cached(monkeypatch, tmp_path):
    """Offline (conftest), no local copies and empty Hugging Face caches."""
    import datasets
    from huggingface_hub import constants

    monkeypatch.setenv(subsets.DATA_DIR_ENV, str(tmp_path / "empty"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setattr(constants, "HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf" / "datasets"))
    monkeypatch.delenv("HF_DATASETS_CACHE", raising=False)


def test_offline_without_copies_each_missing_subset_is_one_line_before_any_stage(cli, nothing_cached, workspace_dir):
    inputs = _inputs(cli)
    for role, name in SUBSET_INPUTS.items():
        item = inputs[role]
        hub_id = subsets.get(name).hub_id
        assert not item["available"] and "unknown" not in item["where"]
        assert hub_id in item["where"] and f"hf download {hub_id} --repo-type dataset" in item["hint"]
        assert f"$IFGUIDE_DATA_DIR/{hub_id}" in item["hint"]
    line = assert_one_line_error(cli("run", "--preset", "paper"), *SUBSET_INPUTS, code=2)
    assert "nothing was run" in line and not list(workspace_dir.glob("*/*/manifest.json"))


def test_a_command_offline_without_a_copy_names_the_hub_id_and_how_to_supply_it(cli, nothing_cached, workspace_dir):
    line = assert_one_line_error(cli("train", "tiny", "--data", "owt-train-1b"), subsets.OWT_CHUNKS, "hf download",
                                 "$IFGUIDE_DATA_DIR")
    assert not list(workspace_dir.glob("datasets/*/manifest.json")), line


# ---- options that do not apply, ids the model cannot read ---------------------------------------------------
def test_layout_options_that_cannot_shape_chunks_are_one_line(cli, standins):
    assert_one_line_error(cli("train", "tiny", "--data", "owt-test", "--seq-len", "16"), "--seq-len 16", "8 tokens", code=2)
    assert_one_line_error(cli("train", "tiny", "--data", "owt-test", "--layout", "documents"), "--layout documents", code=2)
    assert_one_line_error(cli("train", "tiny", "--data", "owt-test", "--label-field", "y"), "--label-field", code=2)
    from ifguide_cli.core.data import load_queries

    with pytest.raises(IfguideError, match="pre-tokenized chunks, not text records"):
        load_queries("owt-test")


def test_chunk_ids_outside_the_tokenizer_vocabulary_are_refused(standins):
    from ifguide_cli.core.data.chunks import chunk_blocks

    assert np.concatenate(list(chunk_blocks("owt-test", 5, vocab=2048))).shape == (5, CHUNK)
    with pytest.raises(IfguideError, match="outside the 1000-token vocabulary"):
        list(chunk_blocks("owt-test", 5, vocab=1000))


# ---- the pipeline's fluency eval and the early dtype check -------------------------------------------------
def test_paper_finetune_evaluates_lambada_by_last_token(monkeypatch):
    """The preset's `eval.fluency.lambada_metric` reaches the fluency eval the pipeline runs (the reference's metric)."""
    import ifguide_cli.core.evaluation as evaluation
    from ifguide_cli.core.pipeline.reading import load_spec
    from ifguide_cli.core.pipeline.runner import _Run
    from ifguide_cli.core.pipeline.spec import preset_path
    from ifguide_cli.core.pipeline.stage_configs import stage_configs
    from ifguide_cli.core.stage import Result

    spec = load_spec(preset_path("paper-finetune"))
    seen = {}

    def fluency(ws, mref, config, **kwargs):
        seen["config"] = config
        return Result(SimpleNamespace(id="e", kind="evals", summary={}), False)

    monkeypatch.setattr(evaluation, "evaluate_fluency", fluency)
    monkeypatch.setattr(evaluation, "evaluate_toxicity", lambda *a, **k: Result(SimpleNamespace(id="t", kind="evals", summary={}), False))
    run = _Run(None, spec, stage_configs(spec), reporter=None, force=False, on_start=None, on_stage=None)
    run.evaluate_system("ifguide", "pythia-2.8b-deduped", SimpleNamespace(tokenizer="EleutherAI/pythia-2.8b-deduped"), None)
    config = seen["config"]
    assert (config.ppl_data, config.lambada, config.lambada_metric) == ("owt-test", "lambada-reference", "last-token")
    assert config.lambada_metrics(config.lambada) == ("last-token",)


def test_bf16_weights_that_cannot_train_fail_before_the_data_is_read(cli, workspace_dir):
    res = cli("train", "tiny", "--data", "tiny", "--weights-dtype", "bf16", "--precision", "fp32")
    assert_one_line_error(res, "--weights-dtype bf16", code=2)
    assert not list(workspace_dir.glob("datasets/*/manifest.json"))  # nothing was tokenized first
