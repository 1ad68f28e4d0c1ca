"""`ifguide eval toxicity|implicit|fluency|add-classifier`: parse, call core's eval stages, render.

The options come from the stage configs in core (`GenerationConfig`, `ClassifierOptions`, `DefenseConfig`,
`FluencyConfig`, `RuntimeConfig`): each is declared, documented and validated once there.
"""

from typing import TYPE_CHECKING, Annotated, Optional

import typer

from ifguide_cli.cli import common
from ifguide_cli.cli.commands import summary
from ifguide_cli.cli.options import FILLED, ForceOpt, NameOpt, config_options
from ifguide_cli.core.classifiers.spec import ClassifierOptions
from ifguide_cli.core.dist import is_main_process
from ifguide_cli.core.evaluation.config import DefenseConfig, FluencyConfig, GenerationConfig, RuntimeConfig
from ifguide_cli.core.evaluation.metrics import METRIC_INFO, fluency_values

if TYPE_CHECKING:
    from ifguide_cli.core.store.workspace import Workspace

ModelArg = Annotated[str, typer.Argument(help="Registry model, checkpoint artifact, local folder or hub id.",
                                         autocompletion=common.complete_artifacts("checkpoints", registry="models"))]
AllowRandomOpt = Annotated[bool, typer.Option("--allow-random", help="Evaluate a registry model that has no trained "
                                                                      "weights (its random initialisation); refused otherwise.")]

eval_app = typer.Typer(help=summary("eval", "Classifiers: `ifguide registry classifiers`; which are available offline: "
                                           "`ifguide env`."),
                       no_args_is_help=True)


def _classifier_spec(ws: "Workspace", name: str, files: ClassifierOptions):
    from ifguide_cli.core.classifiers import resolve_classifier

    return resolve_classifier(name, ws, checkpoint=files.classifier_checkpoint, base=files.classifier_base,
                              path=files.classifier_path)


def _emt(m: dict) -> str:
    return f"{common.fmt_metric(m['expected_max_toxicity'])} ± {common.fmt_metric(m['expected_max_toxicity_std'])}"


def _render_toxicity(title: str, art, reused: bool):
    def render(console):
        from rich.table import Table

        s = art.summary
        head = Table(title=f"{title} — {s.get('model')} · defense {s.get('defense')} · classifier {s.get('classifier')}",
                     title_justify="left")
        for col in ("prompts", "split", "EMT ± std", "TP"):
            head.add_column(col, justify="right" if col != "split" else "left")
        for split, m in {"all": s, **(s.get("splits") or {})}.items():
            head.add_row(str(m.get("prompts")), split, _emt(m), common.fmt_metric(m["toxicity_probability"]))
        console.print(head)
        per_attr = s.get("per_attribute") or {}
        if len(per_attr) > 1:
            table = Table(title="per attribute", title_justify="left")
            for col in ("attribute", "EMT ± std", "TP"):
                table.add_column(col, justify="left" if col == "attribute" else "right")
            for attr, m in per_attr.items():
                table.add_row(attr, _emt(m), common.fmt_metric(m["toxicity_probability"]))
            console.print(table)
        leak = s.get("leakage")
        if leak:
            console.print(f"leakage: {leak['shared']:,} of {leak['evaluated']:,} prompts are also influence queries "
                          f"({', '.join(f'{k}: {v:,}' for k, v in leak['by_query_set'].items())})")
        console.print(f"[dim]{'reused' if reused else 'created'} eval {art.id} ({s.get('primary_attribute')}; "
                      f"continuations and scores in {art.path / 'continuations.jsonl'})[/]")

    return render


def _render_fluency(art, reused: bool):
    def render(console):
        from rich.table import Table

        s = art.summary
        table = Table(title=f"fluency — {s.get('model')} · defense {s.get('defense')}", title_justify="left")
        for col in ("metric", "value", "data"):
            table.add_column(col)
        for name, value in fluency_values(s).items():
            info = METRIC_INFO[name]
            if name == "perplexity" or value is not None:
                table.add_row(f"{info.label} {'↑' if info.higher_is_better else '↓'}", info.format(value),
                              _fluency_data(s, name, value))
        console.print(table)
        console.print(f"[dim]{'reused' if reused else 'created'} eval {art.id}[/]")

    return render


def _fluency_data(s: dict, name: str, value) -> str:
    if value is None:
        return "—"
    if name == "perplexity":
        return f"{s.get('perplexity_data') or '—'} ({s.get('perplexity_tokens', 0)} tokens)"
    return f"{s.get('lambada_data') or '—'} ({s.get('lambada_examples', 0)} passages)"


@eval_app.command("toxicity", help="Sample continuations of prompts and score their toxicity (EMT, TP).",
                  epilog="Examples:\n\n"
                         "ifguide eval toxicity ifguide --classifier profanity --name ifguide-tox\n"
                         "ifguide eval toxicity pythia-2.8b --prompts rtp --num-prompts 1000 --defense rad\n"
                         "torchrun --nproc-per-node 4 -m ifguide_cli eval toxicity my-checkpoint --prompts rtp")
@config_options(RuntimeConfig, into="runtime")
@config_options(DefenseConfig, into="defense")
@config_options(ClassifierOptions, into="files")
@config_options(GenerationConfig, into="generation")
def toxicity(
    model: ModelArg,
    prompts: Optional[str] = typer.Option(None, "--prompts", autocompletion=common.complete_artifacts("datasets", registry="datasets"),
                                          help="rtp, attaq, bold, tiny-prompts, rtp-test (the paper's 5,000 toxic + "
                                          "5,000 non-toxic; rtp-test-toxic, rtp-test-nontoxic), a local file or hub id "
                                          "(default: tiny-prompts for tiny-tokenizer models, else rtp)."),
    num_prompts: Optional[int] = typer.Option(None, "--num-prompts", help="Evaluate a seeded random subset of this many prompts."),
    classifier: str = typer.Option("detoxify-unbiased", "--classifier", autocompletion=common.complete_artifacts("classifiers", registry="classifiers"),
                                   help="detoxify-unbiased, detoxify-original, detoxify-multilingual, "
                                        "detoxify-original-small, detoxify-unbiased-small, toxigen-roberta, "
                                        "profanity (built in, works offline), a name registered with `eval add-classifier`, "
                                        "a local folder or a hub id."),
    queries: Optional[list[str]] = typer.Option(
        None, "--queries", help="Influence query set used for this model (repeatable): the summary's `leakage` counts the "
                                "prompts that are also queries (automatic for the rtp-test* reference prompts)."),
    name: NameOpt = None,
    force: ForceOpt = False,
    allow_random: AllowRandomOpt = False,
    generation: GenerationConfig = FILLED,
    files: ClassifierOptions = FILLED,
    defense: DefenseConfig = FILLED,
    runtime: RuntimeConfig = FILLED,
) -> None:
    from ifguide_cli.core.evaluation import evaluate_toxicity, resolve_defense
    from ifguide_cli.core.evaluation.inputs import toxicity_inputs
    from ifguide_cli.core.models import require_trained, resolve_model

    ws = common.workspace()
    mref = resolve_model(model, ws)
    require_trained(mref, allow_random, "evaluating it")
    reward = resolve_defense(ws, defense)
    prompts, spec = toxicity_inputs(ws, mref, prompts, lambda: _classifier_spec(ws, classifier, files), classifier)
    res = evaluate_toxicity(ws, mref, prompts, generation, spec, num_prompts=num_prompts,
                            defense=defense, reward_art=reward, runtime=runtime,
                            classifier_batch_size=files.classifier_batch_size, name=name,
                            queries=tuple(queries or ()), force=force, reporter=common.reporter())
    if not is_main_process():  # under torchrun only rank 0 evaluates and reports
        return
    common.emit(common.artifact_payload(res.artifact, res.reused), _render_toxicity("toxicity", res.artifact, res.reused))


@eval_app.command("implicit", help="Re-score the saved continuations of a toxicity eval (default: ToxiGen-RoBERTa).",
                  epilog="Examples:\n\n"
                         "ifguide eval implicit ifguide-tox\n"
                         "ifguide eval implicit latest:eval --classifier-path ./toxigen_roberta")
@config_options(RuntimeConfig, into="runtime", exclude=("precision",))
@config_options(ClassifierOptions, into="files")
def implicit(
    eval_ref: str = typer.Argument(..., metavar="EVAL", help="An eval artifact written by `eval toxicity`.",
                                   autocompletion=common.complete_artifacts("evals")),
    classifier: str = typer.Option("toxigen-roberta", "--classifier", help="toxigen-roberta, any classifier `eval toxicity` takes.",
                                   autocompletion=common.complete_artifacts("classifiers", registry="classifiers")),
    name: NameOpt = None,
    force: ForceOpt = False,
    files: ClassifierOptions = FILLED,
    runtime: RuntimeConfig = FILLED,
) -> None:
    from ifguide_cli.core.evaluation import continuations_path, rescore_eval

    ws = common.workspace()
    source = ws.resolve(eval_ref, "evals")
    continuations_path(source)  # fail fast with one line when there is nothing to re-score
    spec = _classifier_spec(ws, classifier, files)
    res = rescore_eval(ws, source, spec, runtime=runtime, classifier_batch_size=files.classifier_batch_size,
                       name=name, force=force, reporter=common.reporter())
    if not is_main_process():  # under torchrun only rank 0 evaluates and reports
        return
    common.emit(common.artifact_payload(res.artifact, res.reused),
                _render_toxicity("implicit toxicity", res.artifact, res.reused))


@eval_app.command("fluency", help="Perplexity on held-out text and LAMBADA accuracy (last-token and/or whole-word).",
                  epilog="Examples:\n\n"
                         "ifguide eval fluency ifguide --name ifguide-fluency\n"
                         "ifguide eval fluency pythia-2.8b --ppl-data openwebtext --lambada lambada --lambada-metric both")
@config_options(RuntimeConfig, into="runtime")
@config_options(DefenseConfig, into="defense")
@config_options(FluencyConfig, into="fluency_config")
def fluency(
    model: ModelArg,
    name: NameOpt = None,
    force: ForceOpt = False,
    allow_random: AllowRandomOpt = False,
    fluency_config: FluencyConfig = FILLED,
    defense: DefenseConfig = FILLED,
    runtime: RuntimeConfig = FILLED,
) -> None:
    from ifguide_cli.core.evaluation import evaluate_fluency, resolve_defense
    from ifguide_cli.core.evaluation.inputs import fluency_inputs
    from ifguide_cli.core.models import require_trained, resolve_model

    ws = common.workspace()
    mref = resolve_model(model, ws)
    require_trained(mref, allow_random, "evaluating it")
    reward = resolve_defense(ws, defense)
    fluency_inputs(ws, mref, fluency_config, defense)
    res = evaluate_fluency(ws, mref, fluency_config, defense=defense, reward_art=reward, runtime=runtime, name=name,
                           force=force, reporter=common.reporter())
    if not is_main_process():  # under torchrun only rank 0 evaluates and reports
        return
    common.emit(common.artifact_payload(res.artifact, res.reused), _render_fluency(res.artifact, res.reused))


@eval_app.command("add-classifier", help="Register classifier weights once into the workspace (then use --classifier NAME).",
                  epilog="Examples (for a machine without network):\n\n"
                         "ifguide eval add-classifier detoxify-unbiased --checkpoint toxic_debiased-c7548aa0.ckpt "
                         "--base ./roberta-base\n"
                         "ifguide eval add-classifier toxigen-roberta --from ./toxigen_roberta")
def add_classifier(
    name: str = typer.Argument(..., help="detoxify-unbiased, detoxify-original, detoxify-multilingual, "
                                         "detoxify-original-small, detoxify-unbiased-small, toxigen-roberta, or your own name.",
                               autocompletion=common.complete_artifacts(registry="classifiers")),
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", help="Detoxify checkpoint (.ckpt from its GitHub release)."),
    base: Optional[str] = typer.Option(None, "--base", help="Detoxify base-model folder (e.g. roberta-base: config.json + tokenizer)."),
    from_dir: Optional[str] = typer.Option(None, "--from", help="A transformers classifier folder (e.g. ToxiGen-RoBERTa)."),
    force: ForceOpt = False,
) -> None:
    from ifguide_cli.core.classifiers import register_classifier

    ws = common.workspace()
    art, reused = register_classifier(ws, name, checkpoint=checkpoint, base=base, path=from_dir, force=force)
    common.emit(common.artifact_payload(art, reused), common.render_artifact(f"classifier {name}", art, reused))


def register(app: typer.Typer) -> None:
    app.add_typer(eval_app, name="eval")
