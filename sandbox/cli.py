"""Command line: ``python -m sandbox [serve]`` and ``python -m sandbox exec --auth-mode M -- CMD``.

``serve`` starts and seeds a sandbox, prints its URL, CA path and the settings for every auth
mode as JSON (secrets redacted unless ``--show-secrets``), writes a ready
``local.settings.json``-shaped file for one mode (secrets included, mode 0600, by default
``.sandbox/local.settings.json``, which git ignores) and serves until Ctrl-C or SIGTERM.
``exec`` starts and seeds a sandbox, runs CMD with ``os.environ`` plus everything the host
commands need (the settings for the mode, ``DAEMON_JOBS_QUEUE``, ``DAEMON_SWEEP_SCHEDULE``,
``DAEMON_USER_DOMAIN`` and ``AzureWebJobsStorage``; with ``--azurite`` a fresh in-memory
Azurite for the run), stops them and exits with CMD's status. ``demo`` runs the main job
offline.

Tenant ids are the same in every run (derived from the tenants' names), so the messages,
run records and checkpoints a long-running Azurite keeps still name known tenants;
``--random-tenants`` gives fresh ones. Bad input is one line on stderr and exit status 2.

``--replication-delay SECONDS`` (serve, exec, demo): how long a user or group created through
the directory API stays invisible to reads by id, lists and member references, as Entra ID's
replication makes it (default: GraphConfig's, 1 s; 0 turns it off).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType

from sandbox.graph import GraphConfig
from sandbox.graph.config import FaultConfig
from sandbox.seed import (
    AUTH_MODES,
    SECRET_SETTING_NAMES,
    USER_DOMAIN,
    Seed,
    seed_default,
    settings_for,
)
from sandbox.server import Sandbox

logger = logging.getLogger(__name__)

REDACTED = "<redacted: use --show-secrets>"
PROJECT_ROOT = Path(__file__).resolve().parents[1]
# Where ``serve`` writes its settings unless told otherwise: a folder that ignores itself
# (it holds a ``.gitignore`` of ``*``), so the secrets never reach git.
SETTINGS_DIR = PROJECT_ROOT / ".sandbox"
DEFAULT_SETTINGS_FILE = SETTINGS_DIR / "local.settings.json"
DEFAULT_SERVE_MODE = "keyvault-certificate"
# What the host commands need beyond the auth settings; a value already in the environment
# wins. The user domain is a verified domain of the seeded home tenant.
LOCAL_DEFAULTS: Mapping[str, str] = {
    "DAEMON_JOBS_QUEUE": "daemon-jobs",
    "DAEMON_SWEEP_SCHEDULE": "0 */15 * * * *",
    "DAEMON_USER_DOMAIN": USER_DOMAIN,
}
# Azurite on its default ports, as ``npm run azurite`` starts it.
DEVELOPMENT_STORAGE = "UseDevelopmentStorage=true"
STORAGE_SETTING = "AzureWebJobsStorage"
EXIT_USAGE = 2
EXIT_FAILED = 1


class SandboxUsageError(Exception):
    """Bad command-line input: printed as one line, exit status 2."""


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
    serve.add_argument(
        "--auth-mode",
        default=DEFAULT_SERVE_MODE,
        choices=AUTH_MODES,
        help=f"the mode of the settings file (default {DEFAULT_SERVE_MODE})",
    )
    serve.add_argument(
        "--settings-file",
        type=Path,
        default=None,
        metavar="PATH",
        help="where to write the local.settings.json-shaped file, secrets included "
        f"(default {DEFAULT_SETTINGS_FILE.relative_to(PROJECT_ROOT)}; an existing file "
        "elsewhere is replaced only with --overwrite)",
    )
    serve.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing --settings-file (e.g. the repo's local.settings.json)",
    )
    run = commands.add_parser("exec", help="run a command against a fresh sandbox")
    run.add_argument("--auth-mode", required=True, choices=AUTH_MODES)
    run.add_argument(
        "--azurite",
        action="store_true",
        help="start Azurite from this repo's node_modules for the run (in memory, free ports) "
        "and export it as AzureWebJobsStorage; stopped on exit",
    )
    run.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    for sub in (serve, run):
        sub.add_argument(
            "--user-assigned-identity",
            action="store_true",
            help="use the user-assigned identity instead of the system-assigned one",
        )
        sub.add_argument(
            "--random-tenants",
            action="store_true",
            help="fresh random tenant ids instead of the stable ones",
        )
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
            f"(numeric fields of FaultConfig: {', '.join(sorted(_FAULT_DEFAULTS))}); "
            "repeatable",
        )
    return parser


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from exc
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a finite number of seconds >= 0")
    return value


# The fault settings a number can set (not the status list or the free-form ``extra``).
_FAULT_DEFAULTS: dict[str, int | float | None] = {
    field.name: getattr(FaultConfig(), field.name)
    for field in dataclasses.fields(FaultConfig)
    if isinstance(getattr(FaultConfig(), field.name), (int, float, type(None)))
}


def _faults(items: Sequence[str]) -> dict[str, float | int]:
    """Parse ``--fault NAME=VALUE`` items, checked before anything starts."""
    faults: dict[str, float | int] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise SandboxUsageError(f"--fault {item!r}: expected NAME=VALUE")
        if name not in _FAULT_DEFAULTS:
            raise SandboxUsageError(
                f"--fault {item!r}: unknown fault {name!r}; expected one of "
                + ", ".join(sorted(_FAULT_DEFAULTS))
            )
        try:
            value = float(text)
        except ValueError as exc:
            raise SandboxUsageError(f"--fault {item!r}: the value must be a number") from exc
        if not math.isfinite(value) or value < 0:
            raise SandboxUsageError(f"--fault {item!r}: expected a finite number >= 0")
        if isinstance(_FAULT_DEFAULTS[name], int):
            if not value.is_integer():
                raise SandboxUsageError(f"--fault {item!r}: {name} is a whole number")
            faults[name] = int(value)
        else:
            faults[name] = value
    return faults


def _seed(sandbox: Sandbox, args: argparse.Namespace) -> Seed:
    return seed_default(sandbox, stable_tenant_ids=not getattr(args, "random_tenants", False))


def local_environment(
    seed: Seed,
    sandbox: Sandbox,
    mode: str,
    base: Mapping[str, str],
    *,
    user_assigned_identity: bool = False,
    storage: str | None = None,
) -> dict[str, str]:
    """``base`` plus everything the host commands need against ``sandbox`` in ``mode``.

    The sandbox's settings replace values in ``base``; the queue, schedule and user domain of
    :data:`LOCAL_DEFAULTS` only fill in what ``base`` leaves empty. ``storage`` (a connection
    string) replaces ``AzureWebJobsStorage``; without it an unset storage setting becomes
    ``UseDevelopmentStorage=true`` (Azurite on its default ports, as ``npm run azurite``).
    """
    env = dict(base)
    for name, value in LOCAL_DEFAULTS.items():
        if not env.get(name, "").strip():
            env[name] = value
    env.update(settings_for(seed, sandbox, mode, user_assigned_identity=user_assigned_identity))
    if storage is not None:
        env[STORAGE_SETTING] = storage
    elif not env.get(STORAGE_SETTING, "").strip() and not any(
        name.startswith(STORAGE_SETTING + "__") for name in env
    ):
        env[STORAGE_SETTING] = DEVELOPMENT_STORAGE
    return env


def _serve(sandbox: Sandbox, args: argparse.Namespace) -> int:
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    # Both signals only set the event (installed before the settings are printed, so a
    # caller may signal as soon as it has read them); the sandbox stops in _main()'s ``finally``.
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        seed = _seed(sandbox, args)
        path = _write_settings_file(sandbox, seed, args)
        _print_settings(sandbox, seed, args.show_secrets, path)
        shell = path.with_suffix(".env") if path.parent == SETTINGS_DIR else None
        also = f" and {shell} (for a shell)" if shell else ""
        print(
            f"Wrote the settings for auth mode {args.auth_mode} (secrets included, mode 0600) "
            f"to {path}{also}; they are valid while this sandbox runs",
            file=sys.stderr,
            flush=True,
        )
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _write_settings_file(sandbox: Sandbox, seed: Seed, args: argparse.Namespace) -> Path:
    """Write the ``local.settings.json``-shaped file for ``args.auth_mode``; return its path."""
    path: Path = args.settings_file or DEFAULT_SETTINGS_FILE
    path = path if path.is_absolute() else Path.cwd() / path
    if args.settings_file is not None and path.exists() and not args.overwrite:
        raise SandboxUsageError(
            f"--settings-file {args.settings_file}: the file exists; pass --overwrite to replace it"
        )
    if path.is_dir():
        raise SandboxUsageError(f"--settings-file {path}: is a directory")
    env = local_environment(
        seed,
        sandbox,
        args.auth_mode,
        {n: v for n in (STORAGE_SETTING, *LOCAL_DEFAULTS) if (v := os.environ.get(n, "").strip())},
        user_assigned_identity=args.user_assigned_identity,
    )
    document = {
        "IsEncrypted": False,
        "Values": {"FUNCTIONS_WORKER_RUNTIME": "python", **env},
    }
    try:
        if path.parent == SETTINGS_DIR:
            SETTINGS_DIR.mkdir(mode=0o700, exist_ok=True)
            (SETTINGS_DIR / ".gitignore").write_text("*\n", encoding="utf-8")
        _write_private(path, json.dumps(document, indent=2) + "\n")
        if path.parent == SETTINGS_DIR:
            # The same values for a shell: set -a; . .sandbox/local.settings.env; set +a
            _write_private(
                path.with_suffix(".env"),
                "".join(f"{name}={shlex.quote(value)}\n" for name, value in env.items()),
            )
    except OSError as exc:
        raise SandboxUsageError(
            f"--settings-file {path}: cannot be written ({exc.strerror})"
        ) from exc
    return path


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600 from the start, replacing it atomically."""
    fd, temporary = tempfile.mkstemp(prefix=".settings-", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _print_settings(sandbox: Sandbox, seed: Seed, show_secrets: bool, path: Path) -> None:
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
                "settings_file": str(path),
                "settings": settings,
            },
            indent=2,
        ),
        flush=True,
    )
    print(f"Sandbox serving on {sandbox.url} (Ctrl-C to stop)", file=sys.stderr, flush=True)


def _command(cmd: Sequence[str]) -> list[str]:
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise SandboxUsageError("a command is required after --")
    return list(cmd)


@contextlib.contextmanager
def _storage(start_azurite: bool) -> Iterator[str | None]:
    """A fresh Azurite's connection string with ``--azurite``, else None."""
    if not start_azurite:
        yield None
        return
    from sandbox.azurite import Azurite

    with Azurite() as azurite:
        yield azurite.connection_string


def _exec(sandbox: Sandbox, args: argparse.Namespace, cmd: Sequence[str]) -> int:
    seed = _seed(sandbox, args)
    with _storage(args.azurite) as storage:
        env = local_environment(
            seed,
            sandbox,
            args.auth_mode,
            os.environ,
            user_assigned_identity=args.user_assigned_identity,
            storage=storage,
        )
        try:
            child = subprocess.Popen(list(cmd), env=env)
        except FileNotFoundError:
            print(f"exec: command not found: {cmd[0]}", file=sys.stderr)
            return 127
        except PermissionError:
            print(f"exec: command not executable: {cmd[0]}", file=sys.stderr)
            return 126

        def forward(signum: int, frame: FrameType | None) -> None:
            # SIGTERM goes to the command; we clean up (sandbox, Azurite) once it ended.
            child.send_signal(signum)

        previous = signal.signal(signal.SIGTERM, forward)
        try:
            while True:
                try:
                    return child.wait()
                except KeyboardInterrupt:
                    # Ctrl-C reached the command too (same process group): wait for it.
                    continue
        finally:
            signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(arguments)
    if args.command is None:  # plain ``python -m sandbox [options]``: serve
        args = _parser().parse_args([*arguments, "serve"])
    try:
        return _main(args)
    except SandboxUsageError as exc:
        print(f"python -m sandbox {args.command or 'serve'}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def _main(args: argparse.Namespace) -> int:
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
    # Every input is checked before anything starts.
    faults = _faults(args.fault)
    cmd = _command(args.cmd) if args.command == "exec" else []
    graph_config = GraphConfig()
    if args.replication_delay is not None:
        graph_config.replication_delay = args.replication_delay
    from shared.errors import AzuriteError

    sandbox = Sandbox(port=args.port, token_lifetime=args.token_lifetime, graph_config=graph_config)
    try:
        sandbox.start()
    except OSError as exc:  # e.g. --port already in use
        print(f"python -m sandbox: error: cannot start the sandbox: {exc}", file=sys.stderr)
        return EXIT_FAILED
    try:
        if faults:
            sandbox.graph.faults.set(**faults)
        if args.command == "exec":
            return _exec(sandbox, args, cmd)
        return _serve(sandbox, args)
    except AzuriteError as exc:
        print(f"python -m sandbox exec: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        sandbox.stop()
