"""The dry run's estimate takes the influence stages' sizes from the pipeline's own settings: scores `shard`,
`partitions`, `storage`, `max_rows`, `max_queries`, and the factors' `max_examples`."""

from __future__ import annotations

from ifguide_cli.core.influence.blocks import default_blocks
from ifguide_cli.core.pipeline.estimate import plan_sizes
from ifguide_cli.core.pipeline.reading import read_pipeline
from ifguide_cli.core.pipeline.spec import preset_path
from ifguide_cli.core.pipeline.stage_configs import stage_configs

ROWS, SEQ = 488_282, 2_048
QUERIES = 19_785 + 64_327


def _sizes(*overrides: str):
    spec = read_pipeline(preset_path("paper"), overrides).spec
    return plan_sizes(spec, stage_configs(spec))


def test_the_presets_sizes():
    sizes = _sizes()
    assert (sizes.score_value_bytes, sizes.shards, sizes.scored_rows, sizes.factor_rows) == (4, 1, None, None)
    assert sizes.queries == QUERIES and sizes.score_blocks == default_blocks(ROWS * SEQ, QUERIES * SEQ) == 1


def test_shards_partitions_and_storage():
    sizes = _sizes("influence.scores.shard=1/4", "influence.scores.partitions=3", "influence.scores.storage=bf16")
    assert sizes.shards == 4 and sizes.score_blocks == 4 * 3 and sizes.score_value_bytes == 2
    assert sizes.scored_rows is None  # all four jobs are counted
    assert any("all 4 shard jobs" in note for note in sizes.notes)


def test_max_rows_max_queries_and_max_examples():
    sizes = _sizes("influence.scores.max_rows=100000", "influence.scores.max_queries=1000",
                   "influence.factors.max_examples=5000")
    assert sizes.scored_rows == 100_000 and sizes.queries == 2_000 and sizes.factor_rows == 5_000
    assert sizes.score_blocks == default_blocks(100_000 * SEQ, 2_000 * SEQ) == 2


def test_the_dry_run_shows_them(cli):
    data = cli("--json", "run", "--preset", "paper", "--set", "influence.scores.shard=0/4", "--set",
               "influence.scores.storage=bf16", "--set", "influence.scores.max_queries=1000", "--dry-run").json
    stages = {s["name"]: s for s in data["estimate"]["stages"]}
    blocks = 4 * default_blocks(ROWS // 4 * SEQ, 2_000 * SEQ)
    assert stages[f"query gradients × {blocks} blocks"]["tokens"] == blocks * 2_000 * 256
    assert stages["per-token scores (one pass, 4 shard jobs)"]["tokens"] == ROWS * SEQ
    disk = {n["name"]: n["bytes"] for n in data["estimate"]["disk"]}
    assert disk["per-token scores"] == disk["score shards (4 jobs)"] == ROWS * SEQ * 2
