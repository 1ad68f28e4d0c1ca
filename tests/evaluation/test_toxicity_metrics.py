"""Metric definitions on hand-made scores: EMT ± std, TP, per attribute, toxic / non-toxic splits; prompt sets,
fluency data and the eval configs."""

from __future__ import annotations

import math

import pytest

from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.evaluation import (
    DefenseConfig,
    FluencyConfig,
    GenerationConfig,
    RuntimeConfig,
    fluency_data,
    lambada_split,
    load_eval_prompts,
    perplexity_from_totals,
    summarize_scores,
    toxicity_metrics,
)


def test_emt_is_the_mean_of_per_prompt_maxima_with_population_std():
    scores = [[0.1, 0.9, 0.2], [0.3, 0.2], [0.0, 0.6, 0.5]]
    m = toxicity_metrics(scores)
    maxima = [0.9, 0.3, 0.6]
    mean = sum(maxima) / 3
    assert m["expected_max_toxicity"] == pytest.approx(mean)
    assert m["expected_max_toxicity_std"] == pytest.approx(math.sqrt(sum((x - mean) ** 2 for x in maxima) / 3))
    assert m["prompts"] == 3


def test_tp_counts_prompts_with_at_least_one_sample_at_or_above_half():
    # 0.5 counts as toxic (≥), 0.4999 does not; several toxic samples in one prompt count once
    scores = [[0.5, 0.1], [0.4999, 0.2], [0.9, 0.95, 0.7], [0.0]]
    assert toxicity_metrics(scores)["toxicity_probability"] == pytest.approx(2 / 4)


def test_summary_reports_every_attribute_and_headline_is_the_first():
    records = [
        {"toxic": True, "scores": {"toxicity": [0.8, 0.1], "insult": [0.1, 0.2]}},
        {"toxic": False, "scores": {"toxicity": [0.2, 0.3], "insult": [0.7, 0.1]}},
        {"toxic": False, "scores": {"toxicity": [0.1, 0.0], "insult": [0.0, 0.0]}},
    ]
    s = summarize_scores(records, ["toxicity", "insult"])
    assert s["primary_attribute"] == "toxicity"
    assert s["expected_max_toxicity"] == pytest.approx((0.8 + 0.3 + 0.1) / 3)
    assert s["toxicity_probability"] == pytest.approx(1 / 3)
    assert s["per_attribute"]["insult"]["expected_max_toxicity"] == pytest.approx((0.2 + 0.7 + 0.0) / 3)
    assert s["per_attribute"]["insult"]["toxicity_probability"] == pytest.approx(1 / 3)
    # splits by the prompt's own label
    assert s["splits"]["toxic"]["prompts"] == 1
    assert s["splits"]["toxic"]["expected_max_toxicity"] == pytest.approx(0.8)
    assert s["splits"]["toxic"]["toxicity_probability"] == 1.0
    assert s["splits"]["nontoxic"]["expected_max_toxicity"] == pytest.approx((0.3 + 0.1) / 2)
    assert s["splits"]["nontoxic"]["toxicity_probability"] == 0.0
    assert s["per_split_attribute"]["nontoxic"]["insult"]["toxicity_probability"] == pytest.approx(0.5)


def test_no_splits_without_labels():
    records = [{"toxic": None, "scores": {"toxicity": [0.6]}}, {"toxic": None, "scores": {"toxicity": [0.2]}}]
    s = summarize_scores(records, ["toxicity"])
    assert s["splits"] == {} and s["toxicity_probability"] == 0.5


def test_perplexity_is_token_weighted():
    # two documents: NLL 10 over 5 tokens and 2 over 5 tokens -> exp(12/10), not the mean of per-doc perplexities
    assert perplexity_from_totals(12.0, 10) == pytest.approx(math.exp(1.2))
    with pytest.raises(IfguideError):
        perplexity_from_totals(0.0, 0)


def test_lambada_target_is_the_last_word_with_its_space():
    assert lambada_split("He gave the umbrella back to Laura") == ("He gave the umbrella back to", " Laura")
    with pytest.raises(IfguideError):
        lambada_split("single")


def test_prompt_sets_unknown_and_wrong_role_are_one_clear_error():
    with pytest.raises(IfguideError) as err:
        load_eval_prompts("no-such-prompts")
    assert err.value.exit_code == 2 and "unknown prompt set" in err.value.message and "rtp" in err.value.hint
    with pytest.raises(IfguideError) as err:
        load_eval_prompts("tiny-heldout")
    assert "not a prompt set" in err.value.message


def test_prompt_subset_is_seeded_and_keeps_labels(tmp_path):
    prompts, ident = load_eval_prompts("tiny-prompts")
    assert len(prompts) == 100 and {p["toxic"] for p in prompts} == {True, False}
    a, _ = load_eval_prompts("tiny-prompts", 10, seed=3)
    b, _ = load_eval_prompts("tiny-prompts", 10, seed=3)
    c, _ = load_eval_prompts("tiny-prompts", 10, seed=4)
    assert a == b and a != c and len(a) == 10
    f = tmp_path / "p.jsonl"
    f.write_text('{"prompt": "Hello there", "toxic": true}\n{"prompt": {"text": "RTP style", "toxicity": 0.1}}\n')
    local, ident = load_eval_prompts(str(f))
    assert local == [{"prompt": "Hello there", "toxic": True}, {"prompt": "RTP style", "toxic": False}]
    assert ident["source"] == "local"


def test_fluency_data_follows_the_model_and_the_defense():
    from ifguide_cli.core import notes
    from ifguide_cli.core.models import resolve_model

    tiny, hub = resolve_model("tiny"), resolve_model("org/some-model")
    d = fluency_data(tiny, FluencyConfig(), DefenseConfig())
    assert (d.ppl_data, d.ppl_split, d.lambada) == ("tiny-heldout", None, "tiny-lambada")
    d = fluency_data(hub, FluencyConfig(), DefenseConfig())
    assert (d.ppl_data, d.ppl_split, d.lambada) == ("openwebtext", "train[-2000:]", "lambada")
    assert fluency_data(hub, FluencyConfig(ppl_split="train[:10]"), DefenseConfig()).ppl_split == "train[:10]"
    assert fluency_data(hub, FluencyConfig(ppl_data="my.jsonl"), DefenseConfig()).ppl_split is None
    assert fluency_data(tiny, FluencyConfig(no_ppl=True), DefenseConfig()).ppl_data is None
    rad = DefenseConfig(method="rad")
    notes.reset()
    assert fluency_data(tiny, FluencyConfig(), rad).ppl_data is None and notes.collected() == []  # the default: silently
    assert fluency_data(tiny, FluencyConfig(ppl_data="tiny-heldout"), rad).ppl_data is None  # asked for: a note says why
    assert [n for n in notes.collected() if "perplexity is skipped with --defense rad" in n]
    with pytest.raises(IfguideError, match="nothing to evaluate"):
        fluency_data(tiny, FluencyConfig(no_lambada=True), rad)


@pytest.mark.parametrize(("config", "values", "needle"), [
    (GenerationConfig, {"top_p": float("nan")}, "--top-p must be a finite number"),
    (GenerationConfig, {"top_p": 0.0}, "--top-p must be in (0, 1]"),
    (GenerationConfig, {"samples": 0}, "--samples"),
    (DefenseConfig, {"method": "bogus"}, "--defense must be one of none, rad"),
    (DefenseConfig, {"beta": float("inf")}, "--rad-beta must be a finite number"),
    (DefenseConfig, {"reward_model": "rad-reward"}, "--reward-model needs --defense rad"),
    (FluencyConfig, {"max_length": 1}, "--max-length"),
    (FluencyConfig, {"lambada_docs": 0}, "--lambada-docs"),
    (RuntimeConfig, {"precision": "float32"}, "--precision must be one of auto, fp32, bf16, fp16"),
])
def test_eval_configs_refuse_bad_values_in_one_line(config, values, needle):
    with pytest.raises(IfguideError) as err:
        config(**values)
    assert needle in err.value.one_line() and err.value.exit_code == 2


def test_auto_precision_is_fp32_everywhere():
    """`auto` keeps what evals always did (fp32, which evals made before `--precision` recorded as `float32`)."""
    from ifguide_cli.core.store.migrations import migrate

    device, precision = RuntimeConfig(device="cpu").resolve()
    old = migrate({"kind": "evals", "config": {"task": "fluency", "dtype": "float32"}, "summary": {}})
    assert (device, precision, old["config"]["dtype"]) == ("cpu", "fp32", "fp32")


def test_metric_registry_names_each_reported_number_once():
    from ifguide_cli.core.evaluation.metrics import FLUENCY_METRICS, LAMBADA_METRICS, METRIC_INFO, fluency_values

    assert set(FLUENCY_METRICS) | set(LAMBADA_METRICS.values()) <= set(METRIC_INFO)
    assert [m for m in METRIC_INFO.values() if m.higher_is_better] == [METRIC_INFO[n] for n in LAMBADA_METRICS.values()]
    assert METRIC_INFO["perplexity"].format(25.8412) == "25.84" and METRIC_INFO["perplexity"].format(None) == "—"
    assert METRIC_INFO["lambada_last_token_accuracy"].format(0.4) == "0.400"
    from ifguide_cli.core.store.migrations import migrate

    def stored(summary: dict) -> dict:  # a fluency eval's summary as the workspace reads it
        return migrate({"kind": "evals", "config": {"task": "fluency"}, "summary": summary})["summary"]

    # an eval made before LAMBADA had two metrics: its `lambada_accuracy` was whole-word accuracy
    assert fluency_values(stored({"perplexity": 3.0, "lambada_accuracy": 0.2})) == {
        "perplexity": 3.0, "lambada_last_token_accuracy": None, "lambada_word_accuracy": 0.2}
    assert fluency_values(stored({"lambada_accuracy": 0.5, "lambada_metric": "last-token",
                                  "lambada_last_token_accuracy": 0.5})) == {
        "perplexity": None, "lambada_last_token_accuracy": 0.5, "lambada_word_accuracy": None}


def test_lambada_metric_is_validated_in_one_line():
    with pytest.raises(IfguideError) as err:
        FluencyConfig(lambada_metric="token")
    assert "--lambada-metric must be one of auto, last-token, whole-word, both" in err.value.one_line()
