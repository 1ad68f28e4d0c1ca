"""`ifguide mask transfer`: a mask carried to another tokenizer through its characters, with a dataset + mask pair.

The tiny mask here is Alg. 1 (`mask select`, window 1) on scores in which the planted documents' tokens score
high, so it marks arbitrary sub-word tokens with context, the hard case for a character mapping; the new
tokenizer is a byte-level BPE trained by `ifguide tokenizer train` on the tiny corpus.
"""

from __future__ import annotations

import numpy as np
import pytest
from clikit import assert_one_line_error, invoke_cli

from ifguide_cli.core.masking import dataset_arrays, save_safetensors
from ifguide_cli.core.store.workspace import Workspace


def _ok(result) -> dict:
    assert result.exit_code == 0, result.output
    return result.json


def _alg1_mask(root) -> str:
    """The tiny dataset artifact (built by `mask wordlist`) and Alg. 1's mask on planted scores; returns the mask id."""
    words = root / "words.txt"
    words.write_text("idiot\nstupid\n")
    _ok(invoke_cli(root / "ws", "--json", "mask", "wordlist", "--data", "tiny", "--wordlist", words, "--name", "words"))
    ws = Workspace(root / "ws")
    ds = ws.resolve("latest", "datasets")
    arrays = dataset_arrays(ds)
    att, planted = np.asarray(arrays["attention_mask"]), np.asarray(arrays["planted_toxic"]).astype(bool)
    rng = np.random.default_rng(0)
    scores = rng.standard_normal(att.shape).astype(np.float32)
    scores[planted[:, None] & (rng.random(att.shape) < 0.3)] += 4.0
    scores[(att == 0)] = 0.0

    def build(ctx):
        save_safetensors(ctx.staging / "scores.safetensors", {"scores": scores})
        return {}

    ws.create("scores", {"dataset": ds.id, "test": "planted"}, [ds.id], build, name="planted")
    return _ok(invoke_cli(root / "ws", "--json", "mask", "planted", "--max-tokens", "3000", "--name", "alg1"))["id"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("transfer")
    mask_id = _alg1_mask(root)
    _ok(invoke_cli(root / "ws", "--json", "tokenizer", "train", "tiny", "--vocab-size", "4096", "--name", "bpe4k"))
    moved = _ok(invoke_cli(root / "ws", "--json", "mask", "transfer", "alg1", "--tokenizer", "bpe4k", "--name", "alg1-bpe"))
    return {"root": root, "ws": Workspace(root / "ws"), "mask": mask_id, "moved": moved}


def test_transfer_to_a_trained_bpe_keeps_the_masked_characters(env):
    s = env["moved"]["summary"]
    print(f"\ntiny Alg. 1 mask → BPE 4096: {s['masked_chars']:,} masked characters, kept {s['kept_share']:.2%}, "
          f"lost {s['lost_share']:.2%}, added {s['added_share']:.2%} ({s['tokens_selected']:,} tokens marked)")
    assert s["kept_share"] >= 0.95 and s["added_share"] <= 0.05
    assert s["chars_kept"] + s["chars_lost"] == s["masked_chars"] and s["chars_not_in_rows"] == 0
    assert s["source"] == "transfer" and s["source_mask"] == env["mask"] and s["rule"] == "majority"
    original = env["ws"].resolve("alg1", "masks").summary
    assert s["planted_precision_at_k"] == original["planted_precision_at_k"] > 0.5  # the ranking is the original's


def test_the_pair_has_lineage_and_the_new_tokenizer(env):
    from ifguide_cli.core.masking.export import open_mask
    from ifguide_cli.core.masking.transfer import masked_chars

    ws = env["ws"]
    mask = ws.resolve("alg1-bpe", "masks")
    data = ws.resolve("alg1-bpe", "datasets")
    tok = ws.resolve("bpe4k", "tokenizers")
    original = ws.resolve("alg1", "masks")
    assert mask.parents == [original.id, data.id] and mask.config["dataset"] == data.id == env["moved"]["dataset"]
    assert data.parents == [original.config["dataset"], tok.id] and data.config["retokenized_from"] == original.config["dataset"]
    assert data.config["tokenizer"].startswith(str(tok.path)) and data.summary["rows"] == 3000
    # the new mask holds exactly the characters the summary says: kept + added
    moved = masked_chars(open_mask(ws, mask.id))
    s = mask.summary
    assert moved.total == s["chars_kept"] + s["chars_added"]


def test_transfer_to_the_same_tokenizer_is_exact(env):
    from safetensors.numpy import load_file

    ws = env["ws"]
    same = _ok(invoke_cli(ws.root, "--json", "mask", "transfer", "alg1", "--tokenizer", "tiny"))
    s = same["summary"]
    assert (s["kept_share"], s["chars_lost"], s["chars_added"]) == (1.0, 0, 0)
    before = load_file(str(ws.resolve("alg1", "masks").file("mask.safetensors")))["mask"]
    after = load_file(str(ws.resolve(same["id"], "masks").file("mask.safetensors")))["mask"]
    # Alg. 1 may mark a row's first position (a whole token with no loss): every marked text token comes back
    assert np.array_equal(before[:, 1:], after[:, 1:])
    again = _ok(invoke_cli(ws.root, "--json", "mask", "transfer", "alg1", "--tokenizer", "tiny"))
    assert again["reused"] and again["id"] == same["id"]


def test_transfer_errors_are_one_line(env):
    ws = env["ws"]
    assert_one_line_error(invoke_cli(ws.root, "mask", "transfer", "alg1", "--tokenizer", "nope"), "unknown tokenizer 'nope'")
    assert_one_line_error(invoke_cli(ws.root, "mask", "transfer", "nope", "--tokenizer", "tiny"), "no mask artifact 'nope'")
    assert_one_line_error(invoke_cli(ws.root, "mask", "transfer", "alg1", "--tokenizer", "tiny", "--rule", "half"),
                          "--rule must be one of")


@pytest.mark.slow
def test_a_model_of_the_new_tokenizer_trains_on_the_pair(env):
    out = _ok(invoke_cli(env["ws"].root, "--json", "train", "tiny", "--data", "alg1-bpe", "--mask", "alg1-bpe",
                         "--max-steps", "2", "--batch-size", "4", "--lambda", "1.5"))
    assert out["config"]["mask"] == env["moved"]["id"] and out["config"]["dataset"] == env["moved"]["dataset"]
    assert out["config"]["tokenizer"] == env["ws"].resolve("alg1-bpe", "datasets").config["tokenizer"]
