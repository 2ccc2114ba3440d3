"""How long a retryable error is retried: a time bound, not a count, with backoff.

A series of failures starts at the first one and ends at a success (`reset`). Past the
bound the error is `exhausted`: it pauses the subtask like any non-retryable one, so an
error that cannot heal never loops unseen.
"""

from __future__ import annotations

import time

from errors import DMError

BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0)


class RetryClock:
    def __init__(self, timeout: float, backoff: tuple[float, ...] = BACKOFF_S) -> None:
        self.timeout = timeout
        self.backoff = backoff
        self.since: float | None = None
        self.tries = 0

    def reset(self) -> None:
        self.since, self.tries = None, 0

    def next_delay(self) -> float | None:
        """After a failure: how long to wait before the next try; None past the bound."""
        now = time.monotonic()
        if self.since is None:
            self.since = now
        self.tries += 1
        left = self.since + self.timeout - now
        if left <= 0:
            return None
        return min(self.backoff[min(self.tries - 1, len(self.backoff) - 1)], left)


def exhausted(err: DMError) -> DMError:
    """The same error, no longer retryable: its retries are used up."""
    if not err.retryable:
        return err
    return DMError(err.error_code, err.message, err.cause, err.workaround, retryable=False)
