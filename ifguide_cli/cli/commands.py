"""The commands of `ifguide`: where each is defined, and its one-line summary, written once.

`ifguide --help` lists the summaries without importing the command modules (`app.LazyGroup`); each command module
takes its help's first paragraph from here (`summary`), so the two cannot drift apart. A leaf module: it imports
nothing of the project.
"""

from __future__ import annotations

# name: (module in ifguide_cli.cli whose `register(app)` defines it, the line `ifguide --help` lists and the first
# paragraph of the command's own help)
COMMANDS: dict[str, tuple[str, str]] = {
    "factors": ("factors", "Fit EK-FAC (or KFAC/diagonal/identity) influence factors of a model on its training data."),
    "scores": ("scores", "Token-wise differential influence of the training data (toxic minus safe queries)."),
    "mask": ("mask", "Select toxic tokens from influence scores (paper Alg. 1), a toxicity classifier or a word list; inspect it, export it for other training stacks, carry it to another tokenizer."),
    "train": ("train", "Train a model from scratch (registry name, config folder or checkpoint architecture), "
                       "optionally penalising masked toxic tokens."),
    "finetune": ("train", "Fine-tune a pretrained model or checkpoint, optionally penalising masked toxic tokens."),
    "eval": ("eval", "Evaluate toxicity (explicit, implicit) and fluency of a model."),
    "report": ("report", "Compare eval artifacts side by side (baseline vs IF-Guide vs RAD …) and each arm against a control with 95% intervals and p-values: table and HTML with plots."),
    "run": ("run", "Run the whole pipeline: train a baseline, factors, scores, mask, then IF-Guide (a fine-tune beside a "
                   "plain control, or a model trained from scratch with the penalty), evaluate toxicity and fluency, report."),
    "rad": ("rad", "Reward-augmented decoding (RAD) defense: `eval toxicity|fluency --defense rad`."),
    "tokenizer": ("tokenizer", "Tokenizers trained on your own corpus."),
    "workspace": ("workspace", "List, inspect and remove stored artifacts."),
    "registry": ("registry", "Models, datasets and classifiers known by name (any hub id or local path works too)."),
    "estimate": ("estimate", "Estimate peak GPU memory per stage (weights, gradients, optimizer, activations) for a model, "
                             "with and without LoRA/FSDP."),
    "env": ("env", "Versions, devices, workspace, and which models, datasets and classifiers are available offline."),
}


def summary(name: str, *more: str) -> str:
    """The help of command `name`: its summary, then the paragraphs `more` (its details)."""
    return "\n\n".join((COMMANDS[name][1], *more))
