"""The one retry helper: bounded attempts, exponential backoff, jitter, server hints.

Callers mark transient failures by raising :class:`Retryable` (optionally with the
server's ``Retry-After``); anything else propagates at once. When attempts run out the
last :class:`Retryable` is re-raised so the caller can turn it into an actionable error.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


class Retryable(Exception):
    """A transient failure worth another attempt (429, 504, timeouts, truncated bodies...)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` tries in all; delay ``base * 2**n`` capped at ``max_delay``, half of it jittered."""

    attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 60.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {self.attempts}")

    def delay(self, attempt: int, rng: random.Random, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt ``attempt`` (0-based).

        "Equal jitter": half the exponential step is fixed, half random, so retries from many
        workers spread out but never come back immediately. A server's Retry-After is a floor.
        """
        step = min(self.max_delay, self.base_delay * (2**attempt))
        wait = step / 2 + rng.uniform(0, step / 2)
        if retry_after is not None:
            wait = max(wait, min(float(retry_after), self.max_delay))
        return wait


def retry_call(
    fn: Callable[[int], T],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
    on_retry: Callable[[int, Retryable, float], None] | None = None,
) -> T:
    """Call ``fn(attempt)`` until it returns, raises a non-:class:`Retryable`, or attempts run out."""
    rng = rng or random.Random()
    for attempt in range(policy.attempts):
        try:
            return fn(attempt)
        except Retryable as exc:
            if attempt + 1 >= policy.attempts:
                raise
            wait = policy.delay(attempt, rng, exc.retry_after)
            if on_retry is not None:
                on_retry(attempt, exc, wait)
            sleep(wait)
    raise AssertionError("unreachable: the loop returns or raises")
