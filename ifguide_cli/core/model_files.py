"""Loading a model the user handed over (a local folder, a checkpoint, a `--model-config` file): every way its files
can be wrong is one line naming the folder or file, never a library's traceback or an "internal error".

transformers, safetensors, tokenizers and torch each fail in their own way on a broken file (a config.json that is a
list, an unknown `model_type`, a safetensors header that is not JSON or points past the end of the file, a binary
tokenizer.json, a pickled pytorch_model.bin refused by `torch.load(weights_only=True)`): `reading_model_files` turns
all of them into an IfguideError. A pickle is refused in our own words: torch's message advises `weights_only=False`,
which would run whatever code the pickle holds, and ifguide never suggests it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from ifguide_cli.core.errors import IfguideError

_PICKLE_HINT = ("convert the weights to model.safetensors where they were written (save_pretrained saves safetensors); "
                "ifguide never unpickles a file, as a pickle can run code")


@contextmanager
def reading_model_files(what: str) -> Iterator[None]:
    """Errors of loading `what` ("model folder X", "--model-config F") as one line; memory errors stay memory errors."""
    try:
        yield
    except (IfguideError, MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:  # every library's own failure on a broken user file, named in one line
        raise _as_user_error(what, exc) from None


def _as_user_error(what: str, exc: Exception) -> IfguideError:
    text = " ".join(str(exc).split())
    if "weights_only" in text or type(exc).__name__ == "UnpicklingError":
        return IfguideError(f"{what}: its weights are a pickle (pytorch_model.bin / .pt), which is refused",
                            hint=_PICKLE_HINT, exit_code=2)
    if isinstance(exc, RuntimeError) and "alloc" in text.lower():
        return IfguideError(f"{what}: out of memory while building the model",
                            hint="use a smaller model or a machine with more memory")
    first = text.split(". ")[0][:240] or type(exc).__name__
    return IfguideError(f"{what} cannot be loaded ({type(exc).__name__}: {first})",
                        hint="check its config.json, weights (model.safetensors) and tokenizer files", exit_code=2)


def check_buildable(config, where: str, *, training: bool = True) -> None:
    """A model of `config` can be built, and fits this machine's memory: checked on the `meta` device (no memory),
    so that heads that do not divide the width, negative sizes or a 192 GiB allocation are one line before any work.

    Training needs about four copies of the weights in float32 (weights, gradients and AdamW's two moments)."""
    import torch
    from transformers import AutoModelForCausalLM

    with reading_model_files(where), torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    params = sum(p.numel() for p in model.parameters())
    if params == 0:
        raise IfguideError(f"{where} describes a model without weights", hint="give it layers of positive sizes", exit_code=2)
    need = params * 4 * (4 if training else 1)
    have = _machine_memory()
    if have is not None and need > have:
        raise IfguideError(f"{where} describes a model of {params / 1e9:.1f}B parameters, which needs about "
                           f"{need / 2**30:.0f} GiB to {'train' if training else 'hold'}; this machine has "
                           f"{have / 2**30:.0f} GiB", hint="use smaller sizes (hidden_size, num_hidden_layers, "
                           "intermediate_size, vocab_size)", exit_code=2)


def _machine_memory() -> int | None:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
