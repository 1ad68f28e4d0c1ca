"""`ifguide rad download`: install the RAD reward model."""

import typer

from . import common

rad_app = typer.Typer(help="Reward-augmented decoding (RAD) defense.", no_args_is_help=True)


@rad_app.command("download", help="Install the RAD toxicity reward model into the workspace.")
@common.handles_errors
def download() -> None:
    common.not_implemented("rad download")


def register(app: typer.Typer) -> None:
    app.add_typer(rad_app, name="rad")
