"""The self-study teacher as an OpenAI-compatible chat endpoint (`train.self_study.teacher: openai`).

The same `SelfStudyTeacher` as the local one (perpetual/self_study.py): each prompt is one plain-text user message (no
response_format: a rephrasing or an answer is prose), answered within `max_tokens` = the recipe's budget and
`finished` when the model stopped by itself (finish_reason "stop"); a reply cut at the budget is unfinished, and the
recipe's checks refuse it as they refuse the local teacher's. The endpoint is `generate.teacher`'s (base_url, model,
temperature, seed, retries, timeout, concurrency), the key OPENAI_API_KEY's (perpetual/teacher/endpoint.py).

Every reply goes into the self-study response cache the moment it arrives, keyed by the model, sampling, prompt and
budget, never by the key or the base URL (which may embed credentials), so a killed run resumes and a rerun asks
nothing twice. Requests run in parallel, `concurrency` at a time, each retried by the client itself (429, 5xx,
timeouts). A refused key or an unknown model stops the run at once with one line; a request that still fails after
its retries stops it once the others are in, with every finished reply cached, so a rerun asks only what failed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import openai
from tqdm import tqdm

from perpetual.config import TeacherParams
from perpetual.errors import UserError
from perpetual.self_study import Generation, decode_generation, encode_generation
from perpetual.teacher.cache import CachedResponse, ResponseCache, cache_key
from perpetual.teacher.endpoint import api_key_from_environment, endpoint_url, error_reason, fatal_error, make_client

# Bumped when what a cached reply means changes (how a prompt becomes messages, what `finished` means).
CACHE_FORMAT = "self-study-chat-1"
# The setting that needs no endpoint, named in the errors that stop a run.
WITHOUT_AN_ENDPOINT = "train.self_study.teacher: local"


@dataclass(frozen=True)
class _Answer:
    generation: Generation
    prompt_tokens: int
    completion_tokens: int
    requests: int  # HTTP requests it took, the client's retries included


class _RequestFailed(Exception):
    """A request the client gave up on after its retries; the message is one line, free of secrets."""


class OpenAISelfStudyTeacher:
    """Generates through `client` with the model and sampling of `params` (generate.teacher); caches in `cache_dir`."""

    def __init__(self, client: openai.OpenAI, params: TeacherParams, cache_dir: Path, stats: Counter[str]) -> None:
        self.params = params
        self.cache = ResponseCache(cache_dir)
        self.cache.remove_stale_temps()
        self.stats = stats  # the recipe's counters: asked, cache hits, requests, generated tokens per purpose
        self.temperature = params.temperature
        self.precision: dict[str, str] = {}  # the server decides what its model runs in; nothing to record
        self._client = client

    @classmethod
    def from_params(cls, params: TeacherParams, cache_dir: Path, stats: Counter[str]) -> OpenAISelfStudyTeacher:
        """Build from generate.teacher; the key is read from OPENAI_API_KEY only, never from params files."""
        client = make_client(params, api_key=api_key_from_environment(WITHOUT_AN_ENDPOINT), base_url=endpoint_url(params))
        return cls(client, params, cache_dir, stats)

    def prompt(self, instruction: str, content: str = "") -> str:
        # The user message: a chat model reads the instruction, then what it applies to, as a person would write them.
        return f"{instruction}\n\n{content}" if content else instruction

    def generate(self, prompts: Sequence[str], max_new_tokens: int, purpose: str) -> list[Generation]:
        """One generation per prompt, in order: cached ones read back, the rest asked in parallel and cached."""
        keys = [self._key(prompt, max_new_tokens) for prompt in prompts]
        found: dict[str, Generation] = {}
        for key in set(keys):
            hit = self.cache.get(key)
            if hit is not None:
                found[key] = decode_generation(hit.content)
        self.stats[f"{purpose}_asked"] += len(prompts)
        self.stats[f"{purpose}_cache_hits"] += sum(key in found for key in keys)
        # Identical prompts (identical chunks) are asked once and share the reply.
        to_ask = {key: prompt for key, prompt in zip(keys, prompts, strict=True) if key not in found}
        if to_ask:
            found.update(self._ask_all(to_ask, max_new_tokens, purpose))
        return [found[key] for key in keys]

    def _key(self, prompt: str, max_new_tokens: int) -> str:
        # Neither the key nor the base URL is part of a cache key: it names the reply, not where it came from.
        return cache_key({
            "format": CACHE_FORMAT, "model": self.params.model, "temperature": self.params.temperature,
            "seed": self.params.seed, "prompt": prompt, "max_new_tokens": max_new_tokens,
        })  # fmt: skip

    def _ask_all(self, to_ask: dict[str, str], max_new_tokens: int, purpose: str) -> dict[str, Generation]:
        answered: dict[str, Generation] = {}
        failures: list[str] = []
        pool = ThreadPoolExecutor(max_workers=self.params.concurrency, thread_name_prefix="self-study")
        futures = {pool.submit(self._ask, prompt, max_new_tokens): key for key, prompt in to_ask.items()}
        try:
            with tqdm(total=len(futures), desc=f"self-study: {purpose}", unit="prompt") as progress:
                for future in as_completed(futures):
                    progress.update(1)
                    try:
                        answer = future.result()
                    except _RequestFailed as failed:
                        failures.append(str(failed))
                        continue
                    # The main thread writes each reply as it arrives: a killed run loses only what was in flight.
                    self._store(futures[future], answer, purpose)
                    self.stats[f"{purpose}_requests"] += answer.requests
                    self.stats[f"{purpose}_generated_tokens"] += answer.completion_tokens
                    answered[futures[future]] = answer.generation
        except BaseException:
            # A fatal error or Ctrl-C: queued requests are dropped instead of sent, and every reply already paid for
            # still reaches the cache.
            pool.shutdown(wait=True, cancel_futures=True)
            for future, key in futures.items():
                if key not in answered and future.done() and not future.cancelled() and future.exception() is None:
                    self._store(key, future.result(), purpose)
            raise
        pool.shutdown()
        if failures:
            raise UserError(
                f"the teacher API failed {len(failures)} of {len(to_ask)} {purpose} request(s) after its retries "
                f"(first: {failures[0]}); rerun to ask only those, the others are cached"
            )
        return answered

    def _store(self, key: str, answer: _Answer, purpose: str) -> None:
        response = CachedResponse(encode_generation(answer.generation), answer.prompt_tokens, answer.completion_tokens)
        self.cache.put(key, response, {"purpose": purpose, "model": self.params.model})

    def _ask(self, prompt: str, max_new_tokens: int) -> _Answer:
        secret = str(self._client.api_key or "")
        try:
            raw = self._client.chat.completions.with_raw_response.create(
                model=self.params.model,
                messages=[{"role": "user", "content": prompt}],
                max_tokens=max_new_tokens,
                temperature=self.params.temperature,
                seed=self.params.seed,
            )
        except openai.APIStatusError as error:
            fatal = fatal_error(error, secret, WITHOUT_AN_ENDPOINT)
            if fatal is not None:
                raise fatal from None
            raise _RequestFailed(error_reason(error, secret)) from None
        except openai.APIConnectionError as error:  # timeouts included
            raise _RequestFailed(error_reason(error, secret)) from None
        completion = raw.parse()
        choice = completion.choices[0] if completion.choices else None
        text = ((choice.message.content if choice else None) or "").strip()
        # Only a model that stopped by itself finished; "length" ran out of budget, "content_filter" was cut.
        finished = choice is not None and choice.finish_reason == "stop"
        usage = completion.usage  # a server without usage figures counts no tokens rather than guessed ones
        return _Answer(
            Generation(text, finished),
            usage.prompt_tokens if usage else 0,
            usage.completion_tokens if usage else 0,
            raw.retries_taken + 1,
        )
