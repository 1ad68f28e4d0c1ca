"""`ifguide rad download`: install the RAD reward model."""

from typing import Optional

import typer

from ifguide_cli.cli import common
from ifguide_cli.cli.commands import summary
from ifguide_cli.cli.options import ForceOpt

rad_app = typer.Typer(help=summary("rad"),
                      no_args_is_help=True)


@rad_app.command("download", help="Install the RAD toxicity reward model (GPT-2, 7 outputs) into the workspace.",
                 epilog="Examples:\n\n"
                        "ifguide rad download\n"
                        "ifguide rad download --from saved_models.zip --sha256 <sha256>   (no network)\n"
                        "ifguide eval toxicity my-model --defense rad")
def download(
    url: Optional[str] = typer.Option(None, "--url", help="Where to download from (default: RAD's release, "
                                      "https://storage.googleapis.com/rad_release/saved_models.zip)."),
    from_path: Optional[str] = typer.Option(None, "--from", help="Install from a local file or folder instead: RAD's "
                                            "saved_models.zip, gpt2_toxicity/pytorch_model.bin, a .safetensors file or a folder."),
    tokenizer: Optional[str] = typer.Option(None, "--tokenizer", help="The reward model's tokenizer: a folder or hub id "
                                            "(default: the one next to the weights, else gpt2)."),
    sha256: Optional[str] = typer.Option(None, "--sha256", help="Refuse the file unless its sha256 matches."),
    force: ForceOpt = False,
) -> None:
    from ifguide_cli.core.rad.install import install_reward_model

    ws = common.workspace()
    res = install_reward_model(ws, source=from_path, url=url, tokenizer=tokenizer, sha256=sha256, force=force,
                               reporter=common.reporter())
    common.emit(common.artifact_payload(res.artifact, res.reused),
                common.render_artifact("RAD reward model", res.artifact, res.reused))


def register(app: typer.Typer) -> None:
    app.add_typer(rad_app, name="rad")
