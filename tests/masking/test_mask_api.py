"""`ifguide_cli.load_mask`: a mask artifact, its folder and every `mask export` format load as the same tensors."""

from __future__ import annotations

import pytest
import torch
from clikit import invoke_cli

import ifguide_cli as ifg


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    words = root / "words.txt"
    words.write_text("idiot\nbullshit\n")
    made = invoke_cli(root / "ws", "--json", "mask", "wordlist", "--data", "tiny", "--wordlist", words, "--name", "words")
    assert made.exit_code == 0, made.output
    for name in ("m.parquet", "m.jsonl", "mds"):
        assert invoke_cli(root / "ws", "mask", "export", "words", "--out", root / name).exit_code == 0
    return {"root": root, "ws": root / "ws", "mask": made.json}


def test_every_form_of_a_mask_loads_the_same_rows_and_spans(env):
    root = env["root"]
    art = ifg.load_mask("words", workspace=env["ws"])
    assert art.metadata["mask"] == env["mask"]["id"] and len(art) == 3000
    assert int(art.penalty.sum()) == env["mask"]["summary"]["tokens_selected"]
    assert art.labels.dtype == torch.long and bool((art.labels[art.attention_mask == 0] == -100).all())
    text = art.record(4)["text"]
    assert [text[a:b] for a, b in art.spans(4)] == [" bullshit", " idiot"] and art.record(4)["line"] == 5
    for form in (env["ws"] / "masks" / env["mask"]["id"], root / "m.parquet", root / "m.jsonl", root / "mds"):
        other = ifg.load_mask(form, workspace=env["ws"])
        for name in ("input_ids", "attention_mask", "labels", "penalty"):
            assert torch.equal(getattr(other, name), getattr(art, name)), (form, name)
        assert other.spans(4) == art.spans(4) and other.metadata["mask"] == env["mask"]["id"]
    batch = art.batch([4, 0])
    assert torch.equal(batch["penalty"][0], art.penalty[4]) and set(batch) == {"input_ids", "attention_mask", "labels", "penalty"}


def test_load_mask_errors_name_what_is_wrong(env, tmp_path):
    from ifguide_cli.core.errors import ArtifactNotFound, IfguideError

    with pytest.raises(ArtifactNotFound, match="no mask artifact 'nope'"):
        ifg.load_mask("nope", workspace=env["ws"])
    with pytest.raises(IfguideError, match="neither a mask artifact folder nor"):
        ifg.load_mask(tmp_path, workspace=env["ws"])
    with pytest.raises(IndexError, match="outside the mask's 3000 rows"):
        ifg.load_mask("words", workspace=env["ws"]).record(3000)
