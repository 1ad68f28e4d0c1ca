"""`ifguide mask`: toxic-token selection (paper Alg. 1) and inspection (show, browse, export)."""

from __future__ import annotations

from typing import Optional

import typer
from typer.core import TyperGroup

from . import common

_SUBCOMMANDS = ("select", "show", "browse", "export")


class _MaskGroup(TyperGroup):
    """`ifguide mask SCORES ...` means `ifguide mask select SCORES ...`; `show`, `browse`, `export` are subcommands."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["select", *args]
        return super().parse_args(ctx, args)


mask_app = typer.Typer(
    cls=_MaskGroup,
    no_args_is_help=True,
    help="Select toxic tokens from influence scores (paper Alg. 1), and inspect the mask.\n\n"
         "`ifguide mask SCORES` is short for `ifguide mask select SCORES`.",
)


@mask_app.command("select", help="Build a mask artifact from a scores artifact or a score file "
                                 "(kronfluence pairwise_scores.safetensors, .safetensors or .npy).")
@common.handles_errors
def select(
    scores: str = typer.Argument(..., metavar="SCORES", help="Scores artifact (id, name, `latest`) or a .safetensors/.npy score file."),
    threshold: float = typer.Option(0.99, "--threshold", "-p", help="Quantile p of all token scores: tokens scoring strictly above it count."),
    window: int = typer.Option(1, "--window", "-w", help="Context tokens marked on each side of a selected token."),
    max_tokens: int = typer.Option(20_000_000, "--max-tokens", "-L", help="Token budget: the walk stops before exceeding it."),
    data: Optional[str] = typer.Option(None, "--data", "-d", help="Dataset artifact the score file indexes (a scores artifact knows its own)."),
    key: Optional[str] = typer.Option(None, "--key", help="Tensor name in a .safetensors file [default: scores, all_modules, or the only one]."),
    all_positions: bool = typer.Option(False, "--all-positions", help="Count padded positions too, like the reference script "
                                                                     "(default: only positions of the attention mask)."),
    top: int = typer.Option(10, "--top", help="Documents listed in the summary."),
    name: Optional[str] = typer.Option(None, "--name", help="A name for the mask artifact."),
    force: bool = typer.Option(False, "--force", help="Recompute even if an identical mask exists."),
) -> None:
    from ..core.mask_render import MaskInspector
    from ..core.masking import MaskConfig, create_mask_artifact

    config = MaskConfig(threshold, window, max_tokens)
    ws = common.workspace()
    art, reused = create_mask_artifact(ws, scores, config, data_ref=data, key=key, all_positions=all_positions,
                                       name=name, force=force, reporter=common.reporter())
    inspector = MaskInspector(ws, art.id)
    top_docs = inspector.top(max(0, top))

    def render(console):
        from rich.table import Table

        common.render_artifact("mask", art, reused)(console)
        if top_docs:
            table = Table(title=f"top {len(top_docs)} documents", title_justify="left")
            for col in ("rank", "doc", "masked", "above τ", "strength", "h") + (("planted",) if "planted_toxic" in top_docs[0] else ()):
                table.add_column(col, justify="right")
            for r in top_docs:
                row = [str(r["rank"]), str(r["doc"]), str(r["masked_tokens"]), str(r.get("tokens_above_threshold", "")),
                       f"{r.get('strength', float('nan')):.4g}", f"{r.get('harmonic', float('nan')):.3f}"]
                if "planted_toxic" in r:
                    row.append("yes" if r["planted_toxic"] else "")
                table.add_row(*row)
            console.print(table)
        console.print(f"[dim]inspect: ifguide mask show {art.id} --rank 0   ·   ifguide mask browse {art.id}[/]")

    common.emit(common.artifact_payload(art, reused, config=art.config, top_documents=top_docs), render)


@mask_app.command("show", help="Print one document with its masked tokens highlighted (plain \\[\\[markers]] when piped).")
@common.handles_errors
def show(
    mask: str = typer.Argument(..., metavar="MASK", help="Mask artifact (id, name, `latest`)."),
    rank: Optional[int] = typer.Option(None, "--rank", "-r", help="The document at this rank (0 = most toxic) [default: 0]."),
    doc: Optional[int] = typer.Option(None, "--doc", "-i", help="The document with this index in the dataset."),
    scores: bool = typer.Option(False, "--scores", "-s", help="Background heat by influence score (and scores in --json)."),
    data: Optional[str] = typer.Option(None, "--data", "-d", help="Dataset artifact for a mask built from a plain score file."),
) -> None:
    from ..core.mask_render import MaskInspector, plain_text, rich_text

    if rank is not None and doc is not None:
        common.fail("give --rank or --doc, not both", exit_code=2)
    insp = MaskInspector(common.workspace(), mask, data)
    index = insp.check_doc(doc) if doc is not None else insp.check_rank(rank or 0)
    view = insp.view(index, with_scores=scores)
    if scores and view.scores is None:
        common.info("[yellow]note:[/] the scores of this mask are no longer available; showing the mask only")
    payload = {"mask": insp.art.id, "dataset": insp.dataset.id if insp.dataset else None,
               "threshold_value": insp.summary.get("threshold_value"), **view.to_json()}

    def render(console):
        if console.is_terminal:
            console.print(f"[bold]{insp.header(view)}[/]", soft_wrap=True)
            console.print(rich_text(view, heat=scores), soft_wrap=True)
        else:
            import sys

            sys.stdout.write(insp.header(view) + "\n" + plain_text(view) + "\n")

    common.emit(payload, render)


@mask_app.command("browse", help="Interactive browser: ranked documents, highlighted tokens, search, score heat.")
@common.handles_errors
def browse(
    mask: str = typer.Argument(..., metavar="MASK", help="Mask artifact (id, name, `latest`)."),
    top: int = typer.Option(1000, "--top", help="Ranked documents listed."),
    data: Optional[str] = typer.Option(None, "--data", "-d", help="Dataset artifact for a mask built from a plain score file."),
) -> None:
    from ..core.mask_render import MaskInspector
    from .mask_browser import run_browser

    insp = MaskInspector(common.workspace(), mask, data)
    run_browser(insp, top=top)


@mask_app.command("export", help="Write a self-contained HTML page of the top documents with highlighted tokens.")
@common.handles_errors
def export(
    mask: str = typer.Argument(..., metavar="MASK", help="Mask artifact (id, name, `latest`)."),
    html: str = typer.Option(..., "--html", help="Output file."),
    top: int = typer.Option(20, "--top", help="Number of top-ranked documents."),
    scores: bool = typer.Option(True, "--scores/--no-scores", help="Background heat by score (hover shows the value)."),
    data: Optional[str] = typer.Option(None, "--data", "-d", help="Dataset artifact for a mask built from a plain score file."),
) -> None:
    from ..core.mask_render import MaskInspector, html_page

    if top < 1:
        common.fail(f"--top must be at least 1; got {top}", exit_code=2)
    insp = MaskInspector(common.workspace(), mask, data)
    views = [insp.view(int(insp.ranking[r]), with_scores=scores) for r in range(min(top, insp.docs))]
    target = common.write_user_file(html, html_page(insp, views, heat=scores and insp.scores is not None))
    payload = {"mask": insp.art.id, "html": str(target), "documents": [{"rank": v.rank, "doc": v.doc} for v in views]}
    common.emit(payload, lambda console: console.print(f"wrote {len(views)} documents to {target}", soft_wrap=True))


def register(app: typer.Typer) -> None:
    app.add_typer(mask_app, name="mask")
