"""Proxy benchmark: the mask of a small proxy model against the target's own mask (IF-Guide §5).

The paper scores its training tokens with Pythia-160M and uses that mask to train 1B-class targets (7.5× the
parameters): factors and scores then cost the proxy's forward and backward passes, not the target's. This
benchmark puts that claim to the test at CPU scale, through the CLI, in one workspace:

- the target (`tiny-4x`, 4.6× `tiny`'s parameters) and the proxy (`tiny`) are trained from scratch on the same
  dataset artifact (the same token ids);
- factors → scores → mask run once on the target (its own mask) and once on the proxy (the proxy's mask), with
  the same queries and Alg. 1 options;
- the target is fine-tuned three times from its baseline with the same recipe: no mask (the control), its own
  mask, the proxy's mask (the penalty, Eq. 9);
- every system is evaluated (TP, EMT with the offline profanity classifier; perplexity on held-out text) and
  `ifguide report` compares both masks' fine-tunes with the control (paired bootstrap 95% intervals).

Prints the masks' agreement (Jaccard of the selected tokens and of the selected rows), their label precision@k and
AUC where the corpus has labels, each arm's TP / EMT reduction with its interval, and the compute: wall time of
factors + scores on the target and on the proxy, the proxy's training, and the parameter ratio.

    python benchmarks/proxy.py                          # the packaged tiny corpus (the tiny preset's settings)
    python benchmarks/proxy.py --corpus tweets          # real text: the Davidson et al. tweets of real_text.py
    python benchmarks/proxy.py --corpus tweets --out /tmp/proxy-tweets --seed 1

The tweets are read from ../shared/data/davidson-tweets/ next to the repository (or --data); the benchmark skips
with a message when they are absent. About 15 minutes per corpus on 2 idle CPU cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import real_text  # (the tweets' split and the CLI runner are the real-text benchmark's)

# Alg. 1 and the penalty as the packaged presets set them: tiny (threshold, window, budget, λ) and real_text's tweets
TINY = {"data": ["--data", "tiny"], "mask": ["--threshold", 0.99, "--window", 1, "--max-tokens", 3000], "lam": 1.5,
        "queries": ("tiny-queries-toxic", "tiny-queries-safe"), "prompts": "tiny-prompts", "heldout": "tiny-heldout"}
SYSTEMS = ("control", "own-mask", "proxy-mask")


def tweets_setup(cli: real_text.Chain, out_dir: Path, args) -> dict | None:
    """The tweets' files and tokenizer, as the settings `run_chain` reads (None: the tweets are not there)."""
    if not args.data.is_file():
        print(f"skipped: {args.data} is not there (the Davidson et al. tweets; see benchmarks/real_text.py)")
        return None
    files = real_text.build_inputs(args.data, out_dir, args.docs, 0.1, 200, 200, 500, args.seed)
    cli("tokenizer train", "tokenizer", "train", files["corpus"], "--vocab-size", 2048, "--name", "tweets-bpe")
    return {"data": ["--data", files["corpus"], "--tokenizer", "tweets-bpe", "--label-field", "toxic", "--layout",
                     "documents"],
            "mask": None, "lam": 1.0, "queries": (files["toxic_queries"], files["safe_queries"]),
            "prompts": files["prompts"], "heldout": files["heldout"]}


def influence_mask(cli: real_text.Chain, model: str, setup: dict) -> dict:
    """factors → scores → mask on one model's checkpoint; the mask artifact's JSON."""
    cli(f"factors {model}", "factors", model, *setup["data"], "--name", f"factors-{model}")
    toxic, safe = setup["queries"]
    scores = cli(f"scores {model}", "scores", f"factors-{model}", "-t", toxic, "-s", safe, "--name", f"scores-{model}")
    options = setup["mask"] or ["--max-tokens", max(1, round(0.02 * scores["summary"]["tokens"]))]
    return cli(f"mask {model}", "mask", f"scores-{model}", *options, "--name", f"mask-{model}")


def run_chain(cli: real_text.Chain, setup: dict, args) -> dict:
    """Both models, both masks, the three fine-tunes, their evaluations and the report; artifacts' JSON by stage."""
    out = {"target": cli("train target", "train", args.target, *setup["data"], "--name", "target"),
           "proxy": cli("train proxy", "train", args.proxy, *setup["data"], "--name", "proxy")}
    datasets = {out[m]["summary"].get("dataset") or out[m]["config"]["dataset"] for m in ("target", "proxy")}
    if len(datasets) != 1:
        raise SystemExit(f"the target and the proxy read different dataset artifacts: {sorted(datasets)}")
    out["mask_target"], out["mask_proxy"] = influence_mask(cli, "target", setup), influence_mask(cli, "proxy", setup)
    out["control"] = cli("finetune control", "finetune", "target", *setup["data"], "--name", "control")
    for system, mask in (("own-mask", "mask-target"), ("proxy-mask", "mask-proxy")):
        out[system] = cli(f"finetune {system}", "finetune", "target", *setup["data"], "--mask", mask,
                          "--lambda", setup["lam"], "--name", system)
    evals = []
    for system in SYSTEMS:
        out[f"tox_{system}"] = cli(f"eval toxicity {system}", "eval", "toxicity", system, "--prompts", setup["prompts"],
                                   "--classifier", "profanity", "--samples", 10, "--max-new-tokens", 20,
                                   "--seed", args.seed, "--name", f"{system}-toxicity")
        out[f"ppl_{system}"] = cli(f"eval fluency {system}", "eval", "fluency", system, "--ppl-data", setup["heldout"],
                                   "--no-lambada", "--name", f"{system}-fluency")
        evals += [out[f"tox_{system}"]["id"], out[f"ppl_{system}"]["id"]]
    out["report"] = cli("report", "report", *evals, "--control", "control", "--bootstrap", 2000, "--seed", args.seed,
                        "--name", "proxy-benchmark")
    return out


# ---- figures ----------------------------------------------------------------------------------------------
def mask_agreement(workspace: Path, own: str, proxy: str) -> dict:
    """Jaccard of the selected tokens and of the rows with any selected token, between two masks of one dataset."""
    import ifguide_cli as ifg

    a, b = (ifg.load_mask(str(workspace / "masks" / mask_id)).penalty for mask_id in (own, proxy))
    rows_a, rows_b = a.any(dim=1), b.any(dim=1)
    return {"tokens": jaccard(a, b), "rows": jaccard(rows_a, rows_b),
            "tokens_own": int(a.sum()), "tokens_proxy": int(b.sum()), "tokens_both": int((a & b).sum())}


def jaccard(a, b) -> float:
    union = int((a | b).sum())
    return int((a & b).sum()) / union if union else 1.0


def parameters(workspace: Path, checkpoint: str) -> int:
    from ifguide_cli.core.models import load_model, resolve_model
    from ifguide_cli.core.store.workspace import Workspace

    return sum(p.numel() for p in load_model(resolve_model(checkpoint, Workspace(workspace))).parameters())


def figures(out: dict, times: dict, workspace: Path) -> dict:
    """The benchmark's figures, printed and returned."""
    params = {m: parameters(workspace, out[m]["id"]) for m in ("target", "proxy")}
    agree = mask_agreement(workspace, out["mask_target"]["id"], out["mask_proxy"]["id"])
    print(f"\nparameters: target {params['target']:,}, proxy {params['proxy']:,} "
          f"({params['target'] / params['proxy']:.2f}×)")
    print(f"mask agreement: tokens Jaccard {agree['tokens']:.3f} ({agree['tokens_both']:,} of {agree['tokens_own']:,} "
          f"own / {agree['tokens_proxy']:,} proxy), rows Jaccard {agree['rows']:.3f}")
    masks = {}
    for name in ("target", "proxy"):
        m = out[f"mask_{name}"]["summary"]
        masks[name] = {k: m.get(k) for k in ("tokens_selected", "documents_selected", "label_precision_at_k", "label_auc",
                                             "label_base_rate")}
        label = (f"label P@k {m['label_precision_at_k']:.3f} (base rate {m['label_base_rate']:.3f}), AUC {m['label_auc']:.3f}"
                 if m.get("label_precision_at_k") is not None else "no labels")
        print(f"mask of the {name:6s}: {m['tokens_selected']:,} tokens in {m['documents_selected']:,} rows; {label}")
    arms = {arm["name"]: arm for arm in out["report"]["summary"]["comparisons"]}
    real_text.print_arms(out["report"]["summary"])
    compute = compute_figures(times)
    return {"parameters": params, "mask_agreement": agree, "masks": masks, "compute_seconds": compute,
            "arms": {name: {"tp": arm["tp"], "reduction": arm["reduction"], "perplexity_cost": arm["perplexity_cost"]}
                     for name, arm in arms.items()},
            "control": out["report"]["summary"]["control"], "seconds": times}


def compute_figures(times: dict) -> dict:
    """Wall seconds of the influence stages on each model, and the proxy's training."""
    own = times["factors target"] + times["scores target"]
    proxy = times["factors proxy"] + times["scores proxy"]
    with_training = proxy + times["train proxy"]
    print(f"factors + scores: target {own:.0f} s, proxy {proxy:.0f} s ({own / proxy:.2f}× less); with the proxy's "
          f"own training {with_training:.0f} s ({own / with_training:.2f}×); target training {times['train target']:.0f} s")
    print("stage times: " + ", ".join(f"{k} {v:.0f}s" for k, v in times.items()) + f"; total {sum(times.values()):.0f}s")
    return {"influence_target": own, "influence_proxy": proxy, "proxy_training": times["train proxy"],
            "target_training": times["train target"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", choices=("tiny", "tweets"), default="tiny", help="The packaged tiny corpus or the tweets.")
    parser.add_argument("--data", type=Path, default=real_text.DATA, help="labeled_data.csv for --corpus tweets.")
    parser.add_argument("--docs", type=int, default=3000, help="Tweets in the corpus (--corpus tweets).")
    parser.add_argument("--target", default="tiny-4x", help="The target architecture (registry name).")
    parser.add_argument("--proxy", default="tiny", help="The proxy architecture (registry name).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the tweets' split, the sampling and the bootstrap.")
    parser.add_argument("--out", type=Path, default=None, help="Folder for the data and the workspace (default: temporary).")
    parser.add_argument("--threads", type=int, default=None, help="Torch threads per stage (default: all cores).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ifguide-proxy-") as tmp:
        out_dir = args.out or Path(tmp)
        out_dir.mkdir(parents=True, exist_ok=True)
        cli = real_text.Chain(out_dir / "workspace", args.threads)
        setup = TINY if args.corpus == "tiny" else tweets_setup(cli, out_dir, args)
        if setup is None:
            return
        results = run_chain(cli, setup, args)
        found = figures(results, cli.times, out_dir / "workspace")
        (out_dir / "figures.json").write_text(json.dumps(found, indent=2, default=str))
        print(f"figures: {out_dir / 'figures.json'}" + ("" if args.out else " (temporary; pass --out to keep)"))


if __name__ == "__main__":
    main()
