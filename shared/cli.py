"""Command line: ``python -m shared <command>``.

- ``doctor [--json] [--azurite]``: check settings, storage, Key Vault, certificate, tokens
  and permissions; exit 1 when a check fails.
- ``consent-url --tenant T``: the admin-consent URL for a multi-tenant app.
- ``enqueue --job J --payload FILE|- [--tenant T] [--dry-run]``: validate a job message and
  send it to DAEMON_JOBS_QUEUE on ``AzureWebJobsStorage`` (like every command), encoded the
  way the Functions host expects (base64). It has no ``--azurite`` of its own: an Azurite
  started for one command would stop with the message in it.
- ``requeue-poison [--queue Q] [--max N] [--dry-run]``: after a fix, move the messages of
  ``<queue>-poison`` back to the queue, bodies unchanged (so their correlation ids too).
- ``status [--json]``: recent run records per job and tenant, queue length and age, poison
  depth, sweep checkpoint and delta-link age, certificate days to expiry; exit 1 when
  something needs attention.
- ``serve`` / ``run-timer NAME`` / ``drain [QUEUE…]``: run the app's functions without Core
  Tools (offline against Azurite, or as a plain Linux daemon); see ``python -m shared.host``.

``serve``, ``run-timer``, ``drain`` and ``enqueue`` read the app from the Functions app root
(the folder with function_app.py and host.json): ``--app-root DIR``, else the
AzureWebJobsScriptRoot setting, else the current directory. ``--azurite`` is a development
option: it starts Azurite from a clone of the repository (not part of a deployed app).

Settings come from the environment (the same app settings the function app reads). Logs go
to stderr (INFO: each job's summary line; ``--verbose``: DEBUG), command output to stdout.
Exit status: 0 done; 1 something failed (a doctor check, a poisoned message or failed
delivery in ``drain``, a failed tenant in ``run-timer``, storage unreachable); 2 bad input
or settings (the message names which).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeAlias

from shared.commands.dev_storage import with_azurite
from shared.commands.requeue import RequeueResult, requeue_poison
from shared.errors import DaemonError, SettingError, StorageUnreachableError, UsageError
from shared.host.app_root import HELP as _APP_ROOT_HELP
from shared.logs import configure_logging

__all__ = ["RequeueResult", "main", "requeue_poison"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
_HOST_COMMANDS = ("serve", "run-timer", "drain")
# what add_subparsers returns
_Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
_AZURITE_HELP = (
    "development only (needs a clone of the repository): start Azurite from its "
    "node_modules for the run (in memory) and use it as AzureWebJobsStorage; stopped on exit"
)


def _add_enqueue(commands: _Commands) -> argparse.ArgumentParser:
    enqueue = commands.add_parser("enqueue", help="send a job message to the jobs queue")
    enqueue.add_argument("--job", required=True, help="provision or operations")
    enqueue.add_argument("--payload", required=True, help="JSON file with the payload, or -")
    enqueue.add_argument("--tenant", help="tenant (default: DAEMON_TENANT_ID)")
    enqueue.add_argument("--correlation-id", help="default: a new id")
    enqueue.add_argument("--dry-run", action="store_true", help="plan and log, change nothing")
    enqueue.add_argument(
        "--azurite",
        action="store_true",
        help="refused: an Azurite started for this command alone would stop, in memory, with "
        "the message; enqueue uses AzureWebJobsStorage like the other commands",
    )
    return enqueue


def _add_host_commands(commands: _Commands) -> list[argparse.ArgumentParser]:
    serve = commands.add_parser("serve", help="run timers and queue listeners until SIGTERM")
    timer = commands.add_parser("run-timer", help="run a timer function once, now")
    timer.add_argument("name", nargs="?", default="sweep_timer")
    drain = commands.add_parser("drain", help="run queue workers until the queues are idle")
    drain.add_argument("queues", nargs="*")
    return [serve, timer, drain]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m shared",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    commands = parser.add_subparsers(dest="command", required=True)
    doctor = commands.add_parser("doctor", help="check configuration, storage, Key Vault, tokens")
    doctor.add_argument("--json", action="store_true", help="print one JSON object")
    consent = commands.add_parser("consent-url", help="admin-consent URL for a tenant")
    consent.add_argument("--tenant", required=True, help="customer tenant id or domain")
    enqueue = _add_enqueue(commands)
    requeue = commands.add_parser(
        "requeue-poison", help="move messages from <queue>-poison back to the queue"
    )
    requeue.add_argument("--queue", help="the jobs queue (default: DAEMON_JOBS_QUEUE)")
    requeue.add_argument("--max", type=int, default=None, help="move at most N messages")
    requeue.add_argument("--dry-run", action="store_true", help="count and list, move nothing")
    status = commands.add_parser("status", help="runs, queues, poison, checkpoints, certificate")
    status.add_argument("--json", action="store_true", help="print one JSON object")
    status.add_argument("--runs", type=int, default=5, help="run records per job and tenant")
    host_commands = _add_host_commands(commands)
    for sub in (doctor, *host_commands):
        sub.add_argument("--azurite", action="store_true", help=_AZURITE_HELP)
    for sub in (enqueue, *host_commands):
        sub.add_argument("--app-root", type=Path, default=None, metavar="DIR", help=_APP_ROOT_HELP)
    return parser


def _run_host(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from shared.host.cli import main as host_main

    extra = [args.name] if args.command == "run-timer" else list(getattr(args, "queues", []))
    options = ["--verbose"] if args.verbose else []
    if args.app_root is not None:
        options += ["--app-root", str(args.app_root)]
    return with_azurite(args.azurite, lambda: host_main([*options, args.command, *extra]))


def _doctor(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    def run() -> int:
        from shared.doctor import STORAGE_TIMEOUT, run_doctor

        report = asyncio.run(run_doctor(env, storage_timeout=STORAGE_TIMEOUT))
        print(json.dumps(report.as_dict()) if args.json else report.render())
        return EXIT_OK if report.ok else EXIT_FAILED

    return with_azurite(args.azurite, run)


def _status(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from shared.status import collect_status

    if args.runs < 1:
        raise UsageError(f"--runs {args.runs}: expected a whole number of at least 1")
    report = asyncio.run(collect_status(env, runs_per_job=args.runs))
    print(report.to_json() if args.json else report.render())
    return EXIT_FAILED if report.attention else EXIT_OK


def _consent_url(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from shared.doctor import admin_consent_url
    from shared.settings import load_settings, parse_tenant

    settings = load_settings(env)
    tenant = parse_tenant("--tenant", args.tenant)
    print(admin_consent_url(settings, tenant))
    return EXIT_OK


def _enqueue(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from shared.commands.enqueue import run_enqueue

    return run_enqueue(args, env)


def _requeue(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from shared.commands.requeue import run_requeue

    return run_requeue(args, env)


Command = Callable[[argparse.Namespace, Mapping[str, str]], int]
_COMMANDS: dict[str, Command] = {
    "doctor": _doctor,
    "consent-url": _consent_url,
    "enqueue": _enqueue,
    "requeue-poison": _requeue,
    "status": _status,
    **dict.fromkeys(_HOST_COMMANDS, _run_host),
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging(verbose=args.verbose)
    from azure.core.exceptions import AzureError

    from shared.host.cli import redact

    try:
        return _COMMANDS[args.command](args, os.environ)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StorageUnreachableError as exc:
        print(f"error: storage unreachable: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except SettingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except DaemonError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except AzureError as exc:
        print(f"error: storage: {type(exc).__name__}: {redact(exc.message)}", file=sys.stderr)
        return EXIT_FAILED
