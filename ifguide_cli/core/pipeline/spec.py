"""The pipeline file (`ifguide run PIPELINE.yaml`): typed sections, each checked before any stage runs.

A pipeline file has the keys scenario, model, data, corpus, seeds and the sections baseline, influence, mask,
finetune (scenario `finetune`) or ifguide (scenario `pretrain`), eval, and optionally `arms:` (a list of named
arms compared with the plain control; `pipeline.arms` resolves and dispatches their mask sources). The pipeline's own structure is
typed here (one `Config` per section). The option sets that belong to another stage — `ifguide train`
options, corpus, factors, scores, mask and fluency options — stay mappings in the spec and are checked by
`pipeline.stage_configs`, so a bad value anywhere in the file is one error line before hours of training, not
after. `--set section.key=value` overrides (`apply_overrides`) edit the parsed file before
any of this, so they are checked exactly like the file.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from ifguide_cli.core.config import Config, field_hints, param
from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.extensions import MASK_SOURCES, PRESETS
from ifguide_cli.core.seed_names import SEED_SUFFIX  # the report groups seeds by this suffix

AUTO = "auto"  # eval data: the model's default set (null skips the metric)


class Section(Config):
    """A pipeline section. Its `Mapping` fields are other stages' option sets: an empty YAML value means {}."""

    def __post_init__(self) -> None:
        hints = field_hints(type(self))
        for f in dataclasses.fields(self):
            if typing.get_origin(hints[f.name]) is Mapping:
                object.__setattr__(self, f.name, as_mapping(getattr(self, f.name), f.name))
        super().__post_init__()


@dataclass(frozen=True)
class BaselineSpec(Section):
    """`baseline:` train the model to detoxify from scratch, or start from an existing one."""

    checkpoint: str | None = param(None, "Start from this model or checkpoint instead of training a baseline.")
    train: Mapping[str, Any] = param(default_factory=dict, help="`ifguide train` options of the baseline ({} = the profile's).")


@dataclass(frozen=True)
class InfluenceSpec(Section):
    """`influence:` the query sets and the options of `ifguide factors` and `ifguide scores`."""

    toxic_queries: str = param("tiny-queries-toxic", "Toxic prompt+continuation queries.")
    safe_queries: str | None = param("tiny-queries-safe", "Safe queries subtracted from the toxic ones (null: none).")
    factors: Mapping[str, Any] = param(default_factory=dict, help="`ifguide factors` options.")
    scores: Mapping[str, Any] = param(default_factory=dict, help="`ifguide scores` options.")
    proxy: str | None = param(None, "Score with this smaller model instead of the baseline (the paper's proxy, e.g. "
                                    "Pythia-160M for a 1B target): a checkpoint is taken as it is, an architecture is "
                                    "trained from scratch on the run's dataset and tokenizer; its mask trains the target.")
    proxy_train: Mapping[str, Any] = param(default_factory=dict, help="`ifguide train` options of the proxy trained "
                                                                      "from scratch ({} = the profile's).")

    def check(self) -> None:
        if self.proxy_train and self.proxy is None:
            raise IfguideError("influence.proxy_train does not apply: no influence.proxy is set",
                               hint="name the proxy model (influence.proxy: tiny), or drop proxy_train", exit_code=2)


@dataclass(frozen=True)
class PenaltySpec(Section):
    """The IF-Guide model's section: the penalty weight λ (and, in each subclass, its training options)."""

    section: ClassVar[str]
    why: ClassVar[str]
    if TYPE_CHECKING:  # each subclass declares it as a field, with its own help text
        train: Mapping[str, Any]
    lam: float = param(1.0, "Penalty weight λ of masked tokens (Eq. 9).", flag="--lambda", low=0)

    def check(self) -> None:
        if {"lambda", "lam"} & set(self.train):
            raise IfguideError(f"set λ as {self.section}.lambda, not in {self.section}.train ({self.why})", exit_code=2)
        if "suppression" in self.train:
            raise IfguideError(f"{self.section}.train.suppression does not apply: IF-Guide penalises its mask",
                               hint="compare suppression modes as arms (arms: [{name, source, suppression}])", exit_code=2)


@dataclass(frozen=True)
class FinetuneSpec(PenaltySpec):
    """`finetune:` (scenario finetune) the penalty weight of IF-Guide and the options of both fine-tunes."""

    section: ClassVar[str] = "finetune"
    why: ClassVar[str] = "the control fine-tune has no penalty"
    train: Mapping[str, Any] = param(default_factory=dict, help="`ifguide finetune` options of both fine-tunes ({} = the profile's).")


@dataclass(frozen=True)
class IfguideSpec(PenaltySpec):
    """`ifguide:` (scenario pretrain) the model trained from scratch with the penalty: λ, and its training
    options as changes to the baseline's (same seed, steps and data order unless changed here)."""

    section: ClassVar[str] = "ifguide"
    why: ClassVar[str] = "the baseline has no penalty"
    train: Mapping[str, Any] = param(default_factory=dict, help="`ifguide train` options that differ from baseline.train "
                                                                "({} = the baseline's recipe).")


if TYPE_CHECKING:
    MaskSourceName = str
else:  # the registered mask sources: a new one is a choice of `source:` with no edit here
    MaskSourceName = Literal[MASK_SOURCES.names()]
Suppression = Literal["penalty", "filter", "drop"]
ARM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,39}")
RESERVED_ARM_NAMES = ("baseline", "control", "data", "proxy", "factors", "scores", "report")  # the run's own stage/system names


@dataclass(frozen=True)
class ArmSpec(Section):
    """One item of `arms:`: a named way to detoxify — where its mask comes from, and what training does to the
    masked tokens — fine-tuned (or pre-trained) beside the plain control with the same seed, steps and data."""

    name: str = param("", "The arm's name (letters, digits, `_`, `-`): its stages, checkpoints and evals are named by it.")
    source: MaskSourceName = param("influence", "Where the mask comes from: a registered mask source (influence: "
                                                "IF-Guide, toxic minus safe queries; standard-influence: toxic queries "
                                                "only, the paper's ablation; classifier; wordlist; …).")
    suppression: Suppression = param("penalty", "penalty (−λ), filter (weight 0) or drop (leave out the documents).")
    lam: float | None = param(None, "λ of a penalty arm (default: the finetune/ifguide section's λ).", flag="--lambda", low=0)
    mask: Mapping[str, Any] = param(default_factory=dict, help="The source's mask options (influence: `ifguide mask` "
                                                               "options over the mask section; others: their config).")

    def check(self) -> None:
        if not self.name:
            raise IfguideError("name is missing", hint="every arm needs a name, e.g. `name: ifguide`", exit_code=2)
        if not ARM_NAME.fullmatch(self.name):
            raise IfguideError(f"name {self.name!r} is not an arm name", hint="use 1-40 letters, digits, `_` or `-`, "
                                                                              "starting with a letter or digit", exit_code=2)
        if SEED_SUFFIX.search(self.name):
            raise IfguideError(f"name {self.name!r} ends like a seed (`-seed3`, `-s3`)",
                               hint="the seeds name themselves (`--seeds N` makes NAME-seed0, NAME-seed1, …): drop the "
                                    "suffix", exit_code=2)
        if self.name in RESERVED_ARM_NAMES:
            raise IfguideError(f"name {self.name!r} is taken by the run itself", hint=f"not one of {', '.join(RESERVED_ARM_NAMES)}",
                               exit_code=2)
        if self.lam is not None and self.suppression != "penalty":
            raise IfguideError(f"lambda applies to suppression penalty only, not {self.suppression}",
                               hint="drop lambda from this arm (filter gives masked tokens weight 0; drop leaves them out)",
                               exit_code=2)


@dataclass(frozen=True)
class EvalSpec(Section):
    """`eval:` toxicity (prompts, classifier, sampling) and fluency of every system; each metric can be skipped."""

    toxicity: bool = param(True, "Evaluate toxicity (false: skip it; no TP/EMT and no reduction).")
    prompts: str = param(AUTO, "Prompt set (auto: prefixes of the held-out documents of your own corpus, see "
                               "corpus.heldout; rtp for any other corpus).")
    classifier: str = param("detoxify-unbiased", "Toxicity classifier.")
    num_prompts: int | None = param(None, "A seeded subset of this many prompts (null: all).", low=1)
    samples: int = param(25, "Continuations per prompt.")
    max_new_tokens: int = param(20, "Tokens per continuation.")
    top_p: float = param(0.9, "Nucleus sampling mass.")
    seed: int = param(0, "Sampling seed.")
    batch_size: int = param(8, "Prompts per generate call.")
    ppl_data: str | None = param(AUTO, "Perplexity text (auto: the model's default held-out text; null: skip perplexity).")
    lambada: str | None = param(AUTO, "LAMBADA set (auto: the model's default; null: skip LAMBADA).")
    fluency: Mapping[str, Any] = param(default_factory=dict, help="More `ifguide eval fluency` options (ppl_split, "
                                                                  "ppl_docs, lambada_docs, batch_size, max_length, …).")
    evaluate_baseline: bool = param(True, "Also evaluate the baseline (scenario finetune; pretrain always does).")


@dataclass(frozen=True)
class PipelineSpec(Section):
    """What `ifguide run PIPELINE.yaml` reads; every section maps onto one command's options."""

    scenario: Literal["finetune", "pretrain"] = param(
        "finetune", "finetune: IF-Guide and a plain control both fine-tune the baseline; pretrain: the IF-Guide model "
                    "is trained from scratch like the baseline (same seed, steps, data order), with the penalty.")
    model: str = param("tiny", "Architecture of the baseline (registry name, hub id or local folder).")
    data: str = param("tiny", "Training corpus (registry name, local file, hub id or dataset artifact).")
    corpus: Mapping[str, Any] = param(default_factory=dict, help="How DATA becomes rows, set once for every stage: "
                                                                 "layout, seq_len, tokenizer, label_field, … ({} = by data).")
    baseline: BaselineSpec = field(default_factory=BaselineSpec, metadata={"help": "How the baseline is made."})
    influence: InfluenceSpec = field(default_factory=InfluenceSpec, metadata={"help": "Queries, factors and scores."})
    mask: Mapping[str, Any] = param(default_factory=dict, help="`ifguide mask` options: threshold, window, max_tokens.")
    finetune: FinetuneSpec = field(default_factory=FinetuneSpec, metadata={"help": "λ and the fine-tunes' options."})
    ifguide: IfguideSpec = field(default_factory=IfguideSpec, metadata={"help": "λ and the IF-Guide model's changes."})
    eval: EvalSpec = field(default_factory=EvalSpec, metadata={"help": "Evaluation of every system."})
    arms: tuple[ArmSpec, ...] = field(default=(), metadata={"help": "Named arms compared with the plain control (none: "
                                                                    "IF-Guide alone, as ever)."})
    seeds: int = param(1, "Repeat every fine-tune (control and arms) over this many seeds: seed, seed+1, …", low=1, high=100)

    def check(self) -> None:
        """The scenario's own rules: each names the key to change."""
        pretrain = self.scenario == "pretrain"
        if pretrain and self.baseline.checkpoint:
            _scenario_error("baseline.checkpoint", "scenario pretrain trains the baseline from scratch",
                            "drop baseline.checkpoint, or use scenario: finetune to start from it")
        if pretrain and self.finetune != FinetuneSpec():
            _scenario_error("finetune", "scenario pretrain has no fine-tunes",
                            "set the IF-Guide model's λ and changes under ifguide:")
        if not pretrain and self.ifguide != IfguideSpec():
            _scenario_error("ifguide", "scenario finetune fine-tunes the baseline",
                            "set λ and the fine-tunes' options under finetune:, or use scenario: pretrain")
        if pretrain and not self.eval.evaluate_baseline:
            _scenario_error("eval.evaluate_baseline: false", "scenario pretrain compares the baseline with IF-Guide",
                            "drop it (the baseline is always evaluated)")

    @property
    def penalty(self) -> PenaltySpec:
        """The section that sets λ for the scenario: `ifguide` (pretrain) or `finetune`."""
        return self.ifguide if self.scenario == "pretrain" else self.finetune

    @property
    def compares_arms(self) -> bool:
        """The run compares arms with a control (`arms:` given, or IF-Guide alone over several seeds); else it is the
        classic IF-Guide-vs-control run, unchanged."""
        return bool(self.arms) or self.seeds > 1

    @property
    def effective_arms(self) -> tuple[ArmSpec, ...]:
        """The arms of the run: those given, or IF-Guide alone (influence, penalty) when only `seeds` asks for arms."""
        return self.arms or (ArmSpec(name="ifguide"),)


SECTIONS = {"baseline": BaselineSpec, "influence": InfluenceSpec, "finetune": FinetuneSpec, "ifguide": IfguideSpec,
            "eval": EvalSpec}
YAML_KEYS = {"lam": "lambda"}  # field → key in the file, where the key is not a Python name


def _scenario_error(key: str, why: str, hint: str) -> None:
    raise IfguideError(f"{key} does not apply: {why}", hint=hint, exit_code=2)


# ---- reading a pipeline file ---------------------------------------------------------------------
def preset_path(name: str) -> Path:
    """The pipeline file of a built-in preset (`extensions.PRESETS`); an unknown name is one line."""
    return PRESETS.get(name)


def pipeline_file(pipeline: str | None, preset: str | None) -> Path:
    """The pipeline file `ifguide run` was given: a YAML path or a preset name (exactly one)."""
    if preset is not None and pipeline is None:
        path = preset_path(preset)
    elif pipeline is not None and preset is None:
        path = Path(pipeline)
    else:
        raise IfguideError("give either a PIPELINE.yaml file or --preset", hint="e.g. `ifguide run --preset tiny`", exit_code=2)
    if not path.is_file():
        raise IfguideError(f"pipeline file {path} does not exist", hint="pass a YAML file or --preset tiny", exit_code=2)
    return path


def arm_specs(items: Any, source: str) -> tuple[ArmSpec, ...]:
    """The `arms:` list, each arm checked (an error names its key: `arms[2].lambda`); names must differ."""
    if items is None:
        return ()
    if not isinstance(items, list):
        raise IfguideError(f"{source}: arms must be a list of arms ({{name, source, suppression, mask}}); got {items!r}",
                           exit_code=2)
    arms: list[ArmSpec] = []
    for i, item in enumerate(items):
        arm = build_section(ArmSpec, item, f"{source}: arms[{i}]", name_keys=True)
        if any(a.name == arm.name for a in arms):
            raise IfguideError(f"{source}: arms[{i}].name {arm.name!r} is used twice", hint="give every arm its own name",
                               exit_code=2)
        arms.append(arm)
    return tuple(arms)


# ---- --set section.key=value ---------------------------------------------------------------------
# 1e-4 and inf: strings to YAML 1.1, numbers to users (`--lambda inf` is then refused as not finite, as an option is)
_NUMBER = re.compile(r"[-+]?((\d+\.?\d*|\.\d+)[eE][-+]?\d+|inf|infinity|nan)", re.IGNORECASE)


def parse_value(text: str) -> Any:
    """A `--set` value as a YAML scalar (`2`, `1.5e-4`, `true`, `null`, `[a, b]`, text); an empty value is null."""
    from ifguide_cli.core.yamlfile import load_yaml_text  # the limits of a file apply to the command line too

    value = load_yaml_text(text, f"--set value {text[:60]!r}{'…' if len(text) > 60 else ''}")
    return float(value) if isinstance(value, str) and _NUMBER.fullmatch(value.strip()) else value


def apply_overrides(raw: dict, overrides: Sequence[str]) -> dict:
    """A copy of the file's mapping with each `section.key=value` set (sections are created as needed). An item of
    a list (`arms:`) is named by its index or its `name`: `arms.1.suppression=filter`, `arms.ifguide.lambda=2`.

    The copy shares nothing with the file's mapping, so a key set under one YAML alias does not change another.
    """
    out = _copy(raw)
    for item in overrides:
        key, sep, text = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts):
            raise IfguideError(f"--set {item!r} is not SECTION.KEY=VALUE", hint="e.g. --set finetune.lambda=2", exit_code=2)
        node: Any = out
        for depth, part in enumerate(parts[:-1]):
            slot: int | str
            if isinstance(node, list):
                slot = _item_index(node, part, key, ".".join(parts[:depth]))
                child = node[slot]
            else:
                slot = part
                child = node.setdefault(slot, {})
            if child is None:
                child = node[slot] = {}
            if not isinstance(child, (dict, list)):
                raise IfguideError(f"--set {key}: {'.'.join(parts[:depth + 1])} is {child!r}, not a section",
                                   hint="set that key itself, e.g. --set model=pythia-160m", exit_code=2)
            node = child
        last = _item_index(node, parts[-1], key, ".".join(parts[:-1])) if isinstance(node, list) else parts[-1]
        node[last] = parse_value(text)
    return out


def _item_index(items: list, part: str, key: str, where: str) -> int:
    """The item of a list that `part` names: its index, or the item whose `name` it is."""
    if part.isdigit() and int(part) < len(items):
        return int(part)
    names = [i for i, item in enumerate(items) if isinstance(item, dict) and item.get("name") == part]
    if not names:
        raise IfguideError(f"--set {key}: {where} has no item {part!r}",
                           hint=f"name one by its index (0–{len(items) - 1}) or its name", exit_code=2)
    return names[0]


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


# ---- helpers ---------------------------------------------------------------------------------------
def as_mapping(value: Any, where: str) -> dict:
    """A section's mapping; an empty section (`train:` with nothing after it) is an empty one."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise IfguideError(f"{where} must be a mapping of key: value; got {value!r}", exit_code=2)
    return dict(value)


def build_section(cls: type, values: Any, where: str, noun: str = "key", name_keys: bool = False):
    """A dataclass from one section of the file: unknown keys are one error naming them and the section
    (`name_keys`: a bad value names its key too, `arms[2].lambda`, see `about_keys`)."""
    values = as_mapping(values, where)
    names = {YAML_KEYS.get(f.name, f.name): f.name for f in dataclasses.fields(cls)}
    unknown = [k for k in values if k not in names]
    if unknown:
        raise IfguideError(f"unknown {noun}(s) {', '.join(map(repr, unknown))} in {where}",
                           hint=f"allowed: {', '.join(names)}", exit_code=2)
    values = {names[k]: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    with about_keys(where, cls) if name_keys else about_section(where):
        return cls(**values)


@contextmanager
def about_section(where: str) -> Iterator[None]:
    """Say which section a value error comes from (`pipeline.yaml: finetune: --lambda must be …`), once."""
    try:
        yield
    except IfguideError as exc:
        if where in exc.message:
            raise
        raise type(exc)(f"{where}: {exc.message}", hint=exc.hint, exit_code=exc.exit_code) from None


@contextmanager
def about_keys(where: str, cls: type) -> Iterator[None]:
    """Like `about_section`, and name the key the error is about when its message starts with one of `cls`'s fields (its
    flag or its key): `t.yaml: arms[2].mask.window: --window must be in [0, inf); got -1`."""
    try:
        yield
    except IfguideError as exc:
        if where in exc.message:
            raise
        key = _key_of(exc.message, cls)
        if key is None:
            message = f"{where}: {exc.message}"
        elif exc.message.startswith(key + " "):  # a rule's message names its key itself: `name 'x' is taken …`
            message = f"{where}.{exc.message}"
        else:
            message = f"{where}.{key}: {exc.message}"
        raise type(exc)(message, hint=exc.hint, exit_code=exc.exit_code) from None


def _key_of(message: str, cls: type) -> str | None:
    from ifguide_cli.core.config import flag_of

    first = message.split(" ", 1)[0]
    for f in dataclasses.fields(cls):
        key = YAML_KEYS.get(f.name, f.name)
        if first in (flag_of(f), key):
            return key
    return None
