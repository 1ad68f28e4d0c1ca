"""`ifguide eval toxicity|implicit|fluency`."""

import typer

from . import common

eval_app = typer.Typer(help="Evaluate toxicity (explicit, implicit) and fluency of a model.", no_args_is_help=True)


@eval_app.command("toxicity", help="Sample continuations of prompts and score their toxicity (EMT, TP).")
@common.handles_errors
def toxicity() -> None:
    common.not_implemented("eval toxicity")


@eval_app.command("implicit", help="Re-score saved continuations with ToxiGen-RoBERTa.")
@common.handles_errors
def implicit() -> None:
    common.not_implemented("eval implicit")


@eval_app.command("fluency", help="Perplexity on held-out text and LAMBADA accuracy.")
@common.handles_errors
def fluency() -> None:
    common.not_implemented("eval fluency")


def register(app: typer.Typer) -> None:
    app.add_typer(eval_app, name="eval")
