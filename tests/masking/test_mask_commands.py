"""`ifguide mask` (select), `mask show`, `mask browse` (Textual pilot) and `mask export` on the tiny corpus."""

from __future__ import annotations

import asyncio
import functools
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from clikit import assert_one_line_error, invoke_cli

from ifguide_cli.core.masking import MaskConfig, load_safetensors_array, save_safetensors, select_toxic_tokens
from ifguide_cli.core.registry import tiny_asset
from ifguide_cli.core.store.workspace import Workspace

SEQ_LEN = 64


def _tiny_corpus():
    """The packaged tiny corpus as the `datasets` artifact stores it: one document per 64-token row, eos, padding."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tiny_asset("tokenizer.json")))
    eos = tok.token_to_id("<|endoftext|>")
    records = [json.loads(line) for line in tiny_asset("corpus.jsonl").read_text().splitlines() if line.strip()]
    ids = np.full((len(records), SEQ_LEN), eos, dtype=np.int32)
    att = np.zeros((len(records), SEQ_LEN), dtype=np.uint8)
    for i, enc in enumerate(tok.encode_batch([r["text"] for r in records], add_special_tokens=False)):
        row = [*enc.ids, eos][:SEQ_LEN]
        ids[i, : len(row)] = row
        att[i, : len(row)] = 1
    planted = np.array([bool(r.get("planted_toxic")) for r in records])
    return ids, att, planted


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A workspace with a tiny dataset artifact and a scores artifact in which the planted documents score high."""
    root = tmp_path_factory.mktemp("maskws")
    ws = Workspace(root / "ws")
    ids, att, planted = _tiny_corpus()

    def build_ds(ctx):
        save_safetensors(ctx.staging / "input_ids.safetensors",
                         {"input_ids": ids, "attention_mask": att, "planted_toxic": planted.astype(np.uint8)})
        return {"documents": len(ids), "seq_len": SEQ_LEN}

    ds, _ = ws.create("datasets", {"data": {"source": "registry", "name": "tiny"}, "tokenizer": "tiny", "seq_len": SEQ_LEN,
                                   "packing": False}, [], build_ds)
    rng = np.random.default_rng(0)
    scores = rng.standard_normal(ids.shape).astype(np.float32)
    scores[planted[:, None] & (rng.random(ids.shape) < 0.3)] += 4.0  # planted documents hold the influential tokens
    scores[att == 0] = 0.0
    scores[:, 0] = 0.0  # label-aligned: position 0 predicts nothing

    def build_scores(ctx):
        save_safetensors(ctx.staging / "scores.safetensors", {"scores": scores})
        return {}

    sc, _ = ws.create("scores", {"dataset": ds.id, "test": "planted"}, [ds.id], build_scores, name="planted-scores")
    # the same scores as plain files: kronfluence's layout and a .npy
    kron = root / "pairwise_scores.safetensors"
    save_safetensors(kron, {"all_modules": scores[None]})
    np.save(root / "scores.npy", scores)
    return {"ws": ws, "root": root, "dataset": ds, "scores_art": sc, "scores": scores, "att": att, "planted": planted,
            "kron": kron, "npy": root / "scores.npy", "ids": ids}


@pytest.fixture
def run(env):
    """`ifguide --workspace WS ...` on the module's workspace."""
    return functools.partial(invoke_cli, env["ws"].root)


def _json(result) -> dict:
    assert result.exit_code == 0, result.output
    return result.json


@pytest.fixture(scope="module")
def mask_id(env):
    return _json(invoke_cli(env["ws"].root, "--json", "mask", "planted-scores", "--max-tokens", "3000", "--name", "m1"))["id"]


# ---- select --------------------------------------------------------------------------------
def test_select_builds_the_artifact_and_finds_the_planted_documents(env, run, mask_id):
    art = env["ws"].resolve(mask_id, "masks")
    s = art.summary
    assert art.config["dataset"] == env["dataset"].id and art.parents == [env["scores_art"].id]
    assert s["planted_precision_at_k"] >= 0.9
    assert s["tokens_selected"] <= 3000 and s["budget_exhausted"] and 0 < s["budget_used"] <= 1
    mask = np.asarray(load_safetensors_array(art.path / "mask.safetensors", "mask"))
    ranking = np.asarray(load_safetensors_array(art.path / "mask.safetensors", "ranking"))
    assert mask.dtype == bool and mask.shape == env["scores"].shape and ranking.dtype == np.int64
    assert int(mask.sum()) == s["tokens_selected"] and not (mask & (env["att"] == 0)).any()
    # identical to the core function with the attention mask as validity
    ref = select_toxic_tokens(env["scores"], MaskConfig(0.99, 1, 3000), env["att"].astype(bool))
    np.testing.assert_array_equal(mask, ref.mask)
    np.testing.assert_array_equal(ranking, ref.ranking)
    k = int(env["planted"].sum())
    assert env["planted"][ranking[:k]].mean() >= 0.9
    # the training side reads it the way it expects
    from safetensors.numpy import load_file

    assert load_file(str(art.path / "mask.safetensors"))["mask"].dtype == bool


def test_select_json_and_reuse(env, run, mask_id):
    again = _json(run("--json", "mask", "select", "planted-scores", "--max-tokens", "3000", "--name", "m1"))
    assert again["id"] == mask_id and again["reused"] is True
    assert again["kind"] == "masks" and len(again["top_documents"]) == 10
    top = again["top_documents"][0]
    assert {"rank", "doc", "masked_tokens", "tokens_above_threshold", "strength", "harmonic", "planted_toxic"} <= set(top)
    forced = _json(run("--json", "mask", "planted-scores", "--max-tokens", "3000", "--name", "m1", "--force"))
    assert forced["id"] == mask_id and forced["reused"] is False
    # options may come before SCORES in the short form
    assert _json(run("--json", "mask", "--max-tokens", "3000", "-p", "0.99", "planted-scores", "--name", "m1"))["id"] == mask_id
    text = run("mask", "planted-scores", "--max-tokens", "3000")
    assert text.exit_code == 0 and "planted_precision_at_k" in text.stdout and "top 10 documents" in text.stdout


def test_select_from_plain_score_files(env, run, mask_id):
    ref = np.asarray(load_safetensors_array(env["ws"].resolve(mask_id).path / "mask.safetensors", "mask"))
    for path in (env["kron"], env["npy"]):
        out = _json(run("--json", "mask", path, "--data", env["dataset"].id, "--max-tokens", "3000"))
        art = env["ws"].resolve(out["id"], "masks")
        assert art.config["scores"] is None and art.config["scores_file"]["path"] == str(Path(path).resolve())
        assert art.parents == [env["dataset"].id]
        np.testing.assert_array_equal(np.asarray(load_safetensors_array(art.path / "mask.safetensors", "mask")), ref)
    # without a dataset: every position counts (the reference script's behaviour), no planted statistics
    out = _json(run("--json", "mask", env["npy"], "--max-tokens", "3000", "-p", "0.95", "-w", "0"))
    assert out["summary"]["dataset"] is None and "planted_precision_at_k" not in out["summary"]
    assert out["summary"]["num_scores"] == env["scores"].size and out["config"]["positions"] == "all"


def test_select_errors_are_one_line(env, run, tmp_path):
    bad = env["scores"].copy()
    bad[3, 5] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    np.save(tmp_path / "short.npy", env["scores"][:10])
    cases = [
        (("mask", tmp_path / "nan.npy"), 1, "non-finite"),
        (("mask", "no-such-scores"), 1, "no scores artifact"),
        (("mask", env["dataset"].id), 2, "is a dataset artifact"),
        (("mask", tmp_path / "missing.npy"), 2, "does not exist"),
        (("mask", tmp_path / "short.npy", "--data", env["dataset"].id), 2, "shape"),
    ]
    for args, code, needle in cases:
        assert_one_line_error(run(*args), needle, code=code)


@pytest.mark.parametrize(("option", "value", "needle"), [
    ("--threshold", "inf", "must be a finite number"),
    ("--threshold", "nan", "must be a finite number"),
    ("--threshold", "1.5", "must be in [0, 1]"),
    ("-p", "-0.1", "must be in [0, 1]"),
    ("--window", "-1", "must be in [0, inf)"),
    ("--max-tokens", "-5", "must be in [0, inf)"),
    ("-L", "-1", "must be in [0, inf)"),
])
def test_select_rejects_bad_parameters_in_one_line(run, option, value, needle):
    flag = {"-p": "--threshold", "-L": "--max-tokens"}.get(option, option)
    assert_one_line_error(run("mask", "planted-scores", option, value), flag, needle, code=2)


# ---- show ----------------------------------------------------------------------------------
def test_show_plain_markers_in_a_pipe(env, run, mask_id):
    out = run("mask", "show", mask_id, "--rank", "0")
    assert out.exit_code == 0, out.output
    header, body = out.stdout.split("\n", 1)
    assert header.startswith("document ") and "rank 0 of 3000" in header and "planted toxic" in header
    assert "[[" in body and "]]" in body and "\x1b[" not in body
    art = env["ws"].resolve(mask_id)
    doc = int(np.asarray(load_safetensors_array(art.path / "mask.safetensors", "ranking"))[0])
    assert f"document {doc} " in header
    # the text between the markers is what the mask selects
    data = _json(run("--json", "mask", "show", mask_id, "--doc", doc))
    marked = "".join(t for t, m in zip(data["tokens"], data["masked"], strict=True) if m)
    assert "".join(re.findall(r"\[\[(.*?)\]\]", body, flags=re.S)) == marked


def test_show_json_schema(env, run, mask_id):
    data = _json(run("--json", "mask", "show", mask_id, "--rank", "2", "--scores"))
    assert {"mask", "dataset", "threshold_value", "doc", "rank", "masked_tokens", "tokens_above_threshold", "strength",
            "harmonic", "planted_toxic", "positions", "token_ids", "tokens", "masked", "scores"} <= set(data)
    n = len(data["tokens"])
    assert data["rank"] == 2 and len(data["masked"]) == len(data["scores"]) == len(data["token_ids"]) == len(data["positions"]) == n
    doc = data["doc"]
    assert n == int(env["att"][doc].sum())  # padding is not shown
    assert data["token_ids"] == env["ids"][doc, : n].tolist()
    assert np.allclose(data["scores"], env["scores"][doc, : n])
    assert sum(data["masked"]) == data["masked_tokens"]
    assert _json(run("--json", "mask", "show", mask_id, "--doc", doc))["rank"] == 2
    assert _json(run("--json", "mask", "show", mask_id, "--rank", "2"))["scores"] is None


def test_show_highlights_in_a_terminal(env, run, mask_id):
    out = run("mask", "show", mask_id, "--rank", "0", env={"FORCE_COLOR": "1", "TERM": "xterm-256color"})
    assert out.exit_code == 0, out.output
    assert "\x1b[" in out.stdout and "[[" not in out.stdout
    heat = run("mask", "show", mask_id, "--rank", "0", "--scores", env={"FORCE_COLOR": "1", "TERM": "xterm-256color"})
    assert heat.exit_code == 0 and heat.stdout != out.stdout


def test_show_errors_and_plain_file_masks(env, run, mask_id):
    for args, needle in ((("--rank", "3000"), "--rank must be in"), (("--doc", "-1"), "--doc must be in"),
                         (("--rank", "0", "--doc", "0"), "not both")):
        assert_one_line_error(run("mask", "show", mask_id, *args), needle, code=2)
    assert_one_line_error(run("mask", "show", env["scores_art"].id), "is a scores artifact", code=2)
    # a mask from a plain score file without a dataset shows positions; with --data, the text
    plain = _json(run("--json", "mask", env["npy"], "--max-tokens", "500"))
    data = _json(run("--json", "mask", "show", plain["id"]))
    assert data["token_ids"] is None and data["tokens"][:2] == ["#0", "#1"] and len(data["tokens"]) == SEQ_LEN
    with_data = _json(run("--json", "mask", "show", plain["id"], "--data", env["dataset"].id, "--scores"))
    assert with_data["token_ids"] is not None and with_data["scores"] is not None


def test_show_what_is_gone_with_a_core_note(env, tmp_path):
    """A mask whose scores or dataset were deleted is still shown, without them, and core says so (`notes.warn`)."""
    from ifguide_cli.core import notes
    from ifguide_cli.core.masking import create_mask_artifact
    from ifguide_cli.core.masking.render import SCORES_GONE, MaskInspector, ranked_table
    from ifguide_cli.core.store.artifact_files import CORPUS_FILE, SCORES_FILE

    ws = Workspace(tmp_path / "ws")
    corpus = {"input_ids": env["ids"][:40], "attention_mask": env["att"][:40]}
    ds, _ = ws.create("datasets", {"test": "gone"}, [], lambda ctx: save_safetensors(ctx.staging / CORPUS_FILE, corpus) or {})
    sc, _ = ws.create("scores", {"dataset": ds.id}, [ds.id],
                      lambda ctx: save_safetensors(ctx.staging / SCORES_FILE, {"scores": env["scores"][:40]}) or {})
    art = create_mask_artifact(ws, sc.id, MaskConfig(0.9, 1, 100)).artifact
    headers, cells = ranked_table(MaskInspector(ws, art.id).top(3))
    assert headers == ["rank", "doc", "masked", "above τ", "strength", "h"] and len(cells) == 3  # no planted labels here

    shutil.rmtree(sc.path)
    notes.reset()
    assert not MaskInspector(ws, art.id).wants_scores(True) and notes.collected() == [SCORES_GONE]
    out = invoke_cli(ws.root, "mask", "show", art.id, "--scores")
    assert out.exit_code == 0 and "no longer available" in out.stderr

    shutil.rmtree(ds.path)
    notes.reset()
    insp = MaskInspector(ws, art.id)
    assert insp.dataset is None and insp.view(0).pieces[:2] == ["#0", "#1"]
    assert len(notes.collected()) == 1 and f"dataset {ds.id} of mask {art.id} is no longer in the workspace" in notes.collected()[0]
    notes.reset()


# ---- export --------------------------------------------------------------------------------
def test_export_html_is_self_contained(env, run, mask_id, tmp_path):
    target = tmp_path / "top.html"
    out = _json(run("--json", "mask", "export", mask_id, "--html", target, "--top", "5"))
    assert out["html"] == str(target.resolve()) and [d["rank"] for d in out["documents"]] == list(range(5))
    page = target.read_text()
    assert page.startswith("<!DOCTYPE html>") and page.count("<section") == 5 and '<span class="m"' in page
    assert "<script" not in page and "http://" not in page and "https://" not in page and "<link" not in page
    assert "background-color:rgba" in page  # score heat by default
    assert "background-color" not in _export_page(run, mask_id, tmp_path / "plain.html", "--no-scores").split("</style>")[1]
    bad = run("mask", "export", mask_id, "--html", tmp_path / "nope" / "x.html")
    assert bad.exit_code == 2 and "does not exist" in bad.output


def _export_page(run, mask_id, path, *extra) -> str:
    out = run("mask", "export", mask_id, "--html", path, "--top", "2", *extra)
    assert out.exit_code == 0, out.output
    return Path(path).read_text()


# ---- browse --------------------------------------------------------------------------------
def test_browse_headless_with_pilot(env, mask_id):
    from ifguide_cli.cli.mask_browser import build_app
    from ifguide_cli.core.masking.render import MaskInspector

    insp = MaskInspector(env["ws"], mask_id)
    app = build_app(insp, top=40)
    expected_hit = insp.find("moron", 6)
    assert expected_hit is not None
    second_hit = insp.find("moron", expected_hit + 1)
    assert second_hit is not None

    async def drive():
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            assert app.rank == 0 and str(app.doc_text) == "".join(insp.view(int(insp.ranking[0])).pieces)
            await pilot.press("n", "n")
            assert app.rank == 2
            await pilot.press("p")
            assert app.rank == 1
            await pilot.press("down")  # the ranked list drives the document view too
            assert app.rank == 2
            await pilot.press("g", "5", "enter")
            assert app.rank == 5
            await pilot.press("g", "9", "9", "9", "9", "enter")
            assert app.rank == 5 and "not a rank" in app.status
            await pilot.press("slash", *"moron", "enter")
            await pilot.pause()
            assert app.rank == expected_hit and "moron" in str(app.doc_text).lower()
            assert any(span.style.reverse for span in app.doc_text.spans if hasattr(span.style, "reverse"))
            await pilot.press("N")  # search again: the next hit after this one
            await pilot.pause()
            assert app.rank == second_hit
            await pilot.press("slash", *"zzzqqq", "enter")
            assert app.rank == second_hit and "not found" in app.status
            assert not app.heat
            await pilot.press("s")
            assert app.heat and any(getattr(span.style, "bgcolor", None) is not None for span in app.doc_text.spans)
            await pilot.press("q")
        return app.return_code

    assert asyncio.run(drive()) in (0, None)


def test_browse_needs_a_terminal(env, run, mask_id):
    out = run("mask", "browse", mask_id)
    assert out.exit_code == 2 and "interactive terminal" in out.output
