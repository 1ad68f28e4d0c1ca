"""The YAML files users write (pipelines, training configs, families) are loaded with limits: an alias bomb, deep
nesting, a self-reference, a Python tag or a non-mapping is one line naming the file, at once."""

from __future__ import annotations

import time

import pytest

from ifguide_cli.core.errors import IfguideError

BOMB = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)) + "model: *i\n"


YAMLS = {"bomb.yaml": (BOMB, "expands to more than"), "deep.yaml": ("model: " + "[" * 5000 + "]" * 5000, "nested"),
         "self.yaml": ("a: &x [1, *x]\n", "refers to itself"), "tag.yaml": ("m: !!python/object/apply:os.system [ls]\n",
                                                                           "not valid YAML"),
         "list.yaml": ("- 1\n", "must be a mapping")}


@pytest.mark.parametrize("name", sorted(YAMLS))
def test_yaml_files_are_loaded_with_limits(tmp_path, name):
    from ifguide_cli.core.yamlfile import load_yaml_mapping

    text, needle = YAMLS[name]
    (tmp_path / name).write_text(text)
    started = time.monotonic()
    with pytest.raises(IfguideError, match=needle) as err:
        load_yaml_mapping(tmp_path / name)
    assert name in err.value.one_line() and len(err.value.one_line()) < 300 and time.monotonic() - started < 5


def test_yaml_binary_and_fine_anchors(tmp_path):
    from ifguide_cli.core.yamlfile import load_yaml_mapping

    (tmp_path / "bin.yaml").write_bytes(b"a: \xff\xfe\n")
    with pytest.raises(IfguideError, match="not UTF-8"):
        load_yaml_mapping(tmp_path / "bin.yaml")
    (tmp_path / "ok.yaml").write_text("base: &b {lr: 0.1}\nrun: *b\n")
    assert load_yaml_mapping(tmp_path / "ok.yaml") == {"base": {"lr": 0.1}, "run": {"lr": 0.1}}
