"""Scores written block by block into a pre-sized file: the plan, the writer, the storages, resume state, summary."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.influence import blocks, summary
from ifguide_cli.core.masking import MaskConfig, load_scores, select_toxic_tokens
from ifguide_cli.core.masking.scorefile import load_safetensors_array, safetensors_keys


def test_blocks_cover_every_scored_row_once():
    plan = blocks.plan_blocks(10, 8, None, 3, world=1)
    assert [plan.block_rows(b) for b in range(3)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    subset = blocks.plan_blocks(10, 8, [1, 4, 7], 2, world=1)
    assert [subset.block_rows(b) for b in range(2)] == [[1, 4], [7]]
    auto = blocks.plan_blocks(3 * blocks.BLOCK_TOKENS // 64, 64, None, None, world=1)
    assert auto.count == 3  # the default: about BLOCK_TOKENS tokens per block
    queries = blocks.plan_blocks(3 * blocks.BLOCK_TOKENS // 64, 64, None, None, world=1, query_tokens=blocks.BLOCK_TOKENS)
    assert queries.count == 1  # blocks of ≥ 20× the query tokens: the repeated query passes stay cheap
    with pytest.raises(IfguideError, match="cannot be split into 4 block"):
        blocks.plan_blocks(6, 8, None, 4, world=2)


@pytest.mark.parametrize("storage", blocks.STORAGES)
def test_blocks_written_in_any_order_give_the_whole_tensor(tmp_path, storage):
    path = tmp_path / "scores.safetensors"
    rows = [0, 2, 3, 5, 6]
    plan = blocks.plan_blocks(7, 4, rows, 2, world=1)
    blocks.create_file(path, plan, 4, storage, ["scores"], "rows")
    values = torch.randn(7, 4) * 100
    for b in (1, 0):  # a resumed run writes the later block first
        part = plan.block_rows(b)
        blocks.write_block(path, {"scores": values[part]}, part, storage)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[storage]
    expected = torch.zeros(7, 4)
    expected[rows] = values[rows].to(dtype).float()
    np.testing.assert_array_equal(load_scores(path), expected.numpy())  # unscored rows read 0
    assert sorted(safetensors_keys(path)) == ["rows", "scores"]
    np.testing.assert_array_equal(load_safetensors_array(path, "rows"), rows)


def test_fp16_refuses_scores_it_cannot_hold():
    with pytest.raises(IfguideError, match="does not fit --storage fp16"):
        blocks.encode(torch.tensor([[1e6]]), "fp16")


def test_finished_blocks_belong_to_the_same_settings(tmp_path):
    run = {"blocks": 3, "scored_rows": 30, "storage": "fp32", "per_module": False}
    assert blocks.finished_blocks(tmp_path, run) == set()
    blocks.mark_finished(tmp_path, run, {0, 2})
    assert blocks.finished_blocks(tmp_path, run) == {0, 2}
    assert blocks.finished_blocks(tmp_path, {**run, "blocks": 4}) == set()  # other blocks: start over
    (tmp_path / blocks.BLOCKS_FILE).write_text("{half")
    assert blocks.finished_blocks(tmp_path, run) == set()


def test_chunked_summary_equals_the_whole_tensor_statistics(monkeypatch):
    from types import SimpleNamespace

    monkeypatch.setattr(summary, "CHUNK_ELEMENTS", 24)  # several chunks of 3 rows
    monkeypatch.setattr(summary, "SAMPLE", 1 << 30)  # the p99 over every score: exact
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(20, 8, generator=gen)
    att = (torch.rand(20, 8, generator=gen) > 0.2).to(torch.uint8)
    planted = torch.arange(20) % 4 == 0
    corpus = SimpleNamespace(attention_mask=att, planted_toxic=planted)
    rows = list(range(0, 20, 2))
    out = summary.score_summary(scores.numpy(), corpus, 0.0, 1, rows=rows)
    valid = torch.zeros(20, 8, dtype=torch.bool)
    valid[:, 1:] = att[:, 1:].bool()
    valid[[r for r in range(20) if r not in rows]] = False
    picked = scores[valid].double()
    assert out["tokens"] == int(valid.sum()) and out["scored_rows"] == 10
    assert out["score_mean"] == pytest.approx(float(picked.mean()))
    assert out["score_std"] == pytest.approx(float(picked.std()))
    assert out["score_max"] == pytest.approx(float(picked.max()))
    assert out["score_p99"] == pytest.approx(float(np.quantile(picked.float().numpy(), 0.99)))
    doc_mean = (scores * valid).sum(1) / valid.sum(1).clamp(min=1)
    assert out["planted_toxic_doc_mean"] == pytest.approx(float(doc_mean[planted & (torch.arange(20) % 2 == 0)].mean()))


def test_mask_reads_every_storage(tmp_path):
    scores = np.random.default_rng(0).standard_normal((50, 16)).astype(np.float32)
    config = MaskConfig(max_tokens=40)
    base = select_toxic_tokens(scores, config).mask
    for storage in blocks.STORAGES:
        path = tmp_path / f"{storage}.safetensors"
        plan = blocks.plan_blocks(50, 16, None, 1, world=1)
        blocks.create_file(path, plan, 16, storage, ["scores"], "rows")
        blocks.write_block(path, {"scores": torch.from_numpy(scores)}, list(range(50)), storage)
        mask = select_toxic_tokens(load_scores(path), config).mask
        assert (mask & base).sum() / (mask | base).sum() >= 0.9, storage


def _shard(aid: str, index: int, count: int, **config):
    from pathlib import Path

    from ifguide_cli.core.store.workspace import Artifact

    base = {"factors": "f1", "dataset": "d1", "toxic_queries": {"name": "t"}, "damping": "auto", "rows": {"shard": [index, count]}}
    return Artifact(aid, "scores", Path("/nonexistent"), {"config": {**base, **config}, "parents": ["f1", "d1"]})


def test_merge_takes_all_shards_of_one_scoring_in_order():
    from ifguide_cli.core.influence.merge import check_parts

    inputs = check_parts([_shard("b", 1, 2), _shard("a", 0, 2)])
    assert [p.id for p in inputs.parts] == ["a", "b"]
    assert "rows" not in inputs.recipe and inputs.parents == ("f1", "d1")


@pytest.mark.parametrize(("parts", "needle"), [
    ([_shard("a", 0, 2), _shard("b", 1, 2, factors="f2")], "different scorings: factors \"f1\" vs \"f2\""),
    ([_shard("a", 0, 2), _shard("b", 1, 2, storage="bf16")], "different scorings: storage null vs \"bf16\""),
    ([_shard("a", 0, 2), _shard("b", 1, 2, dataset="d2")], "different scorings: dataset"),
    ([_shard("a", 0, 3), _shard("b", 2, 3)], "shard(s) 1/3 missing"),
    ([_shard("a", 0, 2), _shard("b", 0, 2)], "shard(s) 1/2 missing"),
])
def test_mismatched_shards_are_refused_in_one_line(parts, needle):
    from ifguide_cli.core.influence.merge import check_parts

    with pytest.raises(IfguideError) as err:
        check_parts(parts)
    assert needle in err.value.message and "\n" not in err.value.message


def test_shard_option_is_checked_where_it_is_declared():
    from ifguide_cli.core.influence import ScoresConfig
    from ifguide_cli.core.influence.subset import scored_rows

    assert scored_rows(None, None, 10, "2/3").indices == [6, 7, 8, 9]
    assert [len(scored_rows(None, None, 10, f"{i}/3")) for i in range(3)] == [3, 3, 4]
    for bad in ("3/3", "1", "a/b", "-1/2"):
        with pytest.raises(IfguideError, match="--shard must be I/N"):
            ScoresConfig(shard=bad)
    with pytest.raises(IfguideError, match="one of --max-rows, --rows and --shard"):
        ScoresConfig(shard="0/2", max_rows=5)
