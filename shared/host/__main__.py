"""``python -m shared.host``: run the app's functions without Core Tools (offline or as a
plain Linux daemon). App settings come from the environment.

    python -m shared.host serve                 # timers + queue listeners until SIGTERM
    python -m shared.host run-timer NAME        # one timer run
    python -m shared.host drain [QUEUE ...]     # process queues until idle
    python -m shared.host enqueue QUEUE TEXT    # send a message encoded as the host expects
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shared.errors import ConfigurationError
from shared.host.host import FunctionsHost


def _load_app(spec: str) -> Any:
    module_name, _, attribute = spec.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attribute or "app")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m shared.host",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--app", default="function_app:app", help="module:attribute")
    parser.add_argument("--host-json", type=Path, default=None, help="default: ./host.json")
    parser.add_argument("--verbose", "-v", action="store_true")
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


async def _main(args: argparse.Namespace) -> int:
    host_json = args.host_json or (Path.cwd() / "host.json")
    host = FunctionsHost(os.environ, app=_load_app(args.app), host_json=host_json)
    try:
        if args.command == "serve":
            await host.serve()
        elif args.command == "run-timer":
            sent = await host.run_timer(args.name)
            for queue, texts in sent.items():
                print(f"{queue}: {len(texts)} message(s)")
        elif args.command == "drain":
            result = await host.run_queue_until_idle(*args.queues, timeout=args.timeout)
            print(
                f"invocations {result.invocations}, succeeded {result.succeeded}, failed "
                f"{result.failed}, poisoned {result.poisoned}"
                + (" (timed out)" if result.timed_out else "")
            )
            return 1 if result.timed_out else 0
        elif args.command == "enqueue":
            await host.enqueue(args.queue, args.text)
    finally:
        host.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        logging.getLogger("azure").setLevel(logging.WARNING)
    sys.path.insert(0, str(Path.cwd()))
    try:
        return asyncio.run(_main(args))
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
