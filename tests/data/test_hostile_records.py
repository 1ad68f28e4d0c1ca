"""Issue 26: hostile data, prompt and query files are one line naming the file — JSON nested past the parser's depth,
lone surrogate escapes, prompt fields of the wrong type, parquet pages that do not decode, devices and folders."""

from __future__ import annotations

import os
import stat

import pytest

from ifguide_cli.core.data.sources import Source, dataset_identity, load_prompts, load_queries, load_records
from ifguide_cli.core.errors import IfguideError

DEEP = b'{"text": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n"
SURROGATE = b'{"text": "abc \\ud800", "prompt": "p \\ud800", "continuation": "c"}\n'


@pytest.mark.parametrize(("name", "content", "needle"), [
    ("deep.jsonl", DEEP, "nested too deeply"), ("deep.json", b"[" + DEEP.strip() + b"]", "nested too deeply"),
    ("lone.jsonl", SURROGATE, "lone surrogate"), ("lone.json", b"[" + SURROGATE.strip() + b"]", "lone surrogate"),
])
@pytest.mark.parametrize("loader", [load_records, load_prompts, load_queries])
def test_json_the_parser_cannot_take_is_one_line_naming_the_file(tmp_path, name, content, needle, loader):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(IfguideError, match=needle) as err:
        loader(str(tmp_path / name))
    assert name in err.value.message


def test_a_valid_surrogate_pair_is_text(tmp_path):
    (tmp_path / "ok.jsonl").write_bytes(b'{"text": "smile \\ud83d\\ude00"}\n')
    assert load_records(str(tmp_path / "ok.jsonl"))[0] == [{"text": "smile \U0001f600"}]


@pytest.mark.parametrize(("record", "needle"), [
    (b'{"prompt": {"text": "hi", "toxicity": "high"}}', "toxicity"),
    (b'{"domain": "x", "prompts": [1, 2]}', "prompts"),
    (b'{"prompt": "hi", "toxic": [0]}', "toxic"),
    (b'{"prompt": "hi", "toxic": 7}', "toxic"),
])
def test_prompt_fields_of_the_wrong_type_are_refused(tmp_path, record, needle):
    (tmp_path / "p.jsonl").write_bytes(record + b"\n")
    with pytest.raises(IfguideError, match=needle) as err:
        load_prompts(str(tmp_path / "p.jsonl"))
    assert "p.jsonl record 1" in err.value.message


def test_prompt_labels_that_are_labels_still_read(tmp_path):
    (tmp_path / "p.jsonl").write_text('{"prompt": "a", "toxic": 1}\n{"prompt": {"text": "b", "toxicity": 0.2}}\n'
                                      '{"prompt": "c", "toxic": false}\n')
    assert [p["toxic"] for p in load_prompts(str(tmp_path / "p.jsonl"))[0]] == [True, False, False]


def test_parquet_with_corrupt_pages_behind_a_valid_footer(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "c.parquet"
    pq.write_table(pa.table({"text": [f"document {i} " * 20 for i in range(2000)]}), path, row_group_size=500)
    data = bytearray(path.read_bytes())
    footer = int.from_bytes(data[-8:-4], "little") + 8
    for i in range(64, len(data) - footer - 64, 7):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))
    with pytest.raises(IfguideError, match=r"c\.parquet is (damaged|not a parquet file)"):
        list(Source(str(path)).records())


def test_a_device_as_a_dataset_is_refused_before_it_is_read(tmp_path):
    try:
        os.mknod(tmp_path / "zero", 0o666 | stat.S_IFCHR, os.makedev(1, 5))  # /dev/zero: reading never ends
    except OSError:
        pytest.skip("cannot create a device node here")
    with pytest.raises(IfguideError, match="not a regular file"):
        dataset_identity(str(tmp_path / "zero"))
