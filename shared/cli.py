"""Command line: ``python -m shared <command>``.

- ``doctor [--json]``: check settings, Key Vault, certificate and tokens; exit 1 on failure.
- ``consent-url --tenant T``: the admin-consent URL for a multi-tenant app.

Settings come from the environment (the same app settings the function app reads).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence

from shared.doctor import admin_consent_url, run_doctor
from shared.errors import SettingError
from shared.settings import load_settings, parse_tenant

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m shared", description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    commands = parser.add_subparsers(dest="command", required=True)
    doctor = commands.add_parser("doctor", help="check configuration, Key Vault and tokens")
    doctor.add_argument("--json", action="store_true", help="print one JSON object")
    consent = commands.add_parser("consent-url", help="admin-consent URL for a tenant")
    consent.add_argument("--tenant", required=True, help="customer tenant id or domain")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    env = os.environ
    if args.command == "doctor":
        report = asyncio.run(run_doctor(env))
        print(json.dumps(report.as_dict()) if args.json else report.render())
        return 0 if report.ok else 1
    if args.command == "consent-url":
        try:
            settings = load_settings(env)
            tenant = parse_tenant("--tenant", args.tenant)
            print(admin_consent_url(settings, tenant))
        except SettingError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0
    return 2  # pragma: no cover - argparse rejects unknown commands
