"""`ifguide workspace ls|show|path|rm`: what is stored, with lineage."""

from __future__ import annotations

from typing import Optional

import typer

from . import common

ws_app = typer.Typer(help="List, inspect and remove stored artifacts.", no_args_is_help=True)


@ws_app.command("path", help="Print the workspace folder.")
@common.handles_errors
def path() -> None:
    ws = common.workspace()
    common.emit({"path": str(ws.root)}, lambda console: console.print(str(ws.root), soft_wrap=True))


@ws_app.command("ls", help="List artifacts (optionally of one kind), oldest first.")
@common.handles_errors
def ls(kind: Optional[str] = typer.Argument(None, help="datasets, factors, scores, masks, checkpoints, evals, classifiers, reports")) -> None:
    ws = common.workspace()
    rows = [art.listing() for art in ws.list(kind)]

    def render(console):
        from rich.table import Table

        table = Table(title=f"workspace {ws.root}", title_justify="left")
        table.add_column("id", no_wrap=True, min_width=12)  # ids are copied from here: never truncate them
        table.add_column("kind", no_wrap=True)
        table.add_column("name")
        table.add_column("created", no_wrap=True)
        table.add_column("parents", overflow="fold")
        table.add_column("seconds", justify="right")
        for r in rows:
            table.add_row(r["id"], r["kind"], r["name"] or "", r["created"][5:19].replace("T", " "),
                          " ".join(r["parents"]), "" if r["seconds"] is None else f"{r['seconds']:.1f}")
        console.print(table if rows else f"no artifacts in {ws.root}")

    common.emit({"workspace": str(ws.root), "artifacts": rows}, render)


@ws_app.command("show", help="Print an artifact's manifest and its lineage tree.")
@common.handles_errors
def show(ref: str = typer.Argument(..., help="id, unique id prefix, name, or `latest`")) -> None:
    ws = common.workspace()
    art = ws.resolve(ref)
    lineage = ws.lineage(art)
    damaged = ws.verify(art)

    def render(console):
        from rich.json import JSON
        from rich.tree import Tree

        console.print(JSON.from_data(art.manifest, default=str))
        tree = Tree(f"[bold]{art.kind.rstrip('s')}[/] {art.id} {art.name or ''}")

        def add(node, branch):
            for parent in node["parents"]:
                add(parent, branch.add(f"[bold]{parent['kind'].rstrip('s')}[/] {parent['id']} {parent.get('name') or ''}"))

        add(lineage, tree)
        console.print(tree)
        if damaged:
            console.print(f"[bold red]damaged files:[/] {', '.join(damaged)}")

    common.emit({"manifest": art.manifest, "lineage": lineage, "damaged_files": damaged, "path": str(art.path)}, render)


@ws_app.command("rm", help="Remove an artifact (and, with --recursive, everything derived from it).")
@common.handles_errors
def rm(
    ref: str = typer.Argument(..., help="id, unique id prefix, name, or `latest`"),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Also remove artifacts that depend on it."),
) -> None:
    ws = common.workspace()
    removed = ws.remove(ws.resolve(ref), recursive=recursive)
    ids = [{"id": a.id, "kind": a.kind} for a in removed]
    common.emit({"removed": ids}, lambda console: console.print("removed " + ", ".join(f"{a.kind.rstrip('s')} {a.id}" for a in removed)))


def register(app: typer.Typer) -> None:
    app.add_typer(ws_app, name="workspace")
