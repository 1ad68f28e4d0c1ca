"""`ifguide workspace ls|show|path|rm|doctor`: what is stored, with lineage, and what is wrong with it."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ifguide_cli.cli import common
from ifguide_cli.cli.commands import summary

ws_app = typer.Typer(help=summary("workspace", "An artifact is named by its id, a unique id prefix (4+ characters), its "
                                               "--name, `latest` or `latest:KIND`; the shell completes ids and names."),
                     no_args_is_help=True)

RefArg = Annotated[str, typer.Argument(metavar="ARTIFACT", help="id, unique id prefix, name, `latest` or `latest:KIND`.",
                                       autocompletion=common.complete_artifacts())]


@ws_app.command("path", help="Print the workspace folder.", epilog="Example: cd \"$(ifguide workspace path)\"")
def path() -> None:
    ws = common.workspace()
    common.emit({"path": str(ws.root)}, lambda console: console.print(str(ws.root), soft_wrap=True))


@ws_app.command("ls", help="List artifacts (optionally of one kind), oldest first.",
                epilog="Piped or with --no-truncate, the table has no borders and nothing is cut.\n\n"
                       "Examples:\n\n"
                       "ifguide workspace ls\n"
                       "ifguide workspace ls masks\n"
                       "ifguide workspace ls checkpoints | grep baseline | cut -c1-12\n"
                       "ifguide workspace ls --json | jq -r '.artifacts[].id'")
def ls(kind: Optional[str] = typer.Argument(None, metavar="KIND", autocompletion=common.complete_kinds,
                                            help="datasets, tokenizers, factors, scores, masks, checkpoints, evals, "
                                                 "classifiers or reports (singular works too).")) -> None:
    ws = common.workspace()
    rows = [art.listing() for art in ws.list(kind)]
    damaged = [d.listing() for d in ws.damaged(kind)]

    def render(console):
        from rich import box
        from rich.markup import escape
        from rich.table import Table

        # no vertical rules: room for the columns that are copied from here (ids whole, names folded, never cut)
        table = Table(title=f"workspace {escape(str(ws.root))}", title_justify="left", box=box.SIMPLE_HEAD,
                      show_edge=False, pad_edge=False, collapse_padding=True)
        table.add_column("id", no_wrap=True, min_width=12)
        table.add_column("kind", overflow="fold")
        table.add_column("name", overflow="fold")
        table.add_column("created", no_wrap=True)
        table.add_column("parents", overflow="fold")
        table.add_column("seconds", justify="right")
        for r in rows:
            table.add_row(r["id"], r["kind"], safe(r["name"] or ""), r["created"][5:16].replace("T", " "),
                          " ".join(r["parents"]), "" if r["seconds"] is None else f"{r['seconds']:.1f}")
        console.print(table if rows else f"no artifacts in {safe(str(ws.root))}")
        _render_damaged(console, damaged)

    common.emit({"workspace": str(ws.root), "artifacts": rows, "damaged": damaged}, render)


def safe(text: str) -> str:
    """A user string (an artifact name, a path) as rich prints it literally: markup escaped, control characters gone."""
    from rich.markup import escape

    return escape("".join(c if c.isprintable() else "\N{REPLACEMENT CHARACTER}" for c in text))


def _render_damaged(console, damaged: list[dict]) -> None:
    """Damaged artifacts after the table: what and why, and where to go from there."""
    for d in damaged:
        console.print(f"[bold red]damaged[/] {d['kind'].rstrip('s')} {d['id']}: {safe(d['reason'])}", soft_wrap=True)
    if damaged:
        console.print("[dim]every other artifact is usable; `ifguide workspace doctor` explains and repairs[/]")


@ws_app.command("show", help="Print an artifact's summary (the whole manifest with --raw or --json) and its lineage tree.",
                epilog="Examples:\n\n"
                       "ifguide workspace show latest:mask\n"
                       "ifguide workspace show latest:mask --raw\n"
                       "ifguide workspace show 3f2a --json | jq .manifest.summary")
def show(ref: RefArg,
         raw: bool = typer.Option(False, "--raw", help="Print the whole manifest (config, summary, files) as JSON.")) -> None:
    ws = common.workspace()
    art = ws.resolve(ref)
    lineage = ws.lineage(art)
    damaged = ws.verify(art)

    def render(console):
        from rich.json import JSON
        from rich.tree import Tree

        if raw:
            console.print(JSON.from_data(art.manifest, default=str), soft_wrap=True)  # hashes and paths stay whole
        else:
            console.print(_overview(art))
        tree = Tree(f"[bold]{art.kind.rstrip('s')}[/] {art.id} {safe(art.name or '')}")

        def add(node, branch):
            for parent in node["parents"]:
                add(parent, branch.add(f"[bold]{parent['kind'].rstrip('s')}[/] {parent['id']} {safe(parent.get('name') or '')}"))

        add(lineage, tree)
        console.print(tree)
        if damaged:
            console.print(f"[bold red]damaged files:[/] {', '.join(damaged)}")

    common.emit({"manifest": art.manifest, "lineage": lineage, "damaged_files": damaged, "path": str(art.path)}, render)


_SHOWN = 16  # config and summary entries shown by `workspace show` (all with --raw)


def _brief(value) -> str:
    """A value on one short line: small flat mappings inline, larger structures by their size."""
    if isinstance(value, dict):
        flat = all(not isinstance(v, (dict, list)) for v in value.values())
        text = ", ".join(f"{k}={v}" for k, v in value.items()) if flat and len(value) <= 4 else f"({len(value)} entries)"
    elif isinstance(value, list):
        text = ", ".join(map(str, value)) if len(value) <= 4 and all(not isinstance(v, (dict, list)) for v in value) \
            else f"({len(value)} items)"
    else:
        text = str(value)
    return text if len(text) <= 100 else text[:99] + "…"


def _overview(art):
    """What a reader looks for first: kind, id, name, when, where, then the config and summary entries, briefly."""
    from rich.table import Table

    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in (("kind", art.kind.rstrip("s")), ("id", art.id), ("name", art.name or "—"),
                       ("created", art.created), ("path", str(art.path))):
        table.add_row(key, safe(str(value)))
    for title, entries in (("config", art.config), ("summary", art.summary)):
        items = [(k, v) for k, v in entries.items() if v is not None]
        for k, v in items[:_SHOWN]:
            table.add_row(f"{title}.{k}", safe(_brief(v)))
        if len(items) > _SHOWN:
            table.add_row(f"{title}", f"[dim]… {len(items) - _SHOWN} more (--raw)[/]")
    return table


@ws_app.command("rm", help="Remove an artifact (and, with --recursive, everything derived from it).",
                epilog="Examples:\n\n"
                       "ifguide workspace rm my-mask\n"
                       "ifguide workspace rm 3f2a9c1b0d4e --recursive")
def rm(
    ref: RefArg,
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Also remove artifacts that depend on it."),
) -> None:
    ws = common.workspace()

    def announce(doomed) -> None:  # every artifact that goes, named before anything is deleted
        common.info("removing " + _listed(doomed))

    removed = ws.remove(ws.find_damaged(ref) or ws.resolve(ref), recursive=recursive, before=announce)
    ids = [{"id": a.id, "kind": a.kind} for a in removed]
    common.emit({"removed": ids}, lambda console: console.print("removed " + _listed(removed)))


def _listed(items) -> str:
    return ", ".join(f"{a.kind.rstrip('s')} {a.id}" for a in items)


@ws_app.command("doctor", help="Check the workspace: explain what is wrong, repair what can be repaired (an interrupted "
                "rebuild, leftovers, stale locks) and remove what you confirm (damaged artifacts, unfinished builds).",
                epilog="Examples:\n\n"
                       "ifguide workspace doctor\n"
                       "ifguide workspace doctor --verify          # full sha256 of every file\n"
                       "ifguide workspace doctor --yes --json      # repair and remove without asking (scripts, CI)")
def doctor(
    verify: bool = typer.Option(False, "--verify", help="Compare every file with its full sha256 (slow for large artifacts; "
                                "by default: sizes and a quick checksum)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Remove damaged artifacts and unfinished builds without asking."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Also remove the (intact) artifacts made from a "
                                   "damaged one it removes; by default they are kept (their lineage incomplete)."),
) -> None:
    import sys

    from ifguide_cli.core.store.doctor import examine, repair

    ws = common.workspace()
    ask = not yes and not common.settings.json and sys.stdin.isatty()

    def confirm(finding) -> bool:
        what = ", ".join(finding.removes) or safe(finding.path)
        return yes or (ask and typer.confirm(f"remove {what}? {safe(finding.detail)}", default=False, err=True))

    findings = repair(ws, examine(ws, full=verify, recursive=recursive), confirm)
    kept = [f for f in findings if f.outcome == "kept" or f.outcome.startswith("failed")]
    payload = {"workspace": str(ws.root), "findings": [f.to_dict() for f in findings], "unresolved": len(kept)}
    common.emit(payload, lambda console: _render_doctor(console, ws.root, findings, kept))


def _render_doctor(console, root, findings, kept) -> None:
    for f in findings:
        console.print(f"[bold]{f.outcome:9}[/] {f.problem:14} {safe(f.path)}: {safe(f.detail)}", soft_wrap=True)
        if f.outcome == "removed" and len(f.removes) > 1:
            console.print(f"{'':9} {'':14} removed {', '.join(f.removes)}", soft_wrap=True)
    if not findings:
        console.print(f"workspace {safe(str(root))}: no problems found", soft_wrap=True)
    elif kept:
        console.print(f"{len(kept)} problem(s) left: rerun with --yes to remove what was kept", soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.add_typer(ws_app, name="workspace")
