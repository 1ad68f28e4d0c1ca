"""`ifguide tokenizer train`: fit a byte-level BPE on your corpus (a tokenizer artifact, usable as --tokenizer)."""

from __future__ import annotations

import typer

from ifguide_cli.cli import common
from ifguide_cli.cli.commands import summary
from ifguide_cli.cli.options import ForceOpt, NameOpt, config_options
from ifguide_cli.core.tokenizer import TOKENIZER_DIR, TokenizerTrainConfig

tokenizer_app = typer.Typer(help=summary("tokenizer"), no_args_is_help=True)

_EPILOG = ("The artifact holds a transformers tokenizer folder (tokenizer/: tokenizer.json, tokenizer_config.json) with "
           "<|endoftext|> as end of document and <|padding|> for padding; pass its id or --name as --tokenizer, or load "
           "it with AutoTokenizer.from_pretrained(PATH/tokenizer). The corpus is read in batches (any size), and the "
           "summary compares tokens per document with the built-in tiny tokenizer.\n\n"
           "Examples:\n\n"
           "ifguide tokenizer train my-corpus.jsonl --vocab-size 8192 --name my-bpe\n"
           "ifguide tokenizer train openwebtext --max-examples 100000")


@tokenizer_app.command("train", help="Train a byte-level BPE tokenizer on CORPUS.", epilog=_EPILOG)
@config_options(TokenizerTrainConfig)
def train(
    config: TokenizerTrainConfig,
    corpus: str = typer.Argument(..., metavar="CORPUS", autocompletion=common.complete_artifacts("datasets", registry="datasets"),
                                 help="Local .jsonl/.json/.txt/.csv/.parquet file, save_to_disk "
                                                             "folder, registry dataset or hub id."),
    name: NameOpt = None,
    force: ForceOpt = False,
) -> None:
    from ifguide_cli.core.tokenizer import train_tokenizer

    result = train_tokenizer(common.workspace(), corpus, config, name=name, force=force, reporter=common.reporter())
    art, reused = result.artifact, result.reused
    rows = {"use it with": f"--tokenizer {art.name or art.id}"}
    common.emit(common.artifact_payload(art, reused, config=art.config, folder=str(art.path / TOKENIZER_DIR)),
                common.render_artifact("tokenizer", art, reused, rows))


def register(app: typer.Typer) -> None:
    app.add_typer(tokenizer_app, name="tokenizer")
