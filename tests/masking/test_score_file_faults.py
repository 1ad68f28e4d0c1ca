"""Score files that cannot be used: a truncated .safetensors is named (not an mmap crash), non-finite scores name
the file."""

from __future__ import annotations

import os

import pytest
from clikit import assert_one_line_error

from ifguide_cli.core.errors import IfguideError


def test_a_truncated_score_file_is_named_not_an_mmap_crash(tmp_path):
    import numpy as np

    from ifguide_cli.core.masking import load_scores, save_safetensors

    path = tmp_path / "s.safetensors"
    save_safetensors(path, {"scores": np.ones((64, 64), dtype=np.float32)})
    os.truncate(path, path.stat().st_size // 2)
    with pytest.raises(IfguideError, match=r"s\.safetensors: tensor 'scores' is truncated"):
        load_scores(path)


def test_non_finite_scores_of_a_file_name_the_file(tmp_path, cli, workspace_dir):
    import numpy as np

    np.save(tmp_path / "nan.npy", np.full((4, 8), np.nan, dtype=np.float32))
    assert_one_line_error(cli("mask", tmp_path / "nan.npy"), "nan.npy", "non-finite")
    # the values are read after the mask file is made: the refused build leaves no staging folder behind
    assert not list((workspace_dir / ".staging").glob("masks-*"))
