"""Issue 26: a broken model folder or --model-config is one line naming it (never an internal error), a pickled
checkpoint is refused without advising `weights_only=False`, and a model too large for the machine is refused before
it is built."""

from __future__ import annotations

import json
import pickle
import shutil

import pytest

from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.models import ModelRef, load_config, load_model, load_tokenizer, resolve_model


class _Pwn:
    """Unpickling this writes a marker file: no loader may ever run it."""

    marker = ""

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """The packaged tiny model saved as a local folder (config, safetensors weights, tokenizer)."""
    from transformers import AutoModelForCausalLM

    folder = tmp_path_factory.mktemp("tiny") / "model"
    AutoModelForCausalLM.from_config(load_config(resolve_model("tiny"))).save_pretrained(folder)
    load_tokenizer(resolve_model("tiny")).save_pretrained(folder)
    return folder


def _broken(tiny_folder, tmp_path, name: str, data: bytes | None):
    folder = tmp_path / "m"
    shutil.copytree(tiny_folder, folder)
    if data is None:
        (folder / name).unlink()
    else:
        (folder / name).write_bytes(data)
    return ModelRef(str(folder), "local", str(folder), str(folder))


HEADER_PAST_END = json.dumps({"w": {"dtype": "F32", "shape": [1000, 1000], "data_offsets": [0, 4_000_000]}}).encode()
BROKEN = {
    "unknown-model-type": ("config.json", json.dumps({"model_type": "nosuch"}).encode()),
    "config-list": ("config.json", b"[]"),
    "config-binary": ("config.json", bytes(range(256))),
    "header-not-json": ("model.safetensors", (16).to_bytes(8, "little") + b"not json at all!"),
    "header-past-end": ("model.safetensors", len(HEADER_PAST_END).to_bytes(8, "little") + HEADER_PAST_END + bytes(8)),
    "header-2**62": ("model.safetensors", (1 << 62).to_bytes(8, "little") + b"{}"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_model_folder_is_one_line_naming_it(tiny_folder, tmp_path, case):
    name, data = BROKEN[case]
    mref = _broken(tiny_folder, tmp_path, name, data)
    with pytest.raises(IfguideError) as err:
        load_config(mref)
        load_model(mref)
    assert str(tmp_path / "m") in err.value.message and err.value.exit_code == 2


@pytest.mark.parametrize("data", [bytes(range(256)) * 4, b'{"version": "1.0", "model": {"type": "BPE", "voc'])
def test_a_broken_tokenizer_is_one_line(tiny_folder, tmp_path, data):
    mref = _broken(tiny_folder, tmp_path, "tokenizer.json", data)
    mref = ModelRef(mref.ref, "checkpoint", mref.location, mref.location)
    with pytest.raises(IfguideError, match="cannot be loaded"):
        load_tokenizer(mref)


def test_pickled_weights_are_refused_without_suggesting_unsafe_loading(tiny_folder, tmp_path):
    mref = _broken(tiny_folder, tmp_path, "model.safetensors", None)
    _Pwn.marker = str(tmp_path / "pwned")
    (tmp_path / "m" / "pytorch_model.bin").write_bytes(pickle.dumps(_Pwn(), protocol=2))
    with pytest.raises(IfguideError) as err:
        load_model(mref)
    text = err.value.one_line()
    assert "pickle" in text and "weights_only" not in text
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(("change", "needle"), [
    ({"hidden_size": 65536, "num_hidden_layers": 12, "intermediate_size": 262144}, "GiB"),
    ({"hidden_size": 100, "num_attention_heads": 3}, "cfg.json"),
    ({"hidden_size": -64}, "cfg.json"),
])
def test_a_model_config_that_cannot_be_built_is_refused_before_any_allocation(tmp_path, change, needle):
    config = {"model_type": "gpt_neox", "vocab_size": 2048, "max_position_embeddings": 128, "hidden_size": 64,
              "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 256, **change}
    (tmp_path / "cfg.json").write_text(json.dumps(config))
    mref = ModelRef(str(tmp_path / "cfg.json"), "config", str(tmp_path / "cfg.json"), "tiny", "gpt_neox", pretrained=False,
                    own_tokenizer=True)
    with pytest.raises(IfguideError, match=needle) as err:
        load_config(mref)
    assert "--model-config" in err.value.message


def test_a_model_config_folder_is_named_a_folder(tmp_path):
    from ifguide_cli.core.models import config_model_ref

    with pytest.raises(IfguideError, match="is a folder"):
        config_model_ref(str(tmp_path), "tiny")
