"""`finetune --lora-rank`: adapters trained with the penalty, the base untouched, resume, merge, and use downstream."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from clikit import assert_one_line_error, invoke_cli
from safetensors.torch import load_file, save_file

torch.set_num_threads(1)

KILL_AFTER_STEP = Path(__file__).with_name("kill_after_step.py")
BASE = ["--max-steps", "20", "--batch-size", "16", "--eval-docs", "8", "--logging-steps", "5"]
LORA = ["--lora-rank", "8", "--max-steps", "16", "--batch-size", "16", "--lr", "1e-2", "--eval-docs", "8",
        "--save-steps", "4", "--logging-steps", "1", "--seed", "3"]


def _cli(ws: Path, *args: str) -> dict:
    result = invoke_cli(ws, "--json", *args)
    assert result.exit_code == 0, result.stderr
    return result.json


def _mask(ws_root: Path, dataset_id: str, shape) -> tuple[str, torch.Tensor]:
    """A mask artifact over the dataset: ten tokens in every other row (so every batch holds masked tokens)."""
    from ifguide_cli.core.store.workspace import Workspace

    ws = Workspace(ws_root)
    mask = torch.zeros(shape, dtype=torch.bool)
    mask[::2, 10:20] = True

    def build(ctx):
        save_file({"mask": mask, "ranking": torch.arange(shape[0])}, str(ctx.staging / "mask.safetensors"))
        return {"masked_tokens": int(mask.sum())}

    art, _ = ws.create("masks", {"test": "lora", "dataset": dataset_id}, [dataset_id], build)
    return art.id, mask


def _model(ws_root: Path, ref: str):
    from ifguide_cli.core.models import load_model, resolve_model
    from ifguide_cli.core.store.workspace import Workspace

    return load_model(resolve_model(ref, Workspace(ws_root)))


def _masked_loglik(model, corpus, mask) -> float:
    from ifguide_cli.core.training.metrics import token_nll

    s = token_nll(model, corpus.input_ids, corpus.attention_mask, mask, batch_size=64)
    return -s["masked_nll"] / s["masked_tokens"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    ws = tmp_path_factory.mktemp("lora") / "ws"
    return ws, _cli(ws, "train", "tiny", "--data", "tiny", *BASE)


@pytest.mark.slow
def test_lora_penalty_lowers_the_masked_tokens_and_leaves_the_base_weights_untouched(base):
    from ifguide_cli.core.data import load_corpus
    from ifguide_cli.core.store.workspace import Workspace

    ws, b = base
    dataset = b["config"]["dataset"]
    corpus = load_corpus(Workspace(ws).resolve(dataset, "datasets"))
    mask_id, mask = _mask(ws, dataset, corpus.shape)
    guided = _cli(ws, "finetune", b["id"], "--data", "tiny", "--mask", mask_id, "--lambda", "4", *LORA)
    plain = _cli(ws, "finetune", b["id"], "--data", "tiny", *LORA)

    assert not (Path(guided["path"]) / "model" / "model.safetensors").exists()  # the adapter alone is stored
    adapter = load_file(str(Path(guided["path"]) / "adapter" / "adapter_model.safetensors"))
    assert adapter and all("lora_" in name for name in adapter)
    assert 0 < guided["summary"]["trainable_share"] < 0.1 and guided["summary"]["lora_rank"] == 8

    base_model, g, p = _model(ws, b["id"]), _model(ws, guided["id"]), _model(ws, plain["id"])
    adapted = {n for n, m in base_model.named_modules() if isinstance(m, torch.nn.Linear)} - {"embed_out"}
    base_weights, merged = base_model.state_dict(), g.state_dict()
    for name, value in base_weights.items():
        if name.rsplit(".", 1)[0] not in adapted:  # embeddings, norms, output head: exactly the base's
            assert torch.equal(merged[name], value), name
    assert any(not torch.equal(merged[f"{m}.weight"], base_weights[f"{m}.weight"]) for m in adapted)

    # the penalty acts through the adapters: the masked tokens' training CE rises
    log = [json.loads(line) for line in (Path(guided["path"]) / "train_log.jsonl").read_text().splitlines()]
    ce = [r["ce_masked"] for r in log if "ce_masked" in r]
    lg, lp = _masked_loglik(g, corpus, mask), _masked_loglik(p, corpus, mask)
    print(f"\nmasked avg log-lik: LoRA + penalty {lg:.4f}, plain LoRA {lp:.4f}; masked training CE {ce}")
    assert ce[-1] > ce[0] + 0.1
    assert lg < lp - 0.05  # less likely than after the same LoRA fine-tune without the penalty


@pytest.mark.slow
def test_a_killed_lora_run_resumes_to_the_same_adapter(base):
    ws, b = base
    run = ["finetune", b["id"], "--data", "tiny", *LORA, "--seed", "11"]  # a seed no other test trains with
    cmd = [sys.executable, str(KILL_AFTER_STEP), "6", "--workspace", str(ws), "--json", *run]
    killed = subprocess.run(cmd, capture_output=True, text=True, timeout=900,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
    assert killed.returncode == -9, killed.stderr[-2000:]
    resumed = _cli(ws, *run)
    assert resumed["summary"]["resumed_from_step"] == 4
    wr = load_file(str(Path(resumed["path"]) / "adapter" / "adapter_model.safetensors"))
    full = _cli(ws, *run, "--force")  # the same run uninterrupted (same id, rebuilt from scratch)
    assert full["id"] == resumed["id"] and full["summary"]["resumed_from_step"] is None
    wf = load_file(str(Path(full["path"]) / "adapter" / "adapter_model.safetensors"))
    assert wf.keys() == wr.keys() and all(torch.equal(wf[k], wr[k]) for k in wf)


@pytest.mark.slow
def test_merge_publishes_full_weights_equal_to_the_adapter_merged_in_memory(base):
    ws, b = base
    lora = _cli(ws, "finetune", b["id"], "--data", "tiny", *LORA, "--merge", "--name", "lora-m")
    merged = lora["merged"]
    assert merged["parents"] == [lora["id"]] and merged["name"] == "lora-m-merged"
    assert (Path(merged["path"]) / "model" / "model.safetensors").is_file()
    in_memory, stored = _model(ws, lora["id"]).state_dict(), _model(ws, merged["id"]).state_dict()
    assert all(torch.equal(in_memory[k], stored[k]) for k in stored)
    again = _cli(ws, "finetune", b["id"], "--data", "tiny", *LORA, "--merge")
    assert again["reused"] and again["merged"]["id"] == merged["id"] and again["merged"]["reused"]


@pytest.mark.slow
def test_eval_fluency_reads_a_lora_checkpoint(base):
    ws, b = base
    lora = _cli(ws, "finetune", b["id"], "--data", "tiny", *LORA)
    out = _cli(ws, "eval", "fluency", lora["id"], "--ppl-docs", "16", "--no-lambada")
    assert out["parents"][0] == lora["id"] and out["summary"]["perplexity"] > 1


def test_lora_options_are_checked_before_any_work(cli):
    assert_one_line_error(cli("train", "tiny", "--data", "tiny", "--lora-rank", "4"), "--lora-rank applies to `finetune`")
    assert_one_line_error(cli("finetune", "tiny", "--data", "tiny", "--lora-alpha", "8"), "need --lora-rank")
    assert_one_line_error(cli("finetune", "tiny", "--data", "tiny", "--lora-rank", "-1"), "--lora-rank")


def test_lora_targets_that_match_nothing_name_the_layers():
    from ifguide_cli.core.errors import IfguideError
    from ifguide_cli.core.lora import target_modules
    from ifguide_cli.core.models import load_model, resolve_model

    model = load_model(resolve_model("tiny"), from_scratch=True)
    assert "gpt_neox.layers.0.attention.query_key_value" in target_modules(model, None)
    assert all(n.endswith("query_key_value") for n in target_modules(model, "query_key_value"))
    with pytest.raises(IfguideError, match="matches no linear layer") as err:
        target_modules(model, "q_proj")
    assert "dense_h_to_4h" in err.value.one_line()
