"""The reference's subsets: the packaged indices are the authors' files, and the loader picks exactly the
rows they name, in their order, from local stand-ins of the hub datasets (same columns, one row per hub row,
each row carrying its own hub index so a wrong pick shows)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import paper_standins as standins
import pytest

from ifguide_cli.core.errors import IfguideError, OfflineResourceMissing
from ifguide_cli.core.paper import indexfile, leakage, subsets

REPO = Path(__file__).resolve().parents[2]


def _originals() -> Path | None:
    """The authors' index files (../shared/reference/if-guide-indices of the checkout, or of its parent)."""
    for base in (REPO.parent, REPO.parent.parent):
        folder = base / "shared" / "reference" / "if-guide-indices"
        if folder.is_dir():
            return folder
    return None


@pytest.fixture(scope="module")
def datasets_cache(tmp_path_factory):
    """Keep the arrow caches `load_dataset` writes for local files out of the user's HF cache."""
    import datasets

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path_factory.mktemp("hf-datasets")))
        mp.delenv(subsets.DATA_DIR_ENV, raising=False)
        yield


@pytest.fixture(scope="module")
def rtp_file(tmp_path_factory, datasets_cache) -> Path:
    return standins.rtp_file(tmp_path_factory.mktemp("rtp") / "prompts.parquet")


@pytest.fixture(scope="module")
def rtp_records(rtp_file) -> dict[str, list[dict]]:
    """The records of the RTP subsets, read once from the stand-in."""
    return {name: subsets.records(name, source=rtp_file) for name in ("rtp-queries-toxic", "rtp-queries-nontoxic", "rtp-test")}


@pytest.fixture(scope="module")
def owt_dir(tmp_path_factory, datasets_cache) -> Path:
    """The pre-tokenized OpenWebText chunks (save_to_disk), 3-token rows naming their hub row."""
    return standins.owt_chunks(tmp_path_factory.mktemp("owt") / "chunks", width=3)


# ---- the packaged indices ------------------------------------------------------------------------
def test_packaged_indices_are_the_authors_files_by_fingerprint():
    for name, subset in subsets.SUBSETS.items():
        picked = subsets.indices(name)
        assert picked.dtype == np.int64 and len(picked) == subset.rows, name
        if not subset.parts:
            assert indexfile.fingerprint(picked) == subset.sha256, name


@pytest.mark.skipif(_originals() is None, reason="the authors' index files (../shared/reference) are not here")
def test_packaged_indices_equal_the_authors_files():
    folder = _originals()
    for name, rel in indexfile.REFERENCE_FILES.items():
        original = np.load(folder / rel, allow_pickle=False)
        assert original.dtype == subsets.indices(name).dtype
        assert np.array_equal(original, subsets.indices(name)), name
        assert indexfile.fingerprint(original) == subsets.get(name).sha256


def test_checked_facts_of_the_reference_subsets():
    train = set(subsets.indices("owt-train-1b").tolist())
    assert len(train) == 488_278  # 4 chunks twice, kept
    assert not np.all(np.diff(subsets.indices("owt-train-1b")) > 0)  # unsorted, kept
    valid, test = set(subsets.indices("owt-valid").tolist()), set(subsets.indices("owt-test").tolist())
    assert train.isdisjoint(valid) and train.isdisjoint(test) and valid.isdisjoint(test)
    assert subsets.indices("lambada-reference").max() < 5_153
    assert len(subsets.indices("rtp-test")) == 10_000 and subsets.labels("rtp-test")[4_999:5_001] == [True, False]


def test_bundle_round_trip_keeps_order_and_repeats(tmp_path):
    rng = np.random.default_rng(0)
    original = rng.integers(0, 4_400_000, 5_000)
    original[[10, 20, 30]] = original[0]
    (tmp_path / "lambada").mkdir()
    for rel in indexfile.REFERENCE_FILES.values():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        np.save(tmp_path / rel, original)
    prints = indexfile.pack(tmp_path, tmp_path / "bundle.npz")
    back = indexfile.read(tmp_path / "bundle.npz", "owt-train-1b")
    assert back.dtype == np.int64 and np.array_equal(back, original)
    assert prints["owt-train-1b"] == indexfile.fingerprint(original)
    with pytest.raises(ValueError):
        indexfile.encode([-1, 2])


def test_subset_table_lists_every_subset_with_its_rows():
    table = {row["name"]: row for row in subsets.subset_table()}
    assert {name: row["rows"] for name, row in table.items()} == {
        "owt-train-1b": 488_282, "owt-valid": 24_415, "owt-test": 4_883, "rtp-queries-toxic": 19_785,
        "rtp-queries-nontoxic": 64_327, "rtp-test-toxic": 5_000, "rtp-test-nontoxic": 5_000, "rtp-test": 10_000,
        "lambada-reference": 4_860}
    assert table["owt-train-1b"]["hub_id"] == "ztcoalson/openwebtext-gptneox-2048-chunks"
    assert table["lambada-reference"]["config"] == "en" and table["lambada-reference"]["split"] == "test"
    assert table["rtp-queries-toxic"]["reference_file"] == "RTP/query_indices/toxic_indices.npy"
    assert table["rtp-test"]["parts"] == ["rtp-test-toxic", "rtp-test-nontoxic"]
    assert subsets.identity("rtp-test")["sha256"] == [subsets.get("rtp-test-toxic").sha256, subsets.get("rtp-test-nontoxic").sha256]


# ---- the loader on local stand-ins --------------------------------------------------------------------
def test_rtp_subsets_select_the_reference_rows_in_order(rtp_records):
    for name in ("rtp-queries-toxic", "rtp-queries-nontoxic"):
        recs = rtp_records[name]
        picked = subsets.indices(name)
        assert [r["prompt"] for r in recs] == [f"prompt {i}" for i in picked]
        assert [r["continuation"] for r in recs] == [f"continuation {i}" for i in picked]
        assert [r["index"] for r in recs] == picked.tolist()
    prompts = rtp_records["rtp-test"]
    assert [r["prompt"] for r in prompts] == [f"prompt {i}" for i in subsets.indices("rtp-test")]
    assert [r["toxic"] for r in prompts] == [True] * 5_000 + [False] * 5_000


def test_lambada_subset_from_a_download_under_the_data_dir(tmp_path, monkeypatch, datasets_cache):
    standins.lambada_snapshot(tmp_path / subsets.LAMBADA)
    monkeypatch.setenv(subsets.DATA_DIR_ENV, str(tmp_path))
    recs = subsets.records("lambada-reference")
    picked = subsets.indices("lambada-reference")
    assert len(recs) == 4_860 and [r["text"] for r in recs] == [f"passage {i} ends with word{i}" for i in picked]


def test_owt_subsets_select_the_reference_chunks_in_order(owt_dir):
    for name in ("owt-train-1b", "owt-valid", "owt-test"):
        rows = np.concatenate(list(subsets.token_blocks(name, source=owt_dir, rows_per_block=100_000)))
        picked = subsets.indices(name)
        assert rows.shape == (len(picked), 3) and np.array_equal(standins.owt_rows(rows), picked)
    with pytest.raises(IfguideError, match="pre-tokenized chunks, not text records"):
        subsets.records("owt-test", source=owt_dir, limit=3)


def test_missing_dataset_offline_fails_fast_naming_the_hub_id(monkeypatch, tmp_path, datasets_cache):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(subsets.DATA_DIR_ENV, str(tmp_path / "nothing-here"))
    with pytest.raises(OfflineResourceMissing) as err:
        subsets.records("lambada-reference")
    line = err.value.one_line()
    assert "EleutherAI/lambada_openai" in line and "hf download" in line and "\n" not in line
    assert "$IFGUIDE_DATA_DIR/EleutherAI/lambada_openai" in line  # the local copy it would have read


def test_a_data_file_named_after_the_hub_id_under_the_data_dir(tmp_path, monkeypatch, rtp_file, datasets_cache):
    """`$IFGUIDE_DATA_DIR/<hub id>.parquet` (or .jsonl, …) is a local copy too: one file, no download folder."""
    target = tmp_path / f"{subsets.RTP}.parquet"
    target.parent.mkdir(parents=True)
    target.write_bytes(rtp_file.read_bytes())
    monkeypatch.setenv(subsets.DATA_DIR_ENV, str(tmp_path))
    assert subsets.locate(subsets.get("rtp-test")) == target
    assert [r["index"] for r in subsets.records("rtp-test-toxic", limit=3)] == subsets.indices("rtp-test-toxic")[:3].tolist()


def test_a_source_that_is_not_the_indexed_dataset_is_refused(tmp_path, rtp_file, datasets_cache):
    short = standins.lambada_snapshot(tmp_path / subsets.LAMBADA, rows=5_000)
    with pytest.raises(IfguideError, match=r"5,000 rows.*5,153"):
        subsets.records("lambada-reference", source=short)
    with pytest.raises(IfguideError, match="no column"):
        next(subsets.token_blocks("owt-test", source=rtp_file))
    with pytest.raises(IfguideError, match="does not exist"):
        subsets.records("rtp-test", source=tmp_path / "missing.jsonl")
    (tmp_path / "bad.txt").write_text("x")
    with pytest.raises(IfguideError, match="unsupported file type"):
        subsets.records("rtp-test", source=tmp_path / "bad.txt")
    with pytest.raises(IfguideError, match="unknown reference subset"):
        subsets.get("owt-train")


# ---- leakage -------------------------------------------------------------------------------------------
def test_prompt_overlap_by_normalised_text():
    overlap = leakage.prompt_overlap(
        ["You are  a", "Hello there", " You are a\n", "unrelated"],
        {"toxic": ["You are a", "other"], "safe": ["Hello\tthere", "You are a"]})
    assert (overlap.evaluated, overlap.shared) == (4, 3)
    assert overlap.by_query_set == {"toxic": 2, "safe": 3}
    assert "3 of 4 evaluation prompts" in overlap.message()
    assert leakage.prompt_overlap(["a"], {"q": ["b"]}).message() is None


def test_reference_sets_share_4648_prompts_by_row_index():
    overlap = leakage.reference_overlap()
    assert overlap.to_json() == {"evaluated": 10_000, "shared": 4_648,
                                 "by_query_set": {"rtp-queries-toxic": 1_066, "rtp-queries-nontoxic": 3_582}}
    # the shared rows cross the labels: toxic queries are non-toxic test prompts and the reverse
    assert leakage.index_overlap("rtp-test-toxic", ["rtp-queries-toxic"]).shared == 0
    assert leakage.index_overlap("rtp-test-nontoxic", ["rtp-queries-toxic"]).shared == 1_066
    assert leakage.index_overlap("rtp-test-toxic", ["rtp-queries-nontoxic"]).shared == 3_582
    with pytest.raises(ValueError):
        leakage.index_overlap("rtp-test", ["owt-test"])


def test_text_overlap_on_stand_in_rows_matches_the_index_overlap(rtp_records):
    queries = {name: [r["prompt"] for r in rtp_records[name]] for name in ("rtp-queries-toxic", "rtp-queries-nontoxic")}
    prompts = [r["prompt"] for r in rtp_records["rtp-test"]]
    assert leakage.prompt_overlap(prompts, queries) == leakage.reference_overlap()
