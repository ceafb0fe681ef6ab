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

Settings come from the environment (the same app settings the function app reads). Logs go
to stderr (INFO: each job's summary line; ``--verbose``: DEBUG), command output to stdout.
Exit status: 0 done; 1 something failed (a doctor check, a poisoned message or failed
delivery in ``drain``, a failed tenant in ``run-timer``, storage unreachable); 2 bad input
or settings (the message names which).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.doctor import (
    STORAGE_TIMEOUT,
    StorageUnreachableError,
    admin_consent_url,
    probe_storage,
    run_doctor,
)
from shared.errors import DaemonError, SettingError, UsageError
from shared.logs import configure_logging
from shared.settings import load_settings, parse_tenant
from shared.storage import storage_connection

if TYPE_CHECKING:
    from azure.storage.queue import QueueClient

__all__ = ["RequeueResult", "main", "requeue_poison"]

logger = logging.getLogger("shared.cli")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
POISON_SUFFIX = "-poison"
_REQUEUE_LEASE = 300  # seconds a poison message stays invisible while it is being moved


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m shared", description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    commands = parser.add_subparsers(dest="command", required=True)
    doctor = commands.add_parser("doctor", help="check configuration, storage, Key Vault, tokens")
    doctor.add_argument("--json", action="store_true", help="print one JSON object")
    consent = commands.add_parser("consent-url", help="admin-consent URL for a tenant")
    consent.add_argument("--tenant", required=True, help="customer tenant id or domain")
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
    requeue = commands.add_parser(
        "requeue-poison", help="move messages from <queue>-poison back to the queue"
    )
    requeue.add_argument("--queue", help="the jobs queue (default: DAEMON_JOBS_QUEUE)")
    requeue.add_argument("--max", type=int, default=None, help="move at most N messages")
    requeue.add_argument("--dry-run", action="store_true", help="count and list, move nothing")
    status = commands.add_parser("status", help="runs, queues, poison, checkpoints, certificate")
    status.add_argument("--json", action="store_true", help="print one JSON object")
    status.add_argument("--runs", type=int, default=5, help="run records per job and tenant")
    serve = commands.add_parser("serve", help="run timers and queue listeners until SIGTERM")
    timer = commands.add_parser("run-timer", help="run a timer function once, now")
    timer.add_argument("name", nargs="?", default="sweep_timer")
    drain = commands.add_parser("drain", help="run queue workers until the queues are idle")
    drain.add_argument("queues", nargs="*")
    for sub in (doctor, serve, timer, drain):
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
    argv = [*(["--verbose"] if args.verbose else []), args.command, *extra]
    return host_main(argv)


def _read_payload(source: str) -> Any:
    if source == "-":
        text, where = sys.stdin.read(), "standard input"
    else:
        where = source
        try:
            text = Path(source).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise UsageError(f"--payload {source}: no such file") from None
        except IsADirectoryError:
            raise UsageError(f"--payload {source}: is a directory, not a JSON file") from None
        except UnicodeDecodeError:
            raise UsageError(f"--payload {source}: not UTF-8 text") from None
        except OSError as exc:
            raise UsageError(f"--payload {source}: cannot be read ({exc.strerror})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--payload ({where}) is not JSON: {exc}") from None
    except RecursionError:
        raise UsageError(f"--payload ({where}) is nested too deeply") from None


def _check_people(payload: Mapping[str, Any], domain: str | None, source: str) -> None:
    """Refuse a provision payload with a person the worker could never apply (all named).

    The worker would apply the others and report these; refusing here is the stricter
    choice: the sender sees every problem at once and nothing half-done. Without
    DAEMON_USER_DOMAIN here the joiners' domain is not checked (the worker needs it).
    """
    from shared.errors import InvalidMessageError
    from shared.jobs.provision import validate_payload

    where = "standard input" if source == "-" else source
    try:
        validated = validate_payload(payload, domain=domain or "example.invalid")
    except InvalidMessageError as exc:
        raise UsageError(f"--payload ({where}): {exc}; nothing sent") from None
    if validated.problems:
        raise UsageError(
            f"--payload ({where}): {len(validated.problems)} problem(s), nothing sent: "
            + "; ".join(validated.problems)
        )


def _enqueue(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from shared.host import FunctionsHost
    from shared.jobs.dispatch import JOBS
    from shared.jobs.envelope import JobMessage, parse_message

    if args.azurite:
        raise UsageError(
            "enqueue --azurite: an Azurite started for this command alone would stop, in "
            "memory, with the message in it. enqueue sends to AzureWebJobsStorage like the other "
            "commands: start Azurite first (npm run azurite, then "
            "AzureWebJobsStorage=UseDevelopmentStorage=true), or run the steps in one Azurite: "
            "python -m sandbox exec --auth-mode M --azurite -- sh -c 'python -m shared enqueue "
            "... && python -m shared run-timer && python -m shared drain'"
        )
    settings = load_settings(env)
    payload = _read_payload(args.payload)
    tenant = parse_tenant("--tenant", args.tenant) if args.tenant else settings.tenant_id
    try:
        message = JobMessage.new(
            args.job, tenant, payload, correlation_id=args.correlation_id, dry_run=args.dry_run
        )
        body = message.to_json()
    except ValueError as exc:
        raise UsageError(f"enqueue: {exc}") from None
    parse_message(body, jobs=JOBS.keys(), allowed_tenants=settings.allowed_tenants)
    if message.job == "provision" and isinstance(payload, dict):
        _check_people(payload, settings.user_domain, args.payload)
    asyncio.run(probe_storage(env, queues=(settings.jobs_queue,), tables=False))
    host = FunctionsHost(env)
    try:
        asyncio.run(host.enqueue(settings.jobs_queue, body))
    finally:
        host.close()
    print(f"enqueued {args.job} for tenant {tenant} as {message.correlation_id}")
    return EXIT_OK


# -- requeue-poison ------------------------------------------------------------------------


@dataclass
class RequeueResult:
    """What ``requeue-poison`` did (or, with ``dry_run``, would do)."""

    queue: str
    poison: str
    moved: int = 0
    skipped: int = 0  # not base64: the host would poison them again at once
    left: int = 0  # approximate count still in the poison queue afterwards
    dry_run: bool = False
    correlation_ids: tuple[str, ...] = ()

    def line(self) -> str:
        verb = "would move" if self.dry_run else "moved"
        text = f"{verb} {self.moved} message(s) from {self.poison} to {self.queue}"
        if self.skipped:
            text += (
                f"; left {self.skipped} that are not base64 in {self.poison} (the host would "
                "poison them again at once: fix the producer and send them anew)"
            )
        return text + f"; {self.left} left in {self.poison}"


def _correlation_id(raw: str) -> str | None:
    """The correlationId of a stored (base64) job message, or None; never raises."""
    try:
        body = json.loads(base64.b64decode(raw.encode("ascii"), validate=True))
    except (ValueError, binascii.Error, UnicodeError, RecursionError):
        return None
    value = body.get("correlationId") if isinstance(body, dict) else None
    return value if isinstance(value, str) else None


def _is_base64(raw: str) -> bool:
    try:
        base64.b64decode(raw.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeError):
        return False
    return True


def _requeue_sync(
    source: QueueClient, target: QueueClient, result: RequeueResult, limit: int | None
) -> None:
    from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

    ids: list[str] = []
    if result.dry_run:
        try:
            peeked = source.peek_messages(max_messages=32)
        except ResourceNotFoundError:
            peeked = []
        count = int(source.get_queue_properties().approximate_message_count or 0) if peeked else 0
        movable = [m for m in peeked if _is_base64(str(m.content or ""))]
        result.skipped = len(peeked) - len(movable)
        result.moved = max(count - result.skipped, 0)
        if limit is not None:
            result.moved = min(result.moved, limit)
        ids = [cid for m in movable[: result.moved] if (cid := _correlation_id(str(m.content)))]
        result.left = count
        result.correlation_ids = tuple(ids)
        return
    with contextlib.suppress(ResourceExistsError):
        target.create_queue()
    seen_skipped: set[str] = set()
    while limit is None or result.moved < limit:
        want = 32 if limit is None else min(32, limit - result.moved)
        try:
            page = next(
                source.receive_messages(
                    messages_per_page=want, max_messages=want, visibility_timeout=_REQUEUE_LEASE
                ).by_page(),
                None,
            )
        except ResourceNotFoundError:
            page = None
        messages = list(page or [])
        if not messages or all(m.id in seen_skipped for m in messages):
            break
        for message in messages:
            raw = str(message.content or "")
            if not _is_base64(raw):
                # Left where it is (invisible for the lease, then back): moving it would
                # only poison it again.
                if message.id not in seen_skipped:
                    seen_skipped.add(message.id)
                    result.skipped += 1
                continue
            # The stored text is already base64, as the host expects: send it unchanged, and
            # delete the poison copy only once the send succeeded (a crash in between leaves
            # a duplicate, never a loss; the jobs are idempotent).
            target.send_message(raw)
            source.delete_message(message.id, message.pop_receipt)
            result.moved += 1
            cid = _correlation_id(raw)
            if cid:
                ids.append(cid)
            logger.info(
                "requeued message %s of %s to %s (correlation id %s)",
                message.id,
                result.poison,
                result.queue,
                cid or "?",
            )
    try:
        result.left = int(source.get_queue_properties().approximate_message_count or 0)
    except ResourceNotFoundError:
        result.left = 0
    result.correlation_ids = tuple(ids)


async def requeue_poison(
    env: Mapping[str, str],
    queue: str,
    *,
    limit: int | None = None,
    dry_run: bool = False,
    connection: str = "AzureWebJobsStorage",
) -> RequeueResult:
    """Move the messages of ``<queue>-poison`` back to ``queue`` (see the module doc)."""
    parsed = storage_connection(env, connection)
    result = RequeueResult(queue=queue, poison=queue + POISON_SUFFIX, dry_run=dry_run)
    source = parsed.queue_client(result.poison)
    target = parsed.queue_client(queue)  # raw text: the poison copy is already base64
    try:
        await asyncio.to_thread(_requeue_sync, source, target, result, limit)
    finally:
        source.close()
        target.close()
    return result


def _requeue(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from shared.settings import _QUEUE_RE

    queue = args.queue or (env.get("DAEMON_JOBS_QUEUE") or "").strip()
    where = "--queue" if args.queue else "DAEMON_JOBS_QUEUE"
    if not queue:
        raise UsageError("requeue-poison: pass --queue or set DAEMON_JOBS_QUEUE")
    if not _QUEUE_RE.match(queue) or len(queue) + len(POISON_SUFFIX) > 63:
        raise UsageError(
            f"{where} {queue!r} is not a storage queue name with room for its -poison queue "
            "(3-56 lowercase letters, digits and single dashes)"
        )
    if args.max is not None and args.max < 1:
        raise UsageError(f"--max {args.max}: expected a whole number of at least 1")
    asyncio.run(probe_storage(env, queues=(queue, queue + POISON_SUFFIX), tables=False))
    result = asyncio.run(requeue_poison(env, queue, limit=args.max, dry_run=args.dry_run))
    print(result.line())
    if result.correlation_ids:
        print("correlation ids: " + ", ".join(result.correlation_ids))
    return EXIT_OK


# -- main ----------------------------------------------------------------------------------


def _doctor(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    report = asyncio.run(run_doctor(env, storage_timeout=STORAGE_TIMEOUT))
    print(json.dumps(report.as_dict()) if args.json else report.render())
    return EXIT_OK if report.ok else EXIT_FAILED


def _status(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from shared.status import collect_status

    if args.runs < 1:
        raise UsageError(f"--runs {args.runs}: expected a whole number of at least 1")
    report = asyncio.run(collect_status(env, runs_per_job=args.runs))
    print(report.to_json() if args.json else report.render())
    return EXIT_FAILED if report.attention else EXIT_OK


def _with_azurite(args: argparse.Namespace, run: Any) -> int:
    if not getattr(args, "azurite", False):
        return int(run())
    from sandbox.azurite import Azurite

    with Azurite() as azurite:
        # this process's own environment: the functions read their settings from it
        os.environ["AzureWebJobsStorage"] = azurite.connection_string  # noqa: SIM112
        return int(run())


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging(verbose=args.verbose)
    from azure.core.exceptions import AzureError

    from shared.host.__main__ import redact

    env = os.environ
    try:
        if args.command == "doctor":
            return _with_azurite(args, lambda: _doctor(args, env))
        if args.command in ("serve", "run-timer", "drain"):
            return _with_azurite(args, lambda: _run_host(args))
        if args.command == "enqueue":
            return _enqueue(args, env)
        if args.command == "requeue-poison":
            return _requeue(args, env)
        if args.command == "status":
            return _status(args, env)
        if args.command == "consent-url":
            settings = load_settings(env)
            tenant = parse_tenant("--tenant", args.tenant)
            print(admin_consent_url(settings, tenant))
            return EXIT_OK
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
    return EXIT_USAGE  # pragma: no cover - argparse rejects unknown commands
