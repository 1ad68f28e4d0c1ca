"""Older manifests read as the current schema: one migration per version step and kind (`core/store/migrations`).

The old manifests are written by hand, as the tool wrote them before the stage contract (no `schema`)."""

from __future__ import annotations

import json

import pytest

from ifguide_cli.core.store.migrations import CURRENT, migrate, schema_version
from ifguide_cli.core.store.workspace import Workspace, artifact_id

OLD_TOXICITY = {"task": "toxicity", "model": {"source": "registry", "location": "tiny"}, "prompts": {"name": "tiny-prompts"},
                "generation": {"samples": 2}, "defense": {"name": "none"}, "classifier": {"backend": "profanity"},
                "dtype": "float32"}
OLD_FLUENCY = {"task": "fluency", "model": {"source": "registry", "location": "tiny"},
               "perplexity_data": {"name": "tiny-heldout"}, "lambada_data": {"name": "tiny-lambada"}, "max_length": None,
               "defense": {"name": "none"}, "dtype": "torch.bfloat16"}


def _write_old(ws: Workspace, kind: str, config: dict, summary: dict, name: str | None = None) -> dict:
    """An artifact folder with a manifest as an older version of the tool wrote it (its id: the hash of its config)."""
    aid = artifact_id(kind, config, [])
    folder = ws.root / kind / aid
    folder.mkdir(parents=True)
    manifest = {"id": aid, "kind": kind, "name": name, "created": "2026-01-01T00:00:00.000+00:00", "parents": [],
                "config": config, "files": {}, "summary": summary, "versions": {}, "device": "cpu", "timings": {}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return manifest


def _old(kind: str, config: dict, summary: dict | None = None) -> dict:
    return migrate({"kind": kind, "config": config, "summary": summary or {}})


def test_an_old_eval_manifest_on_disk_reads_as_the_current_schema(tmp_path):
    ws = Workspace(tmp_path / "ws")
    written = _write_old(ws, "evals", OLD_TOXICITY, {"task": "toxicity", "toxicity_probability": 0.5}, name="old")
    art = ws.resolve("old", "evals")
    assert art.config["schema"] == CURRENT["evals"] == 1
    assert art.config["dtype"] == "fp32" and art.config["leakage_queries"] is None
    assert art.summary["toxicity_probability"] == 0.5 and art.id == written["id"]
    assert [a.config["schema"] for a in ws.list("evals")] == [1] and ws.get("evals", art.id).config == art.config


def test_the_file_on_disk_is_never_rewritten_by_a_migration(tmp_path):
    ws = Workspace(tmp_path / "ws")
    written = _write_old(ws, "evals", OLD_TOXICITY, {})
    renamed = ws.rename(ws.get("evals", written["id"]), "new-name")
    on_disk = json.loads((renamed.path / "manifest.json").read_text())
    assert on_disk["config"] == written["config"] and on_disk["name"] == "new-name"  # only the name changed
    assert renamed.config["dtype"] == "fp32" and renamed.name == "new-name"


def test_a_current_manifest_is_read_as_it_is():
    current = {"kind": "evals", "config": {"schema": 1, "task": "toxicity", "dtype": "float32"}, "summary": {}}
    assert migrate(current) is current  # a current manifest is not translated (its values are its own)
    assert schema_version(current) == 1 and schema_version({"config": {}}) == 0
    assert schema_version({"config": {"schema": True}}) == 0  # not a version number


@pytest.mark.parametrize(("old", "new"), [("float32", "fp32"), ("torch.bfloat16", "bf16"), ("torch.float16", "fp16")])
def test_eval_dtypes_under_torchs_names_read_as_precisions(old, new):
    assert _old("evals", {**OLD_TOXICITY, "dtype": old})["config"]["dtype"] == new
    assert _old("evals", {**OLD_FLUENCY, "dtype": old})["config"]["dtype"] == new


def test_toxicity_evals_without_queries_record_none():
    assert _old("evals", OLD_TOXICITY)["config"]["leakage_queries"] is None
    assert "leakage_queries" not in OLD_TOXICITY and OLD_TOXICITY["dtype"] == "float32"  # the manifest read is not changed
    queries = [{"name": "tiny-toxic-queries"}]
    assert _old("evals", {**OLD_TOXICITY, "leakage_queries": queries})["config"]["leakage_queries"] == queries


def test_fluency_evals_record_their_lambada_metrics():
    assert _old("evals", OLD_FLUENCY)["config"]["lambada_metrics"] == ["whole-word"]  # the only metric before two
    assert _old("evals", {**OLD_FLUENCY, "lambada_data": None})["config"]["lambada_metrics"] == []
    both = {**OLD_FLUENCY, "lambada_metrics": ["last-token", "whole-word"]}
    assert _old("evals", both)["config"]["lambada_metrics"] == ["last-token", "whole-word"]


def test_a_fluency_summary_from_one_lambada_metric_names_it_whole_word():
    old = _old("evals", OLD_FLUENCY, {"perplexity": 20.0, "lambada_accuracy": 0.3})["summary"]
    assert old["lambada_word_accuracy"] == 0.3 and old["lambada_accuracy"] == 0.3
    newer = {"lambada_accuracy": 0.4, "lambada_metric": "last-token", "lambada_last_token_accuracy": 0.4}
    assert "lambada_word_accuracy" not in _old("evals", OLD_FLUENCY, newer)["summary"]
    assert "lambada_word_accuracy" not in _old("evals", OLD_FLUENCY, {"lambada_accuracy": None})["summary"]


def test_reports_record_the_default_control_and_statistics_as_none():
    config = _old("reports", {"evals": ["a", "b"]})["config"]
    assert config == {"evals": ["a", "b"], "control": None, "statistics": None, "schema": 1}
    named = _old("reports", {"evals": ["a"], "control": ["c1"], "statistics": {"draws": 500, "seed": 3}})["config"]
    assert named["control"] == ["c1"] and named["statistics"] == {"draws": 500, "seed": 3}


def test_datasets_before_label_fields_are_labelled_by_planted_toxic():
    assert _old("datasets", {"data": {"name": "tiny"}})["config"]["label_field"] == "planted_toxic"
    assert _old("datasets", {"data": {"name": "x"}, "label_field": None})["config"]["label_field"] is None


def test_rad_reward_models_record_their_shapes_as_architecture():
    shapes = {"n_layer": 1, "n_head": 1, "n_embd": 64, "vocab_size": 100, "n_positions": 64}
    old = _old("classifiers", {"backend": "rad-reward", "weights_sha256": "a" * 64, "config": shapes})["config"]
    assert old["architecture"] == shapes and "config" not in old
    registered = {"backend": "seqcls", "config": {"x": 1}}  # another classifier's fields are its own
    assert _old("classifiers", registered)["config"]["config"] == {"x": 1}


@pytest.mark.parametrize("kind", sorted(CURRENT))
def test_every_kind_is_stamped_with_its_current_schema(kind):
    assert _old(kind, {})["config"]["schema"] == CURRENT[kind]


def test_each_stage_keys_schema_is_its_kinds_current_version():
    """A key whose `schema` was raised without a migration step here would make its older artifacts unreadable."""
    import ifguide_cli.core.evaluation.stages
    import ifguide_cli.core.masking.stage
    import ifguide_cli.core.rad.install
    import ifguide_cli.core.report.build  # noqa: F401 -- the keys are found as ArtifactKey subclasses
    from ifguide_cli.core.stage import ArtifactKey

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    keys = list(subclasses(ArtifactKey))
    assert {k.kind for k in keys} >= {"evals", "reports", "masks", "classifiers"}
    assert {k.__name__: k.schema for k in keys} == {k.__name__: CURRENT[k.kind] for k in keys}
