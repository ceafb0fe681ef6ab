"""What the sandbox observed and what tests arranged for the token endpoint: request counters,
every secret handed out or received (none may appear in a log), the client assertion ids seen
(replay detection), and injected token-endpoint failures."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

from sandbox.tokens import TokenIssuer

from .models import InjectedFailure


class Ledger:
    def __init__(
        self, lock: threading.RLock, clock: Callable[[], float], issuer: TokenIssuer
    ) -> None:
        self._lock = lock
        self.clock = clock
        self.issuer = issuer
        self._counters: Counter[str] = Counter()
        self._secret_values: set[str] = set()
        self._seen_jti: dict[str, float] = {}
        self._failures: list[InjectedFailure] = []

    # ------------------------------------------------------------------------ counters

    def count(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._counters[key] += 1

    def counter(self, key: str) -> int:
        with self._lock:
            return self._counters[key]

    def counters(self) -> dict[str, int]:
        """All counters by key. Keys:

        ``entra.requests.<token|openid-configuration|keys>``; ``token_requests`` and
        ``token_requests.tenant.<tid>`` / ``.client.<client id>`` / ``.scope.<scope>``;
        ``tokens_issued``; ``mi.requests``, ``mi.requests.identity.<client id>``,
        ``mi.requests.resource.<resource>``, ``mi.tokens_issued``; ``kv.requests``,
        ``kv.requests.<operation>``, ``kv.challenges``, ``kv.forbidden``;
        ``rejections.AADSTS<code>``.
        """
        with self._lock:
            return dict(sorted(self._counters.items()))

    def reset_counters(self) -> None:
        with self._lock:
            self._counters.clear()

    # ------------------------------------------------------------------------- secrets

    def remember_secret(self, value: str) -> None:
        if value:
            with self._lock:
                self._secret_values.add(value)

    def secret_values(self) -> frozenset[str]:
        """Every secret the sandbox handed out or received (tokens, keys, assertions...)."""
        with self._lock:
            return frozenset(self._secret_values | set(self.issuer.issued))

    # ----------------------------------------------------------- the token endpoint

    def remember_jti(self, client_id: str, jti: str, expires: float) -> bool:
        """Record a client assertion id; False when it was seen before (a replay)."""
        now = self.clock()
        key = f"{client_id}:{jti}"
        with self._lock:
            for stale in [k for k, exp in self._seen_jti.items() if exp < now - 3600]:
                del self._seen_jti[stale]
            if key in self._seen_jti:
                return False
            self._seen_jti[key] = expires
            return True

    def fail_next_token_requests(self, n: int, error_code: int) -> None:
        """The next ``n`` requests to the token endpoint fail with AADSTS ``error_code``."""
        with self._lock:
            self._failures.extend(InjectedFailure(error_code) for _ in range(n))

    def take_injected_failure(self) -> InjectedFailure | None:
        with self._lock:
            return self._failures.pop(0) if self._failures else None
