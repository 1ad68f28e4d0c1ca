"""`ifguide mask export --out`: the mask as parquet / jsonl / a `datasets` folder, aligned as `train` uses it.

The round trip the export exists for: rows and weights read back with pyarrow / `datasets` and fed to a plain
PyTorch loop give the loss `ifguide finetune` computes on the same batch (its `PenaltyTrainer.compute_loss`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from clikit import assert_one_line_error, invoke_cli

LAM = 1.5


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A workspace with the tiny dataset and a word-list mask on it, and the mask exported in every format."""
    root = tmp_path_factory.mktemp("export")
    words = root / "words.txt"
    words.write_text("idiot\nstupid\nloser\nbullshit\ndamn\n")
    ws = root / "ws"
    made = invoke_cli(ws, "--json", "mask", "wordlist", "--data", "tiny", "--wordlist", words, "--name", "words")
    assert made.exit_code == 0, made.output
    out = {}
    for fmt, name in (("parquet", "m.parquet"), ("jsonl", "m.jsonl"), ("hf", "mds")):
        res = invoke_cli(ws, "--json", "mask", "export", "words", "--out", root / name, "--lambda", LAM)
        assert res.exit_code == 0, res.output
        assert res.json["format"] == fmt and res.json["rows"] == 3000
        out[fmt] = root / name
    return {"ws": ws, "root": root, "mask": made.json, "out": out}


def _tiny_model():
    from transformers import AutoConfig, AutoModelForCausalLM

    from ifguide_cli.core.registry import tiny_asset

    torch.manual_seed(0)
    config = AutoConfig.for_model(**json.loads(tiny_asset("model_config.json").read_text()))
    return AutoModelForCausalLM.from_config(config).eval()


def _finetune_loss(ws_root, mask_id, model, rows):
    """The loss `ifguide finetune --mask MASK --lambda LAM` computes on these rows: its data and mask loaders, its
    row dataset and collation, its trainer's compute_loss, the step's token count over the whole batch."""
    from torch.utils.data import default_collate
    from transformers import TrainingArguments

    from ifguide_cli.core.data import load_corpus
    from ifguide_cli.core.data.rows import CorpusRows
    from ifguide_cli.core.store.workspace import Workspace
    from ifguide_cli.core.training.stage import load_mask
    from ifguide_cli.core.training.trainer import PenaltyTrainer

    ws = Workspace(ws_root)
    mask_art = ws.resolve(mask_id, "masks")
    ds_art = ws.by_id(mask_art.config["dataset"])
    corpus = load_corpus(ds_art)
    mask = load_mask(mask_art, ds_art, corpus.shape)
    batch = default_collate([CorpusRows(corpus.input_ids, corpus.attention_mask, mask=mask)[r] for r in rows])
    args = TrainingArguments(output_dir=str(ws_root / "trainer"), report_to=[], use_cpu=True)
    trainer = PenaltyTrainer(model=model, args=args, lam=LAM, suppression="penalty")
    n = batch["labels"][:, 1:].ne(-100).sum().float()
    with torch.no_grad():
        return trainer.compute_loss(model, batch, num_items_in_batch=n)


def _plain_loop_loss(model, columns):
    """A user's own loop over the exported columns: Σ loss_weight[t]·CE(logits[t-1], labels[t]) / N."""
    ids = torch.tensor(np.array(columns["input_ids"]), dtype=torch.long)
    att = torch.tensor(np.array(columns["attention_mask"]), dtype=torch.long)
    labels = torch.tensor(np.array(columns["labels"]), dtype=torch.long)
    weight = torch.tensor(np.array(columns["loss_weight"]), dtype=torch.float32)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=att).logits
    ce = F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1), ignore_index=-100,
                         reduction="none").view(labels[:, 1:].shape)
    return (weight[:, 1:] * ce).sum() / labels[:, 1:].ne(-100).sum()


def test_exported_weights_give_the_finetune_loss_in_a_plain_loop(env):
    import pyarrow.parquet as pq

    from ifguide_cli.core.training.objective import penalty_loss

    table = pq.read_table(env["out"]["parquet"])
    masked_rows = [i for i, p in enumerate(table.column("penalty").to_pylist()) if any(p)]
    rows = [*masked_rows[:6], 0, 1]  # masked and clean rows in one batch
    columns = table.take(rows).to_pydict()
    assert columns["row"] == rows
    model = _tiny_model()
    expected = _finetune_loss(env["ws"], env["mask"]["id"], model, rows)
    plain = _plain_loop_loss(model, columns)
    torch.testing.assert_close(plain, expected, rtol=1e-6, atol=0)
    # the exported penalty column in ifguide's own function: the very same number
    ids = torch.tensor(np.array(columns["input_ids"]), dtype=torch.long)
    labels = torch.tensor(np.array(columns["labels"]))
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=torch.tensor(np.array(columns["attention_mask"]))).logits
    penalty = torch.tensor(np.array(columns["penalty"]))
    assert torch.equal(penalty_loss(logits, labels, penalty, LAM), expected)
    assert not torch.allclose(penalty_loss(logits, labels, None, 0.0), expected)  # the masked tokens weigh


def test_metadata_states_the_alignment_and_the_formats_agree(env):
    import datasets
    import pyarrow.parquet as pq

    table = pq.read_table(env["out"]["parquet"])
    meta = json.loads(table.schema.metadata[b"ifguide"])
    assert meta["mask"] == env["mask"]["id"] and meta["lambda"] == LAM and meta["masked_weight"] == -LAM
    assert "labels[t] before the shift" in meta["alignment"] and set(meta["columns"]) == set(table.column_names)
    ds = datasets.load_from_disk(str(env["out"]["hf"]))
    assert json.loads(ds.info.description) == meta
    jsonl = [json.loads(line) for line in env["out"]["jsonl"].read_text().splitlines()]
    side = json.loads((env["root"] / "m.jsonl.meta.json").read_text())
    assert side == meta and len(jsonl) == len(ds) == table.num_rows == 3000
    for i in (0, 4, 2999):
        assert jsonl[i] == table.slice(i, 1).to_pylist()[0] == ds[i]
    weights = np.array(table.column("loss_weight").to_pylist())
    assert set(np.unique(weights)) == {0.0, 1.0, -LAM} and (weights[:, 0] == 0).all()
    assert int(np.array(table.column("penalty").to_pylist()).sum()) == env["mask"]["summary"]["tokens_selected"]


def test_masked_spans_are_the_listed_words_at_their_source_line(env):
    import pyarrow.parquet as pq

    rec = pq.read_table(env["out"]["parquet"]).slice(4, 1).to_pylist()[0]  # a planted document of the tiny corpus
    assert rec["file"].endswith("corpus.jsonl") and rec["line"] == 5 and rec["char_start"] == 0
    assert [rec["text"][a:b] for a, b in rec["masked_spans"]] == [" bullshit", " idiot"]
    source = json.loads(Path(rec["file"]).read_text().splitlines()[rec["line"] - 1])["text"]
    assert source.startswith(rec["text"])


def test_export_refuses_paths_in_the_workspace_and_bad_combinations(env, tmp_path):
    ws = env["ws"]
    inside = invoke_cli(ws, "mask", "export", "words", "--out", ws / "masks" / "x.parquet")
    assert_one_line_error(inside, "inside the workspace", code=2)
    assert_one_line_error(invoke_cli(ws, "mask", "export", "words"), "exactly one of --out", code=2)
    assert_one_line_error(invoke_cli(ws, "mask", "export", "words", "--out", env["out"]["hf"], "--format", "hf"),
                          "already exists", code=2)
    assert_one_line_error(invoke_cli(ws, "mask", "export", "words", "--out", tmp_path / "no" / "m.parquet"),
                          "does not exist", code=2)
    assert_one_line_error(invoke_cli(ws, "mask", "export", "words", "--out", tmp_path / "m.csv", "--format", "csv"),
                          "--format must be one of", code=2)
    assert not list(tmp_path.iterdir())  # nothing half-written
