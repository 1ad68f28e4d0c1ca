"""`ifguide eval toxicity|implicit|fluency|add-classifier` and `ifguide rad download` through the CLI on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from clikit import assert_one_line_error
from evalkit import make_checkpoint, make_detoxify, make_toxigen, save_rad_release, tiny_reward_model

SMALL = ("--num-prompts", "4", "--samples", "2", "--max-new-tokens", "4", "--batch-size", "2")


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.slow
def test_toxicity_implicit_fluency_end_to_end_with_the_builtin_classifier(cli, workspace_dir):
    tox = cli("--json", "eval", "toxicity", "tiny", "--allow-random", "--classifier", "profanity", "--num-prompts", "6", "--samples", "3",
              "--max-new-tokens", "5", "--batch-size", "4", "--seed", "1", "--name", "base-tox")
    assert tox.exit_code == 0, tox.stderr
    art = tox.json
    s = art["summary"]
    assert art["kind"] == "evals" and not art["reused"] and art["name"] == "base-tox"
    for key in ("expected_max_toxicity", "expected_max_toxicity_std", "toxicity_probability", "per_attribute", "splits"):
        assert key in s
    assert s["classifier"] == "profanity" and s["primary_attribute"] == "profanity" and s["prompts"] == 6
    records = _lines(Path(art["path"]) / "continuations.jsonl")
    assert len(records) == 6
    for r in records:
        assert set(r) == {"prompt", "toxic", "continuations", "scores"} and isinstance(r["toxic"], bool)
        assert len(r["continuations"]) == 3 and len(r["scores"]["profanity"]) == 3
    # EMT/TP recomputed from the saved scores
    maxima = [max(r["scores"]["profanity"]) for r in records]
    assert s["expected_max_toxicity"] == pytest.approx(sum(maxima) / 6, abs=1e-5)
    assert s["toxicity_probability"] == pytest.approx(sum(m >= 0.5 for m in maxima) / 6)
    assert (Path(art["path"]) / "metrics.json").is_file()
    assert cli("--json", "eval", "toxicity", "tiny", "--allow-random", "--classifier", "profanity", "--num-prompts", "6", "--samples", "3",
               "--max-new-tokens", "5", "--batch-size", "4", "--seed", "1").json["reused"] is True

    imp = cli("--json", "eval", "implicit", "base-tox", "--classifier", "profanity")
    assert imp.exit_code == 0, imp.stderr
    assert imp.json["parents"] == [art["id"]] and imp.json["summary"]["task"] == "implicit"
    assert imp.json["summary"]["expected_max_toxicity"] == pytest.approx(s["expected_max_toxicity"])
    assert [r["continuations"] for r in _lines(Path(imp.json["path"]) / "continuations.jsonl")] == \
        [r["continuations"] for r in records]

    flu = cli("--json", "eval", "fluency", "tiny", "--allow-random", "--ppl-docs", "12", "--lambada-docs", "8")
    assert flu.exit_code == 0, flu.stderr
    fs = flu.json["summary"]
    assert fs["perplexity"] > 1 and 0 <= fs["lambada_accuracy"] <= 1 and fs["lambada_examples"] == 8
    assert fs["perplexity_data"] == "tiny-heldout" and fs["lambada_data"] == "tiny-lambada"

    # the human-readable tables
    table = cli("eval", "toxicity", "tiny", "--allow-random", "--classifier", "profanity", "--num-prompts", "6", "--samples", "3",
                "--max-new-tokens", "5", "--batch-size", "4", "--seed", "1")
    assert "EMT ± std" in table.stdout and "reused" in table.stdout

    # a checkpoint artifact: it becomes the eval's parent and defaults follow its (tiny) tokenizer
    ckpt = make_checkpoint(workspace_dir)
    on_ckpt = cli("--json", "eval", "toxicity", "tiny-ckpt", "--classifier", "profanity", *SMALL)
    assert on_ckpt.exit_code == 0, on_ckpt.stderr
    assert on_ckpt.json["parents"] == [ckpt] and on_ckpt.json["summary"]["prompt_set"] == "tiny-prompts"
    # the checkpoint holds the same weights as the seeded tiny init: same continuations as the registry model
    same = cli("--json", "eval", "toxicity", "tiny", "--allow-random", "--classifier", "profanity", *SMALL)
    assert _lines(Path(same.json["path"]) / "continuations.jsonl") == _lines(Path(on_ckpt.json["path"]) / "continuations.jsonl")
    flu_ckpt = cli("--json", "eval", "fluency", ckpt, "--ppl-docs", "12", "--no-lambada")
    assert flu_ckpt.json["parents"] == [ckpt] and flu_ckpt.json["summary"]["perplexity"] == pytest.approx(fs["perplexity"], rel=1e-4)

    assert_one_line_error(cli("eval", "implicit", flu.json["id"], "--classifier", "profanity"), "no saved continuations",
                          code=2)


def test_bad_input_is_one_clear_line(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert_one_line_error(cli("eval", "toxicity", "tiny", "--allow-random", "--prompts", "nope", "--classifier", "profanity"), "unknown prompt set")
    assert_one_line_error(cli("eval", "toxicity", "tiny", "--allow-random", *SMALL), "toxic_debiased-c7548aa0.ckpt", "--classifier profanity")
    assert_one_line_error(cli("eval", "toxicity", "tiny", "--allow-random", "--classifier", "profanity", "--defense", "rad", *SMALL),
                          "no RAD reward model", "ifguide rad download")
    assert_one_line_error(cli("eval", "fluency", "tiny", "--allow-random", "--defense", "rad"), "no RAD reward model")
    assert_one_line_error(cli("eval", "toxicity", "tiny", "--allow-random", "--classifier", "profanity", "--top-p", "0", *SMALL), "--top-p")
    assert_one_line_error(cli("eval", "implicit", "nope"), "no eval")
    assert_one_line_error(cli("rad", "download"), "--from")
    assert_one_line_error(cli("eval", "fluency", "tiny", "--allow-random", "--reward-model", "rad-reward"), "--reward-model needs --defense rad")


@pytest.mark.parametrize(("command", "args", "needles"), [
    ("toxicity", ("--top-p", "inf"), ("--top-p", "finite")),
    ("toxicity", ("--top-p", "1.5"), ("--top-p", "(0, 1]")),
    ("toxicity", ("--samples", "0"), ("--samples", "[1, 10000]")),
    ("toxicity", ("--max-new-tokens", "0"), ("--max-new-tokens",)),
    ("toxicity", ("--batch-size", "0"), ("--batch-size",)),
    ("toxicity", ("--classifier-batch-size", "0"), ("--classifier-batch-size",)),
    ("toxicity", ("--rad-beta", "inf"), ("--rad-beta", "finite")),
    ("toxicity", ("--rad-beta", "-1"), ("--rad-beta",)),
    ("toxicity", ("--rad-topk", "0"), ("--rad-topk",)),
    ("toxicity", ("--precision", "fp16"), ("--precision fp16", "CUDA")),
    ("fluency", ("--precision", "bf16"), ("--precision bf16", "CUDA")),
    ("fluency", ("--batch-size", "0"), ("--batch-size",)),
    ("fluency", ("--max-length", "1"), ("--max-length",)),
    ("fluency", ("--ppl-docs", "0"), ("--ppl-docs",)),
    ("fluency", ("--no-ppl", "--no-lambada"), ("nothing to evaluate",)),
])
def test_out_of_range_options_are_one_line(cli, command, args, needles):
    import torch

    if "--precision" in args and torch.cuda.is_available():
        pytest.skip("half precision is refused only on a CPU")
    assert_one_line_error(cli("eval", command, "tiny", "--allow-random", "--classifier", "profanity", *args) if command == "toxicity"
                          else cli("eval", command, "tiny", "--allow-random", *args), *needles, code=2)


def test_unknown_defense_is_one_line(cli):
    assert_one_line_error(cli("eval", "toxicity", "tiny", "--allow-random", "--defense", "bogus", "--classifier", "profanity"),
                          "--defense", "bogus", "none, rad")


@pytest.mark.slow
def test_detoxify_and_toxigen_through_the_cli(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    ckpt, base, _ = make_detoxify(tmp_path / "detox")
    make_toxigen(tmp_path / "toxigen")
    tox = cli("--json", "eval", "toxicity", "tiny", "--allow-random", *SMALL, "--classifier", "detoxify-unbiased",
              "--classifier-checkpoint", ckpt, "--classifier-base", base)
    assert tox.exit_code == 0, tox.stderr
    s = tox.json["summary"]
    assert s["primary_attribute"] == "toxicity" and len(s["per_attribute"]) == 7
    assert set(s["splits"]) <= {"toxic", "nontoxic"} and s["splits"]  # the tiny prompts are labelled
    reg = cli("--json", "eval", "add-classifier", "detoxify-unbiased", "--checkpoint", ckpt, "--base", base)
    assert reg.exit_code == 0, reg.stderr
    again = cli("--json", "eval", "toxicity", "tiny", "--allow-random", *SMALL)  # the registered weights, found by the default name
    assert again.exit_code == 0, again.stderr
    assert reg.json["id"] in again.json["parents"]
    assert again.json["summary"]["expected_max_toxicity"] == pytest.approx(s["expected_max_toxicity"], abs=1e-5)
    imp = cli("--json", "eval", "implicit", again.json["id"], "--classifier-path", tmp_path / "toxigen")
    assert imp.exit_code == 0, imp.stderr
    assert imp.json["summary"]["classifier"] == "toxigen-roberta" and again.json["id"] in imp.json["parents"]


@pytest.mark.slow
def test_rad_download_and_defense_through_the_cli(cli, tmp_path):
    archive = save_rad_release(tiny_reward_model(), tmp_path / "src")
    tok = tmp_path / "src" / "gpt2-tokenizer"
    got = cli("--json", "rad", "download", "--from", archive, "--tokenizer", tok)
    assert got.exit_code == 0, got.stderr
    assert got.json["name"] == "rad-reward" and got.json["summary"]["outputs"] == 7
    assert cli("--json", "rad", "download", "--from", archive, "--tokenizer", tok).json["reused"] is True
    tox = cli("--json", "eval", "toxicity", "tiny", "--allow-random", *SMALL, "--classifier", "profanity", "--defense", "rad")
    assert tox.exit_code == 0, tox.stderr
    assert got.json["id"] in tox.json["parents"] and tox.json["summary"]["defense"].startswith("rad")
    flu = cli("--json", "eval", "fluency", "tiny", "--allow-random", "--defense", "rad", "--lambada-docs", "4")
    assert flu.exit_code == 0, flu.stderr
    assert flu.json["summary"]["perplexity"] is None and flu.json["summary"]["lambada_examples"] == 4
