"""The per-instance objects: settings, credential, token cache (and later API clients).

A function instance is one worker process. Everything here is built lazily on first use —
never at import, so the Functions host indexes the app even when settings are missing — and
kept for the life of the process. This module is the one place that owns these objects.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping

from azure.core.credentials import TokenCredential

from shared.auth.credentials import AppCredential, create_app_credential
from shared.auth.token_cache import TokenCache
from shared.settings import Settings, load_settings

__all__ = ["Instance", "current_instance", "reset_current_instance"]


class Instance:
    """Settings, credential and token cache for one process (or one test)."""

    def __init__(
        self,
        settings: Settings,
        *,
        key_vault_credential: TokenCredential | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.credential: AppCredential = create_app_credential(
            settings, key_vault_credential=key_vault_credential, clock=clock
        )
        self.token_cache = TokenCache(
            self.credential.request_token,
            default_tenant=settings.tenant_id,
            default_scope=settings.api_scope,
            allowed_tenants=settings.allowed_tenants,
            clock=clock,
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Instance:
        return cls(load_settings(env))

    def close(self) -> None:
        self.credential.close()


_lock = threading.Lock()
_current: Instance | None = None


def current_instance(env: Mapping[str, str] | None = None) -> Instance:
    """The process-wide instance, built on first use from the app settings."""
    global _current
    with _lock:
        if _current is None:
            _current = Instance.from_env(os.environ if env is None else env)
        return _current


def reset_current_instance() -> None:
    """Forget the process-wide instance (after settings changed; used by the CLI)."""
    global _current
    with _lock:
        if _current is not None:
            _current.close()
        _current = None
