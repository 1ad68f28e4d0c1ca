"""What a pipeline reads, and whether each input is there: checked before the first stage, in seconds, offline too.

Every model, tokenizer, dataset, query set, prompt set and classifier a pipeline names is looked up without
being loaded: packaged files, workspace artifacts, local paths, the reference subsets' local copies
(`$IFGUIDE_DATA_DIR`) and the Hugging Face cache. With the hub reachable, an input that is not cached is
downloaded on first use; offline (`HF_HUB_OFFLINE=1`, or no network) it is missing, and `Inputs.require`
fails in one line naming each missing input, the key that names it, and how to supply it — not after the
baseline has trained for an hour. A registry model that has no pretrained weights (the paper trains it from
scratch) named where weights are needed is missing too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ifguide_cli.core.data.availability import Input, dataset_input, hub_input, workspace_dataset
from ifguide_cli.core.errors import IfguideError, OfflineResourceMissing
from ifguide_cli.core.pipeline.spec import AUTO, PipelineSpec
from ifguide_cli.core.pipeline.stage_configs import StageConfigs

if TYPE_CHECKING:
    from ifguide_cli.core.store.workspace import Workspace

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


@dataclass
class Inputs:
    items: list[Input] = field(default_factory=list)
    model: Any = None  # the baseline's ModelRef (None when the name is not known)
    classifier: Any = None  # the resolved classifier (None when toxicity is not evaluated or it is missing)

    @property
    def missing(self) -> list[Input]:
        return [i for i in self.items if not i.available]

    def require(self, listed: bool = False) -> Inputs:
        """These inputs, or one error line naming every missing one and how to supply it (`listed`: the plan
        above already says how, so the line only names them)."""
        missing = self.missing
        if not missing:
            return self
        if listed:
            raise OfflineResourceMissing(f"{len(missing)} input(s) of the pipeline are not available: "
                                         f"{', '.join(i.role for i in missing)}", hint="see ✗ in the plan", exit_code=2)
        parts = "; ".join(f"{i.role} {i.ref!r}: {i.where}" + (f" ({i.hint})" if i.hint else "") for i in missing)
        raise OfflineResourceMissing(f"{len(missing)} input(s) of the pipeline are not available: {parts}",
                                     hint="nothing was run; `ifguide run ... --dry-run` lists every input", exit_code=2)


def check_inputs(ws: Workspace, spec: PipelineSpec, configs: StageConfigs) -> Inputs:
    """Every input of the pipeline, each looked up (nothing is loaded or written)."""
    inputs = Inputs()
    base_ref = spec.baseline.checkpoint or spec.model
    item, inputs.model = model_input(ws, "baseline.checkpoint" if spec.baseline.checkpoint else "model", base_ref,
                                     weights=bool(spec.baseline.checkpoint))
    inputs.items.append(item)
    if spec.eval.toxicity and item.available:
        check_generation(spec, inputs.model)
    if inputs.model is not None or configs.corpus.get("tokenizer"):
        inputs.items.append(tokenizer_input(ws, configs.corpus.get("tokenizer"), inputs.model))
    if spec.influence.proxy is not None:  # a checkpoint (weights) or an architecture trained on the data
        inputs.items.append(model_input(ws, "influence.proxy", spec.influence.proxy, weights=False)[0])
    inputs.items.append(dataset_input(ws, "data", spec.data, "dataset", artifact=True, split=configs.corpus.get("split")))
    for role, ref in training_eval_data(spec, configs):
        inputs.items.append(dataset_input(ws, role, ref, "validation dataset", artifact=True))
    for role, ref in query_sets(spec, configs):
        inputs.items.append(dataset_input(ws, role, ref, "query set"))
    inputs.items += arm_inputs(ws, configs)
    inputs.items += device_inputs(spec, configs)
    own = own_corpus_heldout(ws, spec, configs)
    if spec.eval.toxicity:
        if spec.eval.prompts == AUTO and own is not None:
            inputs.items.append(heldout_input("eval.prompts", "prompt set", own, "prompts"))
        else:
            inputs.items.append(dataset_input(ws, "eval.prompts", planned_prompts(spec.eval.prompts), "prompt set"))
        item, inputs.classifier = classifier_input(ws, spec.eval.classifier)
        inputs.items.append(item)
    if spec.eval.ppl_data == AUTO and own is not None:
        inputs.items.append(heldout_input("eval.ppl_data", "evaluation text", own, "ppl_data"))
    for role, ref in fluency_data(spec, inputs.model, own is not None):
        inputs.items.append(dataset_input(ws, role, ref, "evaluation text"))
    return inputs


def check_generation(spec: PipelineSpec, model) -> None:
    """eval.max_new_tokens against the baseline's context now, not after hours of training: every evaluated system
    is the baseline's architecture (called once the baseline's config is known to be there)."""
    from ifguide_cli.core.evaluation.stages import check_generation_fits

    check_generation_fits(model, spec.eval.max_new_tokens, option="eval.max_new_tokens")


def planned_prompts(prompts: str) -> str:
    """The prompt set of `eval.prompts` for a corpus that is not your own: `auto` is RealToxicityPrompts."""
    return "rtp" if prompts == AUTO else prompts


def own_corpus_heldout(ws: Workspace, spec: PipelineSpec, configs: StageConfigs) -> float | bool | None:
    """For your own corpus (a local file or folder, or a dataset artifact built from one): its `corpus.heldout`
    (False when it has none); None for a packaged, hub or reference corpus, whose evaluation sets are the paper's."""
    from ifguide_cli.core.data import dataset_identity, is_source_ref

    if is_source_ref(spec.data):
        try:
            local = dataset_identity(spec.data, configs.corpus.get("split"))["source"] == "local"
        except IfguideError:
            return None
        return (configs.corpus.get("heldout") or False) if local else None
    art = workspace_dataset(ws, spec.data)
    if art is None or (art.config.get("data") or {}).get("source") != "local":
        return None
    return art.config.get("heldout") or False


def heldout_input(role: str, what: str, heldout: float | bool, key: str) -> Input:
    """The evaluation set `auto` means for your own corpus: its held-out split, or a missing input saying how to
    make one or what to give instead."""
    from ifguide_cli.core.evaluation.inputs import PROMPTS_FORMAT, TEXT_FORMAT

    use = "prefixes of the held-out documents" if key == "prompts" else "the held-out documents"
    if heldout:
        return Input(role, AUTO, what, True, f"{use} of the corpus (corpus.heldout: {heldout:g})")
    return Input(role, AUTO, what, False, "your corpus has no held-out split",
                 f"set corpus.heldout: N|FRACTION, or eval.{key}: FILE "
                 f"({PROMPTS_FORMAT if key == 'prompts' else TEXT_FORMAT})")


def device_inputs(spec: PipelineSpec, configs: StageConfigs) -> list[Input]:
    """The device bf16 weights need (a CUDA GPU with bf16 compute), for each training that asks for them: on a CPU
    the run would otherwise fail at its first training, after the data stage."""
    from ifguide_cli.core.training.stage import check_trainable_dtype

    trainings = [] if spec.baseline.checkpoint else [("baseline.train", configs.baseline_train)]
    trainings.append(("ifguide.train" if spec.scenario == "pretrain" else "finetune.train", configs.ifguide_train))
    items = []
    for role, options in trainings:
        if options.get("weights_dtype", "fp32") == "fp32":
            continue
        try:
            check_trainable_dtype(options)
            items.append(Input(f"{role}.weights_dtype", options["weights_dtype"], "device", True, "a CUDA GPU"))
        except IfguideError as exc:
            items.append(Input(f"{role}.weights_dtype", options["weights_dtype"], "device", False, exc.message,
                               exc.hint or ""))
    return items


def training_eval_data(spec: PipelineSpec, configs: StageConfigs) -> list[tuple[str, str]]:
    """(key, dataset) of the validation sets training evaluates on: given, or the training profile's."""
    from ifguide_cli.core.data.sources import is_packaged
    from ifguide_cli.core.training.config import default_profile, given_values, profile_values

    profile, packaged = default_profile(spec.model, spec.data), is_packaged(spec.data)
    trained = [("baseline.train", configs.baseline_train, "pretrain")] if not spec.baseline.checkpoint else []
    trained.append(("ifguide.train", configs.ifguide_train, "pretrain") if spec.scenario == "pretrain"
                   else ("finetune.train", configs.finetune_train, "finetune"))
    out: dict[str, str] = {}  # dataset → the first key naming it
    for where, options, mode in trained:
        values = given_values(options, where)  # keyed by field name (a file may use option names)
        ref = values.get("eval_data", profile_values(values.get("profile") or profile, mode, packaged).get("eval_data"))
        if ref:
            out.setdefault(ref, f"{where}.eval_data")
    return [(role, ref) for ref, role in out.items()]


def query_sets(spec: PipelineSpec, configs: StageConfigs) -> list[tuple[str, str]]:
    """(key, query set) the influence scores read: toxic and safe queries, or what the arms' sources need (toxic for
    either influence source, safe for the differential one; none without an influence arm)."""
    from ifguide_cli.core.pipeline.arms import used_scores

    kinds = used_scores(configs.arms) if configs.arms else [True]
    wanted = [("influence.toxic_queries", spec.influence.toxic_queries if kinds else None),
              ("influence.safe_queries", spec.influence.safe_queries if True in kinds else None)]
    return [(role, ref) for role, ref in wanted if ref]


def arm_inputs(ws: Workspace, configs: StageConfigs) -> list[Input]:
    """What the arms' own mask sources read: a classifier (found as the eval finds one) or a word-list file."""
    items = []
    for i, arm in enumerate(configs.arms):
        role = f"arms[{i}].mask"
        if getattr(arm.mask, "classifier", None):
            weights = {k: getattr(arm.mask, f"classifier_{k}", None) for k in ("checkpoint", "base", "path")}
            items.append(classifier_input(ws, arm.mask.classifier, role=f"{role}.classifier", **weights)[0])
        if getattr(arm.mask, "wordlist", None):
            path = Path(str(arm.mask.wordlist)).expanduser()
            items.append(Input(f"{role}.wordlist", str(arm.mask.wordlist), "word list", path.is_file(),
                               "local file" if path.is_file() else "no such file", "give the path of a text file, one "
                                                                                    "word or phrase a line"))
    return items


def fluency_data(spec: PipelineSpec, mref, own: bool = False) -> list[tuple[str, str]]:
    """(key, dataset) of the perplexity and LAMBADA data: `auto` is the evaluated model's default (none known
    without a model; for your own corpus `own` the held-out split, listed apart, and no LAMBADA), null none."""
    from ifguide_cli.core.evaluation import default_fluency_data

    known = mref is not None and not own
    ppl_default, _, lambada_default = default_fluency_data(mref) if known else (None, None, None)
    chosen = {"eval.ppl_data": ppl_default if spec.eval.ppl_data == AUTO else spec.eval.ppl_data,
              "eval.lambada": lambada_default if spec.eval.lambada == AUTO else spec.eval.lambada}
    return [(role, ref) for role, ref in chosen.items() if ref is not None]


# ---- one input each ------------------------------------------------------------------------------------
def model_input(ws: Workspace, role: str, ref: str, *, weights: bool) -> tuple[Input, Any]:
    """A model: its architecture (trained from scratch) or its weights (fine-tuned). Returns (input, ModelRef or None)."""
    from ifguide_cli.core.models import resolve_model

    what = "weights" if weights else "architecture"
    try:
        mref = resolve_model(ref, ws)
    except IfguideError as exc:
        return Input(role, ref, what, False, exc.message, exc.hint or ""), None
    return _model_source(role, ref, what, mref, weights), mref


def _model_source(role: str, ref: str, what: str, mref, weights: bool) -> Input:
    from ifguide_cli.core.registry import MODELS

    if mref.source == "checkpoint":
        return Input(role, ref, what, True, f"checkpoint {mref.artifact_id} in the workspace")
    if mref.source == "local":
        return Input(role, ref, what, True, f"local folder {mref.location}")
    hub_id = mref.location
    if mref.source == "registry":
        if weights and not mref.pretrained:
            return Input(role, ref, what, False, "a registry architecture without pretrained weights",
                         "drop baseline.checkpoint to train the baseline first, or use scenario: pretrain")
        hub_id = MODELS[ref].hub_id
        if hub_id is None:
            return Input(role, ref, what, True, "packaged")
    return hub_input(role, ref, what, hub_id, WEIGHT_FILES if weights else ("config.json",), "a local model folder")


def tokenizer_input(ws: Workspace, asked: str | None, mref) -> Input:
    """The tokenizer the corpus is tokenized with: `corpus.tokenizer`, else the model's (a checkpoint's is in its folder)."""
    if asked is None and mref.source == "checkpoint":
        return Input("model tokenizer", mref.tokenizer, "tokenizer", True, f"with checkpoint {mref.artifact_id}")
    if asked is None:
        role, name, source = "model tokenizer", mref.tokenizer, ("builtin" if mref.tokenizer == "tiny" else None)
    else:
        from ifguide_cli.core.tokenizer import resolve_tokenizer

        tref = resolve_tokenizer(asked, ws)
        role, name, source = "corpus.tokenizer", tref.name, tref.source
    if source == "builtin":
        return Input(role, name, "tokenizer", True, "packaged")
    if source in ("artifact", "folder") or Path(name).is_dir():
        return Input(role, name, "tokenizer", True, f"local folder {name}")
    return hub_input(role, name, "tokenizer", name, TOKENIZER_FILES, "a local tokenizer folder")


def classifier_input(ws: Workspace, name: str, role: str = "eval.classifier", **weights) -> tuple[Input, Any]:
    """The toxicity classifier, resolved as the eval will (registered, cached, given files: `weights`, the
    checkpoint/base/path options); (input, spec or None)."""
    from ifguide_cli.core.classifiers import resolve_classifier

    try:
        spec = resolve_classifier(name, ws, **weights)
    except OfflineResourceMissing as exc:
        return Input(role, name, "classifier", False, exc.message, exc.hint or ""), None
    where = spec.model_dir or spec.checkpoint or spec.hub_id or "packaged"
    return Input(role, name, "classifier", True, str(where)), spec


