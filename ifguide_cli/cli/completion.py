"""Shell completion of values: artifact ids and names from the workspace, registry names, artifact kinds.

The shell runs the whole program on every <TAB>, so this path stays light: the workspace is read through
`core.workspace` (json manifests, no torch or numpy), and the registry is a table of dataclasses. The
workspace is the one the command line names (`--workspace`, else IFGUIDE_HOME, else the default). A
completion never fails: whatever goes wrong, it offers nothing and the shell falls back to file names.
"""

from __future__ import annotations

from collections.abc import Callable

import typer

Completer = Callable[[typer.Context, str], list[tuple[str, str]]]
REGISTRY_OF = {"checkpoints": "models", "datasets": "datasets", "classifiers": "classifiers"}  # names usable in place


def artifacts(*kinds: str, registry: str | None = None) -> Completer:
    """Complete the ids and names of the workspace's artifacts of `kinds` (every kind without), newest first,
    after the names of one registry table (`models`, `datasets`, `classifiers`)."""

    def complete(ctx: typer.Context, incomplete: str) -> list[tuple[str, str]]:
        offers = registry_names(registry) + workspace_refs(_workspace_option(ctx), kinds)
        seen: set[str] = set()
        found = []
        for value, help_text in offers:
            if value.startswith(incomplete) and value not in seen:
                seen.add(value)
                found.append((value, help_text))
        return found

    return complete


def kinds(ctx: typer.Context, incomplete: str) -> list[tuple[str, str]]:
    """The artifact kinds (`workspace ls KIND`)."""
    from ifguide_cli.core.store.artifact_files import KINDS

    return [(kind, "artifact kind") for kind in KINDS if kind.startswith(incomplete)]


def registry_names(table: str | None) -> list[tuple[str, str]]:
    if table is None:
        return []
    from ifguide_cli.core.registry import TABLES

    return [(name, f"registry {table.rstrip('s')}") for name in TABLES[table]]


def workspace_refs(root: str | None, kinds: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """(id, what it is) and (name, what it is) of the finished artifacts, newest first; [] when unreadable."""
    from ifguide_cli.core.store.workspace import Workspace

    try:
        ws = Workspace(root)
        arts = [a for kind in kinds for a in ws.list(kind)] if kinds else ws.list()
    except Exception:  # a completion must never print a traceback into the user's command line
        return []
    arts.sort(key=lambda a: a.created, reverse=True)
    offers = []
    for art in arts:
        what = f"{art.kind.rstrip('s')} {art.created[:16].replace('T', ' ')}"
        offers.append((art.id, f"{what} {art.name}" if art.name else what))
        if art.name:
            offers.append((art.name, f"{what} {art.id}"))
    return offers


def _workspace_option(ctx: typer.Context) -> str | None:
    """The --workspace given on the command line being completed (IFGUIDE_HOME is read by the option too)."""
    return ctx.find_root().params.get("workspace")
