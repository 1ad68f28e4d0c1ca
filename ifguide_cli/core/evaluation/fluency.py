"""Fluency: token-weighted perplexity on held-out text and the two LAMBADA accuracies.

- Perplexity: each document is tokenized with an EOS appended, like the training corpus, and cut into
  non-overlapping windows of the model's context length; padding carries no loss. Pre-tokenized chunks
  (the paper's OWT test set) are scored whole, as they are: exp(Σ CE / Σ predicted tokens).
- LAMBADA word accuracy: the context (passage minus its last word) must make the model produce the last
  word (" word", possibly several tokens) exactly under greedy decoding. Without a defense this is
  checked teacher-forced in one forward pass (every target token is the argmax given the true prefix —
  the same condition as greedy decoding reproducing it); with RAD greedy `generate` runs with the RAD
  processor.
- LAMBADA last-token accuracy (the reference's, `run_fluency_eval.py:97-137`): the whole passage in one
  forward pass; correct when the argmax at the position before the last token is that token. Passages
  are right-padded, i.e. each is scored as if alone (the reference left-pads to 512; with rotary position
  embeddings, as in Pythia and Llama, the two are the same computation). With RAD, one greedy step of
  `generate` through the RAD processor (the reference takes the argmax of the processed scores too).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.evaluation.generation import left_padded
from ifguide_cli.core.evaluation.metrics import LAMBADA_METRICS, lambada_split, perplexity_from_totals
from ifguide_cli.core.progress import NULL
from ifguide_cli.core.store.artifact_files import IGNORE_INDEX


def context_length(model, cap: int = 2048) -> int:
    return int(min(getattr(model.config, "max_position_embeddings", None) or cap, cap))


def right_padded(rows: Sequence[Sequence[int]], pad_id: int, device):
    """(input_ids, attention_mask) of token rows padded on the right to the longest."""
    import torch

    width = max(len(x) for x in rows)
    ids = torch.tensor([list(x) + [pad_id] * (width - len(x)) for x in rows], device=device)
    mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in rows], device=device)
    return ids, mask


def _pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def _windows(tokenizer, texts: Sequence[str], max_length: int) -> list[tuple[int, list[int]]]:
    """(document index, window) of each document + EOS cut into windows of at most `max_length` tokens (a
    1-token window predicts nothing), shortest first: the index attributes a window's NLL to its document."""
    windows: list[tuple[int, list[int]]] = []
    for doc, text in enumerate(texts):
        ids = [*tokenizer.encode(text, add_special_tokens=False), tokenizer.eos_token_id]
        windows += [(doc, ids[i:i + max_length]) for i in range(0, len(ids), max_length) if len(ids[i:i + max_length]) > 1]
    return sorted(windows, key=lambda w: len(w[1]))


def _nll(model, ids, mask):
    """(summed next-token NLL, per-row NLL sums as float64, per-row predicted tokens) of one right-padded batch.

    The batch total is `nll_loss(log_softmax)` with `reduction="sum"`, which is exactly what `cross_entropy`
    computes, so corpus perplexity is what it was before per-row sums existed; the per-row sums come from the
    same log-probabilities and only feed the per-document file (their total may differ in the last bits)."""
    import torch

    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    labels = ids[:, 1:].masked_fill(mask[:, 1:] == 0, IGNORE_INDEX)
    logp = torch.nn.functional.log_softmax(logits.reshape(-1, logits.shape[-1]), dim=1)
    flat = labels.reshape(-1)
    loss = torch.nn.functional.nll_loss(logp, flat, ignore_index=IGNORE_INDEX, reduction="sum")
    rows = torch.nn.functional.nll_loss(logp, flat, ignore_index=IGNORE_INDEX, reduction="none")
    per_row = rows.reshape(labels.shape).double().sum(dim=1)
    return float(loss.double()), per_row.cpu().numpy(), (labels != IGNORE_INDEX).sum(dim=1).cpu().numpy()


class _PerDocument:
    """Per-document NLL sums and predicted-token counts, added window by window, so that a report can resample
    documents (the bootstrap interval of a perplexity); the totals are kept as before, batch by batch."""

    def __init__(self, docs: int):
        self.nll_sum, self.tokens = 0.0, 0
        self.doc_nll, self.doc_tokens = [0.0] * docs, [0] * docs

    def add(self, owners: Sequence[int], batch) -> None:
        total, per_row, counts = batch
        self.nll_sum += total
        self.tokens += int(counts.sum())
        for doc, nll, count in zip(owners, per_row.tolist(), counts.tolist(), strict=True):
            self.doc_nll[doc] += nll
            self.doc_tokens[doc] += count

    def result(self, **extra) -> dict:
        return {"perplexity": perplexity_from_totals(self.nll_sum, self.tokens), "nll_sum": self.nll_sum,
                "tokens": self.tokens, **extra, "per_document": {"nll": self.doc_nll, "tokens": self.doc_tokens}}


def perplexity(model, tokenizer, texts: Sequence[str], *, batch_size: int = 16, max_length: int | None = None,
               device: str = "cpu", reporter=NULL) -> dict:
    """Token-weighted perplexity; padding positions carry no loss."""
    import torch

    max_length = max_length or context_length(model)
    windows = _windows(tokenizer, texts, max_length)
    totals = _PerDocument(len(texts))
    model.eval()
    with reporter.task("perplexity", total=len(windows)) as task, torch.inference_mode():
        for start in range(0, len(windows), batch_size):
            chunk = windows[start:start + batch_size]
            totals.add([d for d, _ in chunk], _nll(model, *right_padded([w for _, w in chunk], _pad_id(tokenizer), device)))
            task.advance(len(chunk))
    return totals.result(documents=len(texts), windows=len(windows), max_length=max_length)


def chunk_perplexity(model, blocks, *, chunks: int, batch_size: int = 16, device: str = "cpu", reporter=NULL) -> dict:
    """Perplexity over whole pre-tokenized chunks: `blocks` yields int arrays (rows × chunk length), `chunks`
    rows in all. Every position of a chunk is real: each chunk predicts its tokens 2..L from the previous ones."""
    import torch

    totals, seen, width = _PerDocument(chunks), 0, None
    model.eval()
    with reporter.task("perplexity", total=chunks) as task, torch.inference_mode():
        for block in blocks:
            width = _check_chunks(model, block)
            for start in range(0, len(block), batch_size):
                ids = torch.tensor(block[start:start + batch_size], dtype=torch.long, device=device)  # a copy: blocks are read-only
                totals.add(range(seen, seen + len(ids)), _nll(model, ids, torch.ones_like(ids)))
                seen += len(ids)
                task.advance(len(ids))
    totals.doc_nll, totals.doc_tokens = totals.doc_nll[:seen], totals.doc_tokens[:seen]
    return totals.result(documents=seen, windows=seen, max_length=width)


def _check_chunks(model, block) -> int:
    """The chunk length, after checking that the model can read the chunks as they are (one line if not)."""
    width = int(block.shape[1])
    if width < 2:
        raise IfguideError(f"token chunks of {width} token cannot be scored (a chunk needs at least 2 tokens)", exit_code=2)
    context = getattr(model.config, "max_position_embeddings", None)
    if context and width > context:
        raise IfguideError(f"token chunks of {width} tokens exceed the model's context of {context}",
                           hint="evaluate a model with a context of at least the chunk length", exit_code=2)
    vocab = int(model.config.vocab_size)
    if int(block.max()) >= vocab:
        raise IfguideError(f"the token chunks hold token id {int(block.max())}, outside the model's {vocab:,}-token vocabulary",
                           hint="pre-tokenized chunks need a model with their tokenizer (owt-test: the Pythia tokenizer)",
                           exit_code=2)
    return width


def _lambada_items(tokenizer, texts, max_length):
    items = []
    for text in texts:
        context, target = lambada_split(text)
        tgt = tokenizer.encode(target, add_special_tokens=False)
        ctx = tokenizer.encode(context, add_special_tokens=False)[-(max_length - len(tgt)):] or [tokenizer.eos_token_id]
        items.append((ctx, tgt))
    return items


def _teacher_forced_hits(model, chunk, pad: int, device) -> list[bool]:
    """Whether every target token is the argmax given the true prefix (one forward)."""
    ids, mask = right_padded([c + t for c, t in chunk], pad, device)
    pred = model(input_ids=ids, attention_mask=mask).logits.argmax(-1)
    return [pred[i, len(c) - 1:len(c) - 1 + len(t)].tolist() == t for i, (c, t) in enumerate(chunk)]


def _greedy_hits(model, tokenizer, chunk, pad: int, device, processor_factory) -> list[bool]:
    """Whether greedy decoding through the defense's processor produces the target."""
    from transformers import LogitsProcessorList

    ids, mask = left_padded([c for c, _ in chunk], pad, device)
    width = ids.shape[1]
    out = model.generate(input_ids=ids, attention_mask=mask, do_sample=False,
                         max_new_tokens=max(len(t) for _, t in chunk), pad_token_id=pad,
                         eos_token_id=tokenizer.eos_token_id, use_cache=True,
                         logits_processor=LogitsProcessorList([processor_factory(mask)]))
    return [out[i, width:width + len(t)].tolist() == t for i, (_, t) in enumerate(chunk)]


def _batched_hits(model, tokenizer, rows: list, forward_hits: Callable, pairs: Callable, *, label: str, batch_size: int,
                  device, processor_factory: Callable | None, reporter) -> list[bool]:
    """Hits over the rows in batches, under inference mode, with one progress task: one forward pass per batch
    (`forward_hits`), or, with a decoding defense, greedy decoding of each row's (context, target) `pairs` through it."""
    import torch

    pad = _pad_id(tokenizer)

    def hits(chunk):
        if processor_factory is None:
            return forward_hits(model, chunk, pad, device)
        return _greedy_hits(model, tokenizer, pairs(chunk), pad, device, processor_factory)

    correct: list[bool] = []
    model.eval()
    with reporter.task(label, total=len(rows)) as task, torch.inference_mode():
        for start in range(0, len(rows), batch_size):
            chunk = rows[start:start + batch_size]
            correct += hits(chunk)
            task.advance(len(chunk))
    return correct


def _share(correct: list[bool]) -> float:
    return sum(correct) / len(correct) if correct else float("nan")


def lambada_accuracy(model, tokenizer, texts: Sequence[str], *, batch_size: int = 16, device: str = "cpu",
                     processor_factory: Callable | None = None, reporter=NULL) -> dict:
    """Share of passages whose last word the model produces exactly by greedy decoding."""
    items = _lambada_items(tokenizer, texts, context_length(model))
    correct = _batched_hits(model, tokenizer, items, _teacher_forced_hits, lambda chunk: chunk, label="LAMBADA",
                            batch_size=batch_size, device=device, processor_factory=processor_factory, reporter=reporter)
    return {"lambada_accuracy": _share(correct), "lambada_examples": len(correct), "correct": correct}


def _passage_ids(tokenizer, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Each whole passage's tokens (its last `max_length`); one line for a passage of fewer than 2 tokens."""
    rows = []
    for text in texts:
        ids = tokenizer.encode(text, add_special_tokens=False)[-max_length:]
        if len(ids) < 2:
            raise IfguideError(f"LAMBADA passage has no context before its last token: {text[:60]!r}", exit_code=2)
        rows.append(ids)
    return rows


def _last_token_hits(model, chunk, pad: int, device) -> list[bool]:
    from ifguide_cli.core.paper.metrics import last_token_correct

    ids, mask = right_padded(chunk, pad, device)
    logits = model(input_ids=ids, attention_mask=mask).logits
    return last_token_correct(logits, ids, mask).tolist()


def lambada_last_token_accuracy(model, tokenizer, texts: Sequence[str], *, batch_size: int = 16, device: str = "cpu",
                                processor_factory: Callable | None = None, reporter=NULL) -> dict:
    """Share of passages whose last token is the argmax of the next-token logits before it (the reference's)."""
    rows = _passage_ids(tokenizer, texts, context_length(model))
    correct = _batched_hits(model, tokenizer, rows, _last_token_hits, lambda chunk: [(ids[:-1], ids[-1:]) for ids in chunk],
                            label="LAMBADA (last token)", batch_size=batch_size, device=device,
                            processor_factory=processor_factory, reporter=reporter)
    return {"lambada_last_token_accuracy": _share(correct), "lambada_examples": len(correct), "correct": correct}


def lambada_metrics(model, tokenizer, texts: Sequence[str], metrics: Sequence[str], **kwargs) -> dict[str, dict]:
    """Each requested LAMBADA metric (`last-token`, `whole-word`) by its summary name: {value, correct}."""
    out = {}
    for metric in metrics:
        if metric == "last-token":
            result = lambada_last_token_accuracy(model, tokenizer, texts, **kwargs)
            value = result["lambada_last_token_accuracy"]
        else:
            result = lambada_accuracy(model, tokenizer, texts, **kwargs)
            value = result["lambada_accuracy"]
        out[LAMBADA_METRICS[metric]] = {"value": value, "correct": result["correct"]}
    return out
