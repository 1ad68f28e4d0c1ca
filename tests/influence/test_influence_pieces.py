"""Influence pieces without fitting anything: families, Conv1D conversion, losses, pseudo-labels, alignment, queries,
settings and the kronfluence version check."""

from __future__ import annotations

import json

import pytest
import torch
from clikit import assert_one_line_error

from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.influence import (
    FactorsConfig,
    ScoresConfig,
    align_to_labels,
    build_query_rows,
    builtin_families,
    continuation_tokens,
    convert_conv1d_to_linear,
    custom_family,
    find_family,
    influence_precision,
    join_query,
    kron_compat,
    load_families,
    load_query_set,
    make_task,
    sample_labels,
    select_modules,
    tokenize_queries,
)
from ifguide_cli.core.models import load_model, load_tokenizer, resolve_model


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    mref = resolve_model("tiny")
    return load_model(mref), load_tokenizer(mref)


def test_builtin_family_tracks_every_block_linear_but_not_the_unembedding(tiny):
    model, _ = tiny
    fam = find_family("gpt_neox", load_families())
    names = select_modules(model, fam)
    assert len(names) == 8 and all(n.startswith("gpt_neox.layers.") for n in names)
    assert "embed_out" not in names
    assert find_family("mistral", load_families()).name == "llama"  # found by model type


def test_user_families_file_and_env_extend_the_registry(tmp_path, monkeypatch, tiny):
    model, _ = tiny
    f = tmp_path / "fam.yaml"
    f.write_text("families:\n  mlp_only:\n    model_types: [my_arch]\n    modules: ['gpt_neox.layers.*.mlp.*']\n"
                 "    exclude: ['*.dense_4h_to_h']\n")
    fams = load_families(f)
    assert set(builtin_families()) < set(fams)
    fam = find_family("my_arch", fams)
    assert select_modules(model, fam) == ["gpt_neox.layers.0.mlp.dense_h_to_4h", "gpt_neox.layers.1.mlp.dense_h_to_4h"]
    monkeypatch.setenv("IFGUIDE_FAMILIES", str(f))
    assert "mlp_only" in load_families()
    ws_root = tmp_path / "ws"
    ws_root.mkdir()
    (ws_root / "families.yaml").write_text(json.dumps({"ws_fam": {"modules": ["x.*"]}}))
    assert "ws_fam" in load_families(workspace_root=ws_root)


def test_unknown_family_and_unmatched_globs_are_one_clear_error(tiny):
    model, _ = tiny
    with pytest.raises(IfguideError, match="unknown model family 'bert'") as exc:
        find_family("bert", load_families())
    assert exc.value.exit_code == 2 and "--modules" in exc.value.hint
    with pytest.raises(IfguideError, match="no linear layer"):
        select_modules(model, custom_family(["model.layers.*.mlp.*"]))


def test_gpt2_conv1d_becomes_an_equivalent_linear():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=100, n_positions=32)).eval()
    ids = torch.randint(0, 100, (2, 10))
    before = model(ids).logits
    assert convert_conv1d_to_linear(model) == 8
    after = model(ids).logits
    torch.testing.assert_close(before, after, rtol=1e-5, atol=1e-5)
    assert len(select_modules(model, find_family("gpt2", load_families()))) == 8


def test_pseudo_labels_depend_on_row_not_on_batch():
    torch.manual_seed(0)
    logits = torch.randn(4, 7, 11)
    idx = torch.tensor([10, 11, 12, 13])
    full = sample_labels(logits, idx)
    part = sample_labels(logits[2:], idx[2:])
    assert torch.equal(full[2:], part)
    assert not torch.equal(sample_labels(logits, idx, seed=1), full)
    onehot = torch.full((1, 5, 11), -1e4)
    onehot[0, torch.arange(5), torch.tensor([3, 1, 4, 1, 5])] = 0.0
    assert sample_labels(onehot, torch.tensor([0])).tolist() == [[3, 1, 4, 1, 5]]
    # labels follow the distribution
    probs = torch.tensor([0.7, 0.2, 0.1])
    draws = sample_labels(probs.log().expand(1, 4000, 3).contiguous(), torch.tensor([5]))
    freq = torch.bincount(draws.view(-1), minlength=3).float() / 4000
    assert torch.allclose(freq, probs, atol=0.03)


def test_train_loss_is_summed_ce_and_measurement_is_weighted(tiny):
    model, _ = tiny
    task = make_task(["x"])
    ids = torch.randint(1, 2048, (3, 12))
    am = torch.ones_like(ids)
    am[1, 8:] = 0
    labels = ids.masked_fill(am.eq(0), -100)
    batch = {"input_ids": ids, "attention_mask": am, "labels": labels}
    with torch.no_grad():
        loss = task.compute_train_loss(batch, model)
        hf = model(input_ids=ids, attention_mask=am, labels=labels).loss
        n = int((labels[:, 1:] != -100).sum())
        torch.testing.assert_close(loss, hf * n, rtol=1e-5, atol=1e-4)
        # measurement: Σ w_q · CE over continuation tokens, linear in w
        qlabels = labels.clone()
        qlabels[:, :5] = -100
        w = torch.tensor([0.5, -0.25, 1.0])
        m = task.compute_measurement({**batch, "labels": qlabels, "weight": w}, model)
        parts = [task.compute_measurement({"input_ids": ids[i:i + 1], "attention_mask": am[i:i + 1],
                                           "labels": qlabels[i:i + 1], "weight": torch.ones(1)}, model) for i in range(3)]
        torch.testing.assert_close(m, sum(wi * p for wi, p in zip(w, parts, strict=True)), rtol=1e-5, atol=1e-4)
        sampled = task.compute_train_loss({**batch, "index": torch.arange(3)}, model, sample=True)
        assert torch.isfinite(sampled) and sampled > 0


def test_alignment_puts_the_score_of_a_prediction_on_the_predicted_token():
    raw = torch.tensor([[1.0, 2.0, 3.0, 0.0], [4.0, 0.0, 0.0, 0.0]])  # kronfluence: per input position
    out = align_to_labels(raw)
    assert out.tolist() == [[0.0, 1.0, 2.0, 3.0], [0.0, 4.0, 0.0, 0.0]]
    assert out.dtype == torch.float32


def test_queries_tokenize_as_one_text_with_prompt_labels_ignored(tiny):
    _, tok = tiny
    assert join_query("He said", "hello") == "He said hello"
    assert join_query("He said ", "hello") == "He said hello"
    assert join_query("He said", ", hello") == "He said, hello"
    ids, n = tokenize_queries([{"prompt": "The driver shouted", "continuation": "you fool"}], tok, 64)
    assert tok.decode(ids[0][: n[0]]) == "The driver shouted" and tok.decode(ids[0][n[0]:]) == " you fool"
    rows = build_query_rows([(ids, n, 0.5), (ids, n, -0.25)], pad_id=0)
    assert rows.weight.tolist() == [0.5, -0.25]
    assert (rows.labels[0, : n[0]] == -100).all() and (rows.labels[0, n[0]:] == torch.tensor(ids[0][n[0]:])).all()
    assert continuation_tokens(ids, n) == [len(ids[0]) - n[0]]
    long_ids, long_n = tokenize_queries([{"prompt": "a b c d e f g h", "continuation": "x y z w v u"}], tok, 5)
    assert len(long_ids[0]) == 5 and continuation_tokens(long_ids, long_n)[0] >= 1


def test_query_set_without_continuation_tokens_is_refused(tmp_path, tiny):
    _, tok = tiny
    empty = tmp_path / "q.jsonl"
    empty.write_text("\n".join(json.dumps({"prompt": f"p {i}", "continuation": ""}) for i in range(3)))
    with pytest.raises(IfguideError, match="has no continuation tokens") as exc:
        load_query_set(str(empty), tok, 64, None, 0, "toxic")
    assert exc.value.exit_code == 2
    mixed = tmp_path / "m.jsonl"
    mixed.write_text(json.dumps({"prompt": "a", "continuation": ""}) + "\n" + json.dumps({"prompt": "a", "continuation": "b c"}))
    qs = load_query_set(str(mixed), tok, 64, None, 0, "toxic")
    assert len(qs.pairs) == 1 and qs.dropped == 1


def test_query_subsampling_is_seeded(tiny):
    _, tok = tiny
    a = load_query_set("tiny-queries-toxic", tok, 64, 5, 0, "toxic")
    b = load_query_set("tiny-queries-toxic", tok, 64, 5, 0, "toxic")
    c = load_query_set("tiny-queries-toxic", tok, 64, 5, 1, "toxic")
    assert a.pairs == b.pairs and len(a.pairs) == 5 and a.pairs != c.pairs


def test_low_rank_queries_break_the_one_pass_differential():
    with pytest.raises(IfguideError, match="not linear in the query weights"):
        ScoresConfig(query_low_rank=8).check_differential(True)
    ScoresConfig(query_low_rank=8).check_differential(False)
    with pytest.raises(IfguideError, match="--damping"):
        ScoresConfig(damping=-1.0)


# ---- settings: one clear line for every bad value ----------------------------------------------
def test_settings_are_validated_where_they_are_declared():
    assert ScoresConfig(damping="auto").damping is None and ScoresConfig(damping="0.5").damping == 0.5
    for bad in ({"damping": float("inf")}, {"damping": 0.0}, {"damping": "lots"}, {"query_batch_size": 0},
                {"max_queries": 0}, {"precision": "fp16"}, {"device": "tpu"}):
        with pytest.raises(IfguideError) as exc:
            ScoresConfig(**bad)
        assert exc.value.exit_code == 2 and "\n" not in exc.value.one_line()
    for bad in ({"strategy": "kfc"}, {"batch_size": 0}, {"partitions": 0}, {"max_examples": 0}, {"seq_len": 1},
                {"precision": "fp16"}, {"modules": ("",)}):
        with pytest.raises(IfguideError):
            FactorsConfig(**bad)


def test_precision_auto_is_fp32_and_bf16_runs_on_cpu():
    assert FactorsConfig().precision == ScoresConfig().precision == "auto"
    assert influence_precision("auto", "cpu") == influence_precision("auto", "cuda:0") == "fp32"
    assert influence_precision("bf16", "cpu") == "bf16" and influence_precision("fp32", "cpu") == "fp32"
    with pytest.raises(IfguideError, match="fp16"):
        influence_precision("fp16", "cuda")


@pytest.mark.parametrize("args, needles", [
    (["factors", "tiny", "--data", "tiny", "--batch-size", "0"], ["--batch-size", "0"]),
    (["factors", "tiny", "--data", "tiny", "--partitions", "0"], ["--partitions"]),
    (["factors", "tiny", "--data", "tiny", "--max-examples", "-3"], ["--max-examples"]),
    (["factors", "tiny", "--data", "tiny", "--precision", "fp16"], ["--precision fp16"]),
    (["scores", "f", "-t", "tiny-queries-toxic", "--damping", "inf"], ["--damping", "finite"]),
    (["scores", "f", "-t", "tiny-queries-toxic", "--damping", "nan"], ["--damping", "finite"]),
    (["scores", "f", "-t", "tiny-queries-toxic", "--damping", "-1"], ["--damping"]),
    (["scores", "f", "-t", "tiny-queries-toxic", "--damping", "lots"], ["--damping must be"]),
    (["scores", "f", "-t", "tiny-queries-toxic", "--precision", "fp16"], ["--precision fp16"]),
    (["scores", "f", "-t", "tiny-queries-toxic", "--query-batch-size", "0"], ["--query-batch-size"]),
])
def test_bad_option_values_are_one_line_errors(cli, args, needles):
    assert_one_line_error(cli(*args), *needles, code=2)


def test_unknown_strategy_is_refused_with_the_choices(cli):
    result = cli("factors", "tiny", "--data", "tiny", "--strategy", "kfc")
    assert result.exit_code == 2 and "kfc" in result.stderr and "ekfac" in result.stderr and not result.stdout.strip()


# ---- the kronfluence version the patches were written for ----------------------------------------
def test_installed_kronfluence_is_the_patched_version():
    assert kron_compat._installed_version() == kron_compat.EXPECTED_VERSION
    kron_compat.check_version()


@pytest.mark.parametrize("installed", ["1.1.0", None])
def test_other_kronfluence_version_is_one_line_error(monkeypatch, cli, installed):
    monkeypatch.setattr(kron_compat, "_installed_version", lambda: installed)
    with pytest.raises(IfguideError) as exc:
        kron_compat.check_version()
    line = exc.value.one_line()
    assert "\n" not in line and kron_compat.EXPECTED_VERSION in line and "pip install" in line
    assert (installed or "not installed") in line
    result = cli("factors", "tiny", "--data", "tiny")
    assert_one_line_error(result, f"kronfluence=={kron_compat.EXPECTED_VERSION}", code=2)
