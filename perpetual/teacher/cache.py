"""Content-addressed, crash-safe cache of teacher responses on disk.

One file per request, named by the sha256 of everything that determines the reply (backend, model, prompt file
hash, kind, item count, chunk text, sampling settings, seed). Each reply is written the moment it arrives, through
a temporary sibling and `os.replace`, so a run killed at any instant (even kill -9) leaves only whole files behind
and a rerun re-sends nothing that had completed. Nothing secret goes in: keys and files never see the API key or
the base URL (which could embed credentials).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

CACHE_FORMAT = 1
# Temp files older than this were left by a killed run; younger ones may belong to a run still writing.
STALE_TEMP_AGE_S = 3600.0

KeyField = str | int | float | bool | None


@dataclass(frozen=True)
class CachedResponse:
    content: str  # the model's reply text, exactly as received
    prompt_tokens: int
    completion_tokens: int


def cache_key(fields: Mapping[str, KeyField]) -> str:
    """sha256 over the canonical JSON of `fields`: same request, same key, on any machine."""
    canonical = json.dumps(dict(fields), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class ResponseCache:
    """Reads and writes one JSON file per key under `root/<first two hex digits>/<key>.json`."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> CachedResponse | None:
        """The stored response, or None when absent, unreadable, partial or of another format (a miss)."""
        try:
            record = json.loads(self.path(key).read_text(encoding="utf-8"))
            if record.get("format") != CACHE_FORMAT or record.get("key") != key:
                return None
            return CachedResponse(
                content=_text(record["content"]),
                prompt_tokens=_count(record["prompt_tokens"]),
                completion_tokens=_count(record["completion_tokens"]),
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def put(self, key: str, response: CachedResponse, info: Mapping[str, KeyField] | None = None) -> None:
        """Store atomically: readers see the old file, no file, or the whole new one, never a prefix.

        `info` is non-secret context (model, kind, chunk id) kept only to make the files readable by people.
        """
        record = {
            "format": CACHE_FORMAT,
            "key": key,
            "content": response.content,
            "prompt_tokens": response.prompt_tokens,
            "completion_tokens": response.completion_tokens,
            "info": dict(info or {}),
        }
        target = self.path(key)
        # Unique among live writers (pid + thread) without the random-name retries of mkstemp; a leftover from a
        # killed process with a recycled pid is simply truncated.
        temp = target.with_name(f".{key[:16]}.{os.getpid()}.{threading.get_ident()}.tmp")
        data = json.dumps(record, ensure_ascii=False, sort_keys=True)
        try:
            # No fsync: kill -9 cannot tear a renamed file, and the empty or partial file an OS crash might leave
            # is read as a miss and asked again; skipping it keeps writes cheap on the request path.
            try:
                temp.write_text(data, encoding="utf-8")
            except FileNotFoundError:  # the first write into this folder
                target.parent.mkdir(parents=True, exist_ok=True)
                temp.write_text(data, encoding="utf-8")
            os.replace(temp, target)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise

    def remove_stale_temps(self, max_age_s: float = STALE_TEMP_AGE_S) -> int:
        """Delete temp files a killed run left behind; returns how many were removed."""
        if not self.root.exists():
            return 0
        cutoff = time.time() - max_age_s
        removed = 0
        for temp in self.root.glob("*/.*.tmp"):
            try:
                if temp.stat().st_mtime < cutoff:
                    temp.unlink()
                    removed += 1
            except OSError:
                continue  # another process removed or replaced it meanwhile
        return removed


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError("content must be a string")
    return value


def _count(value: object) -> int:
    # bool is an int subclass; a file with `true` as a token count is corrupt, not a hit.
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise TypeError("token counts must be non-negative integers")
    return value
