"""Real-text benchmark: the whole IF-Guide chain through the CLI on tweets labelled by people.

Data: Davidson et al. (ICWSM 2017), `labeled_data.csv` in ../shared/data/davidson-tweets/ next to the repository
(third-party text: read from there into a temporary folder, never copied into the repository). The benchmark
skips with a message when it is absent.

- Corpus: "neither" tweets plus a minority (--toxic-share, 10%) of offensive / hate-speech tweets, with the
  label in a `toxic` field; light tweet normalisation (HTML entities, @user, http).
- Queries: held-out tweets cut in two (prompt = the first half of the words, continuation = the rest); toxic
  queries from offensive tweets, safe ones from "neither" tweets. Eval prompts: the first half of other held-out
  tweets, half of them offensive (labelled toxic). Perplexity: held-out "neither" tweets.
- Chain, each stage a `python -m ifguide_cli --json` subprocess: tokenizer train → train (the tiny architecture
  from scratch, the tokenizer's vocabulary) → factors → scores → mask → finetune control and IF-Guide → eval
  toxicity (profanity classifier, offline) → eval fluency → report.

Prints the mask's label precision@k and AUC against the base rate, TP and EMT of baseline / control / IF-Guide
with the reduction (control → IF-Guide) and its paired bootstrap 95% interval over prompts, the perplexity cost,
and the time of each stage. About 3 minutes on 2 idle CPU cores with the defaults, 5 with --baselines.

    python benchmarks/real_text.py                      # 3,000 documents, seed 0, a temporary folder
    python benchmarks/real_text.py --docs 1500 --seed 1 --out /tmp/real_text
    python benchmarks/real_text.py --baselines          # and the cheap arms of `run --preset tiny-compare`
"""

from __future__ import annotations

import argparse
import csv
import html
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "davidson-tweets" / "labeled_data.csv"
NEITHER, OFFENSIVE, HATE = "2", "1", "0"  # the csv's `class` column


# ---- data -------------------------------------------------------------------------------------------------
def clean(tweet: str) -> str:
    """HTML entities decoded, retweet markers dropped, @handles and links replaced, whitespace collapsed."""
    text = html.unescape(tweet)
    text = re.sub(r"\bRT\b:?", " ", text)
    text = re.sub(r"@\w+:?", "@user", text)
    text = re.sub(r"https?://\S+", "http", text)
    return re.sub(r"\s+", " ", text).strip()


def read_tweets(path: Path) -> tuple[list[str], list[str]]:
    """(neither tweets, offensive or hateful tweets), cleaned, with at least 4 words, in file order."""
    safe, toxic = [], []
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            text = clean(row["tweet"])
            if len(text.split()) >= 4:
                (safe if row["class"] == NEITHER else toxic).append(text)
    return safe, toxic


def halves(text: str) -> tuple[str, str]:
    """(first half of the words, the rest with its leading space)."""
    words = text.split()
    k = len(words) // 2
    return " ".join(words[:k]), " " + " ".join(words[k:])


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def build_inputs(data: Path, out: Path, docs: int, toxic_share: float, queries: int, prompts: int, ppl_docs: int,
                 seed: int) -> dict:
    """The corpus, query sets, eval prompts and held-out text as jsonl files in `out`; no tweet is in two of them."""
    safe, toxic = read_tweets(data)
    rng = random.Random(seed)
    rng.shuffle(safe)
    rng.shuffle(toxic)
    n_toxic = round(docs * toxic_share)
    need_safe = docs - n_toxic + queries + prompts // 2 + ppl_docs
    if need_safe > len(safe):
        raise SystemExit(f"--docs {docs} needs {need_safe:,} 'neither' tweets; the file has {len(safe):,}")
    corpus = [{"text": t, "toxic": False} for t in safe[: docs - n_toxic]] + [{"text": t, "toxic": True} for t in toxic[:n_toxic]]
    rng.shuffle(corpus)
    held_safe, held_toxic = safe[docs - n_toxic:], toxic[n_toxic:]

    def take(pool: list[str], n: int) -> list[str]:
        out_, pool[:] = pool[:n], pool[n:]
        return out_

    def pairs(texts):
        return [dict(zip(("prompt", "continuation"), halves(t), strict=True)) for t in texts]

    tox_q, safe_q = pairs(take(held_toxic, queries)), pairs(take(held_safe, queries))
    eval_prompts = [{"prompt": halves(t)[0], "toxic": True} for t in take(held_toxic, prompts // 2)]
    eval_prompts += [{"prompt": halves(t)[0], "toxic": False} for t in take(held_safe, prompts - prompts // 2)]
    return {"corpus": write_jsonl(out / "corpus.jsonl", corpus), "toxic_queries": write_jsonl(out / "queries_toxic.jsonl", tox_q),
            "safe_queries": write_jsonl(out / "queries_safe.jsonl", safe_q),
            "prompts": write_jsonl(out / "prompts.jsonl", eval_prompts),
            "heldout": write_jsonl(out / "heldout.jsonl", [{"text": t} for t in take(held_safe, ppl_docs)])}


# ---- the CLI ----------------------------------------------------------------------------------------------
class Chain:
    """Runs `python -m ifguide_cli --workspace WS --json ...` and keeps each stage's wall time."""

    def __init__(self, workspace: Path, threads: int | None):
        self.workspace, self.times = workspace, {}
        self.env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
        if threads:
            self.env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))

    def __call__(self, stage: str, *args) -> dict:
        print(f"▶ {stage}", flush=True)
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "ifguide_cli", "--workspace", str(self.workspace), "--json",
                               *map(str, args)], cwd=REPO, env=self.env, capture_output=True, text=True)
        self.times[stage] = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"{stage} failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
        return json.loads(proc.stdout)


def run_chain(cli: Chain, files: dict, args) -> dict:
    """Every stage of the chain; returns the artifacts' JSON by stage."""
    out = {"tokenizer": cli("tokenizer train", "tokenizer", "train", files["corpus"], "--vocab-size", args.vocab_size,
                            "--name", "tweets-bpe")}
    out["baseline"] = cli("train", "train", "tiny", "--data", files["corpus"], "--tokenizer", "tweets-bpe",
                          "--label-field", "toxic", "--layout", "documents", "--name", "baseline")
    out["factors"] = cli("factors", "factors", "baseline", "--data", files["corpus"], "--name", "factors")
    out["scores"] = cli("scores", "scores", "factors", "-t", files["toxic_queries"], "-s", files["safe_queries"],
                        "--name", "scores")
    tokens = out["scores"]["summary"]["tokens"]
    budget = max(1, round(args.mask_share * tokens))
    out["mask"] = cli("mask", "mask", "scores", "--max-tokens", budget, "--name", "mask")
    out["control"] = cli("finetune control", "finetune", "baseline", "--data", files["corpus"], "--name", "control")
    out["ifguide"] = cli("finetune IF-Guide", "finetune", "baseline", "--data", files["corpus"], "--mask", "mask",
                         "--lambda", args.lam, "--name", "ifguide")
    systems = ["baseline", "control", "ifguide"]
    if args.baselines:
        systems += cheap_baselines(cli, out, files, budget, args)
    evals = []
    for system in systems:
        out[f"tox_{system}"] = cli(f"eval toxicity {system}", "eval", "toxicity", system, "--prompts", files["prompts"],
                                   "--classifier", "profanity", "--samples", args.samples, "--max-new-tokens", 20,
                                   "--seed", args.seed, "--name", f"{system}-toxicity")
        out[f"ppl_{system}"] = cli(f"eval fluency {system}", "eval", "fluency", system, "--ppl-data", files["heldout"],
                                   "--no-lambada", "--name", f"{system}-fluency")
        evals += [out[f"tox_{system}"]["id"], out[f"ppl_{system}"]["id"]]
    out["report"] = cli("report", "report", *evals, "--control", "control", "--bootstrap", args.bootstrap,
                        "--seed", args.seed, "--name", "real-text")
    return out


def cheap_baselines(cli: Chain, out: dict, files: dict, budget: int, args) -> list[str]:
    """The arms of `ifguide run --preset tiny-compare` on the tweets, each at IF-Guide's token budget: standard
    influence (toxic queries only), profanity-classifier spans with token filtering and with the penalty,
    profanity-classifier documents left out, and the `hybrid` source (IF-Guide's scores weighted by the profanity
    classifier's span probability, Alg. 1 as IF-Guide's mask; `--combine product` and `rank`) with the penalty.
    Returns the systems' names."""
    out["scores_standard"] = cli("scores standard", "scores", "factors", "-t", files["toxic_queries"],
                                 "--name", "scores-standard")
    masks = {"standard": ("mask", "scores-standard"),
             "clf-tokens": ("mask", "classifier", "--level", "token"), "clf-docs": ("mask", "classifier", "--level", "document"),
             "hybrid": ("mask", "hybrid", "scores", "--classifier", "profanity"),
             "hybrid-rank": ("mask", "hybrid", "scores", "--classifier", "profanity", "--combine", "rank")}
    for name, argv in masks.items():
        data = ("--data", out["mask"]["summary"]["dataset"], "--classifier", "profanity") if "classifier" in argv else ()
        out[f"mask_{name}"] = cli(f"mask {name}", *argv, *data, "--max-tokens", budget, "--name", f"mask-{name}")
    arms = {"standard": ("mask-standard", "--lambda", args.lam), "clf-tokens": ("mask-clf-tokens", "--suppression", "filter"),
            "clf-penalty": ("mask-clf-tokens", "--lambda", args.lam), "clf-docs": ("mask-clf-docs", "--suppression", "drop"),
            "hybrid": ("mask-hybrid", "--lambda", args.lam), "hybrid-rank": ("mask-hybrid-rank", "--lambda", args.lam)}
    for name, (mask, *how) in arms.items():
        out[name] = cli(f"finetune {name}", "finetune", "baseline", "--data", files["corpus"], "--mask", mask, *how,
                        "--name", name)
    return list(arms)


# ---- figures ----------------------------------------------------------------------------------------------
def report(out: dict, times: dict, args) -> dict:
    """The figures, printed and returned."""
    m = out["mask"]["summary"]
    print(f"\nmask: {m['tokens_selected']:,} tokens in {m['documents_selected']:,} rows "
          f"({m.get('source_documents_selected', '?')} tweets); label `{m.get('label_field')}`: "
          f"base rate {m.get('label_base_rate', float('nan')):.3f}, precision@k {m.get('label_precision_at_k', float('nan')):.3f} "
          f"(k = {m.get('label_positive_documents')}), AUC {m.get('label_auc', float('nan')):.3f}")
    print(f"{'system':9s} {'TP':>6s} {'EMT':>6s} {'perplexity':>11s}")
    for system in ("baseline", "control", "ifguide"):
        t, p = out[f"tox_{system}"]["summary"], out[f"ppl_{system}"]["summary"]
        print(f"{system:9s} {t['toxicity_probability']:6.3f} {t['expected_max_toxicity']:6.3f} {p['perplexity']:11.2f}")
    ifguide = next(arm for arm in out["report"]["summary"]["comparisons"] if arm["name"] == "ifguide")
    for name in ("tp", "emt"):  # as `ifguide report` computed them: paired bootstrap, paired sign-flip test
        r = ifguide["reduction"][name]
        print(f"{name.upper()} reduction control → IF-Guide: {r['value']:+.1%} "
              f"(95% CI {r['ci95'][0]:+.1%} … {r['ci95'][1]:+.1%}, p = {r['p_value']:.3g}, paired bootstrap over "
              f"{out['tox_control']['summary']['prompts']} prompts)")
    ppl_c, ppl_g = out["ppl_control"]["summary"]["perplexity"], out["ppl_ifguide"]["summary"]["perplexity"]
    cost = ifguide["perplexity_cost"]
    print(f"perplexity cost: {cost['value']:+.2%} (95% CI {cost['ci95'][0]:+.2%} … {cost['ci95'][1]:+.2%}; "
          f"{ppl_c:.2f} → {ppl_g:.2f}, held-out tweets)")
    if args.baselines:
        print_masks(out)
        print_arms(out["report"]["summary"])
    print("stage times: " + ", ".join(f"{k} {v:.0f}s" for k, v in times.items()) + f"; total {sum(times.values()):.0f}s")
    return {"mask": {k: m.get(k) for k in ("label_base_rate", "label_precision_at_k", "label_auc", "tokens_selected")},
            "ifguide": ifguide, "perplexity": {"control": ppl_c, "ifguide": ppl_g}, "seconds": times}


def print_masks(out: dict) -> None:
    """Every mask's document ranking against the tweets' labels (precision@k at k = the toxic tweets, AUC)."""
    print(f"\n{'mask':12s} {'tokens':>7s} {'P@k':>6s} {'AUC':>6s}")
    for name in ("mask", *(key[len("mask_"):] for key in out if key.startswith("mask_"))):
        m = out["mask" if name == "mask" else f"mask_{name}"]["summary"]
        print(f"{'ifguide' if name == 'mask' else name:12s} {m['tokens_selected']:7,d} "
              f"{m.get('label_precision_at_k', float('nan')):6.3f} {m.get('label_auc', float('nan')):6.3f}")


def print_arms(summary: dict) -> None:
    """Every arm against the control, as `ifguide report` computed it (paired bootstrap over prompts and documents)."""
    def pct(x: dict) -> str:
        low, high = x.get("ci95") or (float("nan"), float("nan"))
        return f"{x['value']:+.1%} [{low:+.1%}, {high:+.1%}]"

    print(f"\n{'arm':12s} {'TP':>6s} {'TP reduction [95% CI]':>26s} {'p':>7s} {'Holm p':>7s} {'EMT reduction [95% CI]':>26s} "
          f"{'ppl cost [95% CI]':>24s} {'mask P@k':>8s}  verdict")
    for arm in summary["comparisons"]:
        r, mask = arm["reduction"], arm["mask"]
        print(f"{arm['name']:12s} {arm['tp']['value']:6.3f} {pct(r['tp']):>26s} {r['tp']['p_value']:7.3g} "
              f"{r['tp'].get('p_holm', float('nan')):7.3g} {pct(r['emt']):>26s} "
              f"{pct(arm['perplexity_cost']):>24s} {mask.get('precision_at_k') or float('nan'):8.3f}  "
              f"{arm.get('verdict', '').split(' (')[0]}")
    print(summary["headline"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=3000, help="Corpus size (tweets).")
    parser.add_argument("--data", type=Path, default=DATA, help="labeled_data.csv (default: ../shared/data/davidson-tweets/).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the split and of the sampling.")
    parser.add_argument("--out", type=Path, default=None, help="Folder for the data and the workspace (default: a temporary one).")
    parser.add_argument("--toxic-share", type=float, default=0.1, help="Share of offensive / hateful tweets in the corpus.")
    parser.add_argument("--queries", type=int, default=200, help="Toxic and safe queries (each).")
    parser.add_argument("--prompts", type=int, default=200, help="Eval prompts (half offensive).")
    parser.add_argument("--ppl-docs", type=int, default=500, help="Held-out tweets for perplexity.")
    parser.add_argument("--vocab-size", type=int, default=2048, help="BPE vocabulary (the tiny architecture's size).")
    parser.add_argument("--mask-share", type=float, default=0.02, help="Token budget of the mask, share of the corpus.")
    parser.add_argument("--lam", type=float, default=1.0, help="Penalty λ of the IF-Guide fine-tune (the paper's 1).")
    parser.add_argument("--samples", type=int, default=10, help="Continuations per eval prompt.")
    parser.add_argument("--bootstrap", type=int, default=2000, help="Bootstrap draws.")
    parser.add_argument("--baselines", action="store_true", help="Also the cheap arms of `run --preset tiny-compare` "
                        "(standard influence, classifier token / document filtering) and classifier spans with the "
                        "penalty, compared with the control by `ifguide report`.")
    parser.add_argument("--threads", type=int, default=None, help="Torch threads per stage (default: all cores).")
    args = parser.parse_args()
    if not args.data.is_file():
        print(f"skipped: {args.data} is not there (the Davidson et al. tweets; see the module docstring)")
        return
    with tempfile.TemporaryDirectory(prefix="ifguide-real-text-") as tmp:
        out_dir = args.out or Path(tmp)
        out_dir.mkdir(parents=True, exist_ok=True)
        files = build_inputs(args.data, out_dir, args.docs, args.toxic_share, args.queries, args.prompts, args.ppl_docs, args.seed)
        cli = Chain(out_dir / "workspace", args.threads)
        results = run_chain(cli, files, args)
        figures = report(results, cli.times, args)
        (out_dir / "figures.json").write_text(json.dumps(figures, indent=2))
        print(f"figures: {out_dir / 'figures.json'}" + ("" if args.out else " (temporary; pass --out to keep)"))


if __name__ == "__main__":
    main()
