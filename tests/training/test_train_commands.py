"""`ifguide train` / `ifguide finetune`: artifacts, reuse, options, config files, and one-line errors (fast)."""

from __future__ import annotations

import dataclasses
import json
import typing

import pytest
import torch
from clikit import assert_one_line_error
from safetensors.torch import save_file

from ifguide_cli.core import notes
from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.training import PROFILES, RunOptions, SetupOptions, TrainConfig, batch_layout, resolve_config, trackers
from ifguide_cli.core.training.config import BY_PROFILE, FIELDS, Profile, default_profile

torch.set_num_threads(1)

# a few optimizer steps on the packaged tiny model/data: enough to exercise the whole path
MICRO = ["--max-steps", "2", "--batch-size", "8", "--save-steps", "1", "--eval-docs", "8", "--logging-steps", "1"]


def _make_mask(ws_root, dataset_id: str | None, shape, *, parents=None, fill_rows=(0, 1, 2)):
    """A mask artifact as `ifguide mask` writes it (mask.safetensors: mask bool (N, T), ranking)."""
    from ifguide_cli.core.store.workspace import Workspace

    ws = Workspace(ws_root)
    mask = torch.zeros(shape, dtype=torch.bool)
    for r in fill_rows:
        mask[r, 10:20] = True

    def build(ctx):
        save_file({"mask": mask, "ranking": torch.arange(shape[0])}, str(ctx.staging / "mask.safetensors"))
        return {"masked_tokens": int(mask.sum())}

    parents = parents if parents is not None else ([dataset_id] if dataset_id else [])
    art, _ = ws.create("masks", {"test": True, "dataset": dataset_id, "shape": list(shape)}, parents, build)
    return art


@pytest.fixture
def trained(cli):
    """A 2-step checkpoint of `tiny` trained from scratch (shared by the tests that need one)."""
    result = cli("--json", "train", "tiny", "--data", "tiny", *MICRO)
    assert result.exit_code == 0, result.stderr
    return result.json


def test_train_writes_checkpoint_artifact(trained, workspace_dir):
    from ifguide_cli.core.models import load_model, resolve_model
    from ifguide_cli.core.store.workspace import Workspace

    art = trained
    path = workspace_dir / "checkpoints" / art["id"]
    model_dir = path / "model"
    assert (model_dir / "model.safetensors").is_file() and (model_dir / "config.json").is_file()
    assert (model_dir / "tokenizer.json").is_file()
    assert not list(model_dir.glob("*.bin"))  # safetensors only
    assert (path / "metrics.json").is_file()
    log = [json.loads(line) for line in (path / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [1, 2]
    assert any("eval_loss" in r for r in log)
    # the intermediate checkpoints, and TensorBoard's event files when it is installed (the default tracker)
    expected = ["checkpoint-1", "checkpoint-2"] + (["runs"] if trackers.installed("tensorboard") else [])
    assert sorted(p.name for p in (path / "trainer").iterdir()) == expected
    assert not (path / "trainer" / "checkpoint-2" / "optimizer.pt").exists()  # dropped once finished

    cfg = art["config"]
    assert cfg["tokenizer"] == "tiny" and cfg["family"] == "gpt_neox" and cfg["mode"] == "pretrain"
    assert cfg["mask"] is None and cfg["seed"] == 0 and cfg["profile"] == "tiny"
    assert cfg["train"]["max_steps"] == 2 and cfg["train"]["batch_size"] == 8
    assert cfg["train"]["learning_rate"] == PROFILES["tiny"]["pretrain"]["learning_rate"]
    assert art["parents"] == [cfg["dataset"]]
    summary = art["summary"]
    assert summary["steps"] == 2 and summary["precision"] == "fp32" and summary["eval_loss"] > 0
    assert summary["tokens_per_step"] == 8 * 64

    # the checkpoint is a model reference for the next stages
    ws = Workspace(workspace_dir)
    mref = resolve_model(art["id"], ws)
    assert mref.source == "checkpoint" and mref.tokenizer == "tiny" and mref.family == "gpt_neox"
    load_model(mref)


def test_identical_config_is_reused_and_force_retrains(cli, trained):
    again = cli("--json", "train", "tiny", "--data", "tiny", *MICRO)
    assert again.exit_code == 0 and again.json["reused"] and again.json["id"] == trained["id"]
    other = cli("--json", "train", "tiny", "--data", "tiny", *MICRO, "--seed", "1")
    assert other.exit_code == 0 and not other.json["reused"] and other.json["id"] != trained["id"]
    forced = cli("--json", "train", "tiny", "--data", "tiny", *MICRO, "--force")
    assert forced.exit_code == 0 and not forced.json["reused"] and forced.json["id"] == trained["id"]


def test_runtime_options_do_not_change_the_id(cli, trained, tmp_path):
    log = tmp_path / "log.jsonl"
    again = cli("--json", "train", "tiny", "--data", "tiny", *MICRO, "--micro-batch-size", "4", "--log-file", str(log))
    assert again.json["id"] == trained["id"] and again.json["reused"]


def test_finetune_with_mask_records_lineage(cli, trained, workspace_dir, tmp_path):
    ds = trained["config"]["dataset"]
    mask = _make_mask(workspace_dir, ds, (3000, 64), fill_rows=range(0, 3000, 2))
    log = tmp_path / "ft.jsonl"
    result = cli("--json", "finetune", trained["id"], "--data", "tiny", "--mask", mask.id, "--lambda", "0.5",
                 *MICRO, "--log-file", str(log))
    assert result.exit_code == 0, result.stderr
    art = result.json
    assert set(art["parents"]) == {trained["id"], ds, mask.id}
    cfg = art["config"]
    assert cfg["mask"] == mask.id and cfg["lambda"] == 0.5 and cfg["train"]["lam"] == 0.5 and cfg["mode"] == "finetune"
    assert cfg["model"] == {"source": "checkpoint", "artifact_id": trained["id"], "family": "gpt_neox"}
    assert cfg["tokenizer"] == "tiny" and cfg["family"] == "gpt_neox" and cfg["dataset"] == ds
    assert cfg["train"]["learning_rate"] == PROFILES["tiny"]["finetune"]["learning_rate"]
    assert cfg["train"]["weight_decay"] == PROFILES["tiny"]["finetune"]["weight_decay"]
    assert art["summary"]["masked_tokens"] == 15000 and art["summary"]["masked_token_nll"] > 0
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert any("ce_masked" in r for r in lines)  # the masked tokens' CE is logged while training
    lineage = cli("--json", "workspace", "show", art["id"])
    assert lineage.exit_code == 0


def test_lambda_without_mask_warns_and_keeps_the_id(cli, trained):
    notes.reset()
    result = cli("--json", "train", "tiny", "--data", "tiny", *MICRO, "--lambda", "3")
    assert result.exit_code == 0 and result.json["id"] == trained["id"]
    said = [n for n in notes.collected() if not n.startswith("this run covers")]  # the 2-step run's coverage note aside
    assert said == ["--lambda has no effect without --mask (plain language-model training)"]


def test_yaml_config_and_cli_overrides(cli, tmp_path):
    cfg = tmp_path / "train.yaml"
    cfg.write_text("lr: 0.002\nbatch-size: 8\nmax_steps: 2\nwarmup_ratio: 0.1\nsave_steps: 1\neval_docs: 8\nseed: 7\n")
    result = cli("--json", "train", "tiny", "--data", "tiny", "--config", str(cfg), "--seed", "3")
    assert result.exit_code == 0, result.stderr
    t = result.json["config"]["train"]
    assert t["learning_rate"] == 0.002 and t["batch_size"] == 8 and t["max_steps"] == 2 and t["warmup_ratio"] == 0.1
    assert t["seed"] == 3  # the option wins over the file


def test_resolve_config_precedence_and_batch_tokens():
    tc, ro = resolve_config("finetune", "paper", {"lr": 1e-4, "micro-batch-size": 4}, {"weight_decay": 0.1, "batch_tokens": 2048 * 64}, 2048)
    assert tc.learning_rate == 1e-4 and tc.weight_decay == 0.1 and tc.batch_size == 64 and ro.micro_batch_size == 4
    assert tc.adam_beta1 == 0.9 and tc.adam_beta2 == 0.95 and tc.lr_scheduler == "cosine" and tc.warmup_ratio == 0.01
    assert tc.max_grad_norm == 1.0 and tc.mode == "finetune"
    paper = resolve_config("pretrain", "paper", None, {}, 2048)[0]
    assert paper.learning_rate == 6e-4 and paper.batch_size * 2048 == 256 * 2048
    ft = resolve_config("finetune", "paper", None, {}, 2048)[0]
    assert ft.learning_rate == 6e-5 and ft.weight_decay == 4e-4
    assert TrainConfig().lam == 1.0


def test_batch_layout():
    assert batch_layout(256, 8, 1) == (8, 32)
    assert batch_layout(256, 8, 4) == (8, 8)
    assert batch_layout(32, None, 2) == (16, 1)
    with pytest.raises(IfguideError):
        batch_layout(30, 8, 1)


# ---- bad input: one clear line, no traceback --------------------------------------------------------
def test_negative_lambda_is_rejected(cli):
    assert_one_line_error(cli("train", "tiny", "--data", "tiny", "--lambda", "-1"), "--lambda", code=2)


def test_bad_ranges_are_rejected(cli):
    assert_one_line_error(cli("train", "tiny", "--data", "tiny", "--lr", "0"), "--lr", code=2)
    assert_one_line_error(cli("train", "tiny", "--data", "tiny", "--warmup-ratio", "1.5"), "--warmup-ratio", code=2)
    assert_one_line_error(cli("train", "tiny", "--data", "tiny", "--scheduler", "bogus"), "scheduler", code=2)
    assert_one_line_error(cli("train", "tiny", "--data", "tiny", "--precision", "fp64"), "--precision", "fp16", code=2)
    assert_one_line_error(cli("train", "tiny", "--data", "tiny", "--profile", "huge"), "--profile", "paper", code=2)
    assert_one_line_error(cli("train", "tiny", "--data", "tiny", "--batch-size", "30", "--micro-batch-size", "8"), "micro-batch", code=2)


def test_unknown_model(cli):
    assert_one_line_error(cli("train", "no-such-model", "--data", "tiny"), "unknown model", code=2)
    assert_one_line_error(cli("finetune", "no-such-model", "--data", "tiny"), "unknown model", code=2)


def test_missing_checkpoint(cli):
    assert_one_line_error(cli("finetune", "deadbeef0000", "--data", "tiny"), "no checkpoint", "deadbeef0000")
    assert_one_line_error(cli("finetune", "./no/such/folder", "--data", "tiny"), "unknown model")


def test_finetune_needs_pretrained_weights(cli):
    assert_one_line_error(cli("finetune", "tiny", "--data", "tiny"), "no pretrained weights", "ifguide train tiny", code=2)


def test_missing_mask(cli):
    assert_one_line_error(cli("train", "tiny", "--data", "tiny", "--mask", "feedface1234"), "no mask", "feedface1234")


def test_mask_computed_on_another_dataset(cli, workspace_dir):
    # the mask was computed on the 32-token layout of the corpus; training uses the default 64
    from ifguide_cli.core.data import corpus_artifact, default_corpus_config
    from ifguide_cli.core.models import resolve_model
    from ifguide_cli.core.store.workspace import Workspace

    ws = Workspace(workspace_dir)
    other = corpus_artifact(ws, "tiny", resolve_model("tiny"), default_corpus_config("tiny", seq_len=32)).artifact
    mask = _make_mask(workspace_dir, other.id, (3000, 32))
    # the same source is laid out as the mask's dataset (its 32-token rows); asking for other rows names that dataset
    err = assert_one_line_error(cli("train", "tiny", "--data", "tiny", "--mask", mask.id, "--seq-len", "64"),
                                "--seq-len 32", "--seq-len 64", code=2)
    assert f"--data {other.id}" in err


def test_mask_shape_mismatch(cli, workspace_dir):
    mask = _make_mask(workspace_dir, None, (100, 64))  # from a plain score file: no dataset id, wrong shape
    assert_one_line_error(cli("train", "tiny", "--data", "tiny", "--mask", mask.id), "(100, 64)", "(3000, 64)", code=2)


def test_wrong_artifact_kind_for_mask(cli, trained):
    assert_one_line_error(cli("train", "tiny", "--data", "tiny", "--mask", trained["id"]), "not a mask", code=2)


def test_bad_config_file(cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rat: 0.1\n")
    assert_one_line_error(cli("train", "tiny", "--data", "tiny", "--config", str(bad)), "learning_rat", code=2)
    assert_one_line_error(cli("train", "tiny", "--data", "tiny", "--config", str(tmp_path / "none.yaml")), "does not exist", code=2)


def test_help_is_instant_and_lists_options(cli):
    out = cli("train", "--help").stdout
    for opt in ("--data", "--mask", "--lambda", "--config", "--max-steps", "--lr", "--batch-tokens", "--resume"):
        assert opt in out
    assert "--max-steps" in cli("finetune", "--help").stdout


def test_half_precision_needs_cuda(cli):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert_one_line_error(cli("train", "tiny", "--data", "tiny", "--precision", "bf16"), "CUDA", code=2)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_bf16_autocast_on_gpu_keeps_fp32_weights(cli, workspace_dir):
    result = cli("--json", "train", "tiny", "--data", "tiny", *MICRO)
    assert result.exit_code == 0, result.stderr
    assert result.json["summary"]["precision"] == "bf16" and result.json["config"]["train"]["precision"] == "auto"
    from safetensors.torch import load_file

    weights = load_file(str(workspace_dir / "checkpoints" / result.json["id"] / "model" / "model.safetensors"))
    assert all(w.dtype == torch.float32 for w in weights.values())  # bf16 autocast, fp32 master weights


@pytest.mark.parametrize("option,value", [
    ("--lr", "inf"), ("--lr", "nan"), ("--lr", "0"), ("--lr", "-1e-3"), ("--weight-decay", "inf"), ("--weight-decay", "-0.1"),
    ("--lambda", "inf"), ("--lambda", "-1"), ("--epochs", "inf"), ("--epochs", "0"), ("--warmup-ratio", "2"),
    ("--warmup-ratio", "1"), ("--beta1", "1"), ("--beta2", "-0.5"), ("--adam-eps", "0"), ("--grad-clip", "-1"),
    ("--grad-clip", "inf"), ("--val-fraction", "1"), ("--batch-size", "0"), ("--max-steps", "0"), ("--eval-docs", "0"),
    ("--seed", "-1"), ("--micro-batch-size", "0"), ("--save-steps", "0"), ("--save-total-limit", "0"),
    ("--logging-steps", "0"), ("--eval-steps", "0"), ("--seq-len", "0"), ("--batch-tokens", "-64"),
])
def test_non_finite_and_out_of_range_options_are_one_line_errors(cli, workspace_dir, option, value):
    assert_one_line_error(cli("train", "tiny", "--data", "tiny", option, value), option, code=2)
    assert not (workspace_dir / "datasets").exists()  # rejected before any work


def test_finetune_rejects_the_same_values(cli):
    assert_one_line_error(cli("finetune", "x", "--data", "tiny", "--lr", "inf"), "--lr", "finite", code=2)


def test_batch_tokens_below_one_row(cli):
    assert_one_line_error(cli("train", "tiny", "--data", "tiny", "--batch-tokens", "32"), "--batch-tokens", "64", code=2)


def test_config_file_values_are_checked_like_options(cli, tmp_path):
    cfg = tmp_path / "bad.yaml"
    for text, needle in (("lr: .inf\n", "--lr"), ("learning_rate: -1\n", "--lr"), ("lambda: -2\n", "--lambda"),
                         ("scheduler: bogus\n", "--scheduler"), ("max-steps: 1.5\n", "--max-steps"),
                         ("precision: fp64\n", "--precision"), ("profile: huge\n", "--profile"), ("mode: finetune\n", "mode")):
        cfg.write_text(text)
        assert_one_line_error(cli("train", "tiny", "--data", "tiny", "--config", str(cfg)), needle, code=2)


def test_config_file_accepts_field_and_option_names(cli, tmp_path):
    cfg = tmp_path / "train.yaml"
    cfg.write_text("grad-clip: 0.5\nadam_beta2: 0.9\nbeta1: 0.8\nmax_steps: 1\nbatch_size: 8\nsave-steps: 1\n"
                   "eval_docs: 8\nprofile: tiny\nseq-len: 64\n")
    result = cli("--json", "train", "tiny", "--data", "tiny", "--config", str(cfg))
    assert result.exit_code == 0, result.stderr
    t = result.json["config"]["train"]
    assert (t["max_grad_norm"], t["adam_beta2"], t["adam_beta1"], t["max_steps"]) == (0.5, 0.9, 0.8, 1)


def test_one_declaration_per_option():
    """Every profile key is a declared field whose help says its default comes from the profile, and vice versa."""
    profiled = {k for modes in PROFILES.values() for values in modes.values() for k in values}
    assert profiled <= set(FIELDS)
    shown = {f.name for cls in (TrainConfig, RunOptions, SetupOptions) for f in dataclasses.fields(cls)
             if f.metadata.get("shown_default") == BY_PROFILE}
    assert shown == profiled - {"epochs"}  # epochs: 1 everywhere (the paper profile repeats it)
    assert set(typing.get_args(Profile)) == set(PROFILES)


def test_a_packaged_model_gets_the_tiny_profile_on_any_data():
    """`train tiny-4x --data my.jsonl` once got the paper's 256-row batches and one epoch (12 steps on 3,000
    documents): a CPU-sized packaged model trains with the tiny profile whatever the data; hub models keep the
    paper's; a checkpoint keeps the profile it was trained with."""
    assert default_profile("tiny-4x", "my.jsonl") == default_profile("tiny", "my.jsonl") == "tiny"
    assert default_profile("pythia-160m", "my.jsonl") == "paper"
    assert default_profile("pythia-160m", "tiny") == "tiny"
    assert default_profile("", "my.jsonl", base_profile="tiny") == "tiny"
