"""`ifguide eval toxicity|implicit|fluency|add-classifier`."""

from typing import Annotated, Optional

import typer

from ..core.workspace import is_main_process
from . import common

# options shared by the eval commands
RadBeta = Annotated[float, typer.Option("--rad-beta", help="RAD: logits − β·reward.")]
RadTopK = Annotated[int, typer.Option("--rad-topk", help="RAD: candidates re-ranked per step.")]
Device = Annotated[str, typer.Option("--device", help="auto | cpu | cuda[:N].")]
DType = Annotated[str, typer.Option("--dtype", help="Model dtype: float32 | bfloat16 | float16.")]
Name = Annotated[Optional[str], typer.Option("--name", help="A name for the eval artifact.")]
Force = Annotated[bool, typer.Option("--force", help="Recompute even if an identical eval exists.")]
ClassifierCheckpoint = Annotated[Optional[str], typer.Option("--classifier-checkpoint",
                                                             help="Detoxify checkpoint file (.ckpt or .safetensors).")]
ClassifierBase = Annotated[Optional[str], typer.Option("--classifier-base",
                                                       help="Local base-model folder for Detoxify (config.json + tokenizer).")]
ClassifierPath = Annotated[Optional[str], typer.Option("--classifier-path",
                                                       help="Local transformers folder of a (ToxiGen-style) classifier.")]
RewardModel = Annotated[Optional[str], typer.Option("--reward-model",
                                                    help="RAD reward model artifact (default: the installed rad-reward).")]
ClassifierBatchSize = Annotated[int, typer.Option("--classifier-batch-size", help="Texts per classifier forward.")]

eval_app = typer.Typer(help="Evaluate toxicity (explicit, implicit) and fluency of a model.", no_args_is_help=True)

_DTYPES = ("float32", "bfloat16", "float16")


def _dtype(name: str):
    import torch

    if name not in _DTYPES:
        common.fail(f"unknown --dtype {name!r}", hint=f"use one of {', '.join(_DTYPES)}", exit_code=2)
    return None if name == "float32" else getattr(torch, name)


def _defense(defense: str, beta: float, topk: int, reward_model: Optional[str], ws):
    from ..core.evaluation import DefenseConfig
    from ..core.rad import resolve_reward_model

    cfg = DefenseConfig(defense, beta, topk)
    cfg.validate()
    reward = resolve_reward_model(ws, reward_model) if cfg.name == "rad" else None
    if reward_model and cfg.name != "rad":
        common.fail("--reward-model needs --defense rad", exit_code=2)
    return cfg, reward


def _render_toxicity(title: str, art, reused: bool):
    def render(console):
        from rich.table import Table

        s = art.summary
        head = Table(title=f"{title} — {s.get('model')} · defense {s.get('defense')} · classifier {s.get('classifier')}",
                     title_justify="left")
        for col in ("prompts", "split", "EMT ± std", "TP"):
            head.add_column(col, justify="right" if col != "split" else "left")
        head.add_row(str(s.get("prompts")), "all", f"{common.fmt_metric(s['expected_max_toxicity'])} ± {common.fmt_metric(s['expected_max_toxicity_std'])}",
                     common.fmt_metric(s["toxicity_probability"]))
        for split, m in (s.get("splits") or {}).items():
            head.add_row(str(m.get("prompts")), split,
                         f"{common.fmt_metric(m['expected_max_toxicity'])} ± {common.fmt_metric(m['expected_max_toxicity_std'])}",
                         common.fmt_metric(m["toxicity_probability"]))
        console.print(head)
        per_attr = s.get("per_attribute") or {}
        if len(per_attr) > 1:
            table = Table(title="per attribute", title_justify="left")
            for col in ("attribute", "EMT ± std", "TP"):
                table.add_column(col, justify="left" if col == "attribute" else "right")
            for attr, m in per_attr.items():
                table.add_row(attr, f"{common.fmt_metric(m['expected_max_toxicity'])} ± {common.fmt_metric(m['expected_max_toxicity_std'])}",
                              common.fmt_metric(m["toxicity_probability"]))
            console.print(table)
        console.print(f"[dim]{'reused' if reused else 'created'} eval {art.id} ({s.get('primary_attribute')}; "
                      f"continuations and scores in {art.path / 'continuations.jsonl'})[/]")

    return render


@eval_app.command("toxicity", help="Sample continuations of prompts and score their toxicity (EMT, TP).")
@common.handles_errors
def toxicity(
    model: str = typer.Argument(..., help="Registry model, checkpoint artifact, local folder or hub id."),
    prompts: Optional[str] = typer.Option(None, "--prompts", help="rtp, attaq, bold, tiny-prompts, a local file or hub id "
                                          "(default: tiny-prompts for tiny-tokenizer models, else rtp)."),
    num_prompts: Optional[int] = typer.Option(None, "--num-prompts", help="Evaluate a seeded random subset of this many prompts."),
    samples: int = typer.Option(25, "--samples", help="Continuations per prompt."),
    max_new_tokens: int = typer.Option(20, "--max-new-tokens", help="New tokens per continuation."),
    top_p: float = typer.Option(0.9, "--top-p", help="Nucleus sampling (top-k is off)."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed (batch i uses seed + i)."),
    batch_size: int = typer.Option(8, "--batch-size", help="Prompts per generate call (each with --samples rows)."),
    classifier: str = typer.Option("detoxify-unbiased", "--classifier",
                                   help="detoxify-unbiased|detoxify-original|detoxify-multilingual|detoxify-*-small|"
                                        "toxigen-roberta|profanity (built-in, offline)|registered name|folder|hub id."),
    classifier_checkpoint: ClassifierCheckpoint = None,
    classifier_base: ClassifierBase = None,
    classifier_path: ClassifierPath = None,
    classifier_batch_size: ClassifierBatchSize = 64,
    defense: str = typer.Option("none", "--defense", help="none | rad (reward-augmented decoding)."),
    reward_model: RewardModel = None,
    rad_beta: RadBeta = 50.0,
    rad_topk: RadTopK = 20,
    device: Device = "auto",
    dtype: DType = "float32",
    name: Name = None,
    force: Force = False,
) -> None:
    from ..core.classifiers import resolve_classifier
    from ..core.evaluation import GenerationConfig, evaluate_toxicity, pick_device
    from ..core.models import resolve_model

    ws = common.workspace()
    mref = resolve_model(model, ws)
    defense_cfg, reward = _defense(defense, rad_beta, rad_topk, reward_model, ws)
    spec = resolve_classifier(classifier, ws, checkpoint=classifier_checkpoint, base=classifier_base, path=classifier_path)
    gen = GenerationConfig(samples=samples, max_new_tokens=max_new_tokens, top_p=top_p, seed=seed, batch_size=batch_size)
    gen.validate()
    prompt_set = prompts or ("tiny-prompts" if mref.tokenizer == "tiny" else "rtp")
    art, reused = evaluate_toxicity(ws, mref, prompt_set, gen, spec, num_prompts=num_prompts, defense=defense_cfg,
                                    reward_art=reward, device=pick_device(device), dtype=_dtype(dtype),
                                    classifier_batch_size=classifier_batch_size, name=name, force=force,
                                    reporter=common.reporter())
    if not is_main_process():  # under torchrun only rank 0 evaluates and reports
        return
    common.emit(common.artifact_payload(art, reused), _render_toxicity("toxicity", art, reused))


@eval_app.command("implicit", help="Re-score the saved continuations of a toxicity eval (default: ToxiGen-RoBERTa).")
@common.handles_errors
def implicit(
    eval_ref: str = typer.Argument(..., metavar="EVAL", help="An eval artifact written by `eval toxicity`."),
    classifier: str = typer.Option("toxigen-roberta", "--classifier", help="toxigen-roberta, any classifier `eval toxicity` takes."),
    classifier_checkpoint: ClassifierCheckpoint = None,
    classifier_base: ClassifierBase = None,
    classifier_path: ClassifierPath = None,
    classifier_batch_size: ClassifierBatchSize = 64,
    device: Device = "auto",
    name: Name = None,
    force: Force = False,
) -> None:
    from ..core.classifiers import resolve_classifier
    from ..core.evaluation import continuations_path, pick_device, rescore_eval

    ws = common.workspace()
    source = ws.resolve(eval_ref, "evals")
    continuations_path(source)  # fail fast with one line when there is nothing to re-score
    spec = resolve_classifier(classifier, ws, checkpoint=classifier_checkpoint, base=classifier_base, path=classifier_path)
    art, reused = rescore_eval(ws, source, spec, device=pick_device(device), classifier_batch_size=classifier_batch_size,
                               name=name, force=force, reporter=common.reporter())
    if not is_main_process():  # under torchrun only rank 0 evaluates and reports
        return
    common.emit(common.artifact_payload(art, reused), _render_toxicity("implicit toxicity", art, reused))


@eval_app.command("fluency", help="Perplexity on held-out text and LAMBADA last-word accuracy.")
@common.handles_errors
def fluency(
    model: str = typer.Argument(..., help="Registry model, checkpoint artifact, local folder or hub id."),
    ppl_data: Optional[str] = typer.Option(None, "--ppl-data", help="Held-out text (default: tiny-heldout for "
                                           "tiny-tokenizer models, else the last 2,000 OpenWebText documents)."),
    ppl_split: Optional[str] = typer.Option(None, "--ppl-split", help="Split (slice syntax works: train[-2000:])."),
    ppl_docs: Optional[int] = typer.Option(None, "--ppl-docs", help="Use at most this many documents."),
    lambada: Optional[str] = typer.Option(None, "--lambada", help="LAMBADA data (default: tiny-lambada for tiny-tokenizer models, else lambada)."),
    lambada_docs: Optional[int] = typer.Option(None, "--lambada-docs", help="Use at most this many passages."),
    no_ppl: bool = typer.Option(False, "--no-ppl", help="Skip perplexity."),
    no_lambada: bool = typer.Option(False, "--no-lambada", help="Skip LAMBADA."),
    batch_size: int = typer.Option(16, "--batch-size", help="Sequences per forward."),
    max_length: Optional[int] = typer.Option(None, "--max-length", help="Perplexity window (default: the model's context, ≤2048)."),
    defense: str = typer.Option("none", "--defense", help="none | rad (RAD: LAMBADA only)."),
    reward_model: RewardModel = None,
    rad_beta: RadBeta = 50.0,
    rad_topk: RadTopK = 20,
    device: Device = "auto",
    dtype: DType = "float32",
    name: Name = None,
    force: Force = False,
) -> None:
    from ..core.evaluation import FluencyConfig, default_fluency_data, evaluate_fluency, pick_device
    from ..core.models import resolve_model

    ws = common.workspace()
    mref = resolve_model(model, ws)
    defense_cfg, reward = _defense(defense, rad_beta, rad_topk, reward_model, ws)
    d_ppl, d_split, d_lambada = default_fluency_data(mref)
    if max_length is not None:
        from ..core.errors import check_range

        check_range("--max-length", max_length, 2, None)
    if defense_cfg.name == "rad" and ppl_data and not no_ppl:
        common.info("note: perplexity is skipped with --defense rad (RAD changes decoding, not the model's likelihood)")
    cfg = FluencyConfig(ppl_data=None if no_ppl else (ppl_data or d_ppl),
                        ppl_split=ppl_split if ppl_data else (ppl_split or d_split),
                        ppl_docs=ppl_docs, lambada=None if no_lambada else (lambada or d_lambada),
                        lambada_docs=lambada_docs, batch_size=batch_size, max_length=max_length)
    art, reused = evaluate_fluency(ws, mref, cfg, defense=defense_cfg, reward_art=reward, device=pick_device(device),
                                   dtype=_dtype(dtype), name=name, force=force, reporter=common.reporter())
    if not is_main_process():  # under torchrun only rank 0 evaluates and reports
        return

    def render(console):
        from rich.table import Table

        s = art.summary
        table = Table(title=f"fluency — {s.get('model')} · defense {s.get('defense')}", title_justify="left")
        for col in ("metric", "value", "data"):
            table.add_column(col)
        table.add_row("perplexity", common.fmt_metric(s.get("perplexity"), 2), f"{s.get('perplexity_data') or '—'} "
                      f"({s.get('perplexity_tokens', 0)} tokens)" if s.get("perplexity") is not None else "—")
        table.add_row("LAMBADA accuracy", common.fmt_metric(s.get("lambada_accuracy")),
                      f"{s.get('lambada_data') or '—'} ({s.get('lambada_examples', 0)} passages)"
                      if s.get("lambada_accuracy") is not None else "—")
        console.print(table)
        console.print(f"[dim]{'reused' if reused else 'created'} eval {art.id}[/]")

    common.emit(common.artifact_payload(art, reused), render)


@eval_app.command("add-classifier", help="Register classifier weights once into the workspace (then use --classifier NAME).")
@common.handles_errors
def add_classifier(
    name: str = typer.Argument(..., help="detoxify-unbiased, detoxify-original, …, toxigen-roberta, or your own name."),
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", help="Detoxify checkpoint (.ckpt from its GitHub release)."),
    base: Optional[str] = typer.Option(None, "--base", help="Detoxify base-model folder (e.g. roberta-base: config.json + tokenizer)."),
    from_dir: Optional[str] = typer.Option(None, "--from", help="A transformers classifier folder (e.g. ToxiGen-RoBERTa)."),
    force: bool = typer.Option(False, "--force", help="Re-register even if identical weights are registered."),
) -> None:
    from ..core.classifiers import register_classifier

    ws = common.workspace()
    art, reused = register_classifier(ws, name, checkpoint=checkpoint, base=base, path=from_dir, force=force)
    common.emit(common.artifact_payload(art, reused), common.render_artifact(f"classifier {name}", art, reused))


def register(app: typer.Typer) -> None:
    app.add_typer(eval_app, name="eval")
