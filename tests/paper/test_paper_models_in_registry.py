"""The paper's models and subsets in the registry: pythia-2.8b-deduped, Llama-3.2-1B at the Pythia vocabulary,
and `registry datasets --json` listing the reference subsets with their row counts."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig, LlamaConfig

from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.models import load_config, load_model, resolve_model
from ifguide_cli.core.paper import subsets
from ifguide_cli.core.registry import MODELS, PYTHIA_TOKENIZER


def test_registry_models_list_the_papers_models(cli):
    rows = {r["name"]: r for r in cli("--json", "registry", "models").json["models"]}
    deduped = rows["pythia-2.8b-deduped"]
    assert deduped["hub_id"] == deduped["tokenizer"] == "EleutherAI/pythia-2.8b-deduped" and not deduped["from_scratch"]
    assert rows["pythia-2.8b"]["hub_id"] == "EleutherAI/pythia-2.8b"  # kept beside it
    llama = rows["llama-3.2-1b-pythia-tok"]
    assert llama["hub_id"] == "meta-llama/Llama-3.2-1B" and llama["tokenizer"] == PYTHIA_TOKENIZER and llama["from_scratch"]
    assert llama["config"]["vocab_size"] == 50_304 and llama["family"] == "llama"
    assert rows["llama-3.2-1b"]["config"] == {}  # the hub config as it is
    ref = resolve_model("pythia-2.8b-deduped")
    assert ref.pretrained and ref.family == "gpt_neox" and ref.tokenizer == "EleutherAI/pythia-2.8b-deduped"


def test_registry_datasets_lists_the_reference_subsets_with_their_rows(cli):
    data = cli("--json", "registry", "datasets").json
    assert "rtp" in {r["name"] for r in data["datasets"]}  # the existing table, unchanged
    listed = {r["name"]: r["rows"] for r in data["reference_subsets"]}
    assert listed == {name: s.rows for name, s in subsets.SUBSETS.items()}
    assert listed["owt-train-1b"] == 488_282 and listed["owt-test"] == 4_883 and listed["lambada-reference"] == 4_860
    table = cli("registry", "datasets").stdout
    assert "reference subsets" in table and "488,282" in table


@pytest.fixture
def llama_hub_config(monkeypatch):
    """Llama-3.2-1B's hub config, shrunk (same vocabulary and special tokens), without the network."""
    asked = []

    def from_pretrained(name, *args, **kwargs):
        asked.append(name)
        return LlamaConfig(vocab_size=128_256, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                           num_attention_heads=2, num_key_value_heads=1, bos_token_id=128_000, eos_token_id=128_001)

    monkeypatch.setattr(AutoConfig, "from_pretrained", from_pretrained)
    return asked


def test_llama_with_the_pythia_tokenizer_has_50304_tokens(llama_hub_config):
    mref = resolve_model("llama-3.2-1b-pythia-tok")
    config = load_config(mref)
    assert llama_hub_config == ["meta-llama/Llama-3.2-1B"]
    assert (config.vocab_size, config.bos_token_id, config.eos_token_id) == (50_304, 0, 0)
    model = load_model(mref)  # trained from scratch: a seeded random init of that config
    assert model.get_input_embeddings().weight.shape[0] == 50_304 and model.lm_head.weight.shape[0] == 50_304
    again = load_model(mref)
    assert torch.equal(model.lm_head.weight, again.lm_head.weight)
    assert load_config(resolve_model("llama-3.2-1b")).vocab_size == 128_256  # the plain entry keeps the hub's


def test_the_llama_variant_has_no_pretrained_weights(llama_hub_config):
    with pytest.raises(IfguideError, match="has no pretrained weights") as err:
        load_model(resolve_model("llama-3.2-1b-pythia-tok"), from_scratch=False)
    assert "ifguide train llama-3.2-1b-pythia-tok" in err.value.one_line()
    assert MODELS["llama-3.2-1b-pythia-tok"].config["vocab_size"] == 50_304
