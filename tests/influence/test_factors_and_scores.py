"""`ifguide factors` + `ifguide scores` end to end on a tiny model trained on the packaged corpus.

The model is trained here with a plain torch loop (a few hundred steps; cached in pytest's cache folder, keyed by the
corpus, config and recipe), then the CLI fits EK-FAC factors and scores 320 documents of the corpus, of which 30 are
planted toxic.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from clikit import assert_one_line_error, invoke_cli
from safetensors.torch import load_file

from ifguide_cli.core.registry import tiny_asset

pytestmark = pytest.mark.slow

ROWS = 320
TRAIN = {"steps": 200, "batch": 32, "lr": 3e-3, "seed": 0}


# ---- fixtures ----------------------------------------------------------------------------------
def _train_tiny(out: Path) -> None:
    from ifguide_cli.core.data import default_corpus_config, load_records, tokenize_corpus
    from ifguide_cli.core.models import load_model, load_tokenizer, resolve_model

    mref = resolve_model("tiny")
    tok = load_tokenizer(mref)
    model = load_model(mref, seed=TRAIN["seed"])
    records, _ = load_records("tiny")
    corpus = tokenize_corpus(records, tok, default_corpus_config("tiny"))
    gen = torch.Generator().manual_seed(TRAIN["seed"])
    steps = TRAIN["steps"]
    opt = torch.optim.AdamW(model.parameters(), lr=TRAIN["lr"], betas=(0.9, 0.95), weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 20) * max(0.05, 1 - s / steps))
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, corpus.input_ids.shape[0], (TRAIN["batch"],), generator=gen)
        ids, am = corpus.input_ids[idx], corpus.attention_mask[idx]
        loss = model(input_ids=ids, attention_mask=am, labels=ids.masked_fill(am.eq(0), -100)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
    model.eval()
    model.save_pretrained(out)
    tok.save_pretrained(out)


@pytest.fixture(scope="session")
def trained_tiny(request, tmp_path_factory) -> Path:
    """A tiny GPT-NeoX trained on the packaged corpus, saved as a local model folder (save_pretrained + tokenizer).

    Kept in pytest's cache between runs when the cache plugin is on (`-p no:cacheprovider` trains it afresh)."""
    key = hashlib.sha256()
    for name in ("corpus.jsonl", "model_config.json", "tokenizer.json"):
        key.update(tiny_asset(name).read_bytes())
    key.update(json.dumps(TRAIN, sort_keys=True).encode() + torch.__version__.encode())
    cache = getattr(request.config, "cache", None)
    base = cache.mkdir("ifguide-influence-model") if cache else tmp_path_factory.mktemp("ifguide-influence-model")
    folder = Path(base) / key.hexdigest()[:16]
    if not (folder / "config.json").is_file():
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
            shutil.rmtree(tmp, ignore_errors=True)
            _train_tiny(tmp)
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(tmp, folder)
        finally:
            torch.set_num_threads(threads)
    return folder


@pytest.fixture(scope="module")
def env(trained_tiny, tmp_path_factory):
    """Workspace with a 320-document dataset artifact, fp32 EK-FAC factors and fp32 differential scores (via the CLI)."""
    from ifguide_cli.core.data import corpus_artifact, default_corpus_config, load_corpus
    from ifguide_cli.core.models import resolve_model
    from ifguide_cli.core.store.workspace import Workspace

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("influence") / "ws"
    ws = Workspace(root)
    dataset = corpus_artifact(ws, "tiny", resolve_model(str(trained_tiny), ws),
                              default_corpus_config("tiny", max_examples=ROWS)).artifact
    factors = invoke_cli(root, "--json", "factors", trained_tiny, "--data", dataset.id, "--name", "f32")
    assert factors.exit_code == 0, factors.stderr
    scores = invoke_cli(root, "--json", "scores", "f32", "--toxic-queries", "tiny-queries-toxic", "--safe-queries", "tiny-queries-safe")
    assert scores.exit_code == 0, scores.stderr
    yield SimpleNamespace(root=root, ws=ws, model=trained_tiny, dataset=dataset, corpus=load_corpus(dataset),
                          factors=factors.data, scores=scores.data,
                          fp32=load_file(scores.data["files"]["scores"])["scores"])
    torch.set_num_threads(threads)


def _label_mask(corpus):
    m = torch.zeros_like(corpus.attention_mask, dtype=torch.bool)
    m[:, 1:] = corpus.attention_mask[:, 1:].bool()
    return m


def _spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ra = a.double().argsort().argsort().double()
    rb = b.double().argsort().argsort().double()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()))


# ---- the pipeline ------------------------------------------------------------------------------
def test_factors_then_scores_are_linked_and_aligned(env):
    f, s = env.factors, env.scores
    assert f["kind"] == "factors" and not f["reused"]
    assert f["parents"] == [env.dataset.id]
    assert f["config"]["strategy"] == "ekfac" and f["config"]["dataset"] == env.dataset.id
    assert f["config"]["precision"] == s["config"]["precision"] == "fp32"  # `auto` is recorded as what it resolved to
    assert (Path(f["path"]) / "kronfluence" / "factors_ekfac" / "lambda_matrix.safetensors").is_file()
    assert s["kind"] == "scores" and s["parents"] == [f["id"], env.dataset.id]
    config = s["config"]
    assert config["dataset"] == env.dataset.id and config["factors"] == f["id"]
    assert config["model"]["location"] == str(env.model.resolve()) and config["damping"] == "auto"
    assert config["toxic_queries"]["name"] == "tiny-queries-toxic" and config["toxic_queries"]["queries"] == 32
    scores = env.fp32
    assert scores.dtype == torch.float32 and scores.shape == env.corpus.input_ids.shape == (ROWS, 64)
    # label alignment: column 0 and padding are exactly 0, predicted tokens mostly non-zero
    mask = _label_mask(env.corpus)
    assert (scores[~mask] == 0).all()
    assert (scores[mask] != 0).float().mean() > 0.99
    lineage = env.ws.lineage(env.ws.resolve(s["id"], "scores"))
    assert {p["id"] for p in lineage["parents"]} == {f["id"], env.dataset.id}


def test_planted_toxic_documents_score_higher(env):
    mask = _label_mask(env.corpus)
    doc = (env.fp32 * mask).sum(1) / mask.sum(1)
    planted = env.corpus.planted_toxic
    assert int(planted.sum()) == 30
    toxic_mean, clean_mean = doc[planted].mean(), doc[~planted].mean()
    assert toxic_mean > clean_mean + 3 * doc[~planted].std()
    # ranking: planted documents sit at the top (AUC of the document mean score)
    auc = (doc[planted][:, None] > doc[~planted][None, :]).float().mean()
    assert auc > 0.9
    assert env.scores["summary"]["planted_toxic_doc_mean"] > env.scores["summary"]["clean_doc_mean"]


def test_rerun_reuses_the_finished_artifacts(env):
    again = invoke_cli(env.root, "--json", "scores", env.factors["id"], "-t", "tiny-queries-toxic", "-s", "tiny-queries-safe",
                    "--batch-size", "7")  # execution settings are not part of the identity
    assert again.exit_code == 0 and again.data["reused"] and again.data["id"] == env.scores["id"]
    factors = invoke_cli(env.root, "--json", "factors", env.model, "--data", env.dataset.id)
    assert factors.data["reused"] and factors.data["id"] == env.factors["id"]


def _engine_setup(env):
    """The fitted factors' folder, the tiny query sets, the training rows, and a builder of a fresh
    InfluenceEngine for a device and precision — what the core-level comparisons share."""
    from ifguide_cli.core import dist
    from ifguide_cli.core.data.rows import CorpusRows
    from ifguide_cli.core.influence import (
        InfluenceEngine,
        factors_dir_of,
        load_model_for_influence,
        load_query_set,
        resolve_family,
    )
    from ifguide_cli.core.models import load_tokenizer, resolve_model

    fart = env.ws.resolve(env.factors["id"], "factors")
    mref = resolve_model(str(env.model), env.ws)
    tok = load_tokenizer(mref)
    queries = {kind: load_query_set(f"tiny-queries-{kind}", tok, 64, None, 0, kind) for kind in ("toxic", "safe")}

    def engine(device: str, precision: str):
        model, modules, _ = load_model_for_influence(mref, resolve_family(mref, env.ws, family_spec=fart.config["family"]))
        return InfluenceEngine(model, modules, dist.setup(device), precision)

    rows = CorpusRows(env.corpus.input_ids, env.corpus.attention_mask, with_index=True)
    return SimpleNamespace(factors_dir=factors_dir_of(fart), pad_id=tok.pad_token_id, queries=queries, rows=rows, engine=engine)


def test_one_pass_differential_equals_two_runs(env, tmp_path):
    from ifguide_cli.core.influence import two_run_reference

    setup = _engine_setup(env)
    two_runs = two_run_reference(setup.engine("cpu", "fp32"), tmp_path, setup.factors_dir, setup.rows,
                                 setup.queries["toxic"], setup.queries["safe"], setup.pad_id, damping=None, batch_size=64)
    err = (two_runs - env.fp32).abs().max().item()
    scale = env.fp32.abs().max().item()
    print(f"one-pass vs two-run: max abs error {err:.3g} (max |score| {scale:.3g}, relative {err / scale:.2e})")
    assert err <= 1e-5 * scale


def test_bf16_scores_rank_correlate_with_fp32(env):
    bf16 = invoke_cli(env.root, "--json", "scores", env.factors["id"], "-t", "tiny-queries-toxic", "-s", "tiny-queries-safe",
                   "--precision", "bf16")
    assert bf16.exit_code == 0, bf16.stderr
    assert bf16.data["id"] != env.scores["id"] and bf16.data["config"]["precision"] == "bf16"
    mask = _label_mask(env.corpus)
    b = load_file(bf16.data["files"]["scores"])["scores"]
    rho = _spearman(env.fp32[mask], b[mask])
    k = int(mask.sum()) // 100
    top_fp32 = set(env.fp32[mask].topk(k).indices.tolist())
    overlap = len(top_fp32 & set(b[mask].topk(k).indices.tolist())) / k
    print(f"bf16 vs fp32: Spearman {rho:.5f}, top-1% overlap {overlap:.3f}")
    assert rho >= 0.99 and overlap >= 0.9


def test_compact_storage_keeps_the_selection(env):
    """--storage bf16 / fp16: half the bytes, the same scores up to their rounding, and nearly the same mask."""
    import numpy as np

    from ifguide_cli.core.masking import MaskConfig, load_scores, select_toxic_tokens

    valid = env.corpus.attention_mask.bool().numpy()
    config = MaskConfig(max_tokens=int(valid.sum()) // 50)
    fp32 = env.fp32.numpy()
    base = select_toxic_tokens(fp32, config, valid).mask
    for storage, dtype, rel in (("bf16", torch.bfloat16, 2**-8), ("fp16", torch.float16, 2**-11)):
        out = invoke_cli(env.root, "--json", "scores", "f32", "-t", "tiny-queries-toxic", "-s", "tiny-queries-safe",
                         "--storage", storage)
        assert out.exit_code == 0, out.stderr
        path = Path(out.data["files"]["scores"])
        assert path.stat().st_size < 0.55 * Path(env.scores["files"]["scores"]).stat().st_size
        stored = load_scores(path)
        np.testing.assert_array_equal(stored, env.fp32.to(dtype).float().numpy())  # exactly fp32 rounded once
        assert np.abs(stored - fp32).max() <= rel * np.abs(fp32).max()
        mask = select_toxic_tokens(stored, config, valid).mask
        jaccard = (mask & base).sum() / (mask | base).sum()
        print(f"{storage}: mask Jaccard with fp32 {jaccard:.4f}")
        assert jaccard >= 0.9
        selected = invoke_cli(env.root, "--json", "mask", out.data["id"], "--max-tokens", str(config.max_tokens))
        assert selected.exit_code == 0, selected.stderr


def test_interrupted_scores_resume_from_the_last_finished_block(env, monkeypatch):
    import kronfluence.computer.score_computer as sc

    from ifguide_cli.core import notes
    from ifguide_cli.core.influence import scores as scores_stage

    real_mark, real_save = scores_stage.mark_finished, sc.save_pairwise_scores
    marks, passes = [], []

    def mark_then_die(staging, run, done):
        real_mark(staging, run, done)
        marks.append(sorted(done))
        if done:
            raise KeyboardInterrupt  # killed right after the first block was written and recorded

    args = ["scores", env.factors["id"], "-t", "tiny-queries-toxic", "-s", "tiny-queries-safe", "--max-queries", "16",
            "--partitions", "3"]
    monkeypatch.setattr(scores_stage, "mark_finished", mark_then_die)
    monkeypatch.setattr(sc, "save_pairwise_scores", lambda *a, **k: (passes.append(1), real_save(*a, **k)))
    killed = invoke_cli(env.root, "--json", *args)
    assert killed.exit_code == 130 and "resumes" in killed.stderr
    assert marks == [[], [0]] and len(passes) == 1
    monkeypatch.setattr(scores_stage, "mark_finished", real_mark)
    resumed = invoke_cli(env.root, "--json", *args)
    assert resumed.exit_code == 0, resumed.stderr
    assert len(passes) == 3  # blocks 1 and 2 only: block 0 is not scored again
    assert "resuming an interrupted run: 1 of 3 block(s) are done" in notes.collected()  # the user is told (terminal, and --json's warnings)
    resumed_scores = load_file(resumed.data["files"]["scores"])["scores"]
    fresh = invoke_cli(env.root, "--json", *args[:-2], "--partitions", "1", "--force")  # same identity, one block
    assert fresh.exit_code == 0 and fresh.data["id"] == resumed.data["id"]
    torch.testing.assert_close(resumed_scores, load_file(fresh.data["files"]["scores"])["scores"], rtol=1e-5, atol=1e-4)


@pytest.mark.gpu
def test_cuda_scores_match_cpu_fp32(env, tmp_path):
    from ifguide_cli.core.influence import align_to_labels, query_rows

    setup = _engine_setup(env)
    queries = query_rows(setup.queries["toxic"], setup.queries["safe"], setup.pad_id)
    mask = _label_mask(env.corpus)
    for precision in ("fp32", "bf16"):
        raw = setup.engine("cuda", precision).scores(tmp_path / precision, setup.factors_dir, setup.rows, queries, damping=None,
                                                     per_module=False, batch_size=64, query_batch_size=16, partitions=1)
        cuda_scores = align_to_labels(raw["all_modules"])
        rho = _spearman(env.fp32[mask], cuda_scores[mask])
        print(f"cuda {precision} vs cpu fp32: Spearman {rho:.5f}")
        assert rho >= 0.99


def test_interrupted_factors_resume_from_finished_partitions(env, monkeypatch):
    import kronfluence.computer.factor_computer as fc

    real_save = fc.save_lambda_matrices
    calls = []

    def save(*args, die=False, **kwargs):
        real_save(*args, **kwargs)
        calls.append(kwargs.get("partition"))
        if die:
            raise KeyboardInterrupt

    args = ["factors", env.model, "--data", env.dataset.id, "--strategy", "diagonal", "--max-examples", "64",
            "--partitions", "2"]
    monkeypatch.setattr(fc, "save_lambda_matrices", lambda *a, **k: save(*a, die=True, **k))
    killed = invoke_cli(env.root, "--json", *args)
    assert killed.exit_code == 130 and calls == [(0, 0)]
    monkeypatch.setattr(fc, "save_lambda_matrices", save)
    resumed = invoke_cli(env.root, "--json", *args)
    assert resumed.exit_code == 0, resumed.stderr
    assert calls[1:] == [(1, 0), None]  # only the second partition, then the aggregate
    monkeypatch.setattr(fc, "save_lambda_matrices", real_save)
    lam = Path(resumed.data["path"]) / "kronfluence" / "factors_diagonal" / "lambda_matrix.safetensors"
    resumed_lambda = load_file(str(lam))
    fresh = invoke_cli(env.root, "--json", *args[:-2], "--force")
    assert fresh.exit_code == 0 and fresh.data["id"] == resumed.data["id"]
    for key, value in load_file(str(lam)).items():
        torch.testing.assert_close(resumed_lambda[key], value, rtol=1e-5, atol=1e-6 * float(value.abs().max()))


# ---- bad input: one clear line -----------------------------------------------------------------
def test_bad_inputs_get_one_clear_line(env, tmp_path):
    fid = env.factors["id"]
    q = ["-t", "tiny-queries-toxic", "-s", "tiny-queries-safe"]
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n".join(json.dumps({"prompt": f"He said {i}", "continuation": ""}) for i in range(4)) + "\n")
    def scores(*args):
        return invoke_cli(env.root, "--json", "scores", *args)

    assert_one_line_error(scores(fid, "-t", empty, "-s", "tiny-queries-safe"), "has no continuation tokens", code=2)
    assert_one_line_error(scores(fid, *q, "--model", "tiny"), "were fit on model", code=2)
    assert_one_line_error(scores(fid, *q, "--query-low-rank", "4"), "--query-low-rank cannot be combined", code=2)
    assert_one_line_error(scores(fid, *q, "--damping", "lots"), "--damping must be", code=2)
    assert_one_line_error(scores(env.dataset.id, *q), "is a dataset artifact, not a factors artifact", code=2)
    # a dataset whose rows have another length than the factors' fit set
    from ifguide_cli.core.data import corpus_artifact, default_corpus_config
    from ifguide_cli.core.models import resolve_model

    short = corpus_artifact(env.ws, "tiny", resolve_model(str(env.model), env.ws),
                            default_corpus_config("tiny", max_examples=40, seq_len=32)).artifact
    assert_one_line_error(scores(fid, *q, "--data", short.id), "rows of 32 tokens but factors", code=2)


def test_tiny_damping_in_bf16_runs_with_a_warning_that_gives_its_cost(env):
    # refused before; the reference ran kronfluence's 1e-8 in bf16, so it runs, and the warning says what it costs
    warned = invoke_cli(env.root, "--json", "scores", env.factors["id"], "-t", "tiny-queries-toxic", "-s", "tiny-queries-safe",
                        "--precision", "bf16", "--damping", "1e-10")
    assert warned.exit_code == 0, warned.stderr
    [warning] = [w for w in warned.data["warnings"] if "--damping 1e-10 in bf16" in w]
    assert "mean eigenvalue" in warning and "Spearman 0.83" in warning and "H100" in warning
    assert warned.data["config"]["damping"] == 1e-10


def test_factors_from_changed_weights_are_refused(env, tmp_path):
    from transformers import AutoModelForCausalLM

    model_dir = tmp_path / "model"
    shutil.copytree(env.model, model_dir)
    made = invoke_cli(env.root, "--json", "factors", model_dir, "--data", "tiny", "--strategy", "identity")
    assert made.exit_code == 0, made.stderr
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    with torch.no_grad():
        model.gpt_neox.layers[0].mlp.dense_h_to_4h.weight.add_(0.01)
    model.save_pretrained(model_dir)
    assert_one_line_error(invoke_cli(env.root, "--json", "scores", made.data["id"], "-t", "tiny-queries-toxic"), "were fit on other weights", code=2)


def test_unknown_family_is_refused_and_a_families_file_adds_it(env, tmp_path):
    from transformers import OPTConfig, OPTForCausalLM

    from ifguide_cli.core.models import load_tokenizer, resolve_model

    opt_dir = tmp_path / "opt"
    torch.manual_seed(0)
    OPTForCausalLM(OPTConfig(vocab_size=2048, hidden_size=32, num_hidden_layers=1, ffn_dim=64, num_attention_heads=2,
                             max_position_embeddings=128, word_embed_proj_dim=32)).save_pretrained(opt_dir)
    load_tokenizer(resolve_model("tiny")).save_pretrained(opt_dir)
    assert_one_line_error(invoke_cli(env.root, "--json", "factors", opt_dir, "--data", "tiny"), "unknown model family 'opt'", code=2)
    fam = tmp_path / "families.yaml"
    fam.write_text("families:\n  opt:\n    modules: ['model.decoder.layers.*.fc1', 'model.decoder.layers.*.fc2']\n")
    made = invoke_cli(env.root, "--json", "factors", opt_dir, "--data", "tiny", "--families", fam, "--strategy", "diagonal",
                   "--max-examples", "16")
    assert made.exit_code == 0, made.stderr
    assert made.data["config"]["modules"] == ["model.decoder.layers.0.fc1", "model.decoder.layers.0.fc2"]
    globbed = invoke_cli(env.root, "--json", "factors", opt_dir, "--data", "tiny", "--modules", "*.fc2", "--strategy", "identity")
    assert globbed.exit_code == 0 and globbed.data["config"]["modules"] == ["model.decoder.layers.0.fc2"]


# ---- several processes -------------------------------------------------------------------------
def test_two_gloo_processes_match_one_process(env, tmp_path):
    """`torchrun --nproc-per-node 2 -m ifguide_cli factors/scores` on CPU gives the single-process artifacts."""
    root = tmp_path / "ws"
    (root / "datasets").mkdir(parents=True)
    shutil.copytree(env.dataset.path, root / "datasets" / env.dataset.id)
    envvars = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    envvars.pop("RANK", None)
    envvars.pop("WORLD_SIZE", None)

    def torchrun(*args: str) -> dict:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "ifguide_cli",
               "--workspace", str(root), "--json", *map(str, args)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=envvars, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout)  # only rank 0 prints

    factors = torchrun("factors", env.model, "--data", env.dataset.id, "--batch-size", "32")
    assert factors["id"] == env.factors["id"] and not factors["reused"] and factors["summary"]["processes"] == 2
    single = Path(env.factors["path"]) / "kronfluence" / "factors_ekfac"
    for name in ("activation_covariance", "gradient_covariance", "lambda_matrix"):
        a = load_file(str(single / f"{name}.safetensors"))
        b = load_file(str(root / "factors" / factors["id"] / "kronfluence" / "factors_ekfac" / f"{name}.safetensors"))
        for key in a:
            torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-6 * float(a[key].abs().max()))
    scores = torchrun("scores", factors["id"], "-t", "tiny-queries-toxic", "-s", "tiny-queries-safe", "--batch-size", "16")
    assert scores["id"] == env.scores["id"] and scores["summary"]["processes"] == 2
    dist_scores = load_file(str(root / "scores" / scores["id"] / "scores.safetensors"))["scores"]
    scale = env.fp32.abs().max().item()
    err = (dist_scores - env.fp32).abs().max().item()
    print(f"2 processes vs 1: max abs error {err:.3g} (max |score| {scale:.3g})")
    assert err <= 1e-4 * scale
    assert not list((root / ".staging").glob("scores-*")) and not list((root / ".staging").glob("factors-*"))


def test_shards_merge_into_the_artifact_an_unsharded_run_makes(env):
    """Three independent `--shard I/3` jobs (in any order): the last one merges them into the unsharded artifact."""
    args = ["scores", "f32", "-t", "tiny-queries-toxic", "-s", "tiny-queries-safe", "--max-queries", "8"]
    shards = [invoke_cli(env.root, "--json", *args, "--shard", f"{i}/3") for i in (2, 0, 1)]
    assert all(s.exit_code == 0 for s in shards), [s.stderr for s in shards]
    assert [s.data["merged"] is None for s in shards] == [True, True, False]
    assert shards[0].data["summary"]["scored_rows"] == ROWS - 2 * ROWS // 3  # contiguous: rows ⌊2n/3⌋ … n-1
    merged_id = shards[2].data["merged"]
    merged = load_file(str(env.ws.by_id(merged_id).path / "scores.safetensors"))["scores"]
    unsharded = invoke_cli(env.root, "--json", *args)
    assert unsharded.exit_code == 0 and unsharded.data["id"] == merged_id and unsharded.data["reused"]
    fresh = invoke_cli(env.root, "--json", *args, "--force")
    assert fresh.exit_code == 0 and fresh.data["id"] == merged_id
    # rows are scored independently; only the batch composition differs (float rounding of the same sums)
    torch.testing.assert_close(merged, load_file(fresh.data["files"]["scores"])["scores"], rtol=1e-5, atol=1e-5)
