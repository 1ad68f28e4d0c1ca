"""A run's length is in rows, so how much of its corpus it reads is said in tokens and epochs: in the training
summary, in the `run --dry-run` plan, and as a warning when a run covers less than 10% of its corpus."""

from __future__ import annotations

import json

from ifguide_cli.core import notes
from ifguide_cli.core.training.config import run_size
from ifguide_cli.core.training.stage import check_steps


def test_run_size_counts_tokens_and_passes():
    size = run_size(steps=30, batch_size=32, train_rows=2744, seq_len=64)
    assert size["tokens"] == 30 * 32 * 64 and size["corpus_tokens"] == 2744 * 64
    assert size["epochs"] == round(960 / 2744, 4) and "(0.35 epochs)" in size["words"]


def test_a_run_over_a_small_share_of_its_corpus_is_warned(tmp_path):
    from ifguide_cli.core.store.workspace import Workspace
    from ifguide_cli.core.training.config import resolve_config

    ws = Workspace(tmp_path)
    data, _ = ws.create("datasets", {"seq_len": 96, "test": 1}, [], lambda ctx: {"rows": 5000, "documents": 5000,
                                                                                  "layout": "documents"})
    short, _ = resolve_config("pretrain", "tiny", None, {"max_steps": 10}, 96, packaged_data=False)
    check_steps(5000, short, data)
    warned = [n for n in notes.collected() if "of its corpus" in n]
    assert warned and "10 steps × 32 rows × 96 tokens" in warned[-1] and "--max-steps" in warned[-1]
    notes.reset()
    enough, _ = resolve_config("pretrain", "tiny", None, {"max_steps": 100}, 96, packaged_data=False)
    check_steps(5000, enough, data)
    assert not [n for n in notes.collected() if "of its corpus" in n]


def test_the_dry_run_plan_says_tokens_and_epochs(cli, tmp_path, workspace_dir):
    from ifguide_cli.core.data import resolve_corpus
    from ifguide_cli.core.models import resolve_model
    from ifguide_cli.core.store.workspace import Workspace

    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"text": f"plain words number {i} and more"}) + "\n" for i in range(400)))
    resolve_corpus(Workspace(workspace_dir), str(corpus), resolve_model("tiny"), 16, layout="documents", heldout=40)
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(json.dumps({"model": "tiny", "data": str(corpus), "corpus": {"layout": "documents", "seq_len": 16,
                                                                                      "heldout": 40},
                                    "influence": {"toxic_queries": str(corpus), "safe_queries": str(corpus)},
                                    "baseline": {"train": {"max_steps": 5}}, "eval": {"classifier": "profanity"}}))
    stages = {s["name"]: s for s in cli("--json", "run", str(pipeline), "--dry-run").json["stages"]}
    assert stages["data"]["status"] == "reuse"
    assert stages["baseline"]["does"].endswith("5 steps × 32 rows × 16 tokens = 2,560 tokens of 5,472 (0.47 epochs)")
