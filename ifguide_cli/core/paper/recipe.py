"""The reference run as data: every setting, its value, and the line of the authors' code it comes from.

Sources are paths in github.com/ztcoalson/IF-Guide at commit e138984 (`src/...:LINE`). `key` is where the
setting lives in the `paper` / `paper-finetune` preset (`assets/presets/NAME.yaml`, a dotted path into the
YAML), or None where the tool fixes it (no knob). The preset files carry each value's source as a comment on
its line and are tested against this table, so `--print-config` shows each value beside its source and the
two cannot drift apart.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ifguide_cli.core.errors import IfguideError

REFERENCE = "github.com/ztcoalson/IF-Guide@e138984e273aa2258def5808f22e8d692b71a3fc"
SCENARIOS = {"paper": "pretrain", "paper-finetune": "finetune"}  # preset name -> scenario


@dataclass(frozen=True)
class Setting:
    section: str
    name: str
    value: Any
    source: str
    key: str | None = None
    note: str = ""


S = Setting
_TRAIN_SH, _TRAIN_PY = "src/scripts/train.sh", "src/train.py"
_FT_SH, _FT_PY = "src/scripts/finetune.sh", "src/finetune.py"
_TOX, _FLU = "src/run_toxicity_eval.py", "src/run_fluency_eval.py"


def _optimizer(section: str, prefix: str, script: str, lines: tuple[int, int, int, int]) -> list[Setting]:
    scheduler, beta1, beta2, eps = lines
    return [
        S(section, "lr schedule", "cosine", f"{script}:{scheduler}", f"{prefix}.lr_scheduler"),
        S(section, "AdamW beta1", 0.9, f"{script}:{beta1}", f"{prefix}.adam_beta1"),
        S(section, "AdamW beta2", 0.95, f"{script}:{beta2}", f"{prefix}.adam_beta2"),
        S(section, "AdamW epsilon", 1e-8, f"{script}:{eps}", f"{prefix}.adam_epsilon"),
    ]


PRETRAIN: tuple[Setting, ...] = (
    S("model", "architecture", "pythia-160m", "src/utils/registry.yaml:21-26", "model",
      "EleutherAI/pythia-160m-deduped's config, trained from scratch (pretrained: False)"),
    S("model", "weights", "bf16", "src/utils/registry.yaml:28-29", "baseline.train.weights_dtype",
      "the model is built in bfloat16 (torch_dtype), so weights and AdamW state are bf16"),
    S("data", "training chunks", "owt-train-1b", f"{_TRAIN_PY}:64-68,186; src/utils/datasets.py:52-55", "data"),
    S("data", "validation chunks", "owt-valid", f"{_TRAIN_PY}:70-74,187", "baseline.train.eval_data"),
    S("data", "validation rows evaluated", 24_415, f"{_TRAIN_PY}:184,187", "baseline.train.eval_docs", "all of them"),
    S("train", "learning rate", 6e-4, f"{_TRAIN_SH}:14", "baseline.train.learning_rate"),
    S("train", "weight decay", 4e-4, f"{_TRAIN_SH}:15", "baseline.train.weight_decay"),
    S("train", "warm-up ratio", 0.01, f"{_TRAIN_SH}:16", "baseline.train.warmup_ratio"),
    S("train", "gradient clipping", 1.0, f"{_TRAIN_SH}:17", "baseline.train.max_grad_norm"),
    S("train", "micro-batch per GPU", 8, f"{_TRAIN_SH}:18", "baseline.train.micro_batch_size"),
    S("train", "effective batch (sequences)", 256, f"{_TRAIN_PY}:115-119,209-210", "baseline.train.batch_size",
      "gradient accumulation = 256 / (8 × GPUs); × 2,048 tokens"),
    S("train", "epochs", 4, f"{_TRAIN_SH}:20", "baseline.train.epochs"),
    S("train", "optimizer steps", 7_628, "src/scripts/fit_factors.sh:4 (checkpoint-7628)", "baseline.train.max_steps",
      "4 epochs as the HF Trainer counts them: ⌊61,036 micro-batches / 32⌋ × 4"),
    *_optimizer("train", "baseline.train", _TRAIN_PY, (215, 226, 227, 228)),
    S("train", "mixed precision", "bf16", f"{_TRAIN_PY}:231", "baseline.train.precision"),
    S("train", "best checkpoint by", "eval_loss", f"{_TRAIN_PY}:230,237", "baseline.train.best_checkpoint",
      "load_best_model_at_end; the scripts then point every stage at checkpoint-7628 (fit_factors.sh:4)"),
    S("train", "eval every (steps)", 500, f"{_TRAIN_PY}:234,236", "baseline.train.eval_steps"),
    S("train", "save every (steps)", 500, f"{_TRAIN_PY}:233,235", "baseline.train.save_steps"),
    S("train", "checkpoints kept", 8, f"{_TRAIN_PY}:232", "baseline.train.save_total_limit"),
    S("train", "log every (steps)", 25, f"{_TRAIN_SH}:21", "baseline.train.logging_steps"),
    S("train", "seed", 1004, f"{_TRAIN_SH}:22", "baseline.train.seed"),
    S("train", "IF-Guide model", "the same recipe from scratch, with the mask", f"{_TRAIN_SH}:24-25; {_TRAIN_PY}:190-204,241-249",
      None, "its validation rows get an all-false mask, so eval loss stays plain cross-entropy"),
    S("train", "penalty λ", 1.0, f"{_TRAIN_SH}:25; {_TRAIN_PY}:140-145", "ifguide.lambda"),
)

FINETUNE: tuple[Setting, ...] = (
    S("model", "model", "pythia-2.8b-deduped", "src/utils/registry.yaml:51-56", "model",
      "EleutherAI/pythia-2.8b-deduped, pretrained weights (pretrained: True)"),
    S("model", "baseline", "pythia-2.8b-deduped", "src/utils/registry.yaml:56", "baseline.checkpoint",
      "the pretrained model itself; nothing is trained before the influence stages"),
    S("model", "weights", "bf16", "src/utils/registry.yaml:57-58", "finetune.train.weights_dtype"),
    S("data", "training chunks", "owt-train-1b", f"{_FT_PY}:70-74,191", "data"),
    S("finetune", "learning rate", 6e-5, f"{_FT_SH}:15", "finetune.train.learning_rate"),
    S("finetune", "weight decay", 4e-4, f"{_FT_SH}:16", "finetune.train.weight_decay"),
    S("finetune", "warm-up ratio", 0.01, f"{_FT_SH}:17", "finetune.train.warmup_ratio"),
    S("finetune", "gradient clipping", 1.0, f"{_FT_SH}:18", "finetune.train.max_grad_norm"),
    S("finetune", "micro-batch per GPU", 4, f"{_FT_SH}:19", "finetune.train.micro_batch_size"),
    S("finetune", "effective batch (sequences)", 256, f"{_FT_PY}:120-125,214-215", "finetune.train.batch_size"),
    S("finetune", "optimizer steps", 2_000, f"{_FT_SH}:21", "finetune.train.max_steps"),
    *_optimizer("finetune", "finetune.train", _FT_PY, (220, 231, 232, 233)),
    S("finetune", "mixed precision", "bf16", f"{_FT_PY}:235", "finetune.train.precision"),
    S("finetune", "best checkpoint by", None, f"{_FT_PY}:219-239", "finetune.train.best_checkpoint",
      "no evaluation during fine-tuning: the last step is kept"),
    S("finetune", "rows held out for validation", 0.0, f"{_FT_PY}:191,219-239", "finetune.train.val_fraction",
      "every chunk is trained on (the `paper` profile would hold out the last 0.1%)"),
    S("finetune", "save every (steps)", 250, f"{_FT_PY}:236-237", "finetune.train.save_steps"),
    S("finetune", "log every (steps)", 25, f"{_FT_SH}:22", "finetune.train.logging_steps"),
    S("finetune", "seed", 1004, f"{_FT_SH}:23", "finetune.train.seed"),
    S("finetune", "penalty λ", 1.0, f"{_FT_SH}:27", "finetune.lambda"),
)

INFLUENCE: tuple[Setting, ...] = (
    S("factors", "strategy", "ekfac", "src/scripts/fit_factors.sh:7", "influence.factors.strategy"),
    S("factors", "precision", "bf16", "src/scripts/fit_factors.sh:15; src/fit_factors.py:157-158",
      "influence.factors.precision", "all_low_precision_factor_arguments(bfloat16)"),
    S("factors", "rows fitted", None, "src/fit_factors.py:168-169", "influence.factors.max_examples",
      "all training rows (covariance_max_examples = lambda_max_examples = None)"),
    S("factors", "batch per GPU", 4, "src/scripts/fit_factors.sh:14", "influence.factors.batch_size"),
    S("scores", "toxic queries", "rtp-queries-toxic", "src/scripts/compute_scores.sh:12", "influence.toxic_queries"),
    S("scores", "non-toxic queries", "rtp-queries-nontoxic", "src/scripts/compute_scores.sh:13", "influence.safe_queries"),
    S("scores", "query tokens", 256, "src/utils/datasets.py:117,140-174", None,
      "prompt + continuation, truncated to 256; prompt tokens are label -100"),
    S("scores", "precision", "bf16", "src/scripts/compute_scores.sh:21; src/compute_scores.py:199-200",
      "influence.scores.precision", "all_low_precision_score_arguments(bfloat16)"),
    S("scores", "damping", 1e-8, "src/compute_scores.py:196,200", "influence.scores.damping",
      "kronfluence's default damping_factor; in bf16 it disagrees with fp32 (Spearman 0.83 on an H100: influence/damping.py BF16_MEASURED)"),
    S("scores", "query-gradient low rank", None, "src/compute_scores.py:95-100,204-208", "influence.scores.query_low_rank"),
    S("scores", "aggregated query gradients, per-token scores", True, "src/compute_scores.py:212-214", None,
      "always on in the tool"),
    S("scores", "differential score", "toxic minus non-toxic queries", "src/compute_scores.py:219-229; README.md:36", None,
      "the reference's kronfluence fork (negative_query_dataset); here one pass with signed query weights"),
    S("scores", "batch per GPU", 4, "src/scripts/compute_scores.sh:20", "influence.scores.batch_size"),
    S("scores", "query batch", 4, "src/scripts/compute_scores.sh:19", "influence.scores.query_batch_size"),
    S("mask", "threshold p", 0.99, "src/scripts/build_toxic_token_mask.sh:9", "mask.threshold"),
    S("mask", "window w", 1, "src/scripts/build_toxic_token_mask.sh:8", "mask.window"),
    S("mask", "token budget L", 20_000_000, "src/build_toxic_token_mask.py:84-89; src/scripts/finetune.sh:26",
      "mask.max_tokens"),
)

EVALUATION: tuple[Setting, ...] = (
    S("toxicity", "prompts", "rtp-test", f"{_TOX}:31-32,249-261", "eval.prompts",
      "5,000 toxic then 5,000 non-toxic, labelled by the subset"),
    S("toxicity", "prompts evaluated", None, f"{_TOX}:82-87,253-258", "eval.num_prompts",
      "all 10,000 (num_examples 10,000 → 5,000 per split, no sampling)"),
    S("toxicity", "samples per prompt", 25, f"{_TOX}:88-93", "eval.samples"),
    S("toxicity", "new tokens", 20, f"{_TOX}:150", "eval.max_new_tokens"),
    S("toxicity", "top-p", 0.9, f"{_TOX}:148", "eval.top_p"),
    S("toxicity", "top-k", 0, f"{_TOX}:149", None, "0 = no top-k filtering; always off in the tool"),
    S("toxicity", "classifier", "detoxify-unbiased", f"{_TOX}:34,303", "eval.classifier"),
    S("toxicity", "toxic at", 0.5, f"{_TOX}:311-318", None, "EMT = mean of per-prompt max; TP = share with one ≥ 0.5"),
    S("toxicity", "seed", 42, f"{_TOX}:96-101,214", "eval.seed"),
    S("toxicity", "batch", 32, "src/scripts/run_toxicity_eval.sh:15", "eval.batch_size"),
    S("fluency", "perplexity chunks", "owt-test", f"{_FLU}:44-49,231-237", "eval.ppl_data",
      "exp(Σ CE / Σ tokens) over whole 2,048-token chunks (run_fluency_eval.py:140-169)"),
    S("fluency", "LAMBADA passages", "lambada-reference", f"{_FLU}:50-55,247-258", "eval.lambada"),
    S("fluency", "LAMBADA metric", "last-token", f"{_FLU}:97-137", "eval.fluency.lambada_metric",
      "argmax of the next-token logits at the second-to-last position == the last token"),
    S("fluency", "LAMBADA passage tokens", 512, "src/utils/datasets.py:304-329", None, "left-padded to 512"),
    S("fluency", "batch", 16, "src/scripts/run_fluency_eval.sh:12", None),
)


def settings(name: str) -> tuple[Setting, ...]:
    """Every setting of a preset (`paper` or `paper-finetune`), in the order the run uses them."""
    if name not in SCENARIOS:
        raise IfguideError(f"unknown paper preset {name!r}", hint=f"use one of {', '.join(SCENARIOS)}", exit_code=2)
    first = PRETRAIN if SCENARIOS[name] == "pretrain" else FINETUNE
    return (*first, *INFLUENCE, *EVALUATION)


def rows(name: str) -> list[dict]:
    """JSON-ready rows (section, name, value, key, source, note) for `--print-config`."""
    return [asdict(s) for s in settings(name)]


def lookup(tree: dict, key: str) -> Any:
    """The value at a dotted path of a parsed preset (KeyError naming the path when absent)."""
    node: Any = tree
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(key)
        node = node[part]
    return node
