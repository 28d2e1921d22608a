"""lm-eval's HFLM with each shared context run once: the multiple-choice scoring of perpetual/evaluation.py, faster.

`lm_eval.models.huggingface.HFLM._loglikelihood_tokens` encodes context + continuation once per request, so a
question's prompt (a retrieved passage of a few hundred tokens) goes through the model once per option, and the
vocabulary projection and log-softmax run at every position of every copy. `SharedContextHFLM` keeps lm-eval as the
harness (same tasks, `evaluate` call, output and `(log-likelihood, is_greedy)` semantics) and replaces only that
method:

* requests are grouped by their *effective* context: the context tokens left after HFLM's own left truncation
  (`(context + continuation)[-(max_length + 1):]`, minus the continuation), so a truncated request sees exactly the
  window HFLM would give it (continuations of different lengths then get different windows, and different groups);
* the distinct contexts of a batch run once, with the model's cache kept (`DynamicCache`: key/values for attention
  models, conv + SSM states for Mamba and Mamba2); the logits at each context's last token give every option's first
  token;
* the cache is expanded to one row per multi-token continuation (`Cache.reorder_cache`) and the continuations, minus
  their last token, run as one right-padded batch from it;
* the LM head and log-softmax run only at the positions that predict continuation tokens (`logits_to_keep` with a
  boolean mask), not at every context position.

Log-likelihoods agree with HFLM's to float rounding (the model sees the same tokens at the same positions) and
is_greedy is the same per-token argmax test over the log-softmax. Results come back in request order and each
answer goes to `cache_hook` like HFLM's.

Model families (see `SharedContextHFLM.shared_context_mode`):

* "attention": decoder-only transformers models whose forward takes `past_key_values`, `position_ids`,
  `attention_mask` and `use_cache` (Llama / SmolLM2, Gemma, Qwen2, Mistral, ...) and whose layers all attend to the
  full past, or whose sliding window is longer than any input. Contexts are right-padded (as in HFLM, so the padding
  never reaches a real position); the continuations get a 2-D attention mask hiding each context's padding and
  explicit position ids.
* "recurrent": `mamba2` and `mamba` (transformers' `Mamba2ForCausalLM`, `MambaForCausalLM`; checked on the PyTorch
  path, not on the mamba-ssm CUDA kernels). Contexts are left-padded with an attention mask; the masked positions feed
  zeros to the convolution and the SSM, which is exact only when `in_proj` has no bias (`use_bias=False`, the
  default): with a bias, only contexts of equal length share a forward. Mamba2 runs the continuations as one batch
  from the cached conv and SSM states; Mamba (v1)'s full-sequence scan in transformers takes no initial state, so its
  continuations go through the single-token recurrent step, one position at a time (all rows together).
* everything else (seq2seq, sliding-window or chunked attention shorter than the input, hybrid linear-attention
  models, PEFT wrappers, other model classes) and `batch_size="auto"`: the parent's method, unchanged.

Retention (perpetual/retention.py) scores and answers through the same object: its reference log-likelihoods go
through `_loglikelihood_tokens` above, and its greedy answers through HFLM's own `generate_until`, which
`generate_until_with_tokens` runs while recording each answer's generated token ids (retention needs them: whether
an answer ended with a stop token, and its text with the special tokens that `generate_until`'s string drops).
"""

from __future__ import annotations

import hashlib
import inspect
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
import transformers
from lm_eval.models.huggingface import HFLM, has_bos_prefix
from tqdm import tqdm

logger = logging.getLogger(__name__)

RECURRENT_MODEL_TYPES = {"mamba", "mamba2"}
ATTENTION_FORWARD_ARGUMENTS = {"past_key_values", "position_ids", "attention_mask", "use_cache"}

Request = tuple[tuple[str, str], list[int], list[int]]


class FixedVocabTokenizer:
    """A tokenizer whose `get_vocab()` returns one dict, in one order, every time; everything else is the tokenizer's.

    transformers' `StopStringCriteria` (what `generate(stop_strings=...)` builds on every call) caches its tables per
    vocabulary, keyed by `tuple(tokenizer.get_vocab().keys())`; a fast tokenizer returns its vocabulary in a new
    order on each call, so the cache never hits and every `generate` call rebuilt them (0.3 s for SmolLM2's 49k
    tokens on CPU, per batch). With this wrapper the tables are built once per vocabulary.
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self._vocab = tokenizer.get_vocab()

    def get_vocab(self) -> dict[str, int]:
        return self._vocab

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.tokenizer(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        tokenizer = self.__dict__.get("tokenizer")  # absent while a copy is being built: no recursion
        if tokenizer is None:
            raise AttributeError(name)
        return getattr(tokenizer, name)


class Encodings:
    """Token ids of the strings a tokenizer has encoded, kept across HFLM objects: the base and the fine-tuned model of
    an evaluate cell share a tokenizer and are asked for the same prompts, so the second one encodes nothing again.

    Tables are keyed by the tokenizer's full serialisation (normaliser, pre-tokenizer, model, post-processor, added
    tokens), so two tokenizers that could encode a string differently never share one."""

    def __init__(self) -> None:
        self._tables: dict[str, dict[tuple[bool | None, str], list[int]]] = {}

    def table(self, tokenizer: Any) -> dict[tuple[bool | None, str], list[int]]:
        """(add_special_tokens, string) -> token ids for this tokenizer."""
        serialised = f"{type(tokenizer).__qualname__}\n{tokenizer.backend_tokenizer.to_str()}"
        return self._tables.setdefault(hashlib.sha256(serialised.encode()).hexdigest(), {})


class SharedContextHFLM(HFLM):
    """HFLM whose log-likelihood requests run each distinct context once and score its continuations from the cache.

    Constructed exactly like `HFLM` (e.g. `SharedContextHFLM(pretrained=model, tokenizer=tokenizer, batch_size=8,
    device="cpu")`). `batch_size` counts distinct contexts (questions) per forward, not (context, option) pairs.
    """

    _mode: str | None
    _logits_to_keep = False
    _recording: list[tuple[str, list[int]]] | None = None  # (prompt, generated ids) while generate_until_with_tokens runs
    _batch_prompts: Sequence[str] = ()
    _fixed_vocab: FixedVocabTokenizer | None = None
    _encodings: dict[str, list[int]] | None = None  # string -> token ids, while `loglikelihood` runs
    encodings: Encodings | None = None  # strings encoded before, kept across HFLMs (`Encodings`)

    def shared_context_mode(self) -> str | None:
        """ "attention", "recurrent", or None where the parent's `_loglikelihood_tokens` is used (module docstring)."""
        if not hasattr(self, "_mode"):
            self._mode = self._detect_mode()
        return self._mode

    def _detect_mode(self) -> str | None:
        model = self.model
        if self.backend != "causal" or self.AUTO_MODEL_CLASS is not transformers.AutoModelForCausalLM:
            return None
        if not isinstance(model, transformers.PreTrainedModel):  # e.g. a PEFT wrapper: keep lm-eval's path
            return None
        parameters = inspect.signature(model.forward).parameters
        # transformers' own model code slices with `slice_logits_to_keep`, which takes a boolean [batch, seq] mask
        # (custom model code may take an int only): elsewhere the full logits are computed, then the same rows taken.
        self._logits_to_keep = "logits_to_keep" in parameters and type(model).__module__.startswith("transformers.")
        config = model.config.get_text_config()
        if config.model_type in RECURRENT_MODEL_TYPES:
            return "recurrent" if "cache_params" in parameters else None
        if not ATTENTION_FORWARD_ARGUMENTS <= parameters.keys():
            return None
        layer_types = getattr(config, "layer_types", None) or []
        if any(kind != "full_attention" for kind in layer_types):
            # A sliding window that no input can reach changes nothing; anything else (chunked attention, linear
            # attention, a window the inputs exceed) would need the parent's full-sequence forward.
            window = getattr(config, "sliding_window", None)
            if any(kind not in ("full_attention", "sliding_attention") for kind in layer_types):
                return None
            if not window or window <= self.max_length:
                return None
        elif getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True):
            if config.sliding_window <= self.max_length:
                return None
        return "attention"

    def loglikelihood(self, requests: list[Any], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        """The parent's, with its tokenizing done up front in one batch call per kind of encoding.

        lm-eval encodes, per request, the context and the context + continuation, one `tokenizer.encode` call each: a
        question's prompt is encoded again for every option, and on the tiny models the tokenizing took as long as the
        scoring. Here every distinct string the parent will ask for is encoded once, in batches (the fast tokenizer's
        batch encoding gives the same ids as one call per string), and `tok_encode` answers from that table while the
        parent runs; a string not foreseen is encoded as before, so the ids are the parent's whatever happens. With
        `encodings` (the evaluate stage gives its base and fine-tuned models one), a string an earlier HFLM with the
        same tokenizer encoded is not encoded again."""
        self._encodings = self._encode_up_front([request.args for request in requests])
        try:
            return super().loglikelihood(requests, disable_tqdm=disable_tqdm)
        finally:
            self._encodings = None

    def _encode_up_front(self, pairs: list[tuple[str, str]]) -> dict[str, list[int]]:
        if self.backend != "causal" or not getattr(self.tokenizer, "is_fast", False):
            return {}
        strings: set[str] = set()
        for context, continuation in pairs:
            if not context:
                continue
            # As TemplateLM._encode_pair splits a pair: trailing spaces of the context go to the continuation.
            stripped = context.rstrip()
            strings.update((stripped, stripped + context[len(stripped) :] + continuation))
        # `tok_encode`'s add_special_tokens for each string (None: the tokenizer's default).
        by_special: dict[bool | None, list[str]] = {}
        prefix = self.tokenizer.decode(self.prefix_token_id)
        for string in strings:
            special = False if has_bos_prefix(string, prefix) else self.add_bos_token
            by_special.setdefault(special, []).append(string)
        known = self.encodings.table(self.tokenizer) if self.encodings is not None else {}
        table: dict[str, list[int]] = {}
        for special, group in by_special.items():
            missing = [string for string in group if (special, string) not in known]
            new: dict[tuple[bool | None, str], list[int]] = {}
            if missing:
                encoded = self.tokenizer(missing, **({} if special is None else {"add_special_tokens": special}))["input_ids"]
                new = {(special, string): ids for string, ids in zip(missing, encoded, strict=True)}
            # One string of each group checked against the parent's own encoding: a tokenizer or lm-eval that encodes
            # otherwise gets no table (and leaves none for the next model), and the parent encodes as it always does.
            checked = (special, missing[0] if missing else group[0])
            if (new[checked] if checked in new else known[checked]) != super().tok_encode(checked[1]):
                return {}
            known.update(new)
            table.update((string, known[(special, string)]) for string in group)
        return table

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, left_truncate_len: int | None = None, **kwargs: Any) -> list[int]:
        if self._encodings and add_special_tokens is None and not left_truncate_len and not kwargs and string in self._encodings:
            return list(self._encodings[string])
        return super().tok_encode(string, add_special_tokens=add_special_tokens, left_truncate_len=left_truncate_len, **kwargs)

    def _loglikelihood_tokens(
        self,
        requests: list[Request],
        disable_tqdm: bool = False,
        override_bs: int | None = None,
    ) -> list[tuple[float, bool]]:
        mode = self.shared_context_mode()
        if mode is None or not isinstance(self.batch_size, int):
            return super()._loglikelihood_tokens(requests, disable_tqdm=disable_tqdm, override_bs=override_bs)

        # The context each request really sees: HFLM feeds (context + continuation)[-(max_length + 1):][:-1].
        groups: dict[tuple[int, ...], list[int]] = {}
        truncated = 0
        max_length = self.max_length  # a property that re-reads the model config: once, not once per request
        for index, (_, context, continuation) in enumerate(requests):
            assert len(context) > 0
            assert len(continuation) > 0
            assert len(continuation) <= max_length
            keep = max_length + 1 - len(continuation)
            if len(context) > keep:
                truncated += 1
                context = context[-keep:]
            groups.setdefault(tuple(context), []).append(index)
        if truncated:
            logger.warning("%d of %d requests exceed the model's maximum length (%d): contexts truncated from the left",
                           truncated, len(requests), max_length)  # fmt: skip

        # Longest contexts first, as HFLM does (any out-of-memory error comes at once; batches pad little).
        ordered = sorted(groups.items(), key=lambda item: (-len(item[0]), item[0]))
        results: list[tuple[float, bool] | None] = [None] * len(requests)
        progress = tqdm(total=len(requests), disable=(disable_tqdm or self.rank != 0), desc="Running loglikelihood requests")
        for start in range(0, len(ordered), self.batch_size):
            batch = ordered[start : start + self.batch_size]
            contexts = [list(context) for context, _ in batch]
            continuations = [[requests[index][2] for index in indices] for _, indices in batch]
            for (_, indices), answers in zip(batch, self._score_batch(mode, contexts, continuations), strict=True):
                for index, answer in zip(indices, answers, strict=True):
                    results[index] = answer
                    request_str = requests[index][0]
                    if request_str is not None:
                        self.cache_hook.add_partial("loglikelihood", request_str, answer)
                    progress.update(1)
        progress.close()
        complete = [result for result in results if result is not None]
        assert len(complete) == len(results)
        return complete

    def generate_until_with_tokens(self, requests: Sequence[Any], disable_tqdm: bool = False) -> list[tuple[str, list[int]]]:
        """HFLM's `generate_until` (its batching, left padding, stop handling and decoding), returning with each
        answer string the token ids generated after its prompt: the whole row of its batch, so an answer that stopped
        before the rest may be followed by padding (perpetual/retention.py `answer_tokens` cuts it).

        Besides lm-eval's generation kwargs (`until`, `max_gen_toks`, `do_sample`, and any `generate` keyword such as
        `eos_token_id`), a request may give `stop_strings`: then each row ends at one of them as transformers'
        `generate` ends it (lm-eval's `until` stops the batch only when every row has met one).
        """
        self._recording = []
        try:
            texts = self.generate_until(list(requests), disable_tqdm=disable_tqdm)
            recorded = self._recording
        finally:
            self._recording = None
        by_prompt: dict[str, list[list[int]]] = {}
        for prompt, generated in recorded:
            by_prompt.setdefault(prompt, []).append(generated)
        return [(text, by_prompt[request.args[0]].pop(0)) for text, request in zip(texts, requests, strict=True)]

    def tok_batch_encode(
        self, strings: list[str], padding_side: str = "left", left_truncate_len: int | None = None, truncation: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self._recording is not None:
            self._batch_prompts = list(strings)  # which prompt each row of the next `_model_generate` call is
        return super().tok_batch_encode(strings, padding_side=padding_side, left_truncate_len=left_truncate_len, truncation=truncation)

    def _model_generate(self, context: torch.Tensor, max_length: int, stop: list[str], **generation_kwargs: Any) -> torch.Tensor:
        if generation_kwargs.get("stop_strings"):
            # transformers needs the tokenizer to match stop strings per row; see FixedVocabTokenizer for why this one.
            if self._fixed_vocab is None or self._fixed_vocab.tokenizer is not self.tokenizer:
                self._fixed_vocab = FixedVocabTokenizer(self.tokenizer)
            generation_kwargs["tokenizer"] = self._fixed_vocab
        output = super()._model_generate(context, max_length, stop, **generation_kwargs)
        if self._recording is not None:
            generated = output[:, context.shape[1] :] if self.backend == "causal" else output
            self._recording.extend(zip(self._batch_prompts, generated.tolist(), strict=True))
        return output

    @contextmanager
    def _inference(self) -> Iterator[None]:
        """What HFLM's `_model_call` wraps the forward in."""
        with (
            torch.no_grad(),
            torch.autocast(device_type=self.device.type, dtype=self.mixed_precision_dtype, enabled=self.mixed_precision_dtype is not None),
        ):
            yield

    def _forward(self, keep: torch.Tensor, **inputs: Any) -> tuple[torch.Tensor, Any]:
        """Log-probabilities at the `keep` positions only ([n_kept, vocab], row-major order) and the cache."""
        if self._logits_to_keep:
            output = self.model(**inputs, logits_to_keep=keep)
            logits = output.logits
        else:
            output = self.model(**inputs)
            logits = output.logits[keep]
        assert logits.dim() == 2, "expected one row of logits per kept position"
        cache = output.cache_params if hasattr(output, "cache_params") else output.past_key_values
        return F.log_softmax(logits, dim=-1, dtype=self.softmax_dtype), cache

    def _continue_stepwise(self, cache: Any, ids: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Mamba (v1): transformers' full-sequence scan takes no initial state (it would restart the recurrence from
        zero), so continuations go through its single-token recurrent step, one position at a time for all rows."""
        pieces = []
        slot = torch.full(keep.shape, -1, dtype=torch.long, device=keep.device)
        done = 0
        for step in range(ids.shape[1]):
            wanted = keep[:, step : step + 1]
            logprobs, cache = self._forward(wanted, input_ids=ids[:, step : step + 1], cache_params=cache, use_cache=True)
            pieces.append(logprobs)
            slot[wanted[:, 0], step] = torch.arange(done, done + logprobs.shape[0], device=keep.device)
            done += logprobs.shape[0]
        return torch.cat(pieces)[slot[keep]]  # step-major pieces back in row-major order

    def _score_batch(self, mode: str, contexts: list[list[int]], continuations: list[list[list[int]]]) -> list[list[tuple[float, bool]]]:
        if mode == "recurrent" and getattr(self.model.config.get_text_config(), "use_bias", False):
            # Left padding is exact only without an in_proj bias: otherwise one forward per context length.
            by_length: dict[int, list[int]] = {}
            for index, context in enumerate(contexts):
                by_length.setdefault(len(context), []).append(index)
            answers: list[list[tuple[float, bool]]] = [[] for _ in contexts]
            for indices in by_length.values():
                for index, scored in zip(indices, self._score_padded(mode, [contexts[i] for i in indices], [continuations[i] for i in indices])):
                    answers[index] = scored
            return answers
        return self._score_padded(mode, contexts, continuations)

    def _score_padded(self, mode: str, contexts: list[list[int]], continuations: list[list[list[int]]]) -> list[list[tuple[float, bool]]]:
        device = self.device
        lengths = [len(context) for context in contexts]
        width = max(lengths)
        count = len(contexts)

        # 1. The contexts, once each. Attention: right-padded like HFLM (padding only ever follows real tokens).
        # Recurrent: left-padded with a mask, so every row's state ends at its last real token.
        if mode == "attention":
            ids = torch.tensor([context + [0] * (width - len(context)) for context in contexts], dtype=torch.long)
            valid = torch.arange(width).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
        else:
            ids = torch.tensor([[0] * (width - len(context)) + context for context in contexts], dtype=torch.long)
            valid = torch.arange(width).unsqueeze(0) >= width - torch.tensor(lengths).unsqueeze(1)
        last = torch.zeros((count, width), dtype=torch.bool)
        last[torch.arange(count), torch.tensor(lengths) - 1 if mode == "attention" else width - 1] = True
        inputs: dict[str, Any] = {"input_ids": ids.to(device), "use_cache": True}
        if mode == "recurrent" and not bool(valid.all()):
            inputs["attention_mask"] = valid.long().to(device)
        with self._inference():
            first, cache = self._forward(last.to(device), **inputs)  # [count, vocab]: each option's first token

            # 2. Every continuation longer than one token, minus its last token, from its context's cached state.
            rows = [(group, continuation) for group, options in enumerate(continuations) for continuation in options if len(continuation) > 1]
            rest = first.new_zeros((0, first.shape[-1]))
            if rows:
                depth = max(len(continuation) - 1 for _, continuation in rows)
                cont_ids = torch.tensor([continuation[:-1] + [0] * (depth + 1 - len(continuation)) for _, continuation in rows], dtype=torch.long)
                keep = torch.arange(depth).unsqueeze(0) < torch.tensor([len(continuation) - 1 for _, continuation in rows]).unsqueeze(1)
                source = torch.tensor([group for group, _ in rows], dtype=torch.long)
                cache.reorder_cache(source.to(device))
                inputs = {"input_ids": cont_ids.to(device), "use_cache": True}
                if mode == "attention":
                    # Continuation tokens sit right after their own context (whatever the padded width) and skip the
                    # padding in the cache; positions of the trailing padding are clamped to the row's last token,
                    # so no position exceeds what HFLM would use.
                    steps = torch.arange(depth).unsqueeze(0)
                    last_step = torch.tensor([len(continuation) - 2 for _, continuation in rows]).unsqueeze(1)
                    starts = torch.tensor(lengths)[source].unsqueeze(1)
                    inputs["position_ids"] = (starts + torch.minimum(steps, last_step)).to(device)
                    inputs["attention_mask"] = torch.cat([valid[source], keep], dim=1).long().to(device)
                    inputs["past_key_values"] = cache
                    rest, _ = self._forward(keep.to(device), **inputs)  # [sum of (len - 1), vocab], row-major
                elif self.model.config.get_text_config().model_type == "mamba":
                    rest = self._continue_stepwise(cache, cont_ids.to(device), keep.to(device))
                else:  # trailing padding cannot reach real positions of a causal recurrence: no mask needed
                    inputs["cache_params"] = cache
                    rest, _ = self._forward(keep.to(device), **inputs)
            del cache

        # 3. Gather each request's token log-probabilities and the greedy test, in the order HFLM defines them.
        logprobs = torch.cat([first, rest], dim=0)
        greedy = logprobs.argmax(dim=-1)
        positions: list[int] = []
        targets: list[int] = []
        sizes: list[int] = []
        offset = count
        for group, options in enumerate(continuations):
            for continuation in options:
                following = len(continuation) - 1
                if following:
                    positions.extend([group, *range(offset, offset + following)])
                    offset += following
                else:
                    positions.append(group)
                targets.extend(continuation)
                sizes.append(len(continuation))
        index = torch.tensor(positions, device=logprobs.device)
        target = torch.tensor(targets, device=logprobs.device)
        # One row per request, its tokens left-aligned: the sum of their log-probabilities (a row reduction in the
        # log-softmax dtype, as HFLM's per-request `.sum()`) and whether every token is the argmax; one transfer.
        request = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes)).to(logprobs.device)
        column = torch.cat([torch.arange(size) for size in sizes]).to(logprobs.device)
        table = logprobs.new_zeros((len(sizes), max(sizes)))
        table[request, column] = logprobs[index, target]
        hits = torch.ones((len(sizes), max(sizes)), dtype=torch.bool, device=logprobs.device)
        hits[request, column] = greedy[index] == target
        answers = list(zip(table.sum(dim=1).tolist(), hits.all(dim=1).tolist()))
        grouped: list[list[tuple[float, bool]]] = []
        for options in continuations:
            grouped.append(answers[: len(options)])
            answers = answers[len(options) :]
        return grouped

