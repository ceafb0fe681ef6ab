"""``doctor``: check the configuration end to end and say what to fix.

One module per concept: ``run`` (the order of the checks, and the settings check),
``storage``, ``identity`` (the certificate and a token per tenant), ``fixes`` (the fix to
show for an error) and ``report`` (a :class:`Check` per line, the :class:`Report`).
"""

from __future__ import annotations

from shared.doctor.fixes import admin_consent_url, fix_for
from shared.doctor.identity import token_claims
from shared.doctor.report import Check, Report
from shared.doctor.run import run_doctor
from shared.doctor.storage import STORAGE_TIMEOUT, probe_storage
from shared.errors import StorageUnreachableError

__all__ = [
    "STORAGE_TIMEOUT",
    "Check",
    "Report",
    "StorageUnreachableError",
    "admin_consent_url",
    "fix_for",
    "probe_storage",
    "run_doctor",
    "token_claims",
]
