"""``python -m shared.host``: run the app's functions without Core Tools (offline or as a
plain Linux daemon). App settings come from the environment.

    python -m shared.host serve                 # timers + queue listeners until SIGTERM
    python -m shared.host run-timer NAME        # one timer run
    python -m shared.host drain [QUEUE ...]     # process queues until idle
    python -m shared.host enqueue QUEUE TEXT    # send a message encoded as the host expects

The app: ``function_app:app`` (``--app``) imported from the Functions app root, the folder
with function_app.py and host.json: ``--app-root DIR``, else the AzureWebJobsScriptRoot
setting, else the current directory. host.json: ``--host-json``, else the app root's.

Logs go to stderr at INFO (each job's summary line), DEBUG with --verbose. Exit status:
0 done; 1 something failed — drain: a message was poisoned, a function failed on a delivery
(even one retried later) or the queues were not idle in time; run-timer: the function raised
or logged an error (the sweep logs one per tenant whose sweep failed, so one failed tenant
is enough); any command: storage did not answer; 2 the app, host.json or a setting is wrong
(function_app cannot be imported, say).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from shared.errors import ConfigurationError
from shared.host.app_root import DEFAULT_APP, HELP, AppRoot, find_app_root, load_app
from shared.host.config import HostOptions, load_host_options
from shared.host.host import FunctionsHost
from shared.logs import configure_logging

__all__ = ["EXIT_CONFIGURATION", "EXIT_FAILED", "EXIT_OK", "main", "redact"]

logger = logging.getLogger("shared.host")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIGURATION = 2


class _ErrorCounter(logging.Handler):
    """Counts ERROR (and worse) records while it is attached to the root logger."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m shared.host",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--app", default=DEFAULT_APP, help="module:attribute (default %(default)s)")
    parser.add_argument("--app-root", type=Path, default=None, metavar="DIR", help=HELP)
    parser.add_argument(
        "--host-json", type=Path, default=None, help="default: host.json in the app root"
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="log at DEBUG level")
    parser.add_argument(
        "--storage-timeout",
        type=float,
        default=5.0,
        help="seconds the storage check before the run may take (default 5)",
    )
    parser.add_argument(
        "--lease-margin",
        type=float,
        default=None,
        help="seconds beyond functionTimeout a received message stays invisible, i.e. how "
        "soon a killed worker's message is delivered again (default 30)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run timers and queue listeners until SIGTERM/SIGINT")
    timer = commands.add_parser("run-timer", help="run one timer function once")
    timer.add_argument("name")
    drain = commands.add_parser("drain", help="process queues until they are idle")
    drain.add_argument("queues", nargs="*")
    drain.add_argument("--timeout", type=float, default=300.0)
    enqueue = commands.add_parser("enqueue", help="send one message")
    enqueue.add_argument("queue")
    enqueue.add_argument("text")
    return parser


async def _check_storage(host: FunctionsHost, timeout: float) -> None:
    """Fail fast, in one line, when a storage connection the app uses does not answer
    (the SDKs' own retries would take minutes before a traceback)."""
    from shared.doctor import probe_storage

    queues: dict[str, set[str]] = {}
    for spec in host.functions.values():
        if spec.queue_name:
            queues.setdefault(spec.trigger.connection, set()).add(spec.queue_name)
        for binding in spec.outputs:
            if binding.type == "queue":
                queues.setdefault(binding.connection, set())
    for connection, names in sorted(queues.items()):
        await probe_storage(
            host.env,
            connection=connection,
            queues=tuple(sorted(names)),
            tables=False,
            timeout=timeout,
        )


async def _run_timer(host: FunctionsHost, args: argparse.Namespace) -> int:
    name = args.name
    counter = _ErrorCounter()
    root = logging.getLogger()
    root.addHandler(counter)
    try:
        sent = await host.run_timer(name)
    except ConfigurationError:
        raise  # main() prints it in one line: exit status 2
    except Exception as exc:
        logger.error("Timer function %s failed: %s: %s", name, type(exc).__name__, exc)
        logger.debug("Timer function %s failure details", name, exc_info=exc)
        return EXIT_FAILED
    finally:
        root.removeHandler(counter)
    for queue, texts in sent.items():
        print(f"{queue}: {len(texts)} message(s)")
    if counter.count:
        logger.error(
            "Timer function %s logged %d error(s) (see above): exit status %d",
            name,
            counter.count,
            EXIT_FAILED,
        )
        return EXIT_FAILED
    return EXIT_OK


async def _drain(host: FunctionsHost, args: argparse.Namespace) -> int:
    result = await host.run_queue_until_idle(*args.queues, timeout=args.timeout)
    print(
        f"invocations {result.invocations}, succeeded {result.succeeded}, failed "
        f"{result.failed}, poisoned {result.poisoned}"
        + (" (timed out)" if result.timed_out else "")
    )
    if result.poisoned or result.failed or result.timed_out:
        logger.error(
            "drain: %d message(s) poisoned, %d failed delivery(ies)%s: exit status %d",
            result.poisoned,
            result.failed,
            ", not idle in time" if result.timed_out else "",
            EXIT_FAILED,
        )
        return EXIT_FAILED
    return EXIT_OK


async def _serve(host: FunctionsHost, args: argparse.Namespace) -> int:
    await host.serve()
    return EXIT_OK


async def _enqueue(host: FunctionsHost, args: argparse.Namespace) -> int:
    await host.enqueue(args.queue, args.text)
    return EXIT_OK


_COMMANDS = {"serve": _serve, "run-timer": _run_timer, "drain": _drain, "enqueue": _enqueue}


def _options(args: argparse.Namespace, root: AppRoot) -> HostOptions:
    options = load_host_options(args.host_json or root.host_json)
    if args.lease_margin is not None:
        if not 0 <= args.lease_margin <= 3600:
            raise ConfigurationError(f"--lease-margin {args.lease_margin}: expected 0 to 3600")
        options = dataclasses.replace(options, lease_margin=args.lease_margin)
    return options


async def _main(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    root = find_app_root(args.app_root, env)
    app = load_app(args.app, root)
    host = FunctionsHost(env, app=app, host_json=_options(args, root))
    try:
        if args.command != "enqueue":
            await _check_storage(host, args.storage_timeout)
        return await _COMMANDS[args.command](host, args)
    finally:
        host.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging(verbose=args.verbose)
    from azure.core.exceptions import AzureError

    from shared.errors import StorageUnreachableError

    try:
        return asyncio.run(_main(args, os.environ))
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIGURATION
    except StorageUnreachableError as exc:
        print(f"error: storage unreachable: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except AzureError as exc:  # storage failed mid-run
        print(f"error: storage: {type(exc).__name__}: {redact(exc.message)}", file=sys.stderr)
        return EXIT_FAILED


_SAS_SIGNATURE = re.compile(r"(?i)\b(sig|signature)=[^&\s'\"]+")


def redact(text: str) -> str:
    """``text`` with SAS signatures masked (an SDK error may quote a request URL)."""
    return _SAS_SIGNATURE.sub(r"\1=***", text)
