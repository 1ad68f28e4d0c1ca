"""A name is one artifact's (per kind): the name given to an identical, reused artifact is kept, and a name given
again moves to the new holder with a note, so `show NAME` never silently picks the newest of several."""

from __future__ import annotations

from clikit import invoke_cli

from ifguide_cli.core import notes
from ifguide_cli.core.store.workspace import Workspace


def _make(ws, key, name=None):
    return ws.create("masks", {"key": key}, [], lambda ctx: {"key": key}, name=name)


def test_a_reused_artifact_takes_the_name_asked_for(tmp_path):
    ws = Workspace(tmp_path)
    first, _ = _make(ws, 1)
    again, reused = _make(ws, 1, name="mine")
    assert reused and again.id == first.id and again.name == "mine" and ws.resolve("mine").id == first.id


def test_a_name_given_again_moves_with_a_note(tmp_path):
    ws = Workspace(tmp_path)
    old, _ = _make(ws, 1, name="tox")
    new, _ = _make(ws, 2, name="tox")
    assert ws.resolve("tox").id == new.id and ws.by_id(old.id).name is None
    assert any("'tox' now means mask" in n and old.id in n for n in notes.collected())
    _make(ws, 1, name="tox")  # the first one again, reused under the name: the name follows
    assert ws.resolve("tox").id == old.id and ws.by_id(new.id).name is None
    assert [a.name for a in ws.list("masks")].count("tox") == 1


def test_a_mistyped_mask_subcommand_says_did_you_mean(tmp_path):
    result = invoke_cli(tmp_path, "mask", "shwo", "x")
    assert result.exit_code == 2 and "Did you mean 'show'?" in result.stderr
