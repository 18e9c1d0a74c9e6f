"""Fault injection: the next N calls of one operation answer with an error instead of being served
(or, with ``after_serving``, are served and *then* answered with the error, as when GitHub carries out
a write but the answer is lost on the way back). ``no_answer`` faults send no answer at all: the
connection is closed, at once or after a stall past the client's timeout."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Fault:
    operation_id: str
    """GitHub's operationId, e.g. ``pulls/create-review`` (see the description)."""
    status: int
    times: int
    """How many matching calls still get the fault."""
    message: str
    headers: dict = field(default_factory=dict)
    when: Callable[[dict], bool] | None = None
    """Optional predicate on the decoded JSON request body; the fault only fires where it is true."""
    errors: list | None = None
    after_serving: bool = False
    """Carry the request out first, then answer with the error (the write happened; the caller can't tell)."""
    no_answer: bool = False
    """Answer nothing: close the connection without a response (``status`` is unused)."""
    stall: float = 0.0
    """With ``no_answer``: hold the connection this many seconds first (`GitHubServer.stop` cuts it
    short). Past the client's timeout this is a read timeout; 0 is a connection dropped at once."""
    hits: int = 0


class FaultQueue:
    """Thread-safe queue of faults, consulted by the server before serving each request."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(
        self,
        operation_id: str,
        status: int,
        times: int = 1,
        *,
        message: str | None = None,
        headers: dict | None = None,
        when: Callable[[dict], bool] | None = None,
        errors: list | None = None,
        after_serving: bool = False,
    ) -> Fault:
        fault = Fault(
            operation_id,
            status,
            times,
            message or _DEFAULT_MESSAGES.get(status, "Error"),
            dict(headers or {}),
            when,
            errors,
            after_serving,
        )
        with self._lock:
            self._faults.append(fault)
        return fault

    # Shortcuts for the faults GitHub actually produces.
    def rate_limit(self, operation_id: str, times: int = 1, reset_in: float = -2) -> Fault:
        """Primary rate limit: 403, ``x-ratelimit-remaining: 0`` and a reset time ``reset_in`` seconds
        from now (negative = already past, so PyGithub's wait-until-reset costs no time in tests)."""
        reset = int(time.time() + reset_in)
        return self.add(
            operation_id,
            403,
            times,
            message="API rate limit exceeded for installation ID 1.",
            headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)},
        )

    def too_many_requests(self, operation_id: str, times: int = 1, retry_after: int = 0) -> Fault:
        """Secondary rate limit as 429 with ``Retry-After`` (seconds)."""
        return self.add(
            operation_id,
            429,
            times,
            message="You have exceeded a secondary rate limit. Please retry your request again later.",
            headers={"Retry-After": str(retry_after)},
        )

    def server_error(self, operation_id: str, times: int = 1, status: int = 500, after_serving: bool = False) -> Fault:
        """A 5xx; ``after_serving``: the request is carried out first (e.g. a review is created)."""
        return self.add(operation_id, status, times, after_serving=after_serving)

    def no_answer(self, operation_id: str, times: int = 1, *, stall: float = 0.0, after_serving: bool = True) -> Fault:
        """No response at all: the connection is closed (after ``stall`` seconds: a client with a
        shorter timeout sees a read timeout). ``after_serving`` (the default): the request was carried
        out first, as when GitHub acts but the answer is lost."""
        fault = self.add(operation_id, 0, times, message="no answer", after_serving=after_serving)
        fault.no_answer, fault.stall = True, stall
        return fault

    def forbidden(self, operation_id: str, times: int = 1) -> Fault:
        """A permission 403 (not retry-able), e.g. a token without ``checks: write``."""
        return self.add(operation_id, 403, times, message="Resource not accessible by integration")

    def unprocessable(self, operation_id: str, times: int = 1, *, when=None, errors=None) -> Fault:
        return self.add(
            operation_id,
            422,
            times,
            message="Unprocessable Entity",
            when=when,
            errors=errors or ["Line could not be resolved"],
        )

    def take(self, operation_id: str, body: dict) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.operation_id != operation_id or fault.times <= 0:
                    continue
                if fault.when is not None and not fault.when(body):
                    continue
                fault.times -= 1
                fault.hits += 1
                return fault
        return None


_DEFAULT_MESSAGES = {
    401: "Bad credentials",
    403: "Forbidden",
    404: "Not Found",
    422: "Validation Failed",
    429: "Too Many Requests",
    500: "Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}
