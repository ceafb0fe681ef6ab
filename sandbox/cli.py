"""Command line: ``python -m sandbox [serve]`` and ``python -m sandbox exec --auth-mode M -- CMD``.

``serve`` starts and seeds a sandbox, prints its URL, CA path and the settings for every auth
mode as JSON (secrets redacted unless ``--show-secrets``), and serves until Ctrl-C.
``exec`` starts and seeds a sandbox, runs CMD with ``os.environ`` plus the settings for the
mode, stops the sandbox and exits with CMD's status. ``demo`` runs the main job offline.

``--replication-delay SECONDS`` (serve, exec, demo): how long a user or group created through
the directory API stays invisible to reads by id, lists and member references, as Entra ID's
replication makes it (default: GraphConfig's, 1 s; 0 turns it off).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from sandbox.graph import GraphConfig
from sandbox.seed import AUTH_MODES, SECRET_SETTING_NAMES, seed_default, settings_for
from sandbox.server import Sandbox

logger = logging.getLogger(__name__)

REDACTED = "<redacted: use --show-secrets>"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: any)")
    parser.add_argument(
        "--token-lifetime",
        type=int,
        default=3600,
        help="access token lifetime in seconds (default 3600)",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="log to stderr")
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser("serve", help="serve until Ctrl-C (the default)")
    serve.add_argument(
        "--show-secrets",
        action="store_true",
        help="print the client secret and identity header in the settings",
    )
    run = commands.add_parser("exec", help="run a command against a fresh sandbox")
    run.add_argument("--auth-mode", required=True, choices=AUTH_MODES)
    run.add_argument(
        "--user-assigned-identity",
        action="store_true",
        help="use the user-assigned identity instead of the system-assigned one",
    )
    run.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    demo = commands.add_parser("demo", help="run the daemon's main job offline (make demo)")
    demo.add_argument("--json", action="store_true", help="end with one JSON summary line")
    demo.add_argument("--users", type=int, default=3000, help="users in the directory")
    demo.add_argument("--leavers", type=int, default=400, help="leavers among them")
    demo.add_argument("--auth-mode", default="keyvault-certificate", choices=AUTH_MODES)
    for sub in (serve, run, demo):
        sub.add_argument(
            "--replication-delay",
            type=_seconds,
            default=None,
            metavar="SECONDS",
            help="seconds a new user or group is not yet readable or referenceable "
            f"(default {GraphConfig().replication_delay:g}; 0: off)",
        )
    for sub in (serve, run):
        sub.add_argument(
            "--fault",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help="Graph fault injection, e.g. --fault error_rate=0.1 --fault latency_base=0.1 "
            "(see sandbox/graph/config.py FaultConfig); repeatable",
        )
    return parser


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a finite number of seconds >= 0")
    return value


def _faults(items: Sequence[str]) -> dict[str, float]:
    faults = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--fault {item!r}: expected NAME=VALUE")
        try:
            faults[name.strip()] = float(value)
        except ValueError:
            raise SystemExit(f"--fault {item!r}: the value must be a number") from None
    return faults


def _serve(sandbox: Sandbox, show_secrets: bool) -> int:
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    # Both signals only set the event (installed before the settings are printed, so a
    # caller may signal as soon as it has read them); the sandbox stops in main()'s ``with``.
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        _print_settings(sandbox, show_secrets)
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _print_settings(sandbox: Sandbox, show_secrets: bool) -> None:
    seed = seed_default(sandbox)
    settings = {}
    for mode in AUTH_MODES:
        values = settings_for(seed, sandbox, mode)
        if not show_secrets:
            values = {k: (REDACTED if k in SECRET_SETTING_NAMES else v) for k, v in values.items()}
        settings[mode] = values
    print(
        json.dumps(
            {
                "url": sandbox.url,
                "alt_url": sandbox.alt_url,
                "ca_path": sandbox.ca_path,
                "settings": settings,
            },
            indent=2,
        ),
        flush=True,
    )
    print(f"Sandbox serving on {sandbox.url} (Ctrl-C to stop)", file=sys.stderr, flush=True)


def _exec(sandbox: Sandbox, mode: str, cmd: Sequence[str], user_assigned: bool) -> int:
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        print("exec: a command is required after --", file=sys.stderr)
        return 2
    seed = seed_default(sandbox)
    env = dict(os.environ)
    env.update(settings_for(seed, sandbox, mode, user_assigned_identity=user_assigned))
    try:
        completed = subprocess.run(list(cmd), env=env, check=False)
    except FileNotFoundError:
        print(f"exec: command not found: {cmd[0]}", file=sys.stderr)
        return 127
    return completed.returncode


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.verbose:
        logging.basicConfig(
            level=logging.INFO,
            stream=sys.stderr,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
    if args.command == "demo":
        from sandbox.demo import DemoConfig, run_demo

        config = DemoConfig(users=args.users, leavers=args.leavers, auth_mode=args.auth_mode)
        if args.replication_delay is not None:
            config = dataclasses.replace(config, replication_delay=args.replication_delay)
        return run_demo(as_json=args.json, config=config)
    graph_config = GraphConfig()
    if getattr(args, "replication_delay", None) is not None:
        graph_config.replication_delay = args.replication_delay
    with Sandbox(
        port=args.port, token_lifetime=args.token_lifetime, graph_config=graph_config
    ) as sandbox:
        faults = _faults(getattr(args, "fault", []))
        if faults:
            sandbox.graph.faults.set(**faults)
        if args.command == "exec":
            return _exec(sandbox, args.auth_mode, args.cmd, args.user_assigned_identity)
        return _serve(sandbox, getattr(args, "show_secrets", False))
