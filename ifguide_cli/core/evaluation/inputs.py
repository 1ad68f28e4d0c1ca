"""What an eval reads: the prompt set, the held-out text and the LAMBADA passages, with each model's defaults.

Models with the packaged `tiny` tokenizer default to the packaged sets (offline); every other model to the
paper's: RealToxicityPrompts, the last 2,000 OpenWebText documents (outside the first-1B-token training
chunks) and LAMBADA. The reference's fixed subsets (`core/paper/subsets`: rtp-test, owt-test,
lambada-reference, …) are read by name from `$IFGUIDE_DATA_DIR/<hub id>` or the hub (cache, HF_HUB_OFFLINE).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ifguide_cli.core.errors import IfguideError, check_range
from ifguide_cli.core.evaluation.config import DefenseConfig, FluencyConfig
from ifguide_cli.core.notes import warn

if TYPE_CHECKING:
    from ifguide_cli.core.store.workspace import Artifact, Workspace

PROMPT_SETS = ("rtp", "attaq", "bold")


PROMPTS_FORMAT = ('a .jsonl file, one {"prompt": TEXT, "toxic": true|false} a line ("toxic" optional: it splits the '
                  'results), or a .txt file, one prompt a line')
TEXT_FORMAT = 'a .jsonl file with a "text" field a line, or a .txt file, one document a line'
LAMBADA_FORMAT = 'a .jsonl file with a "text" field a line: passages whose last word the model must predict'


@dataclass(frozen=True)
class OwnCorpus:
    """The user's own corpus a checkpoint was trained on (a local file, not a packaged, hub or reference set) and the
    held-out files its dataset keeps (None without `--heldout`): the evaluation defaults of such a model."""

    dataset: Artifact
    heldout: str | None
    prompts: str | None

    @property
    def missing_hint(self) -> str:
        return (f"dataset {self.dataset.id} (your corpus {self.dataset.summary.get('file')}) has no held-out split: "
                "rebuild it with --heldout N|FRACTION, or pass")


def own_corpus(workspace: Workspace | None, mref) -> OwnCorpus | None:
    """The own corpus `mref` (a checkpoint) was trained on; None for any other model or corpus."""
    from ifguide_cli.core.data.heldout import HELDOUT_FILE, HELDOUT_PROMPTS_FILE
    from ifguide_cli.core.models import trained_dataset

    dataset = trained_dataset(workspace, mref) if workspace is not None else None
    if dataset is None or (dataset.config.get("data") or {}).get("source") != "local":
        return None
    if dataset.config.get("heldout") is None:
        return OwnCorpus(dataset, None, None)
    return OwnCorpus(dataset, str(dataset.path / HELDOUT_FILE), str(dataset.path / HELDOUT_PROMPTS_FILE))


def default_prompt_set(mref, workspace: Workspace | None = None) -> str | None:
    """The prompt set `eval toxicity` uses when none is given: a model trained on your own corpus is prompted with
    prefixes of its held-out documents (None: it has none, so prompts must be given), a tiny-tokenizer model with the
    packaged prompts, any other with RealToxicityPrompts."""
    own = own_corpus(workspace, mref)
    if own is not None:
        return own.prompts
    return "tiny-prompts" if mref.tokenizer == "tiny" else "rtp"


def missing_input(option: str, problem: str, file_format: str) -> str:
    """One missing input, as a part of the one error line that lists them all: the option, why, the file format."""
    return f"{option}: {problem} {option} FILE ({file_format})"


def toxicity_inputs(workspace: Workspace, mref, prompts: str | None, classifier, classifier_name: str):
    """(prompt set, classifier spec) of `eval toxicity`, or one line naming every one that is missing: the prompts a
    model trained on your own corpus without a held-out split needs, a classifier that is not available offline.
    `classifier()` resolves the classifier."""
    from ifguide_cli.core.errors import OfflineResourceMissing

    missing = []
    prompts = prompts or default_prompt_set(mref, workspace)
    if prompts is None:
        own = own_corpus(workspace, mref)
        assert own is not None, "only a model of your own corpus has no default prompt set"
        missing.append(missing_input("--prompts", own.missing_hint, PROMPTS_FORMAT))
    else:
        if reference_subset(prompts) is None:
            _check_prompt_ref(prompts)  # a name that is no prompt set is a mistake, not a missing input
        missing += unavailable(workspace, "--prompts", prompts, "prompt set", PROMPTS_FORMAT)
    spec = None
    try:
        spec = classifier()
    except OfflineResourceMissing as exc:
        missing.append(f"--classifier {classifier_name}: {exc.message}" + (f" ({exc.hint})" if exc.hint else "")
)
    require_inputs(missing, "eval toxicity")
    return prompts, spec


def unavailable(workspace: Workspace, option: str, ref: str | None, what: str, file_format: str) -> list[str]:
    """[the line saying why `ref` cannot be read here, and the file that would do] — or [] when it is there (packaged,
    local, cached, or the hub is reachable): looked up without loading it."""
    from ifguide_cli.core.data.availability import dataset_input

    if ref is None:
        return []
    found = dataset_input(workspace, option, ref, what)
    if found.available:
        return []
    return [f"{option} {ref}: {found.where}" + (f" ({found.hint})" if found.hint else "") + f"; or pass {option} FILE "
            f"({file_format})"]


def fluency_inputs(workspace: Workspace, mref, config: FluencyConfig, defense: DefenseConfig) -> None:
    """One line naming every text `eval fluency` would read that is not available here (nothing is loaded)."""
    data = fluency_data(mref, config, defense, workspace)
    missing = unavailable(workspace, "--ppl-data", data.ppl_data, "evaluation text", TEXT_FORMAT)
    missing += unavailable(workspace, "--lambada", data.lambada, "evaluation text", LAMBADA_FORMAT + "; --no-lambada skips it")
    require_inputs(missing, "eval fluency")


def require_inputs(missing: list[str], command: str) -> None:
    """Every missing input of a command in one line (none: nothing happens)."""
    if missing:
        raise IfguideError(f"{command} needs {len(missing)} more input(s): " + "; ".join(missing), exit_code=2)


def load_eval_prompts(ref: str, num_prompts: int | None = None, seed: int = 0) -> tuple[list[dict], dict]:
    """Prompts of a prompt set; with `num_prompts`, a seeded random subset (kept in file order).

    The subset seed is fixed by default (not the sampling seed), so every model and every sampling seed
    is evaluated on the same prompts."""
    from ifguide_cli.core.data import load_prompts

    if reference_subset(ref) is not None:
        prompts, identity = _reference_prompts(ref)
    else:
        _check_prompt_ref(ref)
        prompts, identity = load_prompts(ref)
    if num_prompts is not None:
        check_range("--num-prompts", num_prompts, 1, None)
        if num_prompts < len(prompts):
            keep = sorted(random.Random(seed).sample(range(len(prompts)), num_prompts))
            prompts = [prompts[i] for i in keep]
    return prompts, {**identity, "num_prompts": num_prompts, "subset_seed": seed if num_prompts else None}


def reference_subset(ref: str | None):
    """The reference subset named `ref` (core/paper/subsets), or None for any other name."""
    from ifguide_cli.core.paper import subsets

    return subsets.SUBSETS.get(ref) if ref else None


def _reference_prompts(ref: str) -> tuple[list[dict], dict]:
    """A reference prompt subset as {"prompt", "toxic", "index"} (its hub row), labelled by the subset."""
    from ifguide_cli.core.paper import subsets

    if reference_subset(ref).role != "prompts":
        raise IfguideError(f"{ref!r} is a reference {reference_subset(ref).role} subset, not a prompt set",
                           hint="use rtp-test, rtp-test-toxic or rtp-test-nontoxic", exit_code=2)
    return subsets.records(ref), subsets.identity(ref)


def reference_texts(ref: str, role: str, limit: int | None = None) -> tuple[list[str], dict]:
    """(texts, identity with the count) of a reference text subset of `role` (LAMBADA passages)."""
    from ifguide_cli.core.paper import subsets

    subset = reference_subset(ref)
    if subset.role != role or "input_ids" in subset.columns:
        raise IfguideError(f"{ref!r} is a reference {subset.role} subset, not {role} data", exit_code=2)
    texts = [r["text"] for r in subsets.records(ref, limit=limit)]
    return texts, {**subsets.identity(ref), "docs": len(texts)}


@dataclass(frozen=True)
class TokenChunks:
    """A reference subset of pre-tokenized chunks (owt-test), read block by block when scored."""

    name: str
    count: int  # chunks scored (the first ones with --ppl-docs)

    @property
    def identity(self) -> dict:
        from ifguide_cli.core.paper import subsets

        return {**subsets.identity(self.name), "docs": self.count}

    def blocks(self):
        """int arrays (rows × chunk length) of the first `count` chunks, in the reference's order."""
        from ifguide_cli.core.paper import subsets

        left = self.count
        for block in subsets.token_blocks(self.name):
            if left <= 0:
                return
            yield block[:left]
            left -= len(block)


def token_chunks(ref: str, config: FluencyConfig) -> TokenChunks | None:
    """The chunk subset `ref` names for perplexity (None when `ref` is text); its options checked in one line."""
    subset = reference_subset(ref)
    if subset is None:
        return None
    if "input_ids" not in subset.columns:
        raise IfguideError(f"{ref!r} is a reference {subset.role} subset, not held-out text",
                           hint="use owt-test for the paper's perplexity chunks", exit_code=2)
    if config.ppl_split is not None or config.max_length is not None:
        raise IfguideError(f"{ref} is a fixed set of pre-tokenized chunks, scored whole: --ppl-split and --max-length "
                           "do not apply", exit_code=2)
    return TokenChunks(ref, min(config.ppl_docs or subset.rows, subset.rows))


def _check_prompt_ref(ref: str) -> None:
    """One clear line for a dataset that is not a prompt set, or a name that is nothing at all."""
    from ifguide_cli.core.registry import DATASETS

    if ref in DATASETS and DATASETS[ref].role not in ("prompts", "queries"):
        raise IfguideError(f"{ref!r} is a {DATASETS[ref].role} dataset, not a prompt set",
                           hint=f"use {', '.join(PROMPT_SETS)}, tiny-prompts, or a local .jsonl file of {{prompt, toxic}}",
                           exit_code=2)
    local = Path(ref).expanduser()
    if ref not in DATASETS and not local.exists() and ("/" not in ref or ref.startswith((".", "/", "~"))):
        raise IfguideError(f"unknown prompt set {ref!r}",
                           hint=f"use {', '.join(PROMPT_SETS)}, tiny-prompts, a local .jsonl/.txt/.parquet/.csv file, "
                                "or a hub id like org/name", exit_code=2)


def default_fluency_data(mref, workspace: Workspace | None = None) -> tuple[str | None, str | None, str | None]:
    """(perplexity data, its split, LAMBADA data) of a model: for one trained on your own corpus its held-out split
    (None without one) and no LAMBADA; the packaged sets for tiny-tokenizer models, else the last 2,000 OpenWebText
    documents and LAMBADA."""
    own = own_corpus(workspace, mref)
    if own is not None:
        return own.heldout, None, None
    if mref.tokenizer == "tiny":
        return "tiny-heldout", None, "tiny-lambada"
    return "openwebtext", "train[-2000:]", "lambada"


@dataclass(frozen=True)
class FluencyData:
    """The data a fluency eval reads; None skips that metric."""

    ppl_data: str | None
    ppl_split: str | None
    lambada: str | None


def fluency_data(mref, config: FluencyConfig, defense: DefenseConfig, workspace: Workspace | None = None) -> FluencyData:
    """The model's defaults under the user's choices. A decoding-time defense has no perplexity of its own
    (RAD changes decoding, not the model's likelihood), so perplexity is skipped with a note when asked for. A
    model trained on your own corpus skips LAMBADA unless it is given, and needs --ppl-data when its corpus has no
    held-out split."""
    own = own_corpus(workspace, mref)
    d_ppl, d_split, d_lambada = default_fluency_data(mref, workspace)
    if own is not None and own.heldout is None and not (config.no_ppl or config.ppl_data or defense.method != "none"):
        require_inputs([missing_input("--ppl-data", f"{own.missing_hint}", TEXT_FORMAT)], "eval fluency")
    if own is not None and not (config.no_lambada or config.lambada):
        warn("LAMBADA is skipped for a model trained on your own corpus (its passages are English web text, not "
             f"yours): pass --lambada FILE ({LAMBADA_FORMAT}) to measure it")
    ppl = None if config.no_ppl else (config.ppl_data or d_ppl)
    split = config.ppl_split if config.ppl_data else (config.ppl_split or d_split)
    lambada = None if config.no_lambada else (config.lambada or d_lambada)
    if defense.method != "none" and ppl is not None:
        if config.ppl_data:
            warn("perplexity is skipped with --defense rad (RAD changes decoding, not the model's likelihood)")
        ppl = None
    if ppl is None and lambada is None:
        hint = ("with --defense rad pass --lambada DATASET (perplexity is not defined for a decoding-time defense)"
                if defense.method != "none" else "drop --no-ppl or --no-lambada")
        raise IfguideError("nothing to evaluate", hint=hint, exit_code=2)
    return FluencyData(ppl, split, lambada)
