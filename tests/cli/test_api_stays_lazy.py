"""`import ifguide_cli as ifg` gives the library, and neither it nor the CLI's import loads torch or the API."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import sys
import ifguide_cli as ifg
import ifguide_cli.cli.app
assert "torch" not in sys.modules and "ifguide_cli.api" not in sys.modules, sorted(m for m in sys.modules if "torch" in m)[:5]
assert {"load_mask", "penalty_loss", "token_weights", "PenaltyTrainer", "LoadedMask"} <= set(dir(ifg))
assert callable(ifg.load_mask) and "ifguide_cli.api" in sys.modules
"""


def test_the_api_loads_only_when_used():
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


def test_an_unknown_name_is_an_attribute_error():
    import pytest

    import ifguide_cli

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        ifguide_cli.nope  # noqa: B018
