"""``python -m shared enqueue``: validate a job message and send it to DAEMON_JOBS_QUEUE on
``AzureWebJobsStorage``, encoded as the app root's host.json says (base64 by default).
The app root (``--app-root``, else AzureWebJobsScriptRoot, else the current directory) is
where function_app.py and host.json are.

The message is checked as the worker would check it (the envelope, the tenant allow-list
and, for ``provision``, every person) so that nothing is sent that the worker would refuse.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shared.errors import UsageError

__all__ = ["AZURITE_REFUSED", "check_people", "read_payload", "run_enqueue"]

AZURITE_REFUSED = (
    "enqueue --azurite: an Azurite started for this command alone would stop, in "
    "memory, with the message in it. enqueue sends to AzureWebJobsStorage like the other "
    "commands: start Azurite first (npm run azurite, then "
    "AzureWebJobsStorage=UseDevelopmentStorage=true), or run the steps in one Azurite: "
    "python -m sandbox exec --auth-mode M --azurite -- sh -c 'python -m shared enqueue "
    "... && python -m shared run-timer && python -m shared drain'"
)


def _read_text(source: str) -> str:
    try:
        return Path(source).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise UsageError(f"--payload {source}: no such file") from exc
    except IsADirectoryError as exc:
        raise UsageError(f"--payload {source}: is a directory, not a JSON file") from exc
    except UnicodeDecodeError as exc:
        raise UsageError(f"--payload {source}: not UTF-8 text") from exc
    except OSError as exc:
        raise UsageError(f"--payload {source}: cannot be read ({exc.strerror})") from exc


def read_payload(source: str) -> Any:
    """The JSON payload in file ``source``, or on standard input for ``-``."""
    if source == "-":
        text, where = sys.stdin.read(), "standard input"
    else:
        text, where = _read_text(source), source
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--payload ({where}) is not JSON: {exc}") from exc
    except RecursionError as exc:
        raise UsageError(f"--payload ({where}) is nested too deeply") from exc


def check_people(payload: Mapping[str, Any], domain: str | None, source: str) -> None:
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
        raise UsageError(f"--payload ({where}): {exc}; nothing sent") from exc
    if validated.problems:
        raise UsageError(
            f"--payload ({where}): {len(validated.problems)} problem(s), nothing sent: "
            + "; ".join(validated.problems)
        )


def _send(env: Mapping[str, str], app_root: Path | None, queue: str, body: str) -> None:
    """Send ``body`` to ``queue`` through the runner, with the app root's function_app and
    host.json: the text is encoded as host.json says, and the app's bindings are resolved
    first, so a setting the queue trigger needs (DAEMON_JOBS_QUEUE) must be set."""
    from shared.host import FunctionsHost, find_app_root, load_app
    from shared.host.app_root import DEFAULT_APP

    root = find_app_root(app_root, env)
    host = FunctionsHost(env, app=load_app(DEFAULT_APP, root), host_json=root.host_json)
    try:
        asyncio.run(host.enqueue(queue, body))
    finally:
        host.close()


def run_enqueue(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """The ``enqueue`` command: exit status 0 once the message is sent."""
    from shared.doctor import probe_storage
    from shared.jobs.dispatch import JOBS
    from shared.jobs.envelope import JobMessage, parse_message
    from shared.settings import load_settings, parse_tenant

    if args.azurite:
        raise UsageError(AZURITE_REFUSED)
    settings = load_settings(env)
    payload = read_payload(args.payload)
    tenant = parse_tenant("--tenant", args.tenant) if args.tenant else settings.tenant_id
    try:
        message = JobMessage.new(
            args.job, tenant, payload, correlation_id=args.correlation_id, dry_run=args.dry_run
        )
        body = message.to_json()
    except ValueError as exc:
        raise UsageError(f"enqueue: {exc}") from exc
    parse_message(body, jobs=JOBS.keys(), allowed_tenants=settings.allowed_tenants)
    if message.job == "provision" and isinstance(payload, dict):
        check_people(payload, settings.user_domain, args.payload)
    asyncio.run(probe_storage(env, queues=(settings.jobs_queue,), tables=False))
    _send(env, args.app_root, settings.jobs_queue, body)
    print(f"enqueued {args.job} for tenant {tenant} as {message.correlation_id}")
    return 0
