"""`ifguide env`: versions, devices, workspace, caches, and what is available offline (like `hf env`)."""

from __future__ import annotations

import typer

from ifguide_cli.cli import common
from ifguide_cli.cli.commands import summary

_EPILOG = ("Nothing here uses the network: a registry entry is `offline: yes` when its files are in the package, the "
           "workspace (`eval add-classifier`, `rad download`) or the local Hugging Face / torch hub caches; `no` names "
           "what is missing. Paste the output into bug reports.\n\n"
           "Examples:\n\n"
           "ifguide env\n"
           "ifguide env --json | jq '.models[] | select(.offline)'")


def register(app: typer.Typer) -> None:
    @app.command("env", help=summary("env"), epilog=_EPILOG)
    def env() -> None:
        from ifguide_cli.core.environment import environment

        report = environment(common.workspace())
        common.emit(report, _render(report))


def _render(report: dict):
    def render(console):
        from rich.markup import escape
        from rich.table import Table

        console.print(common.kv_table("versions", {k: v or "not installed" for k, v in report["versions"].items()}))
        console.print(common.kv_table("devices", _device_rows(report["devices"])))
        console.print(common.kv_table("workspace", _workspace_rows(report["workspace"])))
        console.print(common.kv_table("caches", {k: "unset" if v is None else v for k, v in report["caches"].items()}))
        for key in ("models", "datasets", "classifiers"):
            table = Table(title=f"{key} (offline)", title_justify="left")
            table.add_column("name", no_wrap=True)
            table.add_column("offline", no_wrap=True)
            table.add_column("where / missing", overflow="fold")
            for row in report[key]:
                table.add_row(row["name"], "yes" if row["offline"] else "[red]no[/]",
                              escape(row["where"] if row["offline"] else f"missing: {row['missing']}"))
            console.print(table)

    return render


def _device_rows(d: dict) -> dict:
    rows = {"cpus": d["cpu_count"], "cuda": "yes" if d.get("cuda") else "no"}
    if d.get("torch_cuda"):
        rows["torch built for CUDA"] = d["torch_cuda"]
    for i, name in enumerate(d.get("gpus") or []):
        rows[f"cuda:{i}"] = name
    if d.get("cuda"):
        rows["bf16"] = "yes" if d.get("bf16") else "no"
    if d.get("cuda_visible_devices") is not None:
        rows["CUDA_VISIBLE_DEVICES"] = d["cuda_visible_devices"]
    return rows


def _workspace_rows(w: dict) -> dict:
    rows = {"path": w["path"] + ("" if w["exists"] else " (not created yet)"), "size": _bytes(w["bytes"])}
    rows.update({kind: n for kind, n in w["artifacts"].items() if n})
    if w["unfinished"]:
        rows["unfinished stages"] = w["unfinished"]
    return rows


def _bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"
