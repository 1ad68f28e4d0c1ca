"""`ifguide mask`: toxic-token selection, one subcommand per registered mask source (`extensions.MASK_SOURCES`:\nAlg. 1 on influence scores, a classifier, a word list, …), and inspection (show, browse, export)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional

import typer
from typer.core import TyperGroup

from ifguide_cli.cli import common
from ifguide_cli.cli.commands import summary
from ifguide_cli.cli.options import ForceOpt, NameOpt, config_options
from ifguide_cli.core.data.layout import CorpusConfig
from ifguide_cli.core.extensions import MASK_SOURCES
from ifguide_cli.core.masking.export_config import MaskExportConfig
from ifguide_cli.core.masking.transfer_config import MaskTransferConfig

if TYPE_CHECKING:
    from ifguide_cli.core.store.workspace import Workspace


class _MaskGroup(TyperGroup):
    """`ifguide mask SCORES ...` means `ifguide mask select SCORES ...`; the other subcommands are named."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            _refuse_a_typo(ctx, args[0], list(self.commands))
            args = ["select", *args]
        return super().parse_args(ctx, args)


def _refuse_a_typo(ctx, word: str, commands: list[str]) -> None:
    """`mask shwo x` is a mistyped `mask show`, not `mask select shwo`: a word close to a subcommand's name that is
    no file is a usage error with "Did you mean" (as for a top-level command); scores are named otherwise."""
    import difflib
    from pathlib import Path

    close = difflib.get_close_matches(word, commands, n=1, cutoff=0.75)
    if close and not word.startswith("-") and not Path(word).exists():
        ctx.fail(f"No such command {word!r}. Did you mean {close[0]!r}? (`ifguide mask SCORES` selects from "
                 "scores named otherwise)")


mask_app = typer.Typer(
    cls=_MaskGroup,
    no_args_is_help=True,
    help=summary("mask", "`ifguide mask SCORES` is short for `ifguide mask select SCORES`."),
)


ScoresArg = Annotated[str, typer.Argument(
    metavar="SCORES", help="Scores artifact (id, name, `latest`) or a .safetensors/.npy score file.",
    autocompletion=common.complete_artifacts("scores"))]
ScoreDataOpt = Annotated[Optional[str], typer.Option(
    "--data", "-d", help="Dataset artifact the score file indexes (a scores artifact knows its own).",
    autocompletion=common.complete_artifacts("datasets"))]
KeyOpt = Annotated[Optional[str], typer.Option(
    "--key", help="Tensor name in a .safetensors file \\[default: scores, all_modules, or the only one].")]
AllPositionsOpt = Annotated[bool, typer.Option(
    "--all-positions", help="Count padded positions too, like the reference script (default: only positions of the "
                            "attention mask).")]
SourceDataOpt = Annotated[str, typer.Option(
    "--data", "-d", help="Training data: dataset artifact, or registry dataset, local file or hub id laid out with "
                         "--model's tokenizer (or --tokenizer; the packaged tiny sets need neither).",
    autocompletion=common.complete_artifacts("datasets", registry="datasets"))]
ModelOpt = Annotated[Optional[str], typer.Option(
    "--model", "-m", help="Model whose tokenizer and rows DATA is laid out in, as `ifguide factors MODEL --data DATA` "
                          "lays it out.", autocompletion=common.complete_artifacts("checkpoints", registry="models"))]
TopOpt = Annotated[int, typer.Option("--top", help="Documents listed in the summary.")]


def _build_mask(source: str, refs, config, top: int, name: str | None, force: bool) -> None:
    """Every `ifguide mask SOURCE` command: the source's stage run from the references, and the mask shown."""
    from ifguide_cli.core.masking.source import make_mask

    _check_top(top)
    ws = common.workspace()
    res = make_mask(ws, source, refs, config, name=name, force=force, reporter=common.reporter())
    _emit_mask(ws, res.artifact, res.reused, top)


def _scores_command(entry) -> None:
    """`ifguide mask COMMAND SCORES`: a source that reads influence scores (an artifact, or a file and its data)."""

    @mask_app.command(entry.command, help=entry.help, epilog=_examples(entry))
    @config_options(entry.config)
    def build(config, scores: ScoresArg, data: ScoreDataOpt = None, key: KeyOpt = None,
              all_positions: AllPositionsOpt = False, top: TopOpt = 10, name: NameOpt = None,
              force: ForceOpt = False) -> None:
        from ifguide_cli.core.masking.source import MaskRefs

        _build_mask(entry.name, MaskRefs(scores, data, key, all_positions), config, top, name, force)


def _data_command(entry) -> None:
    """`ifguide mask COMMAND --data DATA`: a source that reads the training data (laid out like `factors` does)."""

    @mask_app.command(entry.command, help=entry.help, epilog=_examples(entry))
    @config_options(CorpusConfig, into="corpus", overrides_only=True)
    @config_options(entry.config)
    def build(config, data: SourceDataOpt, model: ModelOpt = None, top: TopOpt = 10, name: NameOpt = None,
              force: ForceOpt = False, corpus: Optional[dict] = None) -> None:
        from ifguide_cli.core.masking.source import DataRefs

        _build_mask(entry.name, DataRefs(data, model, corpus), config, top, name, force)


def _examples(entry) -> str:
    return "Examples:\n\n" + "\n".join(entry.examples)


def _check_top(top: int) -> None:
    """--top is checked before any work: a negative count is a typo, not "none"."""
    if top < 0:
        common.fail(f"--top must be at least 0; got {top}", exit_code=2)


def _emit_mask(ws: Workspace, art, reused: bool, top: int) -> None:
    """A built (or reused) mask: its summary and top documents, as JSON or a table, and how to inspect it."""
    from ifguide_cli.core.masking.render import MaskInspector

    top_docs = MaskInspector(ws, art.id).top(top)

    def render(console):
        common.render_artifact("mask", art, reused)(console)
        if top_docs:
            console.print(_ranked_table(top_docs))
        console.print(f"[dim]inspect: ifguide mask show {art.id} --rank 0   ·   ifguide mask browse {art.id}[/]")

    common.emit(common.artifact_payload(art, reused, config=art.config, top_documents=top_docs), render)


for _entry in (e for _, e in MASK_SOURCES.items() if e.command):  # one command per registered source
    (_scores_command if _entry.reads == "scores" else _data_command)(_entry)


def _ranked_table(rows):
    """The top documents as a rich table (columns chosen by core: `mask_render.ranked_table`)."""
    from rich.table import Table

    from ifguide_cli.core.masking.render import ranked_table

    headers, cells = ranked_table(rows)
    table = Table(title=f"top {len(rows)} documents", title_justify="left")
    for head in headers:
        table.add_column(head, justify="right")
    for row in cells:
        table.add_row(*row)
    return table


@mask_app.command("show", help="Print one document with its masked tokens highlighted (plain \\[\\[markers]] when piped).",
                  epilog="Examples:\n\n"
                         "ifguide mask show tiny-mask\n"
                         "ifguide mask show latest:mask --rank 3 --scores\n"
                         "ifguide mask show tiny-mask --doc 17 | less")
def show(
    mask: str = typer.Argument(..., metavar="MASK", help="Mask artifact (id, name, `latest`).", autocompletion=common.complete_artifacts("masks")),
    rank: Optional[int] = typer.Option(None, "--rank", "-r", help="The document at this rank (0 = most toxic) \\[default: 0]."),
    doc: Optional[int] = typer.Option(None, "--doc", "-i", help="The document with this index in the dataset."),
    scores: bool = typer.Option(False, "--scores", "-s", help="Background heat by influence score (and scores in --json)."),
    data: Optional[str] = typer.Option(None, "--data", "-d", help="Dataset artifact for a mask built from a plain score file."),
) -> None:
    from ifguide_cli.core.masking.render import MaskInspector, plain_text, rich_text

    insp = MaskInspector(common.workspace(), mask, data)
    index = insp.pick(rank, doc)
    with_scores = _heat(insp, scores, say=True)
    view = insp.view(index, with_scores=with_scores)

    def render(console):
        if console.is_terminal:
            console.print(f"[bold]{insp.header(view)}[/]", soft_wrap=True)
            console.print(rich_text(view, heat=with_scores), soft_wrap=True)
        else:
            import sys

            sys.stdout.write(insp.header(view) + "\n" + plain_text(view) + "\n")

    common.emit(insp.doc_json(view), render)


@mask_app.command("browse", help="Interactive browser: ranked documents, highlighted tokens, search, score heat.",
                  epilog="Keys: ↑/↓ or n/p move, g jumps to a rank, / searches (#ID for a token id), N searches again, "
                         "s toggles the score heat, q quits.\n\n"
                         "Example: ifguide mask browse tiny-mask")
def browse(
    mask: str = typer.Argument(..., metavar="MASK", help="Mask artifact (id, name, `latest`).", autocompletion=common.complete_artifacts("masks")),
    top: int = typer.Option(1000, "--top", help="Ranked documents listed."),
    data: Optional[str] = typer.Option(None, "--data", "-d", help="Dataset artifact for a mask built from a plain score file."),
) -> None:
    from ifguide_cli.cli.mask_browser import run_browser
    from ifguide_cli.core.masking.render import MaskInspector

    insp = MaskInspector(common.workspace(), mask, data)
    run_browser(insp, top=top)


@mask_app.command("export", help="Write the mask as data for another training stack (--out: parquet, jsonl or a "
                                 "`datasets` folder), or a self-contained HTML page of its top documents (--html).",
                  epilog="--out writes one record per dataset row: its source (file, line), text, masked character "
                         "spans, and input_ids, labels, penalty and loss_weight aligned to the labels exactly as "
                         "`ifguide train` uses them (the file's metadata states the alignment).\n\n"
                         "Examples:\n\n"
                         "ifguide mask export tiny-mask --out mask.parquet\n"
                         "ifguide mask export tiny-mask --format hf --out mask-ds --lambda 1.5\n"
                         "ifguide mask export tiny-mask --html mask.html --top 50")
@config_options(MaskExportConfig)
def export(
    config: MaskExportConfig,
    mask: str = typer.Argument(..., metavar="MASK", help="Mask artifact (id, name, `latest`).", autocompletion=common.complete_artifacts("masks")),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="Data export: a .parquet or .jsonl file, or a folder (hf)."),
    html: Optional[str] = typer.Option(None, "--html", help="HTML page of the top documents instead."),
    top: int = typer.Option(20, "--top", help="Number of top-ranked documents (--html)."),
    scores: bool = typer.Option(True, "--scores/--no-scores", help="Background heat by score, hover shows the value (--html)."),
    data: Optional[str] = typer.Option(None, "--data", "-d", help="Dataset artifact for a mask built from a plain score file."),
) -> None:
    if (out is None) == (html is None):
        common.fail("pass exactly one of --out PATH (data export) and --html FILE (a page to read)", exit_code=2)
    if html is not None:
        _export_html(mask, html, top, scores, data)
        return
    assert out is not None, "exactly one of --out and --html is given"
    from ifguide_cli.core.masking.export import export_mask

    result = export_mask(common.workspace(), mask, out, config, data_ref=data, reporter=common.reporter())

    def render(console):
        console.print(f"wrote {result['rows']:,} rows ({result['masked_tokens']:,} masked tokens) of mask "
                      f"{result['mask']} to {result['out']} ({result['format']})", soft_wrap=True)

    common.emit(result, render)


def _export_html(mask: str, html: str, top: int, scores: bool, data: Optional[str]) -> None:
    from ifguide_cli.core.masking.render import MaskInspector, html_page

    if top < 1:
        common.fail(f"--top must be at least 1; got {top}", exit_code=2)
    insp = MaskInspector(common.workspace(), mask, data)
    with_scores = _heat(insp, scores, say=False)
    views = insp.top_views(top, with_scores)
    target = common.write_user_file(html, html_page(insp, views, heat=with_scores))
    payload = {"mask": insp.art.id, "html": str(target), "documents": [{"rank": v.rank, "doc": v.doc} for v in views]}
    common.emit(payload, lambda console: console.print(f"wrote {len(views)} documents to {target}", soft_wrap=True))


@mask_app.command("transfer", help="Carry a mask over to another tokenizer: the same documents in the new "
                                   "tokenizer's rows (a dataset artifact) and the mask on them (a mask artifact).",
                  epilog="The masked tokens' characters are laid over the new tokens (--rule); the summary counts "
                         "masked characters kept, lost and added. Train or fine-tune a model of that tokenizer with "
                         "`--data NEW_DATASET --mask NEW_MASK` (both are named by --name).\n\n"
                         "Examples:\n\n"
                         "ifguide tokenizer train tiny --vocab-size 4096 --name bpe4k\n"
                         "ifguide mask transfer tiny-mask --tokenizer bpe4k --name bpe4k-mask\n"
                         "ifguide finetune MODEL --data bpe4k-mask --mask bpe4k-mask")
@config_options(MaskTransferConfig)
def transfer(
    config: MaskTransferConfig,
    mask: str = typer.Argument(..., metavar="MASK", help="Mask artifact (id, name, `latest`).", autocompletion=common.complete_artifacts("masks")),
    tokenizer: str = typer.Option(..., "--tokenizer", "-t", help="The new tokenizer: a tokenizer artifact, tiny, a "
                                                                  "local folder or a hub id.",
                                  autocompletion=common.complete_artifacts("tokenizers")),
    data: Optional[str] = typer.Option(None, "--data", "-d", help="Dataset artifact for a mask built from a plain score file."),
    name: NameOpt = None,
    force: ForceOpt = False,
) -> None:
    from ifguide_cli.core.masking.transfer import transfer_mask

    ws = common.workspace()
    data_res, mask_res = transfer_mask(ws, mask, tokenizer, config, data_ref=data, name=name, force=force,
                                       reporter=common.reporter())
    s = mask_res.artifact.summary
    if s["chars_not_in_rows"]:
        from ifguide_cli.core.notes import warn

        warn(f"{s['chars_not_in_rows']:,} masked characters lie beyond the new rows (documents cut at "
             f"{data_res.artifact.config['seq_len']} tokens of the new tokenizer); a larger --seq-len keeps them")
    rows = {"dataset": data_res.artifact.id + (" (reused)" if data_res.reused else ""),
            "masked characters": f"{s['masked_chars']:,}",
            "kept": f"{s['chars_kept']:,} ({s['kept_share']:.1%})", "lost": f"{s['chars_lost']:,} ({s['lost_share']:.1%})",
            "added": f"{s['chars_added']:,} ({s['added_share']:.1%})",
            "train with": f"--data {data_res.artifact.name or data_res.artifact.id} --mask {mask_res.artifact.name or mask_res.artifact.id}"}
    common.emit(common.artifact_payload(mask_res.artifact, mask_res.reused, config=mask_res.artifact.config,
                                        dataset=data_res.artifact.id),
                common.render_artifact("mask", mask_res.artifact, mask_res.reused, rows))


def _heat(insp, requested: bool, *, say: bool) -> bool:
    """Whether the score heat is shown: requested, and the mask was made from influence scores still stored. A
    classifier or word-list mask has no score tensor: with `say` (an explicit --scores) a note says so."""
    config = insp.art.config
    if "scores" in config or "scores_file" in config:
        return insp.wants_scores(requested)
    if requested and say:
        from ifguide_cli.core.notes import warn

        warn(f"mask {insp.art.id} was made by a {config.get('source', 'mask source')}, not from influence scores: "
             "there is no score heat to show")
    return False


def register(app: typer.Typer) -> None:
    app.add_typer(mask_app, name="mask")
