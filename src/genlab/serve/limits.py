"""Per-key request limits for `genlab serve`: a token bucket (requests per minute, with a burst) and a cap on
requests in flight. Both answer how long to wait, for the Retry-After header of a 429."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass


@dataclass
class Limits:
    requests_per_minute: float = 60.0
    burst: int = 10
    concurrent: int = 4  # requests of one key being served at once
    max_images: int = 64  # per request
    max_rows: int = 10_000  # table rows per request
    max_items: int = 1_000  # per request, for a modality without a cap of its own
    max_text_samples: int = 8
    max_new_tokens: int = 1024
    max_prompt_chars: int = 4000
    max_body_bytes: int = 64 * 1024
    max_upload_bytes: int = 2 * 1024 * 1024  # an uploaded image or mask (decoded), on the edit endpoints
    max_upload_pixels: int = 512 * 512  # width x height of an uploaded image or mask

    @property
    def max_upload_body_bytes(self) -> int:
        """The body limit of an upload endpoint: an image and a mask, base64-encoded (4/3), and the other fields."""
        return 2 * (self.max_upload_bytes * 4 // 3 + 4) + self.max_body_bytes


class KeyLimiter:
    def __init__(self, limits: Limits, clock=time.monotonic):
        self.limits, self.clock = limits, clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last refill time)
        self._active: dict[str, int] = {}

    def acquire(self, key: str) -> float:
        """0 when the request may start (it then holds a concurrency slot until release), else the seconds
        to wait before trying again."""
        rate = self.limits.requests_per_minute / 60.0
        with self._lock:
            now = self.clock()
            tokens, last = self._buckets.get(key, (float(self.limits.burst), now))
            tokens = min(float(self.limits.burst), tokens + (now - last) * rate)
            if self._active.get(key, 0) >= self.limits.concurrent:
                self._buckets[key] = (tokens, now)
                return 1.0
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                return max(1.0, math.ceil((1.0 - tokens) / rate))
            self._buckets[key] = (tokens - 1.0, now)
            self._active[key] = self._active.get(key, 0) + 1
            return 0.0

    def release(self, key: str) -> None:
        with self._lock:
            self._active[key] = max(0, self._active.get(key, 0) - 1)
