"""The eval and report stages on the stage contract: their `key()` (nothing built) names exactly the artifact that
running them stores, which is how `run --dry-run` finds what a pipeline would reuse."""

from __future__ import annotations

import pytest

from ifguide_cli.core.classifiers import resolve_classifier
from ifguide_cli.core.evaluation import FluencyConfig, GenerationConfig, evaluate_fluency, evaluate_toxicity
from ifguide_cli.core.evaluation.config import RuntimeConfig
from ifguide_cli.core.evaluation.stages import (
    FluencyRefs,
    FluencyStage,
    ToxicityRefs,
    ToxicitySettings,
    ToxicityStage,
)
from ifguide_cli.core.models import resolve_model
from ifguide_cli.core.report.arms import ReportConfig
from ifguide_cli.core.report.build import ReportRefs, ReportStage, build_report
from ifguide_cli.core.stage import stored
from ifguide_cli.core.store.workspace import Workspace, canonical_json

GENERATION = GenerationConfig(samples=1, max_new_tokens=2, batch_size=2)
FLUENCY = FluencyConfig(ppl_docs=2, lambada_docs=2, max_length=16)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    ws = Workspace(tmp_path_factory.mktemp("ws"))
    mref, classifier = resolve_model("tiny"), resolve_classifier("profanity")
    tox = evaluate_toxicity(ws, mref, "tiny-prompts", GENERATION, classifier, num_prompts=2)
    flu = evaluate_fluency(ws, mref, FLUENCY)
    return ws, mref, classifier, tox, flu


def test_the_toxicity_key_names_the_stored_eval(evaluated):
    ws, mref, classifier, tox, _ = evaluated
    stage = ToxicityStage()
    inputs = stage.inputs(ws, ToxicityRefs(mref, "tiny-prompts", classifier, 2))
    key = stage.key(inputs, ToxicitySettings(generation=GENERATION))
    assert not tox.reused and stored(ws, key).id == tox.artifact.id == key.id
    assert canonical_json(key.config()) == canonical_json(tox.artifact.config) and tox.artifact.config["dtype"] == "fp32"
    assert tox.artifact.config["schema"] == 1 and tox.artifact.config["leakage_queries"] is None
    other = stage.key(inputs, ToxicitySettings(generation=GenerationConfig(samples=1, max_new_tokens=2, seed=1)))
    assert stored(ws, other) is None  # another sampling seed is another eval
    assert "profanity" in stage.describe(inputs, ToxicitySettings(generation=GENERATION))


def test_the_fluency_key_names_the_stored_eval(evaluated):
    ws, mref, _, _, flu = evaluated
    stage = FluencyStage()
    inputs = stage.inputs(ws, FluencyRefs(mref, FLUENCY))
    key = stage.key(inputs, RuntimeConfig())
    assert stored(ws, key).id == flu.artifact.id and canonical_json(key.config()) == canonical_json(flu.artifact.config)
    assert flu.artifact.config["lambada_metrics"] == ["whole-word"]  # recorded even for the one metric
    assert stored(ws, stage.key(stage.inputs(ws, FluencyRefs(mref, FLUENCY.replace(no_lambada=True))), RuntimeConfig())) is None


def test_the_report_key_names_the_stored_report_and_a_rerun_reuses_it(evaluated):
    ws, _, _, tox, flu = evaluated
    report = build_report(ws, [tox.artifact, flu.artifact])
    stage = ReportStage()
    key = stage.key(stage.inputs(ws, ReportRefs((tox.artifact, flu.artifact))), ReportConfig())
    assert stored(ws, key).id == report.artifact.id and set(report.artifact.parents) == set(key.parents)
    again = evaluate_toxicity(ws, resolve_model("tiny"), "tiny-prompts", GENERATION, resolve_classifier("profanity"),
                              num_prompts=2)
    assert again.reused and again.artifact.id == tox.artifact.id
