"""Command line: ``python -m shared <command>``.

- ``doctor [--json]``: check settings, Key Vault, certificate and tokens; exit 1 on failure.
- ``consent-url --tenant T``: the admin-consent URL for a multi-tenant app.
- ``enqueue --job J --payload FILE|- [--tenant T] [--dry-run]``: validate a job message and
  send it to DAEMON_JOBS_QUEUE, encoded the way the Functions host expects (base64).
- ``serve`` / ``run-timer NAME`` / ``drain [QUEUE…]``: run the app's functions without Core
  Tools (offline against Azurite, or as a plain Linux daemon); see ``python -m shared.host``.

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
from pathlib import Path

from shared.doctor import admin_consent_url, run_doctor
from shared.errors import DaemonError, SettingError
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
    enqueue = commands.add_parser("enqueue", help="send a job message to the jobs queue")
    enqueue.add_argument("--job", required=True, help="provision or operations")
    enqueue.add_argument("--payload", required=True, help="JSON file with the payload, or -")
    enqueue.add_argument("--tenant", help="tenant (default: DAEMON_TENANT_ID)")
    enqueue.add_argument("--correlation-id", help="default: a new id")
    enqueue.add_argument("--dry-run", action="store_true", help="plan and log, change nothing")
    serve = commands.add_parser("serve", help="run timers and queue listeners until SIGTERM")
    timer = commands.add_parser("run-timer", help="run a timer function once, now")
    timer.add_argument("name", nargs="?", default="sweep_timer")
    drain = commands.add_parser("drain", help="run queue workers until the queues are idle")
    drain.add_argument("queues", nargs="*")
    for sub in (serve, timer, drain):
        sub.add_argument(
            "--azurite",
            action="store_true",
            help="start Azurite from this repo's node_modules for the run (in memory) and use "
            "it as AzureWebJobsStorage; stopped on exit",
        )
    return parser


def _run_host(args: argparse.Namespace) -> int:
    from shared.host.__main__ import main as host_main

    extra = [args.name] if args.command == "run-timer" else list(getattr(args, "queues", []))
    if not args.azurite:
        return host_main([args.command, *extra])
    from shared.host.azurite import Azurite

    with Azurite() as azurite:
        # this process's own environment: the functions read their settings from it
        os.environ["AzureWebJobsStorage"] = azurite.connection_string  # noqa: SIM112
        return host_main([args.command, *extra])


def _enqueue(args: argparse.Namespace) -> int:
    from shared.host import FunctionsHost
    from shared.jobs.dispatch import JOBS
    from shared.jobs.envelope import JobMessage, parse_message

    settings = load_settings(os.environ)
    text = sys.stdin.read() if args.payload == "-" else Path(args.payload).read_text()
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        print(f"error: --payload is not JSON: {exc}", file=sys.stderr)
        return 2
    tenant = parse_tenant("--tenant", args.tenant) if args.tenant else settings.tenant_id
    message = JobMessage.new(
        args.job, tenant, payload, correlation_id=args.correlation_id, dry_run=args.dry_run
    )
    body = message.to_json()
    parse_message(body, jobs=JOBS.keys(), allowed_tenants=settings.allowed_tenants)
    host = FunctionsHost(os.environ)
    try:
        asyncio.run(host.enqueue(settings.jobs_queue, body))
    finally:
        host.close()
    print(f"enqueued {args.job} for tenant {tenant} as {message.correlation_id}")
    return 0


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
    if args.command in ("serve", "run-timer", "drain"):
        return _run_host(args)
    if args.command == "enqueue":
        try:
            return _enqueue(args)
        except (DaemonError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
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
