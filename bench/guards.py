"""What the model server refuses or cuts short, so a bad or greedy client cannot hang or starve it.

Each guard answers at once rather than with unbounded latency: a body over `--max-body-mb` or a tensor over
`--max-elements` is a 400; a client that does not finish sending its body within `--read-timeout-s` is a 408 (one
that never finishes its headers is disconnected after as long: header_timeout_protocol); more than `--max-queue`
requests waiting for the model is a 503 with Retry-After; an inference past `--timeout-s` is a 504; a missing or
wrong bearer token (`--token` or MCBENCH_SERVER_TOKEN) is a 401, compared in constant time (bearer_ok). The app
(bench/server.py) applies the limits; this module holds them and checks them at start-up.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from mcbench.bench.serving import MAX_INSTANCES

TOKEN_ENV = "MCBENCH_SERVER_TOKEN"  # the bearer token where no --token gives one (server and load generator)


class StartError(RuntimeError):
    """A server that could not start: bad settings, a port in use, a model that does not load."""


@dataclass(frozen=True)
class ServerLimits:
    """What the server refuses or cuts short, so a bad or greedy client cannot hang or starve it."""

    max_body_bytes: int = 16 * 1024 * 1024
    max_elements: int = 16 * 1024 * 1024  # per input tensor
    read_timeout_s: float = 10.0  # a client slower than this to send its body gets a 408
    timeout_s: float = 30.0  # inference deadline: 504 past it
    max_queue: int = 64  # requests waiting for the model beyond the one running: 503 past it
    token: str | None = None
    max_batch: int = 1
    max_wait_ms: float = 2.0
    instances: int = 1  # model sessions, each serving one call at a time (bench.serving)
    delay_ms: float = 0.0  # test hook: each model call also sleeps this long (a known service time)
    spin_ms: float = 0.0  # test hook: each model call also busy-waits this long (a known service time on a core)
    inline_below_ms: float = 1.0  # a model whose warm-up median is below this runs on the event loop (0: never)

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_elements", "max_queue", "max_batch", "instances"):
            if getattr(self, name) < 1:
                raise StartError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.instances > MAX_INSTANCES:  # one limit for the flag and for a results file's configuration
            raise StartError(f"instances must be at most {MAX_INSTANCES}, got {self.instances}")
        for name in ("read_timeout_s", "timeout_s"):
            if getattr(self, name) <= 0:
                raise StartError(f"{name} must be positive, got {getattr(self, name)}")
        if min(self.max_wait_ms, self.delay_ms, self.spin_ms, self.inline_below_ms) < 0:
            raise StartError("max_wait_ms, delay_ms, spin_ms and inline_below_ms cannot be negative")
        if self.token is not None and not self.token:
            raise StartError("an empty token would accept anyone; leave it unset instead")
        if self.token is not None and self.token != self.token.strip():
            raise StartError("the token has spaces around it, which an Authorization header cannot carry: no "
                             "request could match it")


def bearer_ok(authorization: str, token: str | None) -> bool:
    """Whether an Authorization header carries the bearer token (any does when no token is set), compared in
    constant time."""
    if token is None:
        return True
    scheme, _, given = authorization.partition(" ")
    # HTTP headers arrive decoded as Latin-1: back to the client's bytes, compared with the token's UTF-8
    sent = given.strip().encode("latin-1", errors="replace")
    return scheme.lower() == "bearer" and hmac.compare_digest(sent, token.encode())


def header_timeout_protocol(timeout_s: float):
    """uvicorn's h11 protocol with a deadline for each request's headers.

    uvicorn closes idle keep-alive connections, but waits forever on a client that opens a
    connection and never finishes its headers (slowloris); this closes such a connection after
    `timeout_s`. The body has its own deadline in the app (a 408).
    """
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderTimeoutH11(H11Protocol):
        _timer = None
        _cycle_at_arm = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._between_requests():
                self._arm()

        def connection_lost(self, exc) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            super().connection_lost(exc)

        def _between_requests(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def _arm(self) -> None:
            if self._timer is None:
                self._cycle_at_arm = self.cycle
                self._timer = self.loop.call_later(timeout_s, self._expire)

        def _expire(self) -> None:
            self._timer = None
            if self.transport.is_closing() or not self._between_requests():
                return
            if self.cycle is self._cycle_at_arm:  # no request began within the deadline
                self.transport.close()
            else:
                self._arm()

    return HeaderTimeoutH11
