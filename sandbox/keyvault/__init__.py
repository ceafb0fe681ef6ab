"""Key Vault data plane at the sandbox root (the vault URL is the sandbox URL).

``service.py`` serves certificates, secrets and keys (get, list versions, sign); ``auth.py``
the challenge authentication and RBAC; ``errors.py`` Key Vault's error shape.
"""

from __future__ import annotations

from .auth import VaultAuthorizer
from .errors import VaultError
from .service import KeyVaultService

__all__ = ["KeyVaultService", "VaultAuthorizer", "VaultError"]
