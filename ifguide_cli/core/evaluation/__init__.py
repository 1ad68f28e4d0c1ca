"""Step 5: toxicity and fluency evaluation (with the optional RAD defense of step 6).

- `config`: the typed settings (generation, defense, fluency data, device and precision).
- `metrics`: EMT ± std, TP, per attribute and per prompt split; perplexity from totals; the LAMBADA target.
- `inputs`: prompt sets, held-out text and LAMBADA data, with each model's defaults.
- `generation`: seeded, batched, resumable sampling of continuations (an optional defense re-ranks after top-p).
- `fluency`: token-weighted perplexity and LAMBADA accuracy.
- `stages`: the `evals` artifacts: toxicity, implicit (re-scoring), fluency.
"""

from ifguide_cli.core.evaluation.config import DefenseConfig, FluencyConfig, GenerationConfig, RuntimeConfig
from ifguide_cli.core.evaluation.fluency import context_length, lambada_accuracy, perplexity
from ifguide_cli.core.evaluation.generation import generate_continuations
from ifguide_cli.core.evaluation.inputs import (
           PROMPT_SETS,
           default_fluency_data,
           default_prompt_set,
           fluency_data,
           load_eval_prompts,
)
from ifguide_cli.core.evaluation.metrics import (
           THRESHOLD,
           lambada_split,
           perplexity_from_totals,
           summarize_scores,
           toxicity_metrics,
)
from ifguide_cli.core.evaluation.stages import (
           CONTINUATIONS,
           METRICS,
           continuations_path,
           evaluate_fluency,
           evaluate_toxicity,
           read_continuations,
           rescore_eval,
           resolve_defense,
)

__all__ = ["CONTINUATIONS", "METRICS", "PROMPT_SETS", "THRESHOLD", "DefenseConfig", "FluencyConfig", "GenerationConfig",
           "RuntimeConfig", "context_length", "continuations_path", "default_fluency_data", "default_prompt_set",
           "evaluate_fluency", "evaluate_toxicity", "fluency_data", "generate_continuations", "lambada_accuracy",
           "lambada_split", "load_eval_prompts", "perplexity", "perplexity_from_totals", "read_continuations",
           "rescore_eval", "resolve_defense", "summarize_scores", "toxicity_metrics"]
