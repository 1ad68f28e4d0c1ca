"""The option sets of the pipeline file that belong to another stage — `ifguide train` options, corpus, factors,
scores, mask and fluency options — checked by one function each (`train_options`, `corpus_options`,
`factors_config`, `scores_config`, `mask_config`, `generation_config`, `fluency_options`), the single place where
the pipeline meets that stage's own config. `stage_configs` runs all of them (and checks the arms), so a bad value
anywhere in the file is one error line before hours of training, not after.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.pipeline.arms import arm_configs, run_seeds
from ifguide_cli.core.pipeline.spec import EvalSpec, PipelineSpec, about_section, build_section


@dataclass(frozen=True)
class StageConfigs:
    """Every stage's checked configuration, as `run_pipeline` hands it to the stage functions."""

    corpus: dict  # data.CorpusConfig options given (checked), for `resolve_corpus`
    baseline_train: dict
    proxy_train: dict  # the proxy's `ifguide train` options (influence.proxy_train; {} when no proxy is trained)
    factors: Any  # influence.FactorsConfig
    scores: Any  # influence.ScoresConfig
    mask: Any  # masking.MaskConfig
    finetune_train: dict  # scenario finetune: both fine-tunes' options ({} in pretrain)
    ifguide_train: dict  # the IF-Guide model's options (pretrain: the baseline's with ifguide.train over them)
    generation: Any  # evaluation.GenerationConfig
    fluency: dict  # further evaluation.FluencyConfig options (checked)
    arms: tuple = ()  # a comparison run: pipeline.arms.ArmConfig of every arm (() for the classic run)
    seeds: tuple[int, ...] = ()  # a comparison run: the seeds every training is repeated with

    @property
    def arm_train(self) -> dict:
        """The training options every system of a comparison shares: the fine-tunes' (pretrain: the IF-Guide
        model's, i.e. the baseline's recipe with its changes)."""
        return self.ifguide_train


def stage_configs(spec: PipelineSpec, source: str = "the pipeline") -> StageConfigs:
    """Check every stage's options of the spec (names and values) and build the stage configs."""
    pretrain = spec.scenario == "pretrain"
    finetune_train = {} if pretrain else train_options(spec.finetune.train, "finetune", f"{source}: finetune.train")
    ifguide_train = (train_options({**spec.baseline.train, **spec.ifguide.train}, "pretrain", f"{source}: ifguide.train")
                     if pretrain else finetune_train)
    arms = arm_configs(spec, source) if spec.compares_arms else ()
    return StageConfigs(
        corpus=corpus_options(spec, source),
        baseline_train=train_options(spec.baseline.train, "pretrain", f"{source}: baseline.train"),
        proxy_train=train_options(spec.influence.proxy_train, "pretrain", f"{source}: influence.proxy_train"),
        factors=factors_config(spec.influence.factors, f"{source}: influence.factors"),
        scores=scores_config(spec.influence.scores, spec.influence.safe_queries is not None, f"{source}: influence.scores"),
        mask=mask_config(spec.mask, f"{source}: mask"),
        finetune_train=finetune_train,
        ifguide_train=ifguide_train,
        generation=generation_config(spec.eval, f"{source}: eval"),
        fluency=fluency_options(spec.eval.fluency, f"{source}: eval.fluency"),
        arms=arms,
        seeds=tuple(run_seeds(ifguide_train, spec.seeds)) if arms else (),
    )


def corpus_options(spec: PipelineSpec, source: str = "the pipeline") -> dict:
    """The `corpus` options (how DATA becomes rows) checked as the dataset's config, with the row length.

    The row length may also be given as a training option (`baseline.train.seq_len`, as `ifguide train
    --seq-len`); the corpus is tokenized once, so two different lengths are one error naming both.
    """
    from ifguide_cli.core.data import CorpusConfig
    from ifguide_cli.core.training.config import given_values

    options = dict(spec.corpus)
    build_section(CorpusConfig, options, f"{source}: corpus")
    sections = {"corpus": options, "baseline.train": spec.baseline.train, "finetune.train": spec.finetune.train,
                "ifguide.train": spec.ifguide.train, "influence.proxy_train": spec.influence.proxy_train}
    lengths = {}
    for name, values in sections.items():
        where = f"{source}: {name}"
        with about_section(where):
            lengths[f"{name}.seq_len"] = values.get("seq_len") if name == "corpus" else given_values(values, where).get("seq_len")
    given = {key: value for key, value in lengths.items() if value is not None}
    if len(set(given.values())) > 1:
        raise IfguideError(f"{source}: the row length is set twice: " + ", ".join(f"{k} {v}" for k, v in given.items()),
                           hint="set it once, as corpus.seq_len (every stage uses the same rows)", exit_code=2)
    return {**options, **({"seq_len": next(iter(given.values()))} if given else {})}


def train_options(options: Mapping[str, Any], mode: str, where: str) -> dict:
    """Check `ifguide train`/`finetune` options (names and values); returns them as given.

    What depends on the corpus (`batch_tokens` against the sequence length) is checked when the stage runs.
    """
    from ifguide_cli.core.training.config import given_values, resolve_config

    with about_section(where):
        values = given_values(options, where)
        resolve_config(mode, "paper", None, {k: v for k, v in values.items() if k != "batch_tokens"}, seq_len=1)
    return dict(options)


def factors_config(options: Mapping[str, Any], where: str):
    """The `influence.factors` options as the factors stage's config."""
    from ifguide_cli.core.influence import FactorsConfig

    return build_section(FactorsConfig, options, where)


def scores_config(options: Mapping[str, Any], differential: bool, where: str):
    """The `influence.scores` options as the scores stage's config (`differential`: safe queries are given)."""
    from ifguide_cli.core.influence import ScoresConfig

    cfg = build_section(ScoresConfig, options, where)
    with about_section(where):
        cfg.check_differential(differential)
    return cfg


def mask_config(options: Mapping[str, Any], where: str):
    """The `mask` options as the mask stage's config."""
    from ifguide_cli.core.masking import MaskConfig

    return build_section(MaskConfig, options, where)


FLUENCY_SET_BY_PIPELINE = {"ppl_data": "eval.ppl_data", "lambada": "eval.lambada", "no_ppl": "eval.ppl_data: null",
                           "no_lambada": "eval.lambada: null"}


def fluency_options(options: Mapping[str, Any], where: str) -> dict:
    """The `eval.fluency` options checked as the fluency eval's config; the data sets are the eval section's own keys."""
    from ifguide_cli.core.evaluation import FluencyConfig

    taken = [k for k in options if k in FLUENCY_SET_BY_PIPELINE]
    if taken:
        raise IfguideError(f"{where}: set {FLUENCY_SET_BY_PIPELINE[taken[0]]}, not {taken[0]} here", exit_code=2)
    build_section(FluencyConfig, options, where)
    return dict(options)


def generation_config(spec: EvalSpec, where: str):
    """The sampling options of the `eval` section as the toxicity evaluation's config."""
    from ifguide_cli.core.evaluation import GenerationConfig

    with about_section(where):
        return GenerationConfig(samples=spec.samples, max_new_tokens=spec.max_new_tokens, top_p=spec.top_p, seed=spec.seed,
                                batch_size=spec.batch_size)
