"""ifguide never runs code shipped with a model: a local folder with `auto_map` is refused without a prompt, and
every hub load passes trust_remote_code=False."""

from __future__ import annotations

import json

import pytest
from clikit import assert_one_line_error


def test_a_model_folder_that_needs_its_own_code_is_refused_without_a_prompt(tmp_path, cli):
    from ifguide_cli.core.models import resolve_model

    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "config.json").write_text(json.dumps({"model_type": "evil", "auto_map": {"AutoModelForCausalLM": "evil.M"}}))
    (evil / "evil.py").write_text(f"open({str(tmp_path / 'pwned')!r}, 'w')\n")
    assert_one_line_error(cli("finetune", evil, "--data", "tiny", "--max-steps", "1", input="y\n"), "evil", "auto_map")
    assert not (tmp_path / "pwned").exists()
    (evil / "config.json").write_text(json.dumps({"model_type": "gpt_neox", "auto_map": {"AutoConfig": "evil.C"}}))
    assert resolve_model(str(evil)).source == "local"  # a built-in architecture loads without the folder's code


def test_hub_loads_never_ask_to_run_a_models_own_code(monkeypatch):
    """A hub model with its own code must fail in one line, not ask `run the custom code? [y/N]` on the terminal:
    every hub load passes trust_remote_code=False, so transformers raises instead of prompting."""
    import transformers

    from ifguide_cli.core.errors import IfguideError
    from ifguide_cli.core.models import ModelRef, load_config

    seen = []

    def refuse(name, **kwargs):
        seen.append(kwargs.get("trust_remote_code"))
        raise ValueError(f"The repository {name} contains custom code which must be executed to correctly load the model.")

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", refuse)
    with pytest.raises(IfguideError, match="needs its own Python code"):
        load_config(ModelRef("org/custom", "hub", "org/custom", "org/custom"))
    assert seen == [False]
