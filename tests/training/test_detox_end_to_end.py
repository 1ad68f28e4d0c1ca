"""End-to-end training on the packaged tiny data (slow): IF-Guide vs plain fine-tuning, kill-and-resume, DDP.

- A baseline trained from scratch learns the planted insults; fine-tuning it with a mask on the insult
  tokens of the planted toxic documents (λ = 1) makes those tokens far less likely than plain
  fine-tuning with the same seed and steps does, while the perplexity of every other token stays within 10%.
- A run SIGKILLed mid-way (by `kill_after_step.py`, a trainer callback the test injects) and run again ends with exactly the
  weights of an uninterrupted run.
- 2-process gloo DDP under torchrun follows the single-process loss trajectory with the same global batch.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from clikit import invoke_cli
from safetensors.torch import load_file, save_file

pytestmark = pytest.mark.slow
KILL_AFTER_STEP = Path(__file__).with_name("kill_after_step.py")  # runs the CLI, SIGKILLed after step K
torch.set_num_threads(1)

# the insult vocabulary of the planted toxic continuations (scripts/gen_tiny_assets.py, INSULT)
INSULT_WORDS = ["stupid", "dumb", "damn", "fucking", "worthless", "pathetic", "useless", "brainless", "idiot",
                "moron", "bastard", "jerk", "loser", "asshole", "dumbass", "jackass", "fool", "pig", "shut", "hell",
                "screw", "piss", "fuck", "suck", "crap", "shit", "bullshit", "garbage"]


def _cli(ws: Path, *args: str) -> dict:
    """The --json payload of a successful in-process `ifguide --workspace WS --json ARGS`."""
    result = invoke_cli(ws, "--json", *args)
    assert result.exit_code == 0, result.stderr
    return result.json


def _subprocess_env(**extra):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **extra}
    env.pop("IFGUIDE_HOME", None)
    return env


def _weights(art_path: str) -> dict:
    return load_file(str(Path(art_path) / "model" / "model.safetensors"))


def _losses(art_path: str) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in (Path(art_path) / "train_log.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in rows if "loss" in r]


def _insult_mask(ws_root: Path, dataset_id: str):
    """Mask artifact: the insult-word tokens of the planted toxic documents (the ground truth IF-Guide looks for)."""
    from ifguide_cli.core.data import load_corpus, load_records
    from ifguide_cli.core.models import load_tokenizer, resolve_model
    from ifguide_cli.core.store.workspace import Workspace

    ws = Workspace(ws_root)
    ds = ws.resolve(dataset_id, "datasets")
    corpus = load_corpus(ds)
    records, _ = load_records("tiny")
    tok = load_tokenizer(resolve_model("tiny"))
    pattern = re.compile(r"\b(" + "|".join(INSULT_WORDS) + r")\b", re.IGNORECASE)
    mask = torch.zeros(corpus.shape, dtype=torch.bool)
    for i, record in enumerate(records):
        if not record["planted_toxic"]:
            continue
        enc = tok(record["text"], add_special_tokens=False, return_offsets_mapping=True)
        assert enc["input_ids"][: corpus.shape[1]] == corpus.input_ids[i, : len(enc["input_ids"])].tolist()[: corpus.shape[1]]
        spans = [m.span() for m in pattern.finditer(record["text"])]
        for t, (a, b) in enumerate(enc["offset_mapping"][: corpus.shape[1]]):
            if any(a < e and b > s for s, e in spans):
                mask[i, t] = True

    def build(ctx):
        save_file({"mask": mask, "ranking": torch.arange(corpus.shape[0])}, str(ctx.staging / "mask.safetensors"))
        return {"masked_tokens": int(mask.sum())}

    art, _ = ws.create("masks", {"test": "insult-spans", "dataset": ds.id}, [ds.id], build)
    return art, mask, corpus


def _token_stats(art_path: str, corpus, mask, heldout) -> dict:
    from transformers import AutoModelForCausalLM

    from ifguide_cli.core.training.metrics import token_nll

    model = AutoModelForCausalLM.from_pretrained(str(Path(art_path) / "model"))
    s = token_nll(model, corpus.input_ids, corpus.attention_mask, mask, batch_size=64)
    h = token_nll(model, heldout.input_ids, heldout.attention_mask, batch_size=64)
    return {"masked_loglik": -s["masked_nll"] / s["masked_tokens"],
            "unmasked_ppl": math.exp(s["ordinary_nll"] / s["ordinary_tokens"]),
            "heldout_ppl": math.exp(h["nll"] / h["tokens"])}


def test_ifguide_finetune_suppresses_masked_tokens_and_keeps_perplexity(tmp_path):
    from ifguide_cli.core.data import load_corpus
    from ifguide_cli.core.store.workspace import Workspace

    ws = tmp_path / "ws"
    base = _cli(ws, "train", "tiny", "--data", "tiny", "--max-steps", "150")
    mask_art, mask, corpus = _insult_mask(ws, base["config"]["dataset"])
    guided = _cli(ws, "finetune", base["id"], "--data", "tiny", "--mask", mask_art.id, "--max-steps", "60")
    plain = _cli(ws, "finetune", base["id"], "--data", "tiny", "--max-steps", "60")
    assert guided["config"]["train"] == {**plain["config"]["train"], "lam": 1.0}  # same seed, steps and settings
    assert guided["config"]["mask"] == mask_art.id and plain["config"]["mask"] is None

    heldout = load_corpus(Workspace(ws).resolve(guided["config"]["eval_dataset"], "datasets"))
    b = _token_stats(base["path"], corpus, mask, heldout)
    g = _token_stats(guided["path"], corpus, mask, heldout)
    p = _token_stats(plain["path"], corpus, mask, heldout)
    print(f"\nmasked tokens: {int(mask.sum())} in {int(mask.any(1).sum())} documents")
    for label, s in (("baseline", b), ("IF-Guide", g), ("plain", p)):
        print(f"{label:9s} masked avg log-lik {s['masked_loglik']:8.3f}  unmasked ppl {s['unmasked_ppl']:.4f}  "
              f"held-out ppl {s['heldout_ppl']:.4f}")
    assert b["masked_loglik"] > -3.0  # the baseline has learned the planted insults
    assert g["masked_loglik"] < p["masked_loglik"] - 2.0  # clearly lower: e^-2 ≈ 7× less likely per token
    assert g["unmasked_ppl"] <= 1.10 * p["unmasked_ppl"]
    assert g["heldout_ppl"] <= 1.10 * p["heldout_ppl"]
    assert guided["summary"]["masked_token_nll"] > -p["masked_loglik"] + 2.0  # metrics.json shows the same


TRAIN_SMALL = ["--max-steps", "8", "--batch-size", "8", "--save-steps", "3", "--logging-steps", "1", "--eval-docs", "8",
               "--seed", "5"]


def test_kill_and_resume_gives_the_same_weights(tmp_path):
    ws_full, ws_killed = tmp_path / "full", tmp_path / "killed"
    full = _cli(ws_full, "train", "tiny", "--data", "tiny", *TRAIN_SMALL)

    cmd = [sys.executable, str(KILL_AFTER_STEP), "5", "--workspace", str(ws_killed), "--json", "train", "tiny", "--data", "tiny",
           *TRAIN_SMALL]
    killed = subprocess.run(cmd, env=_subprocess_env(), capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]  # SIGKILLed after step 5: no artifact, a staging folder
    assert not (ws_killed / "checkpoints").exists() or not any((ws_killed / "checkpoints").iterdir())
    staging = next((ws_killed / ".staging").glob("checkpoints-*"))
    assert (staging / "trainer" / "checkpoint-3" / "optimizer.pt").is_file()

    resumed = _cli(ws_killed, "train", "tiny", "--data", "tiny", *TRAIN_SMALL)
    assert resumed["id"] == full["id"] and resumed["summary"]["resumed_from_step"] == 3
    wf, wr = _weights(full["path"]), _weights(resumed["path"])
    assert wf.keys() == wr.keys()
    for name in wf:
        assert torch.equal(wf[name], wr[name]), name
    assert _losses(resumed["path"]) == _losses(full["path"])  # the log is continuous (steps 4-5 not doubled)


def test_restart_discards_the_partial_run(tmp_path):
    ws = tmp_path / "ws"
    cmd = [sys.executable, str(KILL_AFTER_STEP), "4", "--workspace", str(ws), "--json", "train", "tiny", "--data", "tiny",
           *TRAIN_SMALL]
    killed = subprocess.run(cmd, env=_subprocess_env(), capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9
    fresh = _cli(ws, "train", "tiny", "--data", "tiny", *TRAIN_SMALL, "--restart")
    assert fresh["summary"]["resumed_from_step"] is None and fresh["summary"]["steps"] == 8


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun not on PATH")
def test_two_process_gloo_ddp_matches_single_process(tmp_path):
    args = ["train", "tiny", "--data", "tiny", "--max-steps", "4", "--batch-size", "8", "--logging-steps", "1",
            "--save-steps", "4", "--eval-docs", "8"]
    single = _cli(tmp_path / "single", *args, "--micro-batch-size", "2")  # 4 accumulated micro-batches of 2
    cmd = ["torchrun", "--nproc-per-node", "2", "--master-port", "29561", "-m", "ifguide_cli",
           "--workspace", str(tmp_path / "ddp"), "--json", *args, "--micro-batch-size", "2"]  # 2 processes × 2 × 2
    out = subprocess.run(cmd, env=_subprocess_env(), capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stderr[-3000:]
    ddp = json.loads(out.stdout)  # rank 0 alone prints
    assert ddp["id"] == single["id"]  # the process layout does not change what is trained
    assert ddp["summary"]["world_size"] == 2 and ddp["summary"]["grad_accumulation"] == 2
    assert single["summary"]["grad_accumulation"] == 4
    ls, ld = _losses(single["path"]), _losses(ddp["path"])
    assert [s for s, _ in ls] == [s for s, _ in ld] == [1, 2, 3, 4]
    assert torch.allclose(torch.tensor([x for _, x in ld]), torch.tensor([x for _, x in ls]), atol=1e-4, rtol=0)
    ws_, wd = _weights(single["path"]), _weights(ddp["path"])
    for name in ws_:
        assert torch.allclose(ws_[name], wd[name], atol=1e-5), name
