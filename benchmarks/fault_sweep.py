"""Fault sweep: drive bad inputs and interruptions through the real CLI and count what goes wrong.

Every case runs `python -m ifguide_cli --workspace WS ...` as a subprocess (with a timeout) in a copy of
one workspace prepared once at the start by the CLI itself (a tiny checkpoint, factors, scores, mask,
evals and a report on a 256-document corpus), so the sweep relies only on the command-line surface.

A case is a declarative entry: a name, an optional setup that writes the bad file(s) or damages the
workspace, one or more steps (argv, the expected outcome, optional signals / kills and extra checks).
After every case the workspace is audited: every artifact published before still lists
(`workspace ls --json`) and verifies (its manifest's sizes and sha256, checked here, independently of
the tool), every listed artifact verifies and has its parents, no artifact folder appeared unlisted
(a torn publish), and no staging folder or lock file was left behind.

Counts (cases with at least one problem of the kind):
  traceback        a Python traceback on stdout/stderr (except the interpreter's own, when a Ctrl-C lands in its
                   startup before any ifguide code runs: "Fatal Python error: init_import_site")
  internal_error   the generic `internal error:` line (meant only for real bugs)
  wrong_exit       exit 0 for a bad input, non-zero where success was expected, a crash by a signal
  damaged          an artifact (previously published or new) whose files no longer match its manifest,
                   or whose parent is missing, or an artifact folder that does not list (torn)
  lost             a previously published artifact that no longer lists (or listing itself fails)
  hang             still running at the timeout (or not stopping within the grace after Ctrl-C), or above 8 GB
  late             a bad pipeline value rejected only after work was done (> 20 CPU s, or artifacts published)
  unnamed          an error message that does not name the offending option, file or reference
  leftover         a new `.staging/` entry or `.locks/` file left after a command that was not interrupted
  lost_or_damaged_other  a file that existed before the case, outside what the case removes or damages on purpose,
                   changed or disappeared: another artifact's file, a user's own folder inside the workspace, a file
                   the setup wrote (a manifest whose only change is its `name` is unchanged: `--name` renames)
  non_finite_published  a checkpoint published with a NaN or infinite weight, or an eval with a non-finite or missing
                   perplexity / loss in its summary
  other            a case-specific check failed (raw escape bytes printed, zip extracted past a size cap, …)

Usage:
  python benchmarks/fault_sweep.py [--verbose] [--json] [--filter SUBSTRING] [--only PATTERN] [--timeout S]
                                   [--workspace-dir DIR] [--list] [--save FILE] [--strict]

Exit code 0 always (it is a benchmark), unless --strict: then 1 when any count is non-zero.
--workspace-dir DIR keeps the prepared workspace there and reuses it on the next run (delete DIR
after changing the workspace format); by default everything lives in a temporary folder removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import hashlib
import json
import os
import pickle
import random
import resource
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KILL_AFTER_STEP = REPO / "tests" / "training" / "kill_after_step.py"  # the CLI, SIGKILLed after a training step
CATEGORIES = ("traceback", "internal_error", "wrong_exit", "damaged", "lost", "hang", "late", "unnamed", "leftover",
              "lost_or_damaged_other", "non_finite_published", "other")
KINDS = ("datasets", "factors", "scores", "masks", "checkpoints", "evals", "classifiers", "reports")
FSIZE_CAP = 2 << 30  # no file written by a case may exceed 2 GiB (ulimit -f): the sweep never fills the disk
MIN_FREE_BYTES = 4 << 30
MAX_RSS_MB = 8 * 1024  # a command above this is killed and counted as a hang: the sweep never exhausts the machine
SMALL_DOCS = 256

# ----------------------------------------------------------------------------------------------------------------
# Cases


@dataclass(frozen=True)
class Step:
    """One CLI invocation of a case and what it must do.

    argv: arguments after `--workspace WS` ({ws}, {tmp}, {dataset}, {ckpt}, … are filled in).
    expect: "error" (exit 1 or 2), "ok" (exit 0) or "any" (only no traceback / internal error / hang).
    signals: (seconds after start, "SIGINT" | "SIGTERM" | "SIGHUP" | "SIGKILL") sent to the process group.
    kill_when: (glob relative to the workspace, signal): sent as soon as the glob matches (e.g. mid-write).
    kill_at_rename: SIGKILL at the entry of the k-th rename syscall (strace fault injection).
    kill_when_moved: role whose artifact folder is watched: its first rename is held for a few seconds
      (strace delay) and the process is SIGKILLed while the folder is away, i.e. between the two renames of a swap.
    late_after: a bad value rejected after this many CPU seconds (or after publishing, or not at all before the
      timeout) counts as `late`. CPU time, not wall time: the verdict must not depend on how loaded the machine is.
    names: an expected error must mention one of these (case-insensitive; placeholders filled).
    check: extra check (ctx, result) -> problems, counted as `other`.
    concurrent: start this step `concurrent` seconds after the previous one started, without waiting for it.
    kill_after_step: run the CLI through tests/training/kill_after_step.py, which SIGKILLs it at the end of this
      optimizer step (a trainer callback; the package itself has no such hook).
    """

    argv: tuple[str, ...]
    expect: str = "error"
    signals: tuple[tuple[float, str], ...] = ()
    kill_when: tuple[str, str] | None = None
    kill_at_rename: int | None = None
    kill_when_moved: str | None = None
    timeout: float | None = None
    grace: float = 30.0
    late_after: float | None = None
    names: tuple[str, ...] = ()
    check: Callable | None = None
    env: tuple[tuple[str, str], ...] = ()
    fsize: int | None = None
    workspace: bool = True
    kill_after_step: int | None = None
    concurrent: float | None = None
    redirect: str | None = None  # a shell redirection of the command's stdout: ">&-" (closed), ">/dev/full"

    @property
    def needs_strace(self) -> bool:
        return self.kill_at_rename is not None or self.kill_when_moved is not None


@dataclass(frozen=True)
class Case:
    name: str
    group: str
    steps: tuple[Step, ...]
    setup: Callable | None = None
    damages: tuple[str, ...] = ()  # roles this case breaks on purpose: not audited
    removes: tuple[str, ...] = ()  # roles this case may remove on purpose: may be missing afterwards
    no_new_artifacts: bool = False  # a rejected pipeline must not publish anything first (else `late`)
    outcome: Callable | None = None  # (ctx, step results) -> problems about the steps together (counted as `other`)
    keeps_staging: bool = False  # a stage stopped midway (a full disk) keeps its unfinished work for a rerun to resume


def error(*argv: str, **kw) -> Step:
    return Step(tuple(argv), expect="error", **kw)


def ok(*argv: str, **kw) -> Step:
    return Step(tuple(argv), expect="ok", **kw)


def anyhow(*argv: str, **kw) -> Step:
    return Step(tuple(argv), expect="any", **kw)


def option_names(flag: str, *extra: str) -> tuple[str, ...]:
    """What an error about FLAG may call it: `--max-steps`, `max-steps`, `max_steps`, or its field name."""
    bare = flag.lstrip("-")
    return (bare, bare.replace("-", "_"), bare.replace("_", "-"), *extra)


# Small, valid commands: a case changes one thing in them. The prepared workspace already holds their results
# (or they are cheap), so a wrongly accepted bad value still finishes in seconds.
TRAIN_BASE = ("train", "tiny", "--data", "{dataset}", "--eval-docs", "8")
TRAIN = (*TRAIN_BASE, "--max-steps", "2", "--batch-size", "8")
STAGED_TRAIN = (*TRAIN_BASE, "--max-steps", "6", "--save-steps", "2", "--batch-size", "8")  # writes resumable checkpoints
FINETUNE_OPTS = ("--data", "{dataset}", "--eval-docs", "8", "--max-steps", "2", "--batch-size", "8")
FINETUNE = ("finetune", "{ckpt}", *FINETUNE_OPTS)
FACTORS_BASE = ("factors", "{ckpt}", "--data", "{dataset}", "--strategy", "diagonal")
FACTORS = (*FACTORS_BASE, "--max-examples", "32")
SCORES = ("scores", "{factors}", "-t", "tiny-queries-toxic", "--max-queries", "4")
MASK = ("mask", "{scores}", "--max-tokens", "301")
# the prepared checkpoint is trained on a corpus of the sweep's own, which has no held-out prompts: name them
TOXICITY_BASE = ("eval", "toxicity", "{ckpt}", "--classifier", "profanity", "--prompts", "tiny-prompts")
TOXICITY = (*TOXICITY_BASE, "--num-prompts", "2", "--samples", "2", "--max-new-tokens", "4")
FLUENCY_OPTS = ("--ppl-docs", "4", "--lambada-docs", "4")
# the sweep's own corpus has no held-out split, and a local model folder's default fluency data is OpenWebText and
# LAMBADA (not offline): both name the packaged held-out text
TINY_FLUENCY = (*FLUENCY_OPTS, "--ppl-data", "tiny-heldout", "--lambada", "tiny-lambada")
FLUENCY = ("eval", "fluency", "{ckpt}", *TINY_FLUENCY)
FIELD_NAMES = {"--lr": "learning_rate", "--beta1": "adam_beta1", "--beta2": "adam_beta2", "--adam-eps": "adam_epsilon",
               "--grad-clip": "max_grad_norm", "--lambda": "lam", "--top-p": "top_p", "--rad-beta": "beta"}

PIPELINE = """\
model: tiny
data: {dataset}
baseline: {{checkpoint: {ckpt}}}
influence:
  toxic_queries: tiny-queries-toxic
  safe_queries: tiny-queries-safe
  factors: {{strategy: ekfac}}
  scores: {{max_queries: 8}}
mask: {{threshold: 0.99, window: 1, max_tokens: 300}}
finetune: {{lambda: 1.5, train: {{max_steps: 2, batch_size: 8}}}}
eval: {{prompts: tiny-prompts, classifier: profanity, num_prompts: 4, samples: 2, max_new_tokens: 4, top_p: 0.9, seed: 0,
        evaluate_baseline: false, ppl_data: tiny-heldout, lambada: tiny-lambada}}
"""


def control_cases() -> list[Case]:
    """Valid commands: they check the sweep's own templates (a bad value must be the only thing wrong)."""
    return [
        Case("control-workspace-ls", "control", (ok("workspace", "ls"),)),
        Case("control-train-reused", "control", (ok(*TRAIN),)),
        Case("control-finetune", "control", (ok(*FINETUNE),)),
        Case("control-factors", "control", (ok(*FACTORS),)),
        Case("control-mask", "control", (ok(*MASK),)),
        Case("control-eval-toxicity", "control", (ok(*TOXICITY),)),
        Case("control-pipeline", "control", (ok("run", "{tmp}/pipeline.yaml", timeout=400),),
             setup=write_pipeline({})),
    ]


# --- corrupt manifests ------------------------------------------------------------------------------------------

MANIFEST_BREAKS = {
    "truncated": b"{",
    "not-json": b"this is not json\n",
    "json-list": b"[]\n",
    "empty": b"",
    "binary": bytes(range(256)) * 4,
    "deep-nesting": b"[" * 200_000,
    "wrong-types": b'{"id": 5, "kind": ["masks"], "parents": "x", "files": 3}\n',
}


def manifest_cases() -> list[Case]:
    """A damaged artifact is quarantined: listed as damaged, every other artifact usable, nothing fatal."""
    listed = lists_id("mask")
    cases = []
    for variant in ("truncated", "not-json", "json-list"):
        broken = damage_manifest("mask", MANIFEST_BREAKS[variant])
        cases += [
            Case(f"manifest-{variant}-ls", "manifest", (ok("workspace", "ls", check=listed),), broken, damages=("mask",)),
            Case(f"manifest-{variant}-show-other", "manifest", (ok("workspace", "show", "{ckpt}"),), broken,
                 damages=("mask",)),
            Case(f"manifest-{variant}-rm-other", "manifest", (ok("workspace", "rm", "{report}"),), broken,
                 damages=("mask",), removes=("report",)),
            Case(f"manifest-{variant}-show-damaged", "manifest", (anyhow("workspace", "show", "{mask}"),), broken,
                 damages=("mask",)),
            Case(f"manifest-{variant}-rm-damaged", "manifest", (anyhow("workspace", "rm", "{mask}"),), broken,
                 damages=("mask",), removes=("mask",)),
            Case(f"manifest-{variant}-stage", "manifest", (ok("mask", "{scores}", "--max-tokens", "77"),), broken,
                 damages=("mask",)),
        ]
    for variant in ("empty", "binary", "deep-nesting", "wrong-types"):
        cases.append(Case(f"manifest-{variant}-ls", "manifest", (ok("workspace", "ls", "--json", check=listed),),
                          damage_manifest("mask", MANIFEST_BREAKS[variant]), damages=("mask",)))
    cases += [
        Case("manifest-missing-ls", "manifest", (ok("workspace", "ls", check=listed),), remove_file("mask", "manifest.json"),
             damages=("mask",)),
        Case("manifest-parent-broken-show-child", "manifest", (ok("workspace", "show", "{mask}"),),
             damage_manifest("scores", b"{"), damages=("scores",)),
        Case("manifest-parent-broken-use", "manifest",
             (error("mask", "{scores}", "--max-tokens", "78", names=("manifest", "{scores}")),),
             damage_manifest("scores", b"{"), damages=("scores",)),
    ]
    return cases


# --- unreadable / malformed input files -------------------------------------------------------------------------

BINARY = bytes(random.Random(14).getrandbits(8) for _ in range(4096)) + b"\x00\xff\xfe"
LATIN1_JSONL = '{"text": "caf\xe9 cr\xe8me br\xfbl\xe9e and na\xefve r\xe9sum\xe9"}\n'.encode("latin-1") * 50
TEXT_FILES = {
    "binary.jsonl": BINARY,
    "latin1.jsonl": LATIN1_JSONL,
    "binary.txt": BINARY,
    "utf16.txt": "hello world\n".encode("utf-16") * 100,
    "list.json": b"[1, 2, 3]\n",
    "dict.json": b'{"a": 1}\n',
    "lists.jsonl": b"[1, 2]\n" * 20,
    "text-number.jsonl": b'{"text": 5}\n' * 20,
    "no-text.jsonl": b'{"foo": "bar"}\n' * 20,
    "empty.jsonl": b"",
    "garbage.parquet": BINARY,
    "binary.csv": BINARY,
}
QUERY_FILES = {
    "binary.jsonl": BINARY,
    "latin1.jsonl": '{"prompt": "caf\xe9", "continuation": "cr\xe8me"}\n'.encode("latin-1") * 10,
    "list.json": b"[1, 2, 3]\n",
    "lists.jsonl": b"[1, 2]\n" * 10,
    "no-prompt.jsonl": b'{"continuation": "you fool"}\n' * 10,
    "continuation-number.jsonl": b'{"prompt": "hi", "continuation": 5}\n' * 10,
    "empty.jsonl": b"",
}
PROMPT_FILES = {
    "binary.jsonl": BINARY,
    "list.json": b"[1, 2, 3]\n",
    "no-prompt.jsonl": b'{"title": "hello"}\n' * 10,  # `prompt`, `input` and `text` are all accepted
    "prompt-number.jsonl": b'{"prompt": 5}\n' * 10,
}
YAML_FILES = {
    "binary.yaml": BINARY,
    "list.yaml": b"- 1\n- 2\n",
    "scalar.yaml": b"5\n",
    "tabs.yaml": b"lr:\t\t: [\n",
}


def input_file_cases() -> list[Case]:
    cases = []
    for name, data in TEXT_FILES.items():
        cases.append(Case(f"data-{name}", "input-file",
                          (error("train", "tiny", "--data", f"{{tmp}}/{name}", "--seq-len", "64", "--eval-docs", "8",
                                 "--max-steps", "2", "--batch-size", "8", names=(name,)),),
                          write(name, data)))
    cases += [
        Case("data-empty-folder", "input-file",
             (error("train", "tiny", "--data", "{tmp}/emptydir", "--seq-len", "64", "--max-steps", "2", names=("emptydir",)),),
             make_dir("emptydir")),
        Case("data-fifo", "input-file",
             (error("train", "tiny", "--data", "{tmp}/fifo.jsonl", "--seq-len", "64", "--max-steps", "2", timeout=15,
                    names=("fifo.jsonl",)),),
             make_fifo("fifo.jsonl")),
        Case("data-symlink-loop", "input-file",
             (error("train", "tiny", "--data", "{tmp}/loop.jsonl", "--seq-len", "64", "--max-steps", "2",
                    names=("loop.jsonl",)),),
             make_symlink("loop.jsonl", "loop.jsonl")),
        Case("data-one-line-4mb", "input-file",
             (ok("train", "tiny", "--data", "{tmp}/oneline.txt", "--seq-len", "64", "--max-steps", "1", "--batch-size", "8",
                 "--eval-docs", "8", timeout=240, check=bounded(cpu_seconds=60, rss_gb=2.5)),),
             write("oneline.txt", b"the cat sat on the mat and looked at the dog " * 93_000)),
    ]
    for name, data in QUERY_FILES.items():
        cases.append(Case(f"queries-{name}", "input-file",
                          (error("scores", "{factors}", "-t", f"{{tmp}}/{name}", "--max-queries", "4", names=(name,)),),
                          write(name, data)))
    for name, data in PROMPT_FILES.items():
        cases.append(Case(f"prompts-{name}", "input-file", (error(*TOXICITY, "--prompts", f"{{tmp}}/{name}", names=(name,)),),
                          write(name, data)))
    cases += [
        Case("ppl-data-binary.txt", "input-file", (error(*FLUENCY, "--ppl-data", "{tmp}/binary.txt", names=("binary.txt",)),),
             write("binary.txt", BINARY)),
        Case("lambada-list.json", "input-file", (error(*FLUENCY, "--lambada", "{tmp}/list.json", names=("list.json",)),),
             write("list.json", b"[1, 2, 3]\n")),
    ]
    for name, data in YAML_FILES.items():
        cases.append(Case(f"train-config-{name}", "input-file", (error(*TRAIN, "--config", f"{{tmp}}/{name}", names=(name,)),),
                          write(name, data)))
    for name in ("binary.yaml", "list.yaml", "scalar.yaml"):
        cases.append(Case(f"pipeline-{name}", "input-file", (error("run", f"{{tmp}}/{name}", names=(name,)),),
                          write(name, YAML_FILES[name])))
    cases.append(Case("families-binary.yaml", "input-file",
                      (error(*FACTORS, "--families", "{tmp}/f.yaml", names=("f.yaml",)),), write("f.yaml", BINARY)))
    cases.append(Case("families-bad-structure", "input-file",
                      (error(*FACTORS, "--families", "{tmp}/fam.yaml", names=("fam.yaml",)),),
                      write("fam.yaml", b"families:\n  gpt_neox: 5\n")))
    return cases


# --- score files and damaged artifact files ---------------------------------------------------------------------


def score_file_cases() -> list[Case]:
    def mask_file(name: str, *extra: str, names: tuple[str, ...] = ()) -> Step:
        return error("mask", f"{{tmp}}/{name}", "--data", "{dataset}", *extra, names=names or (name,))

    return [
        Case("scorefile-truncated-safetensors", "score-file", (mask_file("s.safetensors"),),
             copy_artifact_file("scores", "scores.safetensors", "s.safetensors", keep=0.5)),
        Case("scorefile-truncated-npy", "score-file", (mask_file("s.npy"),), write_npy("s.npy", truncate=0.5)),
        Case("scorefile-npy-object-pickle", "score-file", (mask_file("s.npy"),), write_pickle_npy("s.npy")),
        Case("scorefile-npy-wrong-shape", "score-file", (mask_file("s.npy"),), write_npy("s.npy", shape=(7,))),
        Case("scorefile-npy-nan", "score-file", (mask_file("s.npy"),), write_npy("s.npy", fill=float("nan"))),
        Case("scorefile-npy-text", "score-file", (mask_file("s.npy"),), write("s.npy", b"not an array\n")),
        Case("scorefile-safetensors-huge-header", "score-file", (mask_file("s.safetensors"),),
             write("s.safetensors", (1 << 60).to_bytes(8, "little") + b"{}")),
        Case("scorefile-safetensors-header-not-json", "score-file", (mask_file("s.safetensors"),),
             write("s.safetensors", (16).to_bytes(8, "little") + b"not json at all!")),
        Case("scorefile-empty", "score-file", (mask_file("s.safetensors"),), write("s.safetensors", b"")),
        Case("scorefile-unknown-suffix", "score-file", (mask_file("s.pt", names=("s.pt", ".pt")),), write("s.pt", BINARY)),
        Case("scorefile-missing-key", "score-file", (mask_file("s.safetensors", "--key", "nosuch", names=("nosuch",)),),
             copy_artifact_file("scores", "scores.safetensors", "s.safetensors")),
    ]


def damaged_artifact_cases() -> list[Case]:
    return [
        Case("artifact-scores-truncated", "damaged-artifact",
             (error("mask", "{scores}", "--max-tokens", "55", names=("scores.safetensors",)),),
             truncate_file("scores", "scores.safetensors"), damages=("scores",)),
        Case("artifact-scores-tampered-same-size", "damaged-artifact",
             (error("mask", "{scores}", "--max-tokens", "56", names=("scores.safetensors",)),),
             negate_scores(keep_mtime=False), damages=("scores",)),
        Case("artifact-scores-tampered-same-size-mtime", "damaged-artifact",
             (error("mask", "{scores}", "--max-tokens", "57", names=("scores.safetensors",)),),
             negate_scores(keep_mtime=True), damages=("scores",)),
        Case("artifact-dataset-truncated", "damaged-artifact",
             (error("mask", "show", "{mask}", names=("input_ids.safetensors",)),),
             truncate_file("dataset", "input_ids.safetensors"), damages=("dataset",)),
        Case("artifact-mask-file-missing", "damaged-artifact",
             (error("mask", "show", "{mask}", names=("mask.safetensors",)),),
             remove_file("mask", "mask.safetensors"), damages=("mask",)),
        Case("artifact-checkpoint-weights-truncated", "damaged-artifact",
             (error(*FLUENCY, "--force", names=("model.safetensors",)),),
             truncate_file("ckpt", "model/model.safetensors"), damages=("ckpt",)),
        Case("artifact-checkpoint-config-binary", "damaged-artifact",
             (error(*FINETUNE, names=("config.json",)),),
             overwrite_file("ckpt", "model/config.json", BINARY), damages=("ckpt",)),
        Case("artifact-factors-truncated", "damaged-artifact",
             (error(*SCORES, names=("factors", "{factors}")),),
             truncate_glob("factors", "kronfluence/*/*eigenvectors.safetensors"), damages=("factors",)),
        Case("artifact-eval-continuations-missing", "damaged-artifact",
             (error("eval", "implicit", "{etox}", "--classifier", "profanity", names=("continuations.jsonl",)),),
             remove_file("etox", "continuations.jsonl"), damages=("etox",)),
        Case("artifact-eval-continuations-truncated", "damaged-artifact",
             (error("eval", "implicit", "{etox}", "--classifier", "profanity", names=("continuations.jsonl",)),),
             truncate_file("etox", "continuations.jsonl"), damages=("etox",)),
        Case("optimizer-truncated-in-staging", "damaged-artifact",
             (anyhow(*STAGED_TRAIN, check=suggests_restart_on_error, timeout=180),),
             staged_truncated_optimizer),
    ]


# --- the workspace folder itself ----------------------------------------------------------------------------------


def workspace_path_cases() -> list[Case]:
    def at(path: str, *argv: str, expect: str = "error") -> Step:
        return Step(("--workspace", path, *argv), expect=expect, workspace=False, names=(Path(path).name or "workspace",))

    return [
        Case("wspath-file-ls", "workspace-path", (at("{tmp}/afile", "workspace", "ls"),), write("afile", b"x")),
        Case("wspath-file-train", "workspace-path", (at("{tmp}/afile", "train", "tiny", "--data", "tiny", "--max-steps", "1"),),
             write("afile", b"x")),
        Case("wspath-empty-string", "workspace-path",
             (Step(("--workspace", "", "workspace", "ls"), workspace=False, names=("workspace",)),)),
        Case("wspath-symlink-loop", "workspace-path", (at("{tmp}/loop", "workspace", "ls"),), make_symlink("loop", "loop")),
        Case("wspath-under-proc", "workspace-path", (at("/proc/ifguide-fault-sweep", "train", "tiny", "--data", "tiny",
                                                        "--max-steps", "1"),)),
        Case("wspath-new-nested-ls", "workspace-path", (at("{tmp}/new/nested/ws", "workspace", "ls", expect="ok"),)),
        Case("wsjunk-kind-is-file", "workspace-path", (ok("workspace", "ls"),), replace_kind_dir_with_file("reports"),
             damages=("report",)),
        Case("wsjunk-files-and-folders", "workspace-path", (ok("workspace", "ls"), ok("mask", "{scores}", "--max-tokens", "79")),
             junk_in_workspace),
        Case("wsjunk-stale-lock", "workspace-path", (ok("mask", "{scores}", "--max-tokens", "80"),), garbage_locks),
    ]


# --- numbers: non-finite, negative, out of range ------------------------------------------------------------------

FLOAT_OPTIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "train": ((*TRAIN, "--mask", "{mask}"), ("--lambda", "--lr", "--weight-decay", "--beta1", "--beta2", "--adam-eps",
                                             "--warmup-ratio", "--grad-clip", "--epochs", "--val-fraction")),
    "finetune": (FINETUNE, ("--lambda", "--lr", "--weight-decay", "--epochs")),
    "mask": (MASK, ("--threshold",)),
    "eval-toxicity": (TOXICITY, ("--top-p", "--rad-beta")),
    "eval-fluency": (FLUENCY, ("--rad-beta",)),
    "scores": (SCORES, ("--damping",)),
}
BAD_NUMBERS: tuple[tuple[str, tuple[str, ...], str, str], ...] = (
    # (label, base argv, option, value)
    ("train", TRAIN, "--max-steps", "-1"), ("train", TRAIN, "--batch-size", "0"), ("train", TRAIN, "--micro-batch-size", "-1"),
    ("train", TRAIN, "--seq-len", "-1"), ("train", TRAIN, "--save-steps", "-1"), ("train", TRAIN, "--eval-docs", "-1"),
    ("train", TRAIN, "--batch-tokens", "-1"), ("train", TRAIN, "--seed", "-1"), ("train", TRAIN, "--seed", str(2**64)),
    ("train", TRAIN, "--max-steps", str(10**19)), ("train", TRAIN, "--beta1", "1.0"), ("train", TRAIN, "--warmup-ratio", "2"),
    ("train", TRAIN, "--val-fraction", "1"), ("train", TRAIN, "--grad-clip", "-1"),
    ("train", (*TRAIN, "--mask", "{mask}"), "--lambda", "-1"), ("train", TRAIN, "--max-steps", "inf"),
    ("finetune", FINETUNE, "--max-steps", "0"), ("finetune", FINETUNE, "--lambda", "-inf"),
    ("factors", FACTORS, "--batch-size", "-1"), ("factors", FACTORS, "--max-examples", "0"), ("factors", FACTORS, "--partitions", "0"),
    ("factors", FACTORS, "--seq-len", "-1"),
    ("scores", SCORES, "--damping", "-1"), ("scores", SCORES, "--damping", "abc"),
    ("scores", SCORES, "--batch-size", "-1"), ("scores", SCORES, "--query-batch-size", "0"), ("scores", SCORES, "--partitions", "-1"),
    ("scores", SCORES, "--max-queries", "0"), ("scores", SCORES, "--query-low-rank", "-1"),
    ("mask", MASK, "--max-tokens", "-1"), ("mask", MASK, "--window", "-1"), ("mask", MASK, "--top", "-1"),
    ("mask", MASK, "--threshold", "1.5"), ("mask", MASK, "--threshold", "-0.5"), ("mask", MASK, "--max-tokens", "inf"),
    ("mask-show", ("mask", "show", "{mask}"), "--rank", "-1"), ("mask-show", ("mask", "show", "{mask}"), "--rank", str(10**9)),
    ("mask-show", ("mask", "show", "{mask}"), "--doc", "-1"),
    ("mask-export", ("mask", "export", "{mask}", "--html", "{tmp}/m.html"), "--top", "-1"),
    ("eval-toxicity", TOXICITY, "--samples", "0"), ("eval-toxicity", TOXICITY, "--max-new-tokens", "-1"),
    ("eval-toxicity", TOXICITY, "--num-prompts", "0"), ("eval-toxicity", TOXICITY, "--batch-size", "0"),
    ("eval-toxicity", TOXICITY, "--classifier-batch-size", "0"), ("eval-toxicity", TOXICITY, "--rad-topk", "0"),
    ("eval-toxicity", TOXICITY, "--top-p", "1.5"),
    ("eval-fluency", FLUENCY, "--ppl-docs", "-1"), ("eval-fluency", FLUENCY, "--lambada-docs", "0"),
    ("eval-fluency", FLUENCY, "--max-length", "0"), ("eval-fluency", FLUENCY, "--batch-size", "0"),
)
PIPELINE_BAD_VALUES = {
    # name: (pipeline overrides, what the error should name)
    "finetune-lambda-negative": ({"finetune": "{lambda: -1, train: {max_steps: 2, batch_size: 8}}"}, ("lambda", "lam")),
    "finetune-lambda-inf": ({"finetune": "{lambda: .inf, train: {max_steps: 2, batch_size: 8}}"}, ("lambda", "lam")),
    "finetune-lr-nan": ({"finetune": "{lambda: 1.5, train: {max_steps: 2, batch_size: 8, lr: .nan}}"}, ("lr", "learning_rate")),
    "mask-threshold-nan": ({"mask": "{threshold: .nan, window: 1, max_tokens: 300}"}, ("threshold",)),
    "mask-max-tokens-negative": ({"mask": "{threshold: 0.99, window: 1, max_tokens: -1}"}, ("max_tokens", "max-tokens")),
    "eval-top-p-inf": ({"eval": "{prompts: tiny-prompts, classifier: profanity, samples: 2, top_p: .inf}"}, ("top_p", "top-p")),
    "eval-samples-negative": ({"eval": "{prompts: tiny-prompts, classifier: profanity, samples: -1}"}, ("samples",)),
    "scores-damping-inf": ({"influence": "{toxic_queries: tiny-queries-toxic, scores: {damping: .inf}}"}, ("damping",)),
    "eval-prompts-missing": ({"eval": "{prompts: /nonexistent/prompts.jsonl, classifier: profanity, samples: 2}"},
                             ("prompts.jsonl",)),
}


def number_cases() -> list[Case]:
    cases = []
    for label, (base, flags) in FLOAT_OPTIONS.items():
        for i, flag in enumerate(flags):  # one non-finite value per option, alternating; both for the penalty λ
            for value in ("inf", "nan") if flag == "--lambda" else (("inf", "nan")[i % 2],):
                names = option_names(flag, *([FIELD_NAMES[flag]] if flag in FIELD_NAMES else []))
                cases.append(Case(f"{label}{flag}={value}", "numbers", (error(*base, flag, value, names=names),)))
    for label, base, flag, value in BAD_NUMBERS:  # a huge step count that is accepted would train "forever": 30 s is a hang
        names = option_names(flag, *([FIELD_NAMES[flag]] if flag in FIELD_NAMES else []))
        cases.append(Case(f"{label}{flag}={value}", "numbers", (error(*base, flag, value, names=names, timeout=30 if
                                                                      value == str(10**19) else None),)))
    cases.append(Case("train--epochs=inf-no-max-steps", "numbers",
                      (error(*TRAIN_BASE, "--batch-size", "8", "--epochs", "inf", timeout=30,
                             names=("epochs",)),)))
    for key, value in (("lr", ".inf"), ("lambda", ".nan"), ("epochs", ".inf"), ("max_steps", "1e400")):
        cases.append(Case(f"train-config-{key}={value}", "numbers",
                          (error(*TRAIN, "--mask", "{mask}", "--config", "{tmp}/c.yaml", names=option_names(key)),),
                          write("c.yaml", f"{key}: {value}\n".encode())))
    for name, (overrides, names) in PIPELINE_BAD_VALUES.items():
        cases.append(Case(f"pipeline-{name}", "numbers",
                          (error("run", "{tmp}/pipeline.yaml", late_after=20, timeout=45, names=names),),
                          write_pipeline(overrides), no_new_artifacts=True))
    return cases


# --- YAML bombs ---------------------------------------------------------------------------------------------------

# 9 anchors, each a list of 9 aliases of the previous one: 9**9 (387M) strings once expanded, 300 bytes on disk.
# The anchors sit inside the value of a known key, so nothing rejects the file before the value is used.
ALIAS_BOMB = "[" + ", ".join(['&a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
                             + [f"&{c} [{','.join(['*' + p] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi", strict=True)]) + "]"
BOMBED_PIPELINES = {
    "model": {"model": ALIAS_BOMB},
    "mask-threshold": {"mask": f"{{threshold: {ALIAS_BOMB}, window: 1, max_tokens: 300}}"},
    "eval-prompts": {"eval": f"{{prompts: {ALIAS_BOMB}, classifier: profanity, samples: 2}}"},
    "finetune-lambda": {"finetune": f"{{lambda: {ALIAS_BOMB}}}"},
}


def yaml_cases() -> list[Case]:
    """YAML with limits: alias bombs and deep nesting fail fast (20 s is a hang), tags never construct objects."""
    def rejected(name: str) -> Step:
        return error("run", f"{{tmp}}/{name}", timeout=20, names=(name,))

    cases = [Case(f"yaml-alias-bomb-pipeline-{label}", "yaml",
                  (error("run", "{tmp}/pipeline.yaml", timeout=20, names=("pipeline.yaml", "alias")),),
                  write_pipeline(overrides), no_new_artifacts=True)
             for label, overrides in BOMBED_PIPELINES.items()]
    return [
        *cases,
        Case("yaml-alias-bomb-top-level", "yaml", (rejected("bomb.yaml"),), write("bomb.yaml", f"model: {ALIAS_BOMB}\n".encode())),
        Case("yaml-alias-bomb-train-config", "yaml",
             (error(*TRAIN, "--config", "{tmp}/bomb.yaml", timeout=20, names=("bomb.yaml",)),),
             write("bomb.yaml", f"lr: {ALIAS_BOMB}\n".encode())),
        Case("yaml-alias-bomb-families", "yaml",
             (error(*FACTORS, "--families", "{tmp}/bomb.yaml", timeout=20, names=("bomb.yaml",)),),
             write("bomb.yaml", f"families: {{gpt_neox: {{modules: {ALIAS_BOMB}}}}}\n".encode())),
        Case("yaml-deep-nesting-pipeline", "yaml", (rejected("deep.yaml"),),
             write("deep.yaml", b"model: " + b"[" * 50_000 + b"]" * 50_000 + b"\n")),
        Case("yaml-python-tag", "yaml", (error("run", "{tmp}/tag.yaml", timeout=20, names=("tag.yaml",), check=no_pwned),),
             write("tag.yaml", b"model: !!python/object/apply:os.system ['touch {tmp}/pwned']\n")),
    ]


# --- artifact names -----------------------------------------------------------------------------------------------

ESC_NAME = "\x1b[31mred\x1b]0;pwned\x07\x1b[2J"


def name_cases() -> list[Case]:
    def named(label: str, name: str, tokens: str, show: str | None = None, expect_create: str = "ok", literal: bool = False) -> Case:
        listing = all_of(no_escape_bytes, shows_literally(name)) if literal else no_escape_bytes
        steps = [Step((*MASK[:2], "--max-tokens", tokens, "--name", name), expect=expect_create),
                 ok("workspace", "ls", check=listing)]
        if expect_create == "ok":
            steps.append(ok("workspace", "show", show or name, check=no_escape_bytes))
        return Case(f"name-{label}", "names", tuple(steps))

    return [
        named("rich-close-tag", "[/bold]", "91", literal=True),
        named("rich-markup", "[bold red]boom[/]", "92", literal=True),
        named("escape-bytes", ESC_NAME, "93", show="{new_id}"),
        named("newline", "two\nlines", "94", show="{new_id}"),
        named("very-long", "n" * 5000, "95"),
        named("empty", "", "96", expect_create="any"),
        Case("name-shadows-an-id", "names",
             (anyhow(*MASK[:2], "--max-tokens", "97", "--name", "{ckpt}"),
              ok("workspace", "show", "{ckpt}", check=shows_kind("checkpoints")))),
        Case("name-latest", "names",
             (anyhow(*MASK[:2], "--max-tokens", "98", "--name", "latest"), ok("workspace", "ls"))),
        Case("name-report-reused", "names",
             (ok("report", "{etox}", "{eflu}", "--name", "renamed"), ok("workspace", "show", "renamed"))),
    ]


# --- archives, downloads, pickles, remote code ----------------------------------------------------------------------


def archive_cases() -> list[Case]:
    rad = ("rad", "download", "--from")
    return [
        Case("zip-bomb-ratio", "archive",
             (error(*rad, "{tmp}/bomb.zip", fsize=64 << 20, timeout=120, names=("bomb.zip",), check=not_file_too_large),),
             write_zip_bomb),
        Case("zip-many-files", "archive", (error(*rad, "{tmp}/many.zip", timeout=120, names=("many.zip",)),), write_zip_many),
        Case("zip-slip", "archive", (error(*rad, "{tmp}/slip.zip", names=("slip.zip",), check=nothing_escaped),), write_zip_slip),
        Case("zip-truncated", "archive", (error(*rad, "{tmp}/t.zip", names=("t.zip",)),), write_zip_truncated),
        Case("zip-not-a-zip", "archive", (error(*rad, "{tmp}/x.zip", names=("x.zip",)),), write("x.zip", b"hello\n")),
        Case("zip-empty", "archive", (error(*rad, "{tmp}/e.zip", names=("e.zip",)),), write_zip_empty),
        Case("rad-from-missing", "archive", (error(*rad, "/nonexistent/saved_models.zip", names=("saved_models.zip",)),)),
        Case("rad-from-empty-folder", "archive", (error(*rad, "{tmp}/emptydir", names=("emptydir",)),), make_dir("emptydir")),
        Case("rad-malicious-pickle", "archive", (error(*rad, "{tmp}/pytorch_model.bin", check=no_pwned),), write_evil_pickle),
        Case("rad-sha256-not-hex", "archive", (error(*rad, "{tmp}/x.zip", "--sha256", "zz", names=("sha256",)),),
             write("x.zip", b"hello\n")),
        *[Case(f"rad-url-{label}", "archive", (error("rad", "download", "--url", url, timeout=60, names=("url", url[:12])),))
          for label, url in (("file-scheme", "file:///etc/passwd"), ("ftp-scheme", "ftp://127.0.0.1/saved_models.zip"),
                             ("javascript", "javascript:alert(1)"), ("plain-http", "http://127.0.0.1:9/saved_models.zip"),
                             ("empty", ""), ("no-scheme", "saved_models.zip"))],
        Case("classifier-malicious-pickle", "archive",
             (error(*TOXICITY, "--classifier", "detoxify-unbiased", "--classifier-checkpoint", "{tmp}/pytorch_model.bin",
                    "--classifier-base", "{tmp}/base", check=no_pwned),),
             setups(write_evil_pickle, make_dir("base"))),
        Case("add-classifier-malicious-pickle", "archive",
             (error("eval", "add-classifier", "detoxify-unbiased", "--checkpoint", "{tmp}/pytorch_model.bin", "--base", "{tmp}/base",
                    check=no_pwned),),
             setups(write_evil_pickle, make_dir("base"))),
        Case("model-remote-code-fluency", "archive", (error("eval", "fluency", "{tmp}/evil", *FLUENCY_OPTS, check=no_pwned),),
             write_remote_code_model),
        Case("model-remote-code-finetune", "archive",
             (error("finetune", "{tmp}/evil", *FINETUNE_OPTS, check=no_pwned),), write_remote_code_model),
    ]


# --- missing files, unknown references, wrong kinds -------------------------------------------------------------------


def reference_cases() -> list[Case]:
    missing = (
        ("data", ("train", "tiny", "--data", "/nonexistent/corpus.jsonl", "--max-steps", "2"), "corpus.jsonl"),
        ("config", (*TRAIN, "--config", "/nonexistent/c.yaml"), "c.yaml"),
        ("pipeline", ("run", "/nonexistent/p.yaml"), "p.yaml"),
        ("families", (*FACTORS, "--families", "/nonexistent/f.yaml"), "f.yaml"),
        ("scorefile", ("mask", "/nonexistent/s.npy", "--data", "{dataset}"), "s.npy"),
        ("prompts", (*TOXICITY, "--prompts", "/nonexistent/p.jsonl"), "p.jsonl"),
        ("queries", ("scores", "{factors}", "-t", "/nonexistent/q.jsonl"), "q.jsonl"),
        ("eval-data", (*TRAIN, "--eval-data", "/nonexistent/h.jsonl"), "h.jsonl"),
        ("classifier-from", ("eval", "add-classifier", "x", "--from", "/nonexistent/clf"), "clf"),
        ("html-folder", ("mask", "export", "{mask}", "--html", "/nonexistent/dir/m.html"), "dir"),
        ("report-html-folder", ("report", "{etox}", "--html", "/nonexistent/dir/r.html"), "dir"),
        ("log-file-folder", (*TRAIN_BASE, "--max-steps", "3", "--batch-size", "8", "--log-file", "/nonexistent/dir/log.jsonl"),
         "log.jsonl"),
    )
    unknown = (  # (label, argv, what the error must name)
        ("workspace-show", ("workspace", "show", "nosuch"), "nosuch"), ("workspace-rm", ("workspace", "rm", "nosuch"), "nosuch"),
        ("workspace-show-empty", ("workspace", "show", ""), "''"), ("workspace-show-short-prefix", ("workspace", "show", "ab"), "ab"),
        ("workspace-show-traversal", ("workspace", "show", "../../../etc/passwd"), "passwd"),
        ("workspace-ls-kind", ("workspace", "ls", "nosuch"), "nosuch"), ("mask-show", ("mask", "show", "nosuch"), "nosuch"),
        ("mask-select", ("mask", "nosuch"), "nosuch"), ("scores", ("scores", "nosuch", "-t", "tiny-queries-toxic"), "nosuch"),
        ("finetune", ("finetune", "nosuch", "--data", "{dataset}"), "nosuch"),
        ("eval-fluency", ("eval", "fluency", "nosuch"), "nosuch"), ("report", ("report", "nosuch"), "nosuch"),
        ("eval-implicit", ("eval", "implicit", "nosuch"), "nosuch"),
        ("factors", ("factors", "nosuch", "--data", "{dataset}"), "nosuch"), ("train-mask", (*TRAIN, "--mask", "nosuch"), "nosuch"),
        ("reward-model", (*TOXICITY, "--defense", "rad", "--reward-model", "nosuch"), "nosuch"),
        ("latest-unknown-kind", ("workspace", "show", "latest:nosuch"), "nosuch"),
    )
    wrong_kind = (
        ("mask-of-checkpoint", ("mask", "{ckpt}"), "{ckpt}"), ("mask-show-of-scores", ("mask", "show", "{scores}"), "{scores}"),
        ("scores-of-checkpoint", ("scores", "{ckpt}", "-t", "tiny-queries-toxic"), "{ckpt}"),
        ("finetune-of-mask", ("finetune", "{mask}", "--data", "{dataset}"), "{mask}"),
        ("implicit-of-fluency-eval", ("eval", "implicit", "{eflu}", "--classifier", "profanity"), "{eflu}"),
        ("report-of-mask", ("report", "{mask}"), "{mask}"), ("train-mask-is-scores", (*TRAIN, "--mask", "{scores}"), "{scores}"),
        ("factors-of-mask", ("factors", "{mask}", "--data", "{dataset}"), "{mask}"),
        ("eval-toxicity-of-dataset", ("eval", "toxicity", "{dataset}", "--classifier", "profanity"), "{dataset}"),
        ("data-is-checkpoint", ("train", "tiny", "--data", "{ckpt}", "--max-steps", "2"), "{ckpt}"),
        ("mask-other-dataset", ("finetune", "{ckpt}", "--data", "{heldout}", "--mask", "{mask}", "--max-steps", "2"), "{mask}"),
    )
    bad_choice = (
        ("precision", (*FACTORS, "--precision", "fp64")), ("device", (*FACTORS, "--device", "tpu")),
        ("device-cuda", (*FACTORS, "--device", "cuda")), ("strategy", ("factors", "{ckpt}", "--data", "{dataset}", "--strategy", "foo")),
        ("scheduler", (*TRAIN, "--scheduler", "foo")), ("profile", (*TRAIN, "--profile", "foo")),
        ("defense", (*TOXICITY, "--defense", "foo")), ("dtype", (*FLUENCY, "--dtype", "int8")),
        ("modules-match-nothing", (*FACTORS, "--modules", "nomatch*")), ("preset", ("run", "--preset", "nosuch")),
        ("train-precision-bf16-cpu", (*TRAIN, "--precision", "bf16")),
    )
    cases = [Case(f"missing-{label}", "missing-file", (error(*argv, names=(name,)),)) for label, argv, name in missing]
    cases += [Case(f"unknown-ref-{label}", "unknown-ref", (error(*argv, names=(name,)),)) for label, argv, name in unknown]
    cases += [Case(f"wrong-kind-{label}", "wrong-kind", (error(*argv, names=(name,)),)) for label, argv, name in wrong_kind]
    cases += [Case(f"bad-choice-{label}", "bad-choice", (error(*argv, names=(argv[-2], argv[-1])),)) for label, argv in bad_choice]
    cases += [
        Case("rm-with-dependents", "unknown-ref", (error("workspace", "rm", "{dataset}", names=("{dataset}",)),)),
        Case("rm-leaf", "unknown-ref", (ok("workspace", "rm", "{report}"),), removes=("report",)),
        Case("html-is-folder", "missing-file", (error("mask", "export", "{mask}", "--html", "{tmp}", names=("folder", "{tmp}")),)),
        Case("html-full-device", "missing-file", (error("mask", "export", "{mask}", "--html", "{tmp}/full", names=("full",),
                                                        check=still_a_device("full")),), make_full_device("full")),
        Case("html-disk-full", "missing-file",
             (error("mask", "export", "{mask}", "--html", "{tmp}/m.html", fsize=1024, names=("m.html", "space", "large")),)),
        Case("log-file-full-device", "missing-file",
             (error(*TRAIN_BASE, "--max-steps", "3", "--batch-size", "8", "--log-file", "{tmp}/full", names=("full",),
                    check=still_a_device("full")),), make_full_device("full")),
    ]
    return cases


# --- interruptions ------------------------------------------------------------------------------------------------

INTERRUPTED = ("run", "--preset", "tiny"), ("train", "tiny", "--data", "tiny", "--max-steps", "50"), (
    "factors", "{ckpt}", "--data", "{dataset}", "--strategy", "kfac")


def interrupt_cases() -> list[Case]:
    cases = []
    for argv in INTERRUPTED:
        for at in (0.1, 0.5, 2.0):
            cases.append(Case(f"ctrl-c-{at}s-{argv[0]}", "interrupt", (anyhow(*argv, signals=((at, "SIGINT"),), timeout=120),)))
    staged = STAGED_TRAIN
    cases += [
        Case("ctrl-c-twice-train", "interrupt", (anyhow(*INTERRUPTED[1], signals=((1.0, "SIGINT"), (1.2, "SIGINT")), timeout=120),)),
        Case("ctrl-c-mid-checkpoint-then-resume", "interrupt",
             (anyhow(*staged, kill_when=(".staging/checkpoints-*/trainer/checkpoint-2", "SIGINT"), timeout=180),
              ok(*staged, timeout=180))),
        Case("sigterm-train", "interrupt", (anyhow(*INTERRUPTED[1], signals=((3.0, "SIGTERM"),), timeout=120),)),
        Case("sighup-train", "interrupt", (anyhow(*INTERRUPTED[1], signals=((3.0, "SIGHUP"),), timeout=120),)),
        *[Case(f"ctrl-c-{at}s-workspace-ls", "interrupt", (anyhow("workspace", "ls", signals=((at, "SIGINT"),)),))
          for at in (0.05, 0.1, 0.15, 0.2, 0.25)],
        *[Case(f"ctrl-c-{at}s-train", "interrupt", (anyhow(*INTERRUPTED[1], signals=((at, "SIGINT"),), timeout=120),))
          for at in (0.25, 1.0, 4.0)],
        Case("ctrl-c-0.3s-mask", "interrupt", (anyhow("mask", "{scores}", "--max-tokens", "81", signals=((0.3, "SIGINT"),)),)),
    ]
    return cases


def kill_cases() -> list[Case]:
    staged = STAGED_TRAIN
    factors = ("factors", "{ckpt}", "--data", "{dataset}", "--strategy", "kfac", "--partitions", "4")
    scores = (*SCORES, "--partitions", "4")
    toxicity = (*TOXICITY_BASE, "--num-prompts", "4", "--samples", "2", "--max-new-tokens", "4", "--batch-size", "1")
    mask_new = ("mask", "{scores}", "--max-tokens", "222")
    mask_force = ("mask", "{scores}", "--max-tokens", "300", "--force")
    train_force = ("train", "tiny", "--data", "{small}", "--seq-len", "64", "--eval-docs", "8", "--max-steps", "2", "--batch-size", "8",
                   "--force")
    cases = [
        Case("kill-9-mid-checkpoint-then-resume", "kill",
             (anyhow(*staged, kill_when=(".staging/checkpoints-*/trainer/checkpoint-2", "SIGKILL"), timeout=180),
              ok(*staged, timeout=180))),
        Case("kill-9-mid-factors-partition-then-resume", "kill",
             (anyhow(*factors, kill_when=(".staging/factors-*/kronfluence/**/*partition*", "SIGKILL"), timeout=180),
              ok(*factors, timeout=180))),
        Case("kill-9-mid-scores-partition-then-resume", "kill",
             (anyhow(*scores, kill_when=(".staging/scores-*/kronfluence/**/*partition*", "SIGKILL"), timeout=180),
              ok(*scores, timeout=180))),
        Case("kill-9-mid-eval-then-resume", "kill",
             (anyhow(*toxicity, kill_when=(".staging/evals-*/generations.partial.jsonl", "SIGKILL"), timeout=180),
              ok(*toxicity, timeout=180))),
        Case("kill-9-at-2s-train-then-rerun", "kill",
             (anyhow(*staged, signals=((2.0, "SIGKILL"),), timeout=180), ok(*staged, timeout=180))),
    ]
    for k in (1, 2):
        cases.append(Case(f"kill-9-at-rename-{k}-new-mask-then-rerun", "kill",
                          (anyhow(*mask_new, kill_at_rename=k), ok(*mask_new))))
    for k in (1, 2, 3):
        cases.append(Case(f"kill-9-at-rename-{k}-mask-force-then-rerun", "kill",
                          (anyhow(*mask_force, kill_at_rename=k), ok(*mask_force))))
    cases += [
        Case("kill-9-between-swap-renames-mask-force", "kill",
             (anyhow(*mask_force, kill_when_moved="mask"), ok("workspace", "show", "{mask}"))),
        Case("kill-9-between-swap-renames-train-force", "kill",
             (anyhow(*train_force, kill_when_moved="ckpt", timeout=240), ok("workspace", "show", "{ckpt}"))),
        Case("kill-9-between-swap-renames-report-force", "kill",
             (anyhow("report", "{etox}", "{eflu}", "--force", kill_when_moved="report"), ok("workspace", "show", "{report}"))),
        Case("kill-9-between-swap-renames-eval-force", "kill",
             (anyhow("eval", "fluency", "{ckpt}", "--ppl-docs", "8", "--lambada-docs", "8", "--ppl-data", "tiny-heldout",
                     "--lambada", "tiny-lambada", "--force", kill_when_moved="eflu",
                     timeout=180),
              ok("workspace", "show", "{eflu}"))),
        Case("disk-full-mask-force", "kill", (error(*mask_force, fsize=1024, names=("space", "large", "write")),),
             keeps_staging=True),
        Case("disk-full-new-checkpoint", "kill",
             (error(*TRAIN_BASE, "--max-steps", "3", "--batch-size", "8", fsize=1 << 20, timeout=180,
                    names=("space", "large", "write")),), keeps_staging=True),
        Case("disk-full-factors", "kill", (error(*FACTORS_BASE, "--max-examples", "48", fsize=64 << 10, timeout=120,
                                                 names=("space", "large", "write")),), keeps_staging=True),
    ]
    return cases


def concurrency_cases() -> list[Case]:
    # long enough (~5 s of steps) to still be training when the removal comes 6 s in, even on an idle machine
    finetune = ("finetune", "{ckpt}", *FINETUNE_OPTS[:4], "--mask", "{mask}", "--lambda", "1", "--max-steps", "60", "--batch-size", "8")
    return [
        Case("rm-mask-while-finetune-starts", "concurrency",
             (anyhow(*finetune, timeout=240), anyhow("workspace", "rm", "{mask}", concurrent=1.0)), removes=("mask",),
             outcome=one_wins("mask")),
        Case("rm-mask-while-finetune-trains", "concurrency",
             (anyhow(*finetune, timeout=240), anyhow("workspace", "rm", "{mask}", concurrent=6.0)), removes=("mask",),
             outcome=one_wins("mask")),
        Case("two-identical-masks-at-once", "concurrency",
             (ok("mask", "{scores}", "--max-tokens", "333"), anyhow("mask", "{scores}", "--max-tokens", "333", concurrent=0.0))),
        Case("rm-report-while-report-force", "concurrency",
             (anyhow("report", "{etox}", "{eflu}", "--force"), anyhow("workspace", "rm", "{report}", concurrent=0.8)),
             removes=("report",)),
    ]


# --- issue 26: what doctor and rm may touch, where outputs may go, linked artifact folders -------------------------

USER_FOLDERS = ("checkpoints/my-run-1", "datasets/raw", ".staging/my-notes")


def removal_scope_cases() -> list[Case]:
    train3 = (*TRAIN_BASE, "--max-steps", "3", "--batch-size", "8")
    return [
        Case("doctor-yes-damaged-dataset-keeps-descendants", "removal",
             (ok("workspace", "doctor", "--yes", check=still_listed("ckpt", "factors", "scores", "mask")),),
             append_byte("dataset", "texts.bin"), damages=("dataset",), removes=("dataset",)),
        Case("doctor-yes-leaves-user-folders", "removal", (ok("workspace", "doctor", "--yes"),), user_folders),
        Case("rm-user-folder", "removal", (error("workspace", "rm", "raw", names=("raw",)),), user_folders),
        Case("rm-id-folder-without-manifest", "removal",
             (error("workspace", "rm", "0123456789ab", names=("0123456789ab",)),), lookalike_folder),
        Case("doctor-yes-id-folder-without-manifest", "removal", (ok("workspace", "doctor", "--yes"),), lookalike_folder),
        Case("log-file-inside-artifact", "output-path",
             (error(*train3, "--log-file", "{ws}/checkpoints/{ckpt}/train_log.jsonl", names=("--log-file",)),)),
        Case("html-inside-artifact", "output-path",
             (error("mask", "export", "{mask}", "--html", "{ws}/masks/{mask}/mask.safetensors", names=("--html",)),)),
        Case("html-new-file-inside-artifact", "output-path",
             (error("mask", "export", "{mask}", "--html", "{ws}/masks/{mask}/page.html", names=("--html",)),)),
        Case("report-html-inside-artifact", "output-path",
             (error("report", "{etox}", "{eflu}", "--html", "{ws}/evals/{etox}/r.html", names=("--html",)),)),
        Case("html-inside-staging", "output-path",
             (error("mask", "export", "{mask}", "--html", "{ws}/.staging/m.html", names=("--html",)),)),
        Case("log-file-fifo", "output-path",
             (error(*train3, "--log-file", "{tmp}/fifo", timeout=60, names=("fifo",)),), make_fifo("fifo")),
        Case("linked-artifact-folder", "output-path",
             (ok("--json", "workspace", "ls", check=lists_as_artifact("mask")), ok("mask", "show", "{mask}"),
              ok("--json", "workspace", "doctor", check=no_findings), ok(*MASK)), link_elsewhere("mask")),
        Case("linked-artifact-folder-used", "output-path", (ok("finetune", "{ckpt}", *FINETUNE_OPTS, "--mask", "{mask}"),),
             link_elsewhere("mask")),
        Case("linked-artifact-folder-rm", "output-path", (ok("workspace", "rm", "{report}"),), link_elsewhere("report"),
             removes=("report",)),
    ]


# --- issue 26: a diverging run fails, a NaN model is refused ---------------------------------------------------------


def non_finite_cases() -> list[Case]:
    return [
        Case("finetune-lambda-1e300", "non-finite",  # past float32: refused as a value
             (error(*FINETUNE, "--mask", "{mask}", "--lambda", "1e300", timeout=240, names=("non-finite", "lambda")),),
             keeps_staging=True),
        Case("finetune-lambda-3e38", "non-finite",  # a float32, but −λ·CE summed over tokens overflows: the run diverges
             (error(*FINETUNE, "--mask", "{mask}", "--lambda", "3e38", timeout=240, names=("non-finite",)),),
             keeps_staging=True),
        Case("train-lr-50", "non-finite",
             (error(*TRAIN_BASE, "--max-steps", "6", "--save-steps", "2", "--batch-size", "8", "--lr", "50", timeout=240,
                    names=("non-finite",)),), keeps_staging=True),
        Case("eval-fluency-nan-model", "non-finite",
             (error("eval", "fluency", "{tmp}/nanmodel", *TINY_FLUENCY, names=("non-finite", "nan")),), nan_model),
        Case("finetune-nan-model", "non-finite",
             (error("finetune", "{tmp}/nanmodel", *FINETUNE_OPTS, names=("non-finite", "nan")),), nan_model),
    ]


# --- issue 26: values that would hang or bomb ------------------------------------------------------------------------

LONG_INT = "9" * 5000


def hostile_value_cases() -> list[Case]:
    return [
        Case("set-alias-bomb", "hostile-value",
             (error("run", "{tmp}/pipeline.yaml", "--set", f"mask.threshold={ALIAS_BOMB}", timeout=20, names=("--set",)),),
             write_pipeline({}), no_new_artifacts=True),
        Case("set-long-int", "hostile-value",
             (error("run", "{tmp}/pipeline.yaml", "--set", f"mask.max_tokens={LONG_INT}", timeout=20, names=("--set",)),),
             write_pipeline({}), no_new_artifacts=True),
        Case("pipeline-long-int", "hostile-value",
             (error("run", "{tmp}/pipeline.yaml", timeout=20, names=("pipeline.yaml",)),),
             write_pipeline({"mask": f"{{threshold: 0.99, window: 1, max_tokens: {LONG_INT}}}"}), no_new_artifacts=True),
        Case("train-config-long-int", "hostile-value",
             (error(*TRAIN, "--config", "{tmp}/c.yaml", names=("c.yaml",)),), write("c.yaml", f"max_steps: {LONG_INT}\n".encode())),
        Case("cli-long-int", "hostile-value", (error(*TRAIN_BASE, "--batch-size", "8", "--max-steps", LONG_INT,
                                                     names=option_names("--max-steps")),)),
        Case("pipeline-duplicate-key", "hostile-value",
             (error("run", "{tmp}/pipeline.yaml", timeout=20, names=("twice", "duplicate")),), duplicate_key_pipeline,
             no_new_artifacts=True),
        Case("eval-samples-2**62", "hostile-value",
             (error(*TOXICITY_BASE, "--prompts", "tiny-prompts", "--num-prompts", "2", "--max-new-tokens", "4", "--samples",
                    str(2**62), timeout=60,
                    names=("samples",)),)),
        Case("eval-max-new-tokens-2**62", "hostile-value",
             (error(*TOXICITY_BASE, "--prompts", "tiny-prompts", "--num-prompts", "2", "--samples", "2", "--max-new-tokens",
                    str(2**62), timeout=60,
                    names=option_names("--max-new-tokens")),)),
        Case("show-latest-colon", "hostile-value", (error("workspace", "show", "latest:", names=("latest:",)),)),
    ]


# --- issue 26: hostile input files -----------------------------------------------------------------------------------

DEEP_JSON = b'{"text": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n"
SURROGATE = b'{"text": "abc \\ud800 def", "prompt": "abc \\ud800", "continuation": "x \\udfff"}\n' * 20


def hostile_file_cases() -> list[Case]:
    def data(name: str, content: bytes | None = None, setup: Callable | None = None, names: tuple[str, ...] = ()) -> Case:
        return Case(f"data-{name}", "hostile-file",
                    (error("train", "tiny", "--data", f"{{tmp}}/{name}", "--seq-len", "64", "--eval-docs", "8",
                           "--max-steps", "2", "--batch-size", "8", timeout=60, names=names or (name,)),),
                    setup or write(name, content))

    def prompts(name: str, content: bytes | None = None, setup: Callable | None = None, names: tuple[str, ...] = ()) -> Case:
        return Case(f"prompts-{name}", "hostile-file",
                    (error(*TOXICITY, "--prompts", f"{{tmp}}/{name}", timeout=60, names=names or (name,)),),
                    setup or write(name, content))

    def queries(name: str, content: bytes) -> Case:
        return Case(f"queries-{name}", "hostile-file",
                    (error("scores", "{factors}", "-t", f"{{tmp}}/{name}", "--max-queries", "4", names=(name,)),),
                    write(name, content))

    return [
        data("deep.jsonl", DEEP_JSON), data("deep.json", b"[" + DEEP_JSON.strip() + b"]"),
        data("surrogate.jsonl", SURROGATE), data("corrupt-page.parquet", setup=corrupt_parquet("corrupt-page.parquet")),
        data("device", setup=make_full_device("device"), names=("device", "regular file")),
        prompts("deep.jsonl", DEEP_JSON), prompts("surrogate.jsonl", SURROGATE),
        prompts("rtp-toxicity-text.jsonl", b'{"prompt": {"text": "hi there", "toxicity": "high"}}\n' * 5),
        prompts("bold-numbers.jsonl", b'{"domain": "x", "prompts": [1, 2]}\n' * 5),
        prompts("toxic-list.jsonl", b'{"prompt": "hi there", "toxic": [0]}\n' * 5),
        prompts("folder", setup=make_dir("folder"), names=("folder",)),
        prompts("device", setup=make_full_device("device"), names=("device", "regular file")),
        queries("deep.jsonl", DEEP_JSON), queries("surrogate.jsonl", SURROGATE),
        Case("config-is-folder", "hostile-file", (error(*TRAIN, "--config", "{tmp}/folder", names=("folder",)),),
             make_dir("folder")),
        Case("eval-data-dir-refused-leaves-nothing", "hostile-file",
             (error(*TRAIN, "--eval-data", "{tmp}/emptydir", names=("emptydir",)),), make_dir("emptydir")),
        Case("ppl-data-no-text-field", "hostile-file",
             (error(*FLUENCY, "--ppl-data", "{tmp}/no-text.jsonl", names=("no-text.jsonl",), check=mentions("ppl-data")),),
             write("no-text.jsonl", b'{"foo": "bar"}\n' * 20)),
        *[Case(f"manifest-hand-edited-{label}", "hostile-file", tuple(anyhow(*argv) for argv in steps), edit_manifest(role, edit),
               damages=(role,))
          for label, role, edit, steps in MANIFEST_EDITS],
    ]


MANIFEST_EDITS = (  # (label, role, fields set to wrong types, commands that read them)
    ("ckpt-config", "ckpt", {"config": {"model": 5, "dataset": [1], "train": "x", "mode": 3}},
     (("workspace", "show", "{ckpt}"), FINETUNE, FLUENCY, ("eval", "fluency", "{ckpt}", *TINY_FLUENCY, "--force"))),
    ("ckpt-summary", "ckpt", {"summary": {"steps": "many", "final_train_loss": [1], "mode": 5}},
     (("workspace", "show", "{ckpt}"), ("workspace", "ls"), FINETUNE)),
    ("eval-summary", "etox", {"summary": {"expected_max_toxicity": "high", "toxicity_probability": [0], "model": 5,
                                          "prompts": "x", "samples": "y"}},
     (("report", "{etox}", "{eflu}", "--force"), ("workspace", "show", "{etox}"))),
    ("eval-config", "eflu", {"config": {"task": 5, "model": "x", "generation": [1]}},
     (("report", "{etox}", "{eflu}", "--force"), ("eval", "implicit", "{eflu}", "--classifier", "profanity"))),
    ("mask-config", "mask", {"config": {"dataset": 5, "threshold": "high", "window": [1]}},
     (("mask", "show", "{mask}"), ("finetune", "{ckpt}", *FINETUNE_OPTS, "--mask", "{mask}"),
      ("mask", "export", "{mask}", "--html", "{tmp}/m.html"))),
)


# --- issue 26: model folders, --model-config ------------------------------------------------------------------------


def model_folder_cases() -> list[Case]:
    def broken(label: str, edit: Callable, names: tuple[str, ...] = ("{tmp}/m",)) -> Case:
        return Case(f"model-folder-{label}", "model-folder",
                    (error("eval", "fluency", "{tmp}/m", *TINY_FLUENCY, names=names,
                           check=all_of(no_pwned, never_suggests_unsafe_loading)),),
                    setups(copy_model("m"), edit))

    def model_config(label: str, config: dict, names: tuple[str, ...] = ("cfg.json", "model-config")) -> Case:
        return Case(f"model-config-{label}", "model-folder",
                    (error("train", "--model-config", "{tmp}/cfg.json", "--tokenizer", "tiny", "--data", "{dataset}",
                           "--max-steps", "1", "--batch-size", "8", timeout=120, names=names),),
                    write("cfg.json", json.dumps(config).encode()))

    tiny = {"model_type": "gpt_neox", "vocab_size": 2048, "max_position_embeddings": 128, "hidden_size": 64,
            "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 256}
    return [
        broken("unknown-model-type", model_file("config.json", json.dumps({"model_type": "fsweep_nosuch"}).encode())),
        broken("config-list", model_file("config.json", b"[]\n")),
        broken("config-binary", model_file("config.json", BINARY)),
        broken("safetensors-header-not-json", model_file("model.safetensors", (16).to_bytes(8, "little") + b"not json at all!")),
        broken("safetensors-header-past-end", model_file("model.safetensors", _safetensors_past_end())),
        broken("safetensors-header-2**62", model_file("model.safetensors", (1 << 62).to_bytes(8, "little") + b"{}")),
        broken("tokenizer-binary", model_file("tokenizer.json", BINARY)),
        broken("tokenizer-incomplete", truncate_model_file("tokenizer.json")),
        broken("pickled-weights", pickled_weights, names=("pytorch_model.bin",)),
        model_config("192GiB", {**tiny, "hidden_size": 65536, "num_hidden_layers": 12, "intermediate_size": 262144}),
        model_config("heads-do-not-divide", {**tiny, "hidden_size": 100, "num_attention_heads": 3}),
        model_config("negative-size", {**tiny, "hidden_size": -64}),
        Case("model-config-zero-layers", "model-folder",  # embeddings and head only: a model, if a poor one
             (anyhow("train", "--model-config", "{tmp}/cfg.json", "--tokenizer", "tiny", "--data", "{dataset}", "--max-steps",
                     "1", "--batch-size", "8", timeout=120),),
             write("cfg.json", json.dumps({**tiny, "num_hidden_layers": 0}).encode())),
        # the tiny model's weights are 3.6 MB and its optimizer state 7.3 MB (the limit is per file): the disk fills
        # inside the weights (2 MiB) or at several points of torch.save's archive of the optimizer state
        *[Case(f"disk-full-train-state-{size >> 20}MiB", "kill",
               (error(*TRAIN_BASE, "--max-steps", "3", "--save-steps", "1", "--batch-size", "8", fsize=size, timeout=180,
                      names=("space", "large", "write")),), keeps_staging=True)
          for size in (2 << 20, 5 << 20, 6 << 20, 7 << 20)],
    ]


def _safetensors_past_end() -> bytes:
    header = json.dumps({"gpt_neox.embed_in.weight": {"dtype": "F32", "shape": [1000, 1000], "data_offsets": [0, 4_000_000]}})
    return len(header).to_bytes(8, "little") + header.encode() + bytes(16)


# --- issue 26: the streams and the environment ----------------------------------------------------------------------


def stream_cases() -> list[Case]:
    ascii_locale = (("LC_ALL", "C"), ("LANG", "C"), ("PYTHONCOERCECLOCALE", "0"), ("PYTHONUTF8", "0"),
                    ("PYTHONIOENCODING", ""))
    return [
        Case("stdout-closed-ls", "streams", (anyhow("workspace", "ls", redirect=">&-"),)),
        Case("stdout-closed-json-mask", "streams", (anyhow("--json", "mask", "{scores}", "--max-tokens", "61", redirect=">&-"),)),
        Case("stdout-dev-full-ls", "streams", (error("workspace", "ls", redirect=">/dev/full", names=("stdout", "space")),)),
        Case("stdout-dev-full-json", "streams",
             (error("--json", "workspace", "show", "{mask}", redirect=">/dev/full", names=("stdout", "space")),)),
        Case("ascii-locale-non-ascii-name", "streams",
             (ok("mask", "{scores}", "--max-tokens", "62", "--name", "café-λ-毒", env=ascii_locale),
              ok("workspace", "ls", env=ascii_locale), ok("workspace", "show", "café-λ-毒", env=ascii_locale))),
        Case("ascii-locale-help", "streams", (ok("--help", env=ascii_locale), ok("train", "--help", env=ascii_locale),
                                              ok("eval", "toxicity", "--help", env=ascii_locale))),
        Case("home-unusable-install-completion", "streams",
             (anyhow("--install-completion", "bash", env=(("HOME", "{tmp}/afile"), ("SHELL", "/bin/bash")), workspace=False),),
             write("afile", b"x")),
    ]


def all_cases() -> list[Case]:
    return (control_cases() + manifest_cases() + input_file_cases() + score_file_cases() + damaged_artifact_cases()
            + workspace_path_cases() + number_cases() + yaml_cases() + name_cases() + archive_cases() + reference_cases()
            + interrupt_cases() + kill_cases() + concurrency_cases() + removal_scope_cases() + non_finite_cases()
            + hostile_value_cases() + hostile_file_cases() + model_folder_cases() + stream_cases())


# ----------------------------------------------------------------------------------------------------------------
# Setups: each writes bad files into {tmp} or damages the case's copy of the workspace


class SetupError(Exception):
    """The sweep could not build a case's bad input: reported, never blamed on the tool."""


class SkipCase(Exception):
    """This machine cannot run the case (e.g. no permission to create a device node)."""


def setups(*fns: Callable) -> Callable:
    def run(ctx: Ctx) -> None:
        for fn in fns:
            fn(ctx)

    return run


def write(name: str, data: bytes) -> Callable:
    def run(ctx: Ctx) -> None:
        (ctx.tmp / name).write_bytes(data.replace(b"{tmp}", str(ctx.tmp).encode()))

    return run


def make_dir(name: str) -> Callable:
    return lambda ctx: (ctx.tmp / name).mkdir(parents=True, exist_ok=True)


def make_fifo(name: str) -> Callable:
    return lambda ctx: os.mkfifo(ctx.tmp / name)


def make_full_device(name: str) -> Callable:
    """A private copy of /dev/full (writes fail with ENOSPC) in {tmp}: the system's own node is never a target."""

    def run(ctx: Ctx) -> None:
        try:
            os.mknod(ctx.tmp / name, 0o666 | stat.S_IFCHR, os.makedev(1, 7))
        except OSError as exc:
            raise SkipCase(f"cannot create a device node ({exc.strerror})") from exc

    return run


def make_symlink(name: str, target: str) -> Callable:
    return lambda ctx: os.symlink(target, ctx.tmp / name)


def write_pipeline(overrides: dict[str, str]) -> Callable:
    def run(ctx: Ctx) -> None:
        text = PIPELINE.format(dataset=ctx.ids["dataset"], ckpt=ctx.ids["ckpt"])
        lines = text.splitlines()
        for key, value in overrides.items():
            lines = [*_drop_section(lines, key), f"{key}: {value}"]
        (ctx.tmp / "pipeline.yaml").write_text("\n".join(lines) + "\n")

    return run


def _drop_section(lines: list[str], key: str) -> list[str]:
    """The YAML lines without the top-level KEY and its indented continuation lines."""
    out, skipping = [], False
    for line in lines:
        if line.startswith(f"{key}:"):
            skipping = True
            continue
        if skipping and line.startswith("  "):
            continue
        skipping = False
        out.append(line)
    return out


def damage_manifest(role: str, data: bytes) -> Callable:
    return lambda ctx: (ctx.artifact(role) / "manifest.json").write_bytes(data)


def remove_file(role: str, rel: str) -> Callable:
    return lambda ctx: (ctx.artifact(role) / rel).unlink()


def overwrite_file(role: str, rel: str, data: bytes) -> Callable:
    return lambda ctx: (ctx.artifact(role) / rel).write_bytes(data)


def truncate_file(role: str, rel: str, keep: float = 0.5) -> Callable:
    def run(ctx: Ctx) -> None:
        path = ctx.artifact(role) / rel
        os.truncate(path, int(path.stat().st_size * keep))

    return run


def truncate_glob(role: str, pattern: str) -> Callable:
    def run(ctx: Ctx) -> None:
        paths = sorted(ctx.artifact(role).glob(pattern))
        if not paths:
            raise SetupError(f"no {pattern} in the {role} artifact")
        for path in paths:
            os.truncate(path, path.stat().st_size // 2)

    return run


def copy_artifact_file(role: str, rel: str, name: str, keep: float = 1.0) -> Callable:
    def run(ctx: Ctx) -> None:
        data = (ctx.artifact(role) / rel).read_bytes()
        (ctx.tmp / name).write_bytes(data[: int(len(data) * keep)])

    return run


def negate_scores(keep_mtime: bool) -> Callable:
    """Flip the sign bit of every float32 score in place: same size, valid file, opposite ranking."""

    def run(ctx: Ctx) -> None:
        path = ctx.artifact("scores") / "scores.safetensors"
        stat = path.stat()
        data = bytearray(path.read_bytes())
        start = 8 + int.from_bytes(data[:8], "little")
        for i in range(start + 3, len(data), 4):
            data[i] ^= 0x80
        path.write_bytes(bytes(data))
        if keep_mtime:
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))

    return run


def _npy_header(shape: tuple[int, ...], descr: str) -> bytes:
    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape!r}, }}".encode()
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header


def write_npy(name: str, *, shape: tuple[int, ...] | None = None, fill: float = 1.0, truncate: float = 1.0) -> Callable:
    """A float32 .npy of the dataset's shape (read from the scores artifact's header), written without numpy."""

    def run(ctx: Ctx) -> None:
        import struct

        dims = shape or ctx.scores_shape()
        count = 1
        for d in dims:
            count *= d
        data = _npy_header(tuple(dims), "<f4") + struct.pack("<f", fill) * count
        (ctx.tmp / name).write_bytes(data[: int(len(data) * truncate)])

    return run


def write_pickle_npy(name: str) -> Callable:
    """An object-dtype .npy: loading it would unpickle (and run) the payload."""

    def run(ctx: Ctx) -> None:
        payload = pickle.dumps(_Pwn(str(ctx.tmp / "pwned")), protocol=2)
        (ctx.tmp / name).write_bytes(_npy_header((1,), "|O") + payload)

    return run


class _Pwn:
    """Unpickling this writes a marker file: no loader may ever run it."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def write_evil_pickle(ctx: Ctx) -> None:
    (ctx.tmp / "pytorch_model.bin").write_bytes(pickle.dumps(_Pwn(str(ctx.tmp / "pwned")), protocol=2))


def write_remote_code_model(ctx: Ctx) -> None:
    folder = ctx.tmp / "evil"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "model_type": "fsweep_evil", "architectures": ["EvilModel"],
        "auto_map": {"AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.EvilModel"}}))
    (folder / "evil.py").write_text(f"open({str(ctx.tmp / 'pwned')!r}, 'w').write('pwned')\n")
    (folder / "tokenizer.json").write_text("{}")


def write_zip_bomb(ctx: Ctx) -> None:
    """200 MB of zeros behind the member RAD's installer looks for (~200 KB on disk, ratio ~1000)."""
    with zipfile.ZipFile(ctx.tmp / "bomb.zip", "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf, \
            zf.open("saved_models/gpt2_toxicity/pytorch_model.bin", "w", force_zip64=True) as member:
        chunk = bytes(1 << 20)
        for _ in range(200):
            member.write(chunk)


def write_zip_many(ctx: Ctx) -> None:
    with zipfile.ZipFile(ctx.tmp / "many.zip", "w", zipfile.ZIP_STORED) as zf:
        for i in range(5000):
            zf.writestr(f"saved_models/junk/{i:05d}.txt", b"")
        zf.writestr("saved_models/gpt2_toxicity/pytorch_model.bin", b"not a checkpoint")


def write_zip_slip(ctx: Ctx) -> None:
    with zipfile.ZipFile(ctx.tmp / "slip.zip", "w") as zf:
        zf.writestr("../../../../../../../../../../" + str(ctx.escape_marker).lstrip("/"), b"escaped")
        zf.writestr(str(ctx.escape_marker) + ".abs", b"escaped")
        zf.writestr("saved_models/gpt2_toxicity/pytorch_model.bin", b"not a checkpoint")


def write_zip_truncated(ctx: Ctx) -> None:
    with zipfile.ZipFile(ctx.tmp / "full.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("saved_models/gpt2_toxicity/pytorch_model.bin", os.urandom(100_000))
    data = (ctx.tmp / "full.zip").read_bytes()
    (ctx.tmp / "t.zip").write_bytes(data[: len(data) // 2])


def write_zip_empty(ctx: Ctx) -> None:
    with zipfile.ZipFile(ctx.tmp / "e.zip", "w"):
        pass


def replace_kind_dir_with_file(kind: str) -> Callable:
    def run(ctx: Ctx) -> None:
        shutil.rmtree(ctx.ws / kind)
        (ctx.ws / kind).write_bytes(b"not a folder")

    return run


def junk_in_workspace(ctx: Ctx) -> None:
    (ctx.ws / "masks" / "README.txt").write_text("a stray file")
    (ctx.ws / "masks" / "zzzzzzzzzzzz").mkdir()
    (ctx.ws / ".staging").mkdir(exist_ok=True)
    (ctx.ws / ".staging" / "garbage").write_bytes(BINARY)
    (ctx.ws / "unknown-folder").mkdir()
    (ctx.ws / "manifest.json").write_bytes(b"{")


def garbage_locks(ctx: Ctx) -> None:
    locks = ctx.ws / ".locks"
    locks.mkdir(exist_ok=True)
    for path in locks.iterdir():
        path.write_bytes(BINARY)
    (locks / "garbage.lock").mkdir()


def staged_truncated_optimizer(ctx: Ctx) -> None:
    """An interrupted run (SIGKILLed after step 3 by a trainer callback) whose saved optimizer state is cut short."""
    run_step(ctx, anyhow(*STAGED_TRAIN, kill_after_step=3, timeout=180))
    found = sorted(ctx.ws.glob(".staging/checkpoints-*/trainer/checkpoint-*/optimizer.pt"))
    if not found:
        raise SetupError("the interrupted run left no optimizer.pt in staging")
    for path in found:
        os.truncate(path, path.stat().st_size // 3)


def append_byte(role: str, rel: str) -> Callable:
    def run(ctx: Ctx) -> None:
        with open(ctx.artifact(role) / rel, "ab") as fh:
            fh.write(b"!")

    return run


def user_folders(ctx: Ctx) -> None:
    """Folders of the user's own inside the workspace (a run's notes, raw data): never the tool's to remove."""
    for rel in USER_FOLDERS:
        (ctx.ws / rel).mkdir(parents=True, exist_ok=True)
        (ctx.ws / rel / "keep.txt").write_text("mine")


def lookalike_folder(ctx: Ctx) -> None:
    """A folder named like an artifact id, without a manifest: nothing says it is an artifact."""
    (ctx.ws / "masks" / "0123456789ab").mkdir()
    (ctx.ws / "masks" / "0123456789ab" / "keep.txt").write_text("mine")


def link_elsewhere(role: str) -> Callable:
    """The artifact folder moved to "another disk" ({tmp}/disk2) and linked back."""

    def run(ctx: Ctx) -> None:
        folder = ctx.artifact(role)
        target = ctx.tmp / "disk2" / folder.name
        target.parent.mkdir(exist_ok=True)
        shutil.move(str(folder), target)
        os.symlink(target, folder)

    return run


def copy_model(name: str) -> Callable:
    return lambda ctx: shutil.copytree(ctx.artifact("ckpt") / "model", ctx.tmp / name)


def model_file(rel: str, data: bytes, folder: str = "m") -> Callable:
    return lambda ctx: (ctx.tmp / folder / rel).write_bytes(data)


def truncate_model_file(rel: str, folder: str = "m") -> Callable:
    def run(ctx: Ctx) -> None:
        path = ctx.tmp / folder / rel
        os.truncate(path, path.stat().st_size // 2)

    return run


def pickled_weights(ctx: Ctx) -> None:
    """The weights as a pickle (pytorch_model.bin) that runs code when unpickled; no safetensors beside it."""
    (ctx.tmp / "m" / "model.safetensors").unlink()
    (ctx.tmp / "m" / "pytorch_model.bin").write_bytes(pickle.dumps(_Pwn(str(ctx.tmp / "pwned")), protocol=2))


def nan_model(ctx: Ctx) -> None:
    """A copy of the prepared checkpoint's model folder whose weights are all NaN (a diverged run saved elsewhere)."""
    import numpy as np
    from safetensors.numpy import load_file, save_file

    shutil.copytree(ctx.artifact("ckpt") / "model", ctx.tmp / "nanmodel")
    path = ctx.tmp / "nanmodel" / "model.safetensors"
    tensors = {k: np.full_like(v, np.nan) if v.dtype.kind == "f" else v for k, v in load_file(str(path)).items()}
    save_file(tensors, str(path), metadata={"format": "pt"})


def duplicate_key_pipeline(ctx: Ctx) -> None:
    write_pipeline({})(ctx)
    with open(ctx.tmp / "pipeline.yaml", "a") as fh:
        fh.write("model: pythia-160m\n")  # a second `model:`; YAML keeps the last silently


def corrupt_parquet(name: str) -> Callable:
    """A parquet file whose footer is valid and whose data pages are garbage."""

    def run(ctx: Ctx) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        texts = [f"document number {i} about cats and dogs " * 5 for i in range(2000)]
        pq.write_table(pa.table({"text": texts}), ctx.tmp / name, compression="snappy", row_group_size=500)
        data = bytearray((ctx.tmp / name).read_bytes())
        footer = int.from_bytes(data[-8:-4], "little") + 8
        for i in range(64, len(data) - footer - 64, 7):
            data[i] ^= 0x5A
        (ctx.tmp / name).write_bytes(bytes(data))

    return run


def edit_manifest(role: str, fields: dict) -> Callable:
    """A hand-edited manifest: these fields replaced by values of the wrong types (the rest as written)."""

    def run(ctx: Ctx) -> None:
        path = ctx.artifact(role) / "manifest.json"
        manifest = json.loads(path.read_text())
        for key, value in fields.items():
            manifest[key] = {**manifest.get(key, {}), **value} if isinstance(value, dict) else value
        path.write_text(json.dumps(manifest))

    return run


# ----------------------------------------------------------------------------------------------------------------
# Extra checks: (ctx, result) -> list of problems (counted as `other`)


def still_listed(*roles: str) -> Callable:
    def check(ctx: Ctx, res: StepResult) -> list[str]:
        listed, why = list_artifacts(ctx)
        gone = [r for r in roles if ctx.ids[r] not in (listed or {})]
        return [f"intact {r} artifact {ctx.ids[r]} was removed" for r in gone] if listed is not None else [why]

    return check


def lists_as_artifact(role: str) -> Callable:
    def check(ctx: Ctx, res: StepResult) -> list[str]:
        with contextlib.suppress(ValueError, KeyError, TypeError):
            if ctx.ids[role] in {a["id"] for a in json.loads(res.stdout)["artifacts"]}:
                return []
        return [f"the linked {role} artifact {ctx.ids[role]} is not listed as an artifact"]

    return check


def no_findings(ctx: Ctx, res: StepResult) -> list[str]:
    with contextlib.suppress(ValueError, KeyError, TypeError):
        found = [f"{f['problem']} {f['path']}" for f in json.loads(res.stdout)["findings"] if f["problem"] != "stale-lock"]
        return [f"doctor finds problems in a sound workspace: {', '.join(found)}"] if found else []
    return ["doctor --json printed no findings object"]


def mentions(word: str) -> Callable:
    def check(ctx: Ctx, res: StepResult) -> list[str]:
        return [] if res.rc == 0 or word in res.stderr else [f"the error does not name {word}: {_last_line(res.stderr)}"]

    return check


def never_suggests_unsafe_loading(ctx: Ctx, res: StepResult) -> list[str]:
    return ["the error suggests weights_only=False (loading a pickle that can run code)"] if "weights_only=False" in res.stderr else []


def all_of(*checks: Callable) -> Callable:
    return lambda ctx, res: [p for check in checks for p in check(ctx, res)]


def shows_literally(text: str) -> Callable:
    def check(ctx: Ctx, res: StepResult) -> list[str]:
        return [] if text in res.stdout else [f"the name {text!r} is not shown as written (rich markup was interpreted)"]

    return check


def no_escape_bytes(ctx: Ctx, res: StepResult) -> list[str]:
    return ["a raw escape byte (\\x1b) from a user string reached the terminal output"] if "\x1b" in res.stdout + res.stderr else []


def lists_id(role: str) -> Callable:
    def check(ctx: Ctx, res: StepResult) -> list[str]:
        art_id = ctx.ids[role]
        return [] if art_id in res.stdout else [f"the damaged {role} artifact {art_id} is not listed (as damaged, with the reason)"]

    return check


def shows_kind(kind: str) -> Callable:
    def check(ctx: Ctx, res: StepResult) -> list[str]:
        return [] if kind in res.stdout else [f"`workspace show` no longer shows the {kind} artifact (a name shadows its id)"]

    return check


def still_a_device(name: str) -> Callable:
    def check(ctx: Ctx, res: StepResult) -> list[str]:
        path = ctx.tmp / name
        if path.is_char_device():
            return []
        return [f"the output path {name} was a device file and the tool replaced it with a regular file "
                "(as root, `--html /dev/null` would replace the system's /dev/null)"]

    return check


def one_wins(role: str) -> Callable:
    """A stage reading an artifact (first step) and its removal (second step) race: exactly one of them wins, and
    the loser says why in one line — the removal that the artifact is in use (or, once the stage has published,
    that the stage's result depends on it), the stage that it is gone."""

    def check(ctx: Ctx, results: list[StepResult]) -> list[str]:
        stage, removal = results
        art_id = ctx.ids[role]
        if stage.rc == 0 and removal.rc != 0:
            said = "in use" in removal.stderr or f"depend on {art_id}" in removal.stderr
            return [] if said else [f"`workspace rm` refused without saying {art_id} is in use or has dependents"]
        if stage.rc != 0 and removal.rc == 0:
            return [] if art_id in stage.stderr else [f"the stage failed without naming the removed {art_id}"]
        return [f"stage exit {stage.rc} and removal exit {removal.rc}: exactly one should have succeeded"]

    return check


def no_pwned(ctx: Ctx, res: StepResult) -> list[str]:
    return ["untrusted code ran (marker file written)"] if (ctx.tmp / "pwned").exists() else []


def nothing_escaped(ctx: Ctx, res: StepResult) -> list[str]:
    escaped = [p for p in (ctx.escape_marker, Path(str(ctx.escape_marker) + ".abs")) if p.exists()]
    for path in escaped:
        path.unlink()
    return [f"zip member extracted outside its folder: {p}" for p in escaped]


def not_file_too_large(ctx: Ctx, res: StepResult) -> list[str]:
    if "too large" in res.stderr.lower() or "errno 27" in res.stderr.lower():
        return ["the archive was extracted until the file-size cap (64 MB) stopped it: no size/ratio limit"]
    return []


def suggests_restart_on_error(ctx: Ctx, res: StepResult) -> list[str]:
    if res.rc not in (0, None) and "--restart" not in res.stderr:
        return ["a broken resumable checkpoint fails the rerun without suggesting --restart"]
    return []


def bounded(cpu_seconds: float, rss_gb: float) -> Callable:
    def check(ctx: Ctx, res: StepResult) -> list[str]:
        problems = []
        if res.cpu_s > cpu_seconds:
            problems.append(f"took {res.cpu_s:.0f} CPU seconds (> {cpu_seconds:.0f})")
        if res.peak_rss_mb > rss_gb * 1024:
            problems.append(f"peak memory {res.peak_rss_mb / 1024:.1f} GB (> {rss_gb} GB)")
        return problems

    return check


# ----------------------------------------------------------------------------------------------------------------
# Running


@dataclass
class Prepared:
    ws: Path
    ids: dict[str, str]  # role -> artifact id
    kinds: dict[str, str]  # artifact id -> kind
    small: Path


@dataclass
class Ctx:
    """One case's world: its own copy of the prepared workspace and a scratch folder."""

    ws: Path
    tmp: Path
    ids: dict[str, str]
    kinds: dict[str, str]
    small: Path
    timeout: float
    strace: str | None
    escape_marker: Path
    extra: dict[str, str] = field(default_factory=dict)
    created: dict[str, str | None] = field(default_factory=dict)  # artifact id -> its manifest's `created` at the start

    def artifact(self, role: str) -> Path:
        art_id = self.ids[role]
        return self.ws / self.kinds[art_id] / art_id

    def fill(self, text: str) -> str:
        values = {"ws": str(self.ws), "tmp": str(self.tmp), "small": str(self.small), **self.ids, **self.extra}
        for key, value in values.items():
            text = text.replace("{" + key + "}", value)
        return text

    def scores_shape(self) -> tuple[int, ...]:
        data = (self.artifact("scores") / "scores.safetensors").read_bytes()
        header = json.loads(data[8: 8 + int.from_bytes(data[:8], "little")])
        return tuple(header["scores"]["shape"])


@dataclass
class StepResult:
    argv: list[str]
    rc: int | None
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool = False
    sent: str | None = None  # the signal the sweep delivered, if any
    peak_rss_mb: float = 0.0
    cpu_s: float = 0.0  # user + system CPU seconds of the command (approximate while steps run concurrently)
    note: str = ""


def child_env(ctx: Ctx, step: Step) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "IFGUIDE_HOME"}
    sys_tmp = ctx.tmp / ".systmp"
    sys_tmp.mkdir(exist_ok=True)
    env.update(PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])), HF_HUB_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", COLUMNS="120", XDG_DATA_HOME=str(ctx.tmp / ".xdg"), TMPDIR=str(sys_tmp))
    env.update({key: ctx.fill(value) for key, value in step.env})
    return env


def command(ctx: Ctx, step: Step) -> list[str]:
    argv = [sys.executable, "-m", "ifguide_cli"]
    if step.kill_after_step is not None:
        argv = [sys.executable, str(KILL_AFTER_STEP), str(step.kill_after_step)]
    if step.workspace:
        argv += ["--workspace", str(ctx.ws)]
    argv += [ctx.fill(a) for a in step.argv]
    inject = "rename,renameat,renameat2"
    if step.kill_at_rename is not None:
        argv = [ctx.strace, "-f", "-qq", "-o", "/dev/null", "-e", f"trace={inject}",
                "-e", f"inject={inject}:signal=SIGKILL:when={step.kill_at_rename}", *argv]
    elif step.kill_when_moved is not None:
        argv = [ctx.strace, "-f", "-qq", "-o", "/dev/null", "-P", str(ctx.artifact(step.kill_when_moved)), "-e", f"trace={inject}",
                "-e", f"inject={inject}:delay_exit=4000000:when=1", *argv]
    if step.fsize is None and not step.needs_strace and step.redirect is None:
        return argv  # run directly, so an early Ctrl-C reaches Python itself; run_step caps its file size after the start
    blocks = (step.fsize or FSIZE_CAP) // 1024
    return ["bash", "-c", f'ulimit -f "$0" && exec "$@" {step.redirect or ""}', str(max(blocks, 1)), *argv]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return 0.0


def run_step(ctx: Ctx, step: Step) -> StepResult:
    """Run one CLI invocation to its end, delivering the step's signals and kills; never raises on the child's behaviour."""
    argv = command(ctx, step)
    tag = f"{threading.get_ident()}-{time.monotonic_ns()}"
    out_path, err_path = ctx.tmp / f".out-{tag}", ctx.tmp / f".err-{tag}"
    start, cpu_before = time.monotonic(), _children_cpu()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=ctx.tmp, env=child_env(ctx, step),
                                start_new_session=True, preexec_fn=_default_signals)
        if argv[0] == sys.executable:  # no file the CLI writes may outgrow the cap (it writes nothing in its first 0.1 s)
            with contextlib.suppress(OSError):
                resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (FSIZE_CAP, FSIZE_CAP))
        try:
            timed_out, sent, peak, note = watch(ctx, step, proc, start)
        finally:  # the sweep itself interrupted (Ctrl-C, SIGTERM): take the command down with it
            if proc.poll() is None:
                _signal_group(proc, "SIGKILL")
                proc.wait()
    res = StepResult(argv=[ctx.fill(a) for a in step.argv], rc=proc.returncode, seconds=time.monotonic() - start,
                     stdout=out_path.read_text(errors="replace"), stderr=err_path.read_text(errors="replace"),
                     timed_out=timed_out, sent=sent, peak_rss_mb=peak, cpu_s=_children_cpu() - cpu_before, note=note)
    out_path.unlink()
    err_path.unlink()
    return res


def _default_signals() -> None:
    """In the child: Ctrl-C, hangup and termination act as in a terminal, even when the sweep itself runs in the
    background (`cmd &` ignores SIGINT, `nohup` SIGHUP, and ignored signals stay ignored across exec)."""
    for name in ("SIGINT", "SIGHUP", "SIGTERM"):
        signal.signal(getattr(signal, name), signal.SIG_DFL)


def watch(ctx: Ctx, step: Step, proc: subprocess.Popen, start: float) -> tuple[bool, str | None, float, str]:
    """Poll the child: send timed signals, kill on a glob or on a moved folder, enforce the timeout (hang)."""
    pending = sorted(step.signals)
    deadline = start + (step.timeout or ctx.timeout)
    sent, peak, note = None, 0.0, ""
    moved = ctx.artifact(step.kill_when_moved) if step.kill_when_moved else None
    while proc.poll() is None:
        now = time.monotonic()
        peak = max(peak, peak_rss_mb(proc.pid))
        due = None
        if pending and now - start >= pending[0][0]:
            due = pending.pop(0)[1]
        elif step.kill_when and glob.glob(str(ctx.ws / ctx.fill(step.kill_when[0])), recursive=True):
            due, step = step.kill_when[1], replace(step, kill_when=None)
        elif moved is not None and not moved.exists():
            due, moved = "SIGKILL", None
        if due:
            _signal_group(proc, due)
            sent = due
            if due != "SIGKILL":
                deadline = min(deadline, now + step.grace)
        if now >= deadline or peak > MAX_RSS_MB:
            _signal_group(proc, "SIGKILL")
            proc.wait()
            why = f"{peak / 1024:.1f} GB of memory" if peak > MAX_RSS_MB else f"the {deadline - start:.0f} s limit"
            return True, sent, peak, f"killed at {why}"
        time.sleep(0.02)
    if step.kill_at_rename is not None and proc.returncode in (-9, 137):
        sent = "SIGKILL"  # delivered by strace at the k-th rename
    elif step.kill_when or pending or moved is not None or step.kill_at_rename is not None:
        note = "the kill point was never reached (the command ended first)"
    return False, sent, peak, note


def _signal_group(proc: subprocess.Popen, name: str) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, getattr(signal, name))


def run_steps(ctx: Ctx, steps: Sequence[Step]) -> list[StepResult]:
    """Steps run one after the other; a step with `concurrent` starts that long after the previous one started."""
    results: list[StepResult | None] = [None] * len(steps)
    threads: list[threading.Thread] = []

    def target(i: int, step: Step) -> None:
        results[i] = run_step(ctx, step)

    for i, step in enumerate(steps):
        if step.concurrent is None:
            for t in threads:
                t.join()
            threads = []
        else:
            time.sleep(step.concurrent)
        thread = threading.Thread(target=target, args=(i, step))
        thread.start()
        threads.append(thread)
    for t in threads:
        t.join()
    return [r for r in results if r is not None]


# ----------------------------------------------------------------------------------------------------------------
# Classifying


def classify(step: Step, res: StepResult, fill: Callable[[str], str] = lambda s: s) -> list[tuple[str, str]]:
    """Problems of one finished step, as (category, detail). Pure: the unit test feeds it made-up results."""
    problems: list[tuple[str, str]] = []
    text = res.stdout + "\n" + res.stderr
    last = _last_line(res.stderr)
    if res.timed_out:
        problems.append(("late" if step.late_after else "hang", res.note or "timed out"))
    if "Traceback (most recent call last)" in text and "init_import_site" not in text:
        problems.append(("traceback", _traceback_tail(text)))
    if "internal error" in res.stderr.lower():
        problems.append(("internal_error", _line_with(res.stderr, "internal error")))
    if not res.timed_out:
        problems += _exit_problems(step, res, last)
        if step.expect == "error" and res.rc not in (0, None) and step.names and res.sent is None:
            needles = [fill(n).lower() for n in step.names if n]
            if not any(n in res.stderr.lower() for n in needles):
                problems.append(("unnamed", f"error does not name {' / '.join(fill(n) for n in step.names)}: {last}"))
        if step.late_after and res.rc not in (0, None) and res.cpu_s > step.late_after:
            problems.append(("late", f"rejected only after {res.cpu_s:.0f} CPU seconds: {last}"))
    return problems


def _exit_problems(step: Step, res: StepResult, last: str) -> list[tuple[str, str]]:
    rc = res.rc
    if res.sent == "SIGKILL":
        return []
    if res.sent:  # interrupted by the sweep: any clean non-zero exit (130 for Ctrl-C) is right
        if rc == 0:
            return [("wrong_exit", f"exit 0 after {res.sent}")]
        if rc is not None and rc < 0 and -rc != getattr(signal, res.sent):
            return [("wrong_exit", f"died by signal {-rc} after {res.sent}")]
        return []
    if rc is not None and rc < 0:
        return [("wrong_exit", f"crashed: killed by signal {-rc} ({last})")]
    if step.expect == "error" and rc == 0:
        return [("wrong_exit", "exit 0 for a bad input")]
    if step.expect == "error" and rc not in (1, 2):
        return [("wrong_exit", f"exit {rc} for a bad input (expected 1 or 2): {last}")]
    if step.expect == "ok" and rc != 0:
        return [("wrong_exit", f"exit {rc} where success was expected: {last}")]
    return []


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip() and not set(line.strip()) <= set("╭╰─│ ")]
    return lines[-1][:300] if lines else ""


def _line_with(text: str, needle: str) -> str:
    return next((line.strip()[:300] for line in text.splitlines() if needle in line.lower()), needle)


def _traceback_tail(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    idx = max(i for i, line in enumerate(lines) if "Traceback (most recent call last)" in line)
    tail = [line for line in lines[idx:] if not line.startswith(("File ", "^", "~"))]
    return (tail[-1] if tail else lines[idx])[:300]


# ----------------------------------------------------------------------------------------------------------------
# Auditing the workspace after a case


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_artifact(folder: Path) -> list[str]:
    """Files of one artifact against its manifest (sizes and sha256), checked here, not by the tool."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
        return [f"{folder.name}: manifest unreadable ({type(exc).__name__})"]
    problems = []
    for rel, meta in files.items():
        path = folder / rel
        if not path.is_file():
            problems.append(f"{folder.name}: {rel} missing")
        elif path.stat().st_size != meta.get("size"):
            problems.append(f"{folder.name}: {rel} has {path.stat().st_size} bytes, manifest says {meta.get('size')}")
        elif meta.get("sha256") and sha256(path) != meta["sha256"]:
            problems.append(f"{folder.name}: {rel} checksum mismatch")
    return problems


@dataclass
class Snapshot:
    staging: set[str]
    locks: set[str]
    folders: set[str]
    files: dict[str, str] = field(default_factory=dict)  # every file of the workspace (but locks) and of {tmp}: digest


def snapshot(ws: Path, tmp: Path | None = None) -> Snapshot:
    def names(path: Path) -> set[str]:
        return {p.name for p in path.iterdir()} if path.is_dir() else set()

    folders = {f"{kind}/{p.name}" for kind in KINDS if (ws / kind).is_dir() for p in (ws / kind).iterdir() if p.is_dir()}
    return Snapshot(names(ws / ".staging"), names(ws / ".locks"), folders, fingerprints(ws, tmp))


def fingerprints(ws: Path, tmp: Path | None) -> dict[str, str]:
    """A digest of every file a command must leave alone unless it is its own: the workspace's (locks aside) and the
    case's scratch files (the sweep's own aside); a manifest's digest ignores its `name` (`--name` renames)."""
    out = {}
    for label, root in [("ws", ws)] + ([("tmp", tmp)] if tmp is not None else []):
        for path in root.rglob("*"):
            rel = path.relative_to(root)
            if rel.parts[0] in (".locks", ".systmp", ".xdg") or rel.name.startswith((".out-", ".err-")):
                continue
            with contextlib.suppress(OSError):
                if path.is_file():
                    out[f"{label}/{rel}"] = _digest(path)
    return out


def _digest(path: Path) -> str:
    if path.name == "manifest.json":
        with contextlib.suppress(ValueError, OSError, AttributeError, TypeError, RecursionError):  # any hostile manifest
            data = json.loads(path.read_text())
            data.pop("name", None)
            return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
    return sha256(path) if path.stat().st_size < (256 << 20) else f"size:{path.stat().st_size}"


def changed_outside(ctx: Ctx, case: Case, before: Snapshot) -> list[str]:
    """Files that existed before the case and changed or vanished, outside what it damages or removes on purpose
    and outside an artifact the command itself rebuilt (`--force`: its manifest's `created` changed)."""
    own = {f"ws/{ctx.kinds[ctx.ids[r]]}/{ctx.ids[r]}/" for r in (*case.damages, *case.removes)}
    own |= {f"tmp/disk2/{ctx.ids[r]}/" for r in (*case.damages, *case.removes)}  # moved there by `link_elsewhere`
    own |= {f"ws/{kind}/{aid}/" for aid, kind in ctx.kinds.items() if _created(ctx.ws / kind / aid) != ctx.created.get(aid)}
    after = fingerprints(ctx.ws, ctx.tmp)
    problems = []
    for rel, digest in sorted(before.files.items()):
        if any(rel.startswith(prefix) for prefix in own):
            continue
        if rel not in after:
            problems.append(f"{rel} disappeared")
        elif after[rel] != digest:
            problems.append(f"{rel} was changed")
    return problems[:5]


def _created(folder: Path) -> str | None:
    manifest = _manifest(folder)
    return manifest.get("created") if manifest is not None else None


def non_finite_published(ctx: Ctx, listed: dict[str, dict]) -> list[str]:
    """New checkpoints with a NaN or infinite weight; new evals whose perplexity or loss is non-finite or missing."""
    problems = []
    for art_id, art in sorted(listed.items()):
        if art_id in ctx.kinds:
            continue
        folder = Path(art.get("path") or ctx.ws / str(art.get("kind")) / art_id)
        if art.get("kind") == "checkpoints":
            problems += [f"checkpoint {art_id}: {p}" for p in _non_finite_weights(folder / "model" / "model.safetensors")]
        summary = (_manifest(folder) or {}).get("summary") or {}
        for key in ("perplexity", "train_loss", "final_loss", "eval_loss", "eval_perplexity"):
            value = summary.get(key, 0.0)
            if not (isinstance(value, (int, float)) and value == value and abs(value) != float("inf")):
                problems.append(f"{art.get('kind')} {art_id}: summary {key} is {value!r}")
    return problems


def _manifest(folder: Path) -> dict | None:
    """An artifact's manifest as a dict; None for anything a hostile case left there (missing, not JSON, too deep)."""
    with contextlib.suppress(OSError, ValueError, RecursionError):
        data = json.loads((folder / "manifest.json").read_text())
        return data if isinstance(data, dict) else None
    return None


def _non_finite_weights(path: Path) -> list[str]:
    if not path.is_file():
        return []
    import numpy as np
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        tensors = load_file(str(path))
    except (OSError, SafetensorError) as exc:
        return [f"weights unreadable ({type(exc).__name__})"]
    bad = [name for name, t in tensors.items() if t.dtype.kind == "f" and not np.isfinite(t).all()]
    return [f"non-finite weights in {len(bad)} tensor(s), e.g. {bad[0]}"] if bad else []


def list_artifacts(ctx: Ctx) -> tuple[dict[str, dict] | None, str]:
    res = run_step(ctx, ok("--json", "workspace", "ls", timeout=120))
    try:
        data = json.loads(res.stdout)
        return {a["id"]: a for a in data["artifacts"]}, ""
    except (ValueError, KeyError, TypeError):
        return None, f"`workspace ls --json` failed (exit {res.rc}): {_last_line(res.stderr)}"


def audit(ctx: Ctx, case: Case, before: Snapshot, interrupted: bool) -> list[tuple[str, str]]:
    """Lost, damaged and torn artifacts, and leftovers, after a case."""
    damaged = {ctx.ids[r] for r in case.damages}
    excluded = damaged | {ctx.ids[r] for r in case.removes}
    problems: list[tuple[str, str]] = []
    listed, why = list_artifacts(ctx)
    if listed is None:
        problems.append(("lost", why))
    baseline = set(ctx.kinds) - excluded
    for art_id in sorted(baseline - set(listed or {})) if listed is not None else []:
        problems.append(("lost", f"{ctx.kinds[art_id]} {art_id} no longer lists"))
    to_verify = {i: ctx.ws / ctx.kinds[i] / i for i in baseline}
    for art_id, art in (listed or {}).items():
        if art_id not in excluded:
            to_verify[art_id] = Path(art.get("path") or ctx.ws / str(art.get("kind")) / art_id)
            missing = [p for p in art.get("parents") or [] if p not in listed and p not in damaged]
            problems += [("damaged", f"{art_id} lists parent {p}, which is gone") for p in missing]
    for art_id, folder in sorted(to_verify.items()):
        if folder.is_dir():
            problems += [("damaged", p) for p in verify_artifact(folder)]
        elif listed is None or art_id in listed:
            problems.append(("lost", f"{art_id}: folder {folder} is gone"))
    after = snapshot(ctx.ws)
    if listed is not None:
        for rel in sorted(after.folders - before.folders):
            if rel.split("/")[1] not in listed:
                problems.append(("damaged", f"artifact folder {rel} appeared but does not list (torn publish?)"))
    if not (interrupted or case.keeps_staging):
        problems += [("leftover", f".staging/{n}") for n in sorted(after.staging - before.staging)]
    if not interrupted:
        problems += [("leftover", f".locks/{n}") for n in sorted(after.locks - before.locks)]
    problems += [("lost_or_damaged_other", p) for p in changed_outside(ctx, case, before)]
    problems += [("non_finite_published", p) for p in non_finite_published(ctx, listed or {})]
    if case.no_new_artifacts and listed is not None and set(listed) - set(ctx.kinds):
        new = sorted(f"{listed[i].get('kind')} {i}" for i in set(listed) - set(ctx.kinds))
        problems.append(("late", f"published {', '.join(new)} before rejecting the pipeline"))
    return problems


# ----------------------------------------------------------------------------------------------------------------
# Preparing the shared workspace


PREPARE = (
    ("ckpt", ("train", "tiny", "--data", "{small}", "--seq-len", "64", "--eval-docs", "8", "--max-steps", "2", "--batch-size", "8")),
    ("other", ("train", "tiny", "--data", "{small}.other.jsonl", "--seq-len", "64", "--eval-docs", "8", "--max-steps", "1",
               "--batch-size", "8")),  # only for its dataset (`heldout`): a corpus other than the one the mask was built on
    ("factors", ("factors", "{ckpt}", "--data", "{dataset}")),
    ("scores", ("scores", "{factors}", "-t", "tiny-queries-toxic", "-s", "tiny-queries-safe", "--max-queries", "8")),
    ("mask", ("mask", "{scores}", "--max-tokens", "300")),
    ("etox", TOXICITY),
    ("eflu", ("eval", "fluency", "{ckpt}", "--ppl-docs", "8", "--lambada-docs", "8", "--ppl-data", "tiny-heldout",
              "--lambada", "tiny-lambada")),
    ("report", ("report", "{etox}", "{eflu}")),
)


def prepare(root: Path, timeout: float, log: Callable[[str], None]) -> Prepared:
    """Build (or reuse) the shared workspace with the real CLI: every case starts from a copy of it."""
    ready = root / "prepared" / "ready.json"
    if ready.exists():
        data = json.loads(ready.read_text())
        log(f"reusing the prepared workspace in {ready.parent} (delete it to rebuild)")
        return Prepared(Path(data["ws"]), data["ids"], data["kinds"], Path(data["small"]))
    base = root / "prepared"
    shutil.rmtree(base, ignore_errors=True)
    (base / "tmp").mkdir(parents=True)
    small = base / "small.jsonl"
    corpus = (REPO / "ifguide_cli" / "assets" / "tiny" / "corpus.jsonl").read_text().splitlines(keepends=True)
    small.write_text("".join(corpus[:SMALL_DOCS]))
    Path(f"{small}.other.jsonl").write_text("".join(corpus[SMALL_DOCS: 2 * SMALL_DOCS]))
    ctx = Ctx(base / "ws", base / "tmp", {}, {}, small, timeout, None, base / "never")
    for role, argv in PREPARE:
        started = time.monotonic()
        res = run_step(ctx, ok("--json", *argv, timeout=max(timeout, 600)))
        if res.rc != 0:
            raise SystemExit(f"fault_sweep: preparing the workspace failed: ifguide {' '.join(res.argv)}\n{res.stderr[-2000:]}")
        payload = json.loads(res.stdout)
        ctx.ids[role] = payload["id"]
        if role in ("ckpt", "other"):
            ctx.ids["dataset" if role == "ckpt" else "heldout"] = payload["config"]["dataset"]
        log(f"  prepared {role:8s} {payload['id']}  ({time.monotonic() - started:.0f} s)")
    listed, why = list_artifacts(ctx)
    if listed is None:
        raise SystemExit(f"fault_sweep: {why}")
    kinds = {i: a["kind"] for i, a in listed.items()}
    ready.write_text(json.dumps({"ws": str(ctx.ws), "ids": ctx.ids, "kinds": kinds, "small": str(small)}, indent=1))
    return Prepared(ctx.ws, ctx.ids, kinds, small)


# ----------------------------------------------------------------------------------------------------------------
# One case, the whole sweep, the report


@dataclass
class CaseResult:
    name: str
    group: str
    problems: list[tuple[str, str]]
    steps: list[StepResult]
    seconds: float
    skipped: str = ""

    @property
    def categories(self) -> list[str]:
        return sorted({c for c, _ in self.problems}, key=CATEGORIES.index)


def run_case(case: Case, prepared: Prepared, root: Path, timeout: float, strace: str | None) -> CaseResult:
    start = time.monotonic()
    if strace is None and any(s.needs_strace for s in case.steps):
        return CaseResult(case.name, case.group, [], [], 0.0, skipped="strace not installed")
    folder = root / "cases" / case.name.replace("/", "_")
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "tmp").mkdir(parents=True)
    shutil.copytree(prepared.ws, folder / "ws", symlinks=True)
    marker = Path(tempfile.gettempdir()) / f"fsweep-escape-{os.getpid()}-{abs(hash(case.name))}"
    ctx = Ctx(folder / "ws", folder / "tmp", dict(prepared.ids), dict(prepared.kinds), prepared.small, timeout, strace, marker)
    problems: list[tuple[str, str]] = []
    results: list[StepResult] = []
    try:
        ctx.created = {aid: _created(ctx.ws / kind / aid) for aid, kind in ctx.kinds.items()}
        if case.setup:
            case.setup(ctx)
        before = snapshot(ctx.ws, ctx.tmp)
        results = run_case_steps(ctx, case)
        for step, res in zip(case.steps, results, strict=True):
            problems += classify(step, res, ctx.fill)
            if step.check:
                problems += [("other", p) for p in step.check(ctx, res)]
        if case.outcome:
            problems += [("other", p) for p in case.outcome(ctx, results)]
        problems += audit(ctx, case, before, interrupted=any(r.sent for r in results))
    except SkipCase as exc:
        return CaseResult(case.name, case.group, [], [], time.monotonic() - start, skipped=str(exc))
    except (SetupError, OSError) as exc:
        problems.append(("other", f"sweep setup failed: {type(exc).__name__}: {exc}"))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return CaseResult(case.name, case.group, _dedupe(problems), results, time.monotonic() - start)


def run_case_steps(ctx: Ctx, case: Case) -> list[StepResult]:
    """Steps in order; `{new_id}` in a later step is the id of the artifact the first step created (found with ls)."""
    if any("{new_id}" in a for s in case.steps for a in s.argv):
        first = run_steps(ctx, case.steps[:1])
        listed, _ = list_artifacts(ctx)
        new = sorted(set(listed or {}) - set(ctx.kinds), key=lambda i: (listed or {})[i].get("created", ""))
        ctx.extra["new_id"] = new[-1] if new else "none"
        return first + run_steps(ctx, case.steps[1:])
    return run_steps(ctx, case.steps)


def _dedupe(problems: list[tuple[str, str]]) -> list[tuple[str, str]]:
    seen, out = set(), []
    for p in problems:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


def select(cases: list[Case], filters: Sequence[str]) -> list[Case]:
    if not filters:
        return cases
    return [c for c in cases if any(f.lower() in c.name.lower() or f.lower() == c.group.lower() for f in filters)]


def counts(results: Sequence[CaseResult]) -> dict[str, int]:
    return {cat: sum(1 for r in results if cat in r.categories) for cat in CATEGORIES}


def print_table(results: Sequence[CaseResult]) -> None:
    print(f"{'case':58s} {'result':24s} {'exit':>10s} {'secs':>6s}  first problem")
    for r in results:
        status = "skipped" if r.skipped else (",".join(r.categories) or "ok")
        codes = ",".join("T" if s.timed_out else str(s.rc) for s in r.steps)
        detail = r.problems[0][1] if r.problems else (r.skipped or "")
        print(f"{r.name[:58]:58s} {status[:24]:24s} {codes[:10]:>10s} {r.seconds:6.1f}  {detail[:150]}")


def print_summary(results: Sequence[CaseResult], total_s: float, prepare_s: float) -> None:
    tally = counts(results)
    ran = [r for r in results if not r.skipped]
    failing = [r for r in ran if r.problems]
    print(f"\nfault sweep: {len(ran)} cases run, {len(failing)} with problems, {len(results) - len(ran)} skipped, "
          f"{total_s:.0f} s (prepare {prepare_s:.0f} s)")
    for cat in CATEGORIES:
        print(f"  {cat:15s} {tally[cat]:4d}")


def to_json(results: Sequence[CaseResult], total_s: float, prepare_s: float) -> dict:
    return {
        "counts": counts(results),
        "cases_run": sum(1 for r in results if not r.skipped),
        "cases_failing": sum(1 for r in results if r.problems),
        "seconds": round(total_s, 1),
        "prepare_seconds": round(prepare_s, 1),
        "cases": [{"name": r.name, "group": r.group, "skipped": r.skipped or None, "seconds": round(r.seconds, 2),
                   "problems": [{"category": c, "detail": d} for c, d in r.problems],
                   "steps": [{"argv": s.argv, "exit": s.rc, "seconds": round(s.seconds, 2), "timed_out": s.timed_out,
                              "signal": s.sent, "cpu_s": round(s.cpu_s, 1), "peak_rss_mb": round(s.peak_rss_mb),
                              "note": s.note or None,
                              "stderr_tail": s.stderr[-600:]} for s in r.steps]} for r in results],
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace-dir", help="folder for the prepared workspace and the cases' copies (kept and reused)")
    parser.add_argument("--filter", action="append", default=[], help="run only cases whose name contains this (or whose group is "
                                                                      "this); repeatable")
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds before a command counts as hung (default 90; some "
                                                                    "cases set their own)")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("--verbose", action="store_true", help="print a table of every case")
    parser.add_argument("--json", action="store_true", help="print one JSON object (counts and every case) instead of text")
    parser.add_argument("--save", metavar="FILE", help="also write the --json object to FILE")
    parser.add_argument("--strict", action="store_true", help="exit 1 when any count is non-zero")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cases = select(all_cases(), args.filter)
    if args.list:
        for case in cases:
            print(f"{case.group:18s} {case.name}")
        print(f"{len(cases)} cases")
        return 0
    root = Path(args.workspace_dir).resolve() if args.workspace_dir else Path(tempfile.mkdtemp(prefix="ifguide-fault-sweep-"))
    root.mkdir(parents=True, exist_ok=True)
    if shutil.disk_usage(root).free < MIN_FREE_BYTES:
        raise SystemExit(f"fault_sweep: less than {MIN_FREE_BYTES >> 30} GiB free under {root}")

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up (running command, temp folder) when terminated

    started = time.monotonic()
    try:
        prepared = prepare(root, args.timeout, log)
        prepare_s = time.monotonic() - started
        results = []
        for i, case in enumerate(cases, 1):
            result = run_case(case, prepared, root, args.timeout, shutil.which("strace"))
            results.append(result)
            log(f"[{i}/{len(cases)}] {case.name}: {result.skipped or ','.join(result.categories) or 'ok'} ({result.seconds:.1f} s)")
    finally:
        if not args.workspace_dir:
            shutil.rmtree(root, ignore_errors=True)
    total_s = time.monotonic() - started
    payload = to_json(results, total_s, prepare_s)
    if args.save:
        Path(args.save).write_text(json.dumps(payload, indent=1))
    if args.json:
        print(json.dumps(payload, indent=1))
    else:
        if args.verbose:
            print_table(results)
        print_summary(results, total_s, prepare_s)
    return 1 if args.strict and any(counts(results).values()) else 0


if __name__ == "__main__":
    sys.exit(main())
