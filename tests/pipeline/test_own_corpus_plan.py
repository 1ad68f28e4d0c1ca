"""A pipeline on your own corpus plans no packaged synthetic data: its evaluation sets are the corpus's held-out split
(`corpus.heldout`), or missing inputs that say how to supply them; LAMBADA is not planned unless given."""

from __future__ import annotations

import json

import pytest

PACKAGED = ("tiny-heldout", "tiny-lambada", "tiny-prompts", "tiny-queries")


@pytest.fixture
def own(tmp_path):
    corpus = tmp_path / "comments.jsonl"
    corpus.write_text("".join(json.dumps({"text": f"a plain comment about the weather number {i}", "toxic": i % 20 == 0})
                              + "\n" for i in range(200)), encoding="utf-8")
    queries = tmp_path / "queries.jsonl"
    queries.write_text(json.dumps({"prompt": "He said", "continuation": "you idiot"}) + "\n", encoding="utf-8")

    def pipeline(**corpus_options) -> str:
        path = tmp_path / "own.yaml"
        path.write_text(json.dumps({"model": "tiny", "data": str(corpus), "corpus": {"label_field": "toxic", **corpus_options},
                                    "influence": {"toxic_queries": str(queries), "safe_queries": str(queries)},
                                    "eval": {"classifier": "profanity"}}))
        return str(path)

    return pipeline


def test_a_dry_run_on_your_own_corpus_plans_no_packaged_data(cli, own):
    plan = cli("--json", "run", own(heldout=0.1), "--dry-run").json
    text = json.dumps(plan)
    assert not any(name in text for name in PACKAGED), [i for i in plan["inputs"] if any(n in str(i) for n in PACKAGED)]
    by_role = {i["role"]: i for i in plan["inputs"]}
    assert by_role["eval.prompts"]["available"] and "held-out" in by_role["eval.prompts"]["where"]
    assert by_role["eval.ppl_data"]["available"] and "eval.lambada" not in by_role and plan["ready"]
    other = cli("--json", "run", own(heldout=0.1, tokenizer="tiny"), "--dry-run").json  # --set corpus.tokenizer alike
    assert not any(name in json.dumps(other) for name in PACKAGED)


def test_without_a_held_out_split_the_evaluation_inputs_are_missing_together(cli, own):
    result = cli("--json", "run", own(), "--dry-run")
    plan = result.json
    missing = {i["role"]: i for i in plan["inputs"] if not i["available"]}
    assert set(missing) == {"eval.prompts", "eval.ppl_data"} and not plan["ready"]
    assert all("corpus.heldout" in i["hint"] for i in missing.values())
    assert '"prompt"' in missing["eval.prompts"]["hint"] and '"text"' in missing["eval.ppl_data"]["hint"]
    assert not any(name in json.dumps(plan) for name in PACKAGED)
