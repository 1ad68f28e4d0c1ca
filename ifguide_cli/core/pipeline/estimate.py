"""The cost of a pipeline run, for `run --dry-run`: its sizes as `paper.plan.PlanInputs`, then GPU-hours, disk and
peak GPU memory per stage.

Every size is the pipeline's own: the subsets' rows, the training recipe, the scores' `storage`, `partitions`,
`shard`, `max_rows` and `max_queries`, the factors' `max_examples`, and the proxy (`influence.proxy`): factors,
query gradients and scores are counted on the model they run on, with the proxy's training when the run trains
it. The estimate is given when the model has recorded shapes (`paper.plan.ARCHS`) and every data set is a
reference subset of known size (the `paper` presets); a proxy without recorded shapes gives one line instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ifguide_cli.core.pipeline.spec import PipelineSpec
from ifguide_cli.core.pipeline.stage_configs import StageConfigs

if TYPE_CHECKING:
    from ifguide_cli.core.pipeline.proxy import Proxy
    from ifguide_cli.core.store.workspace import Workspace


@dataclass(frozen=True)
class RunEstimate:
    plan: Any = None  # paper.plan.Plan, None when a size is unknown
    memory: dict[str, dict[str, int]] | None = None  # peak GPU memory per stage (paper.memory), with the plan
    note: str | None = None  # why there is no plan, when the user can do something about it


def run_estimate(ws: Workspace, spec: PipelineSpec, configs: StageConfigs, proxy: Proxy | None, gpus: int = 1,
                 label: str = "pipeline") -> RunEstimate:
    """The run's cost on `gpus` H100s, or none (with a line saying why when it is the proxy's shapes)."""
    from ifguide_cli.core.paper import plan

    sizes = plan_sizes(spec, configs, label, gpus)
    if sizes is None:
        return RunEstimate()
    if proxy is not None:
        name = proxy_arch(ws, proxy.model)
        if name not in plan.ARCHS:
            return RunEstimate(note=f"no cost estimate: the proxy {proxy.ref} has no recorded shapes (known: "
                                    f"{', '.join(plan.ARCHS)}); name one of those as influence.proxy to see it")
        sizes = replace(sizes, proxy=proxy_sizes(ws, spec, configs, proxy, name, sizes))
        sizes = replace(sizes, notes=sizes.notes + _proxy_notes(sizes.proxy, configs))
    return RunEstimate(plan.build_plan(sizes), peak_memory(sizes))


def peak_memory(sizes) -> dict[str, dict[str, int]]:
    """Peak GPU memory per stage for the run's model, precision, batch, LoRA, checkpointing and FSDP; the factors
    and scores on the model they run on (the proxy's, with one)."""
    from ifguide_cli.core.paper import memory

    target = memory.MemoryInputs(sizes.model, sizes.weight_bytes, sizes.micro_batch, sizes.seq_len, sizes.lora_rank,
                                 sizes.fsdp, sizes.gradient_checkpointing)
    out = memory.estimate(target)
    if sizes.proxy is not None:
        scorer = replace(target, model=sizes.proxy.model, lora_rank=0)
        out.update(factors=memory.factors(scorer), scores=memory.scores(scorer))
        if sizes.proxy.trained:
            out["train proxy"] = memory.training(replace(scorer, weight_bytes=sizes.proxy.weight_bytes,
                                                         micro_batch=sizes.proxy.micro_batch, checkpointing=False))
    return out


def plan_sizes(spec: PipelineSpec, configs: StageConfigs, label: str = "pipeline", gpus: int = 1):
    """The run's sizes as `paper.plan.PlanInputs` (without the proxy): the model's shapes, the subsets' rows, the
    training recipe, the influence stages' settings. None when a size is not known."""
    from ifguide_cli.core.paper import plan
    from ifguide_cli.core.paper.subsets import SUBSETS
    from ifguide_cli.core.training.config import default_profile, given_values, resolve_config

    ev, model = spec.eval, spec.baseline.checkpoint or spec.model
    named = {"data": spec.data, "toxic": spec.influence.toxic_queries, "safe": spec.influence.safe_queries,
             "prompts": ev.prompts if ev.toxicity else None, "ppl": ev.ppl_data, "lambada": ev.lambada}
    if model not in plan.ARCHS or any(ref is not None and ref not in SUBSETS for ref in named.values()):
        return None  # `auto` eval data is not a subset either
    rows = {key: SUBSETS[ref].rows if ref else 0 for key, ref in named.items()}
    options = given_values(configs.ifguide_train, "the IF-Guide model's options")
    seq_len = configs.corpus.get("seq_len") or 2048  # the reference's chunks
    mode = "pretrain" if spec.scenario == "pretrain" else "finetune"
    train, run = resolve_config(mode, options.get("profile") or default_profile(model, spec.data), None, options, seq_len)
    queries = _queries(configs.scores, rows["toxic"], rows["safe"])
    return plan.PlanInputs(
        preset=label, scenario=spec.scenario, model=model, rows=rows["data"], seq_len=seq_len,
        train_steps=train_steps(train, rows["data"]), batch=train.batch_size,
        eval_rows=_validation_rows(train, rows["data"]), eval_steps=run.eval_steps or run.save_steps,
        save_steps=run.save_steps, save_total_limit=run.save_total_limit, queries=queries,
        prompts=min(ev.num_prompts or rows["prompts"], rows["prompts"]), samples=ev.samples, new_tokens=ev.max_new_tokens,
        ppl_rows=rows["ppl"], lambada_rows=rows["lambada"], factor_value_bytes=2 if configs.factors.precision == "bf16" else 4,
        weight_bytes=2 if options.get("weights_dtype") == "bf16" else 4, micro_batch=run.micro_batch_size or 8,
        lora_rank=train.lora_rank, gradient_checkpointing=run.gradient_checkpointing, fsdp=gpus if run.fsdp else 1,
        **_score_sizes(configs, rows["data"], seq_len, queries), **_arm_sizes(configs))


def train_steps(train, rows: int) -> int:
    """Optimizer steps of a training run over a corpus of `rows` rows, as the train stage counts them: `max_steps`,
    else the epochs over its training rows (the held-out share left out) in whole batches."""
    from ifguide_cli.core.training.config import split_rows

    if train.max_steps is not None:
        return train.max_steps
    return math.ceil(train.epochs * (len(split_rows(rows, train)[0]) // train.batch_size))


def _queries(scores, toxic: int, safe: int) -> int:
    """The queries scored: each set's, at most `max_queries` of each (a seeded subset)."""
    cap = scores.max_queries or max(toxic, safe)
    return min(toxic, cap) + min(safe, cap)


def _score_sizes(configs: StageConfigs, rows: int, seq_len: int, queries: int) -> dict:
    """The scores' bytes per value (`storage`), the rows scored (`max_rows`; `shard I/N`: all N jobs are counted,
    `influence.subset.shard_bounds`), the factors' fit rows (`max_examples`), and the query gradient passes: one per
    block of every job (`influence.blocks.plan_blocks`: `partitions`, else blocks of ≥ 4M tokens and ≥ 20× the query
    tokens, each query padded to the row length as `scores` does)."""
    from ifguide_cli.core.influence.blocks import default_blocks
    from ifguide_cli.core.influence.subset import parse_shard, shard_bounds

    scores, max_examples = configs.scores, configs.factors.max_examples
    count = parse_shard(scores.shard)[1] if scores.shard else 1
    scored = min(scores.max_rows, rows) if scores.max_rows and count == 1 else rows
    jobs = [hi - lo for lo, hi in (shard_bounds(i, count, scored) for i in range(count))]
    blocks = sum(scores.partitions or default_blocks(n * seq_len, queries * seq_len) for n in jobs)
    return {"score_value_bytes": 4 if scores.storage == "fp32" else 2, "score_blocks": blocks, "shards": count,
            "scored_rows": scored if scored < rows else None, "notes": _score_notes(scores, count),
            "factor_rows": min(max_examples, rows) if max_examples is not None and max_examples < rows else None}


def _score_notes(scores, shards: int) -> tuple[str, ...]:
    """What the estimate counts of a sharded scoring or a rows file (the plan's assumptions)."""
    notes = []
    if scores.shard:
        notes.append(f"influence.scores.shard {scores.shard}: all {shards} shard jobs are counted (this run is one of "
                     "them); each repeats the query gradient pass")
    if scores.rows_file:
        notes.append(f"influence.scores.rows {scores.rows_file}: the file is not read here; every row is counted (an upper bound)")
    return tuple(notes)


def _arm_sizes(configs: StageConfigs) -> dict:
    """How many arms, seeds and score passes an arms run adds to the paper's two-model run."""
    from ifguide_cli.core.pipeline.arms import used_scores

    if not configs.arms:
        return {}
    return {"arms": len(configs.arms), "seeds": len(configs.seeds) or 1, "score_passes": max(1, len(used_scores(configs.arms)))}


def _validation_rows(train, data_rows: int) -> int:
    """Rows of each evaluation during training: of `eval_data` (a subset), else the held-out share, at most eval_docs."""
    from ifguide_cli.core.paper.subsets import SUBSETS

    if train.eval_data:
        return min(train.eval_docs, SUBSETS[train.eval_data].rows if train.eval_data in SUBSETS else 0)
    return min(train.eval_docs, max(1, round(data_rows * train.val_fraction))) if train.val_fraction else 0


# ---- the proxy ---------------------------------------------------------------------------------------------
def proxy_arch(ws: Workspace, mref) -> str | None:
    """The name of the proxy's recorded shapes (`paper.plan.ARCHS`): a registry model's name; a checkpoint's is the
    registry model its lineage was trained from. None when there is none (a folder, a hub id, a config)."""
    identity: dict = mref.identity()
    for _ in range(16):  # a checkpoint of a checkpoint …; a cycle cannot be stored, this only bounds the walk
        if identity.get("source") == "registry":
            return identity.get("location")
        art = ws.by_id(identity["artifact_id"]) if identity.get("source") == "checkpoint" else None
        if art is None:
            return None
        identity = art.config.get("model") or {}
    return None


def proxy_sizes(ws: Workspace, spec: PipelineSpec, configs: StageConfigs, proxy: Proxy, name: str, sizes):
    """The proxy's `paper.plan.ProxySizes`: its shapes, and the run that trains it (as the proxy stage trains it:
    `influence.proxy_train` over the profile `ifguide train` would use, on the run's rows)."""
    from ifguide_cli.core.data.sources import is_packaged
    from ifguide_cli.core.paper import plan
    from ifguide_cli.core.pipeline.runner import training_profile
    from ifguide_cli.core.training.config import given_values, resolve_config

    if not proxy.trained:
        return plan.ProxySizes(name)
    options = given_values(configs.proxy_train, "influence.proxy_train")
    profile = options.get("profile") or training_profile(ws, spec.data, proxy.model)
    train, run = resolve_config("pretrain", profile, None, options, sizes.seq_len, packaged_data=is_packaged(spec.data))
    return plan.ProxySizes(name, train_steps(train, sizes.rows), train.batch_size, _validation_rows(train, sizes.rows),
                           run.eval_steps or run.save_steps, run.save_steps, run.save_total_limit,
                           2 if options.get("weights_dtype") == "bf16" else 4, run.micro_batch_size or 8)


def _proxy_notes(proxy, configs: StageConfigs) -> tuple[str, ...]:
    """How the proxy's sizes were chosen: its steps are the pipeline's or the profile's (stated, as they are not the
    target's recipe)."""
    from ifguide_cli.core.training.config import given_values

    if not proxy.trained:
        return (f"proxy {proxy.model}: taken as it is (not trained); factors, query gradients and scores at its rate",)
    options = given_values(configs.proxy_train, "influence.proxy_train")
    given = "influence.proxy_train" if {"max_steps", "epochs"} & options.keys() else \
        "the training profile's defaults: influence.proxy_train sets neither max_steps nor epochs"
    return (f"proxy {proxy.model}: trained from scratch for {proxy.steps:,} steps × {proxy.batch} rows ({given}); "
            "factors, query gradients and scores at its rate",)
