"""Issue 26: values that could hang the tool or exhaust the machine are one line, wherever they arrive — a `--set`
value is read with a YAML file's limits, numbers too long to convert and duplicate keys are refused, generation
sizes are checked before any work."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.evaluation.config import GenerationConfig
from ifguide_cli.core.evaluation.stages import check_generation_fits
from ifguide_cli.core.models import resolve_model
from ifguide_cli.core.pipeline.spec import apply_overrides, parse_value
from ifguide_cli.core.yamlfile import load_yaml_mapping

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from fault_sweep import ALIAS_BOMB  # the sweep's own bomb: 9**9 strings once expanded)


def test_an_alias_bomb_in_a_set_value_is_refused_at_once():
    start = time.monotonic()
    with pytest.raises(IfguideError, match=r"--set value .* expands to more than"):
        apply_overrides({}, [f"mask.threshold={ALIAS_BOMB}"])
    assert time.monotonic() - start < 5


@pytest.mark.parametrize("text", ["1" * 5000, "[" + "1" * 5000 + "]"])
def test_an_integer_too_long_to_convert_is_one_line(text, tmp_path):
    with pytest.raises(IfguideError, match="number that cannot be read"):
        parse_value(text)
    (tmp_path / "c.yaml").write_text(f"lr: {text}\n")
    with pytest.raises(IfguideError, match=r"c\.yaml holds a number"):
        load_yaml_mapping(tmp_path / "c.yaml")


def test_a_key_written_twice_is_refused_not_silently_replaced(tmp_path):
    (tmp_path / "p.yaml").write_text("model: tiny\nmask: {threshold: 0.9}\nmodel: pythia-160m\n")
    with pytest.raises(IfguideError, match=r"p\.yaml has the key 'model' twice \(line 3\)"):
        load_yaml_mapping(tmp_path / "p.yaml", "pipeline file")
    with pytest.raises(IfguideError, match="twice"):
        parse_value("{a: 1, a: 2}")


def test_ordinary_set_values_still_parse():
    assert parse_value("2") == 2 and parse_value("1e-4") == 1e-4 and parse_value("[a, b]") == ["a", "b"]
    assert parse_value("") is None


def test_absurd_sample_counts_are_refused():
    with pytest.raises(IfguideError, match="--samples"):
        GenerationConfig(samples=2**62)


def test_max_new_tokens_is_checked_against_the_models_context():
    tiny = resolve_model("tiny")  # a 128-token context
    check_generation_fits(tiny, 127)
    with pytest.raises(IfguideError, match=r"--max-new-tokens 4611686018427387904 does not fit .* context of 128") as err:
        check_generation_fits(tiny, 2**62)
    assert err.value.exit_code == 2 and "127" in err.value.hint
