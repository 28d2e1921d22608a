"""Copy lessons for tiny models built from scratch (init.copying): learn to read a context before anything else.

A 2-layer transformer trained only on the instruct world and the corpus never learns to use its context: with each
MCQ's own chunk in the prompt (the oracle condition) it scores exactly as without. Reading a context needs induction
heads (find the earlier occurrence of what was just read and copy what followed it). They form on a synthetic task:
a context of random tokens, then spans copied from random places in it, each after an end-of-text token, the loss on
each span's tokens after its first (the first says where to read; the rest can only be copied). Random tokens teach
the mechanism, not any fact, so nothing of an evaluated corpus leaks in.

The lengths vary from batch to batch: with one fixed layout the model learns to look back a fixed distance (copy
accuracy 1.00 on its own layout, 0.00 on any other) instead of matching content. Measured on the default tiny gemma
(lr 1e-3, batch 16): no progress for ~1,300 steps, then the phase change induction heads are known for.

The tiny Mamba2 learns nothing from random tokens of the whole 2,048-token vocabulary (the loss stays at ln 2046 for
3,000 steps): a fixed-size state has to tell every token from every other at once. From 32 distinct tokens it learns
to copy within ~600 steps, and it keeps copying while the vocabulary doubles every few hundred steps up to the whole
one (`vocabulary`, `doubling_steps`): copy accuracy 0.85 at the whole vocabulary after 3,500 steps (probe, 32-token
contexts).

A plain torch loop rather than TRL/Trainer: the batches are random tensors made on the fly, with no text, tokenizer
or dataset to prepare, and the whole lesson is a few dozen lines that stay readable top to bottom.
"""

from __future__ import annotations

import torch
from tqdm import tqdm
from transformers import PreTrainedModel

from perpetual.init_params import CopyingParams

# Ids 0 and 1 are the tiny tokenizer's special tokens (end of text, padding: perpetual/models.py).
_FIRST_ORDINARY_ID = 2


def copy_batch(generator: torch.Generator, model: PreTrainedModel, params: CopyingParams, batch_size: int,
               context_length: int, vocabulary: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Input ids (random context of the first `vocabulary` ordinary ids, all of them when None; then per span: end of
    text, a span copied from the context) and labels (-100 but on each span's tokens after its first)."""
    highest = model.config.vocab_size if vocabulary is None else min(model.config.vocab_size, _FIRST_ORDINARY_ID + vocabulary)
    context = torch.randint(_FIRST_ORDINARY_ID, highest, (batch_size, context_length), generator=generator)
    separator = torch.full((batch_size, 1), model.config.eos_token_id)
    ids, labels = [context], [torch.full_like(context, -100)]
    offsets = torch.arange(params.span_length)
    for _ in range(params.spans):
        starts = torch.randint(0, context_length - params.span_length + 1, (batch_size, 1), generator=generator)
        span = context.gather(1, starts + offsets)
        span_labels = span.clone()
        span_labels[:, 0] = -100
        ids += [separator, span]
        labels += [torch.full_like(separator, -100), span_labels]
    return torch.cat(ids, dim=1), torch.cat(labels, dim=1)


@torch.no_grad()
def copy_accuracy(model: PreTrainedModel, generator: torch.Generator, params: CopyingParams) -> float:
    """Share of the copyable span tokens predicted exactly, on 64 fresh rows with contexts twice the longest taught
    (a chunk in a prompt is longer than any lesson)."""
    training = model.training
    model.eval()
    input_ids, labels = copy_batch(generator, model, params, 64, 2 * params.context_length)
    predicted = model(input_ids=input_ids).logits[:, :-1].argmax(-1)
    scored = labels[:, 1:] != -100
    model.train(training)
    return ((predicted == input_ids[:, 1:]) & scored).sum().item() / scored.sum().item()


def teach_copying(model: PreTrainedModel, params: CopyingParams, seed: int, label: str) -> dict[str, float]:
    """`params.steps` AdamW steps on copy batches; returns the copy accuracy before and after (base metrics), always on
    the whole vocabulary."""
    generator = torch.Generator().manual_seed(seed)
    before = copy_accuracy(model, generator, params)
    optimizer = torch.optim.AdamW(model.parameters(), lr=params.learning_rate, weight_decay=0.0)
    shortest = params.span_length * 2
    model.train()
    progress = tqdm(range(params.steps), desc=f"base {label}: copy lessons", unit="step", disable=None)
    for step in progress:
        length = int(torch.randint(shortest, params.context_length + 1, (1,), generator=generator))
        vocabulary = params.vocabulary * 2 ** (step // params.doubling_steps) if params.vocabulary else None
        input_ids, labels = copy_batch(generator, model, params, params.batch_size, length, vocabulary)
        loss = model(input_ids=input_ids, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        progress.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    after = copy_accuracy(model, generator, params)
    model.eval()
    return {"copy_accuracy_before": round(before, 4), "copy_accuracy_after": round(after, 4), "copy_steps": params.steps}
