"""The registries: entries imported on first use, unknown names in one line, and every extension point generated
from them (the `mask` subcommands, an arm's `source:` choices, the presets)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.extensions import CLASSIFIER_BACKENDS, MASK_SOURCES, MODEL_FAMILIES, PRESETS
from ifguide_cli.core.lazy_registry import Registry

ROOT = Path(__file__).resolve().parents[2]


def test_an_entry_is_imported_on_first_use_only():
    code = ("import sys\nfrom ifguide_cli.core.extensions import MASK_SOURCES\n"
            "names = MASK_SOURCES.names()\nbefore = 'ifguide_cli.core.masking.source_config' in sys.modules\n"
            "entry = MASK_SOURCES.get('classifier')\n"
            "print(before, 'ifguide_cli.core.masking.source_config' in sys.modules, entry.name, 'numpy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.split() == ["False", "True", "classifier", "False"], out.stderr


def test_unknown_names_are_one_line_listing_the_known_ones():
    reg = Registry("widget", {"a": "json:dumps"})
    with pytest.raises(IfguideError, match="unknown widget 'b'") as caught:
        reg.get("b")
    assert caught.value.hint == "use one of a" and caught.value.exit_code == 2
    reg.register("b", "json:loads")
    assert reg.get("b")("[1]") == [1] and reg.names() == ("a", "b") and "b" in reg
    reg.unregister("b")
    assert "b" not in reg


def test_the_registry_modules_are_leaves_of_the_import_graph():
    for module in ("extensions", "lazy_registry"):
        tree = ast.parse((ROOT / "ifguide_cli" / "core" / f"{module}.py").read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        own = {m for m in imported if m.startswith("ifguide_cli")}
        assert own <= {"ifguide_cli.core.errors", "ifguide_cli.core.lazy_registry"}, (module, own)
    tree = ast.parse((ROOT / "ifguide_cli" / "core" / "registry.py").read_text())
    assert not [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
                and "ifguide_cli" in (getattr(n, "module", "") or "")], "core/registry.py imports the project"


def test_every_entry_loads():
    for registry in (MASK_SOURCES, CLASSIFIER_BACKENDS, MODEL_FAMILIES):
        assert all(obj is not None for _, obj in registry.items()), registry.what
    assert all(path.is_file() for _, path in PRESETS.items())
    assert all(name == entry.name for name, entry in MASK_SOURCES.items())


def test_the_mask_commands_and_arm_sources_are_the_registered_sources():
    from ifguide_cli.cli import mask
    from ifguide_cli.core.pipeline.spec import ArmSpec, MaskSourceName

    holder = typer.Typer()
    mask.register(holder)
    commands = set(typer.main.get_group(holder).commands["mask"].commands)
    assert {e.command for _, e in MASK_SOURCES.items() if e.command} <= commands and "select" in commands
    assert ArmSpec.__dataclass_fields__["source"].type == "MaskSourceName"
    assert MaskSourceName.__args__ == MASK_SOURCES.names()


def test_presets_are_found_and_offered_from_the_registry(tmp_path):
    from clikit import assert_one_line_error, invoke_cli

    from ifguide_cli.cli.run import _presets
    from ifguide_cli.core.pipeline.spec import preset_path

    assert _presets("pa") == ["paper", "paper-finetune"] and preset_path("tiny") == PRESETS.get("tiny")
    assert_one_line_error(invoke_cli(tmp_path, "run", "--preset", "huge"), "unknown preset 'huge'",
                          "tiny, tiny-compare, paper, paper-finetune or a YAML file", code=2)
