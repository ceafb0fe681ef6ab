"""``python -m benchmarks.chaos [--quick] [--json PATH]``: proof by chaos.

Provisioning work goes through the jobs queue on Azurite to the offline sandbox while faults
are injected and worker processes are killed; at the end the sandbox directory is compared
with the state the work should have produced.

What runs:

- the sandbox (Entra ID, managed identity, Key Vault, the Graph-like directory API) in this
  process, Azurite as a child process, and ``workers`` host processes
  (``python -m shared.host --host-json H serve``, the same functions and queue semantics as
  ``python -m shared serve``) listening on one queue, with the settings of
  ``python -m sandbox exec --auth-mode keyvault-certificate``;
- the directory is seeded with movers (members of an "old" group), leavers named in messages,
  leavers due by ``employeeLeaveDateTime`` (found by the sweep timer) and bystanders; joiners,
  movers and leavers are sent as ``provision`` messages in waves, plus some messages that
  can never succeed (not JSON, wrong version, unknown job, a tenant not allowed, nesting 1,000
  deep, an integer of 5,000 digits, a malformed payload, a body that is not base64);
- faults, all from the sandbox's own fault model unless said otherwise: 5xx on a share of
  operations, connection resets before and after the write was applied, latency spikes, a
  throttling storm (the write budget cut for a while), every token revoked once, a Graph
  outage, a certificate rotation whose old version is unregistered while Key Vault is out
  (this harness answers 503 on the vault's paths: the sandbox has no Key Vault fault yet);
  workers SIGKILLed at random moments (while busy) and restarted; sweep timer runs that
  overlap, the first one killed mid-run;
- afterwards the faults are cleared, one more sweep runs (the next timer tick), the queue is
  drained, and the result is counted: ``lost`` (an expected change not in the directory),
  ``duplicated`` (an object created twice, a membership added or removed twice),
  ``valid_messages_poisoned`` / ``invalid_messages_poisoned`` with the host's reason, plus
  ``writes_reapplied`` (an idempotent write, PATCH or revokeSignInSessions, applied again
  after an unknown outcome or by two overlapping sweeps' messages: harmless, reported) and
  ``unexpected_changes`` (bystanders changed, the invalid joiner created).

The sandbox's replication delay is on (a created user or group shows in reads only after
``replication_delay`` seconds). The command exits 1 when anything was lost or duplicated or a
valid message was poisoned.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import json
import logging
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from sandbox.azurite import Azurite
from sandbox.graph import GraphConfig
from sandbox.seed import CERTIFICATE_NAME, Seed, seed_default, settings_for
from sandbox.server import Sandbox, build_routes
from shared.storage import StateStore, storage_connection

__all__ = ["ChaosConfig", "ChaosResult", "main", "run_chaos"]

logger = logging.getLogger("benchmarks.chaos")

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOMAIN = "contoso.example"
NEVER = "0 0 0 1 1 *"  # the workers' own timer: never during a run (sweeps are started here)
_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_MOVED_LINE = re.compile(r"Message (\S+) of queue (\S+) moved to (\S+): (.*)$")


@dataclasses.dataclass(frozen=True)
class ChaosConfig:
    """The size of the run, the faults and the timeline (seconds from the first message)."""

    joiners: int = 1500
    movers: int = 1200
    leavers: int = 1000
    sweep_leavers: int = 800
    bystanders: int = 200
    groups: int = 5
    people_per_message: int = 25
    sweep_chunk_size: int = 50
    workers: int = 4
    # the chaos phase: messages are sent in waves over its first 60 %
    chaos_seconds: float = 200.0
    waves: int = 6
    error_rate: float = 0.10
    reset_rate: float = 0.02  # before the write: nothing applied
    reset_after_apply_rate: float = 0.02  # after the write was applied
    slow_rate: float = 0.02  # latency spikes
    slow_seconds: float = 2.0
    latency_base: float = 0.005
    latency_jitter: float = 0.01
    # the fault windows must not overlap: a storm inside the outage would meet no traffic
    graph_outage_at: float = 0.20  # share of chaos_seconds
    graph_outage_seconds: float = 60.0
    storm_at: float = 0.55
    storm_seconds: float = 15.0
    storm_budget_share: float = 0.01  # the write budget during the storm
    keyvault_outage_at: float = 0.70  # rotation + token revocation happen here too
    keyvault_outage_seconds: float = 15.0
    kill_every: tuple[float, float] = (4.0, 10.0)  # a worker SIGKILL every U(a, b) seconds
    max_kills: int | None = None
    sweeps_at: tuple[float, ...] = (0.10, 0.105, 0.50)  # overlapping timer runs
    kill_sweep: bool = True  # the first sweep is killed mid-run (the second overlaps it)
    sweep_kill_after: tuple[float, float] = (0.05, 0.6)  # seconds after it starts running
    invalid_messages: bool = True
    # host.json for the workers: a killed worker's messages come back after
    # functionTimeout + lease_margin (the host emulator's lease)
    function_timeout: float = 120.0
    lease_margin: float = 30.0
    visibility_timeout: float = 1.0
    max_dequeue_count: int = 5
    time_factor: float = 10.0  # Graph's budgets compressed in time by this factor
    # seconds before a created user or group shows in reads (the sandbox's replication delay)
    replication_delay: float = 1.0
    settle_timeout: float = 900.0
    seed: int = 8

    @classmethod
    def full(cls) -> ChaosConfig:
        return cls()

    @classmethod
    def quick(cls) -> ChaosConfig:
        return cls(
            joiners=150,
            movers=120,
            leavers=100,
            sweep_leavers=80,
            bystanders=50,
            groups=4,
            people_per_message=20,
            sweep_chunk_size=20,
            chaos_seconds=60.0,
            waves=4,
            graph_outage_seconds=12.0,
            storm_seconds=6.0,
            keyvault_outage_seconds=8.0,
            kill_every=(4.0, 9.0),
            sweep_kill_after=(0.02, 0.2),
            function_timeout=45.0,
            settle_timeout=400.0,
        )

    @classmethod
    def smoke(cls) -> ChaosConfig:
        """A few dozen operations, one worker kill, one short outage (the test suite's run)."""
        return cls(
            joiners=8,
            movers=6,
            leavers=6,
            sweep_leavers=4,
            bystanders=4,
            groups=3,
            people_per_message=5,
            sweep_chunk_size=10,
            workers=2,
            chaos_seconds=6.0,
            waves=2,
            error_rate=0.05,
            reset_rate=0.0,
            reset_after_apply_rate=0.02,
            slow_rate=0.0,
            graph_outage_seconds=1.5,
            storm_seconds=0.0,
            keyvault_outage_seconds=0.0,
            kill_every=(0.5, 0.5),
            max_kills=1,
            sweeps_at=(0.1,),
            kill_sweep=False,
            invalid_messages=True,
            function_timeout=6.0,
            lease_margin=1.0,
            visibility_timeout=0.0,
            settle_timeout=120.0,
        )

    @property
    def expected_operations(self) -> int:
        # joiner: create + group add; mover: update + add + remove; leaver: disable + revoke
        return 2 * self.joiners + 3 * self.movers + 2 * self.leavers + 2 * self.sweep_leavers


@dataclasses.dataclass
class ChaosResult:
    """The JSON the command writes (see the module docstring for the meaning of each count)."""

    data: dict[str, Any]

    @property
    def ok(self) -> bool:
        d = self.data
        return not (d["lost"] or d["duplicated"] or d["valid_messages_poisoned"])


# -- a Key Vault outage (the sandbox has no Key Vault fault yet) ------------------------------


class KeyVaultOutage:
    """ASGI middleware: while ``active``, the vault's paths answer 503 in Key Vault's error
    shape, ``{"error": {"code", "message"}}`` (learn.microsoft.com/azure/key-vault/general/
    rest-error-codes). That page says nothing of a 503's Retry-After, so the stricter case is
    simulated: none is sent."""

    PREFIXES = ("/certificates/", "/secrets/", "/keys/")

    def __init__(self, app: ASGIApp, switch: OutageSwitch) -> None:
        self.app = app
        self.switch = switch

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if scope["type"] == "http" and self.switch.active and path.startswith(self.PREFIXES):
            self.switch.rejected += 1
            body = json.dumps(
                {
                    "error": {
                        "code": "ServiceUnavailable",
                        "message": "The service is temporarily unavailable (chaos harness).",
                    }
                }
            ).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 503,
                    "headers": [
                        (b"content-type", b"application/json; charset=utf-8"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


@dataclasses.dataclass
class OutageSwitch:
    active: bool = False
    rejected: int = 0


class ChaosSandbox(Sandbox):
    """The sandbox with the harness's Key Vault outage switch in front of it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.keyvault_outage = OutageSwitch()

    def __enter__(self) -> ChaosSandbox:
        self.start()
        return self

    def build_app(self) -> Starlette:
        return Starlette(
            routes=build_routes(self.state, self.extra_routes),
            middleware=[Middleware(KeyVaultOutage, switch=self.keyvault_outage)],
        )


# -- the scenario ------------------------------------------------------------------------------


@dataclasses.dataclass
class Scenario:
    tenant: str
    groups: list[str]
    old_group: str
    joiners: list[dict[str, Any]]
    movers: list[dict[str, Any]]  # payload entries
    mover_ids: dict[str, str]  # employeeId -> user id
    leavers: dict[str, str]  # employeeId -> user id (named in messages)
    sweep_leavers: dict[str, str]  # employeeId -> user id (found by the sweep)
    bystanders: dict[str, str]
    # a joiner whose bad value may not sink the others of its message (not expected to exist)
    poisoned_person: str = "JBAD000001"
    carriers: dict[str, str] = dataclasses.field(default_factory=dict)  # employeeId -> message


def build_scenario(sandbox: Sandbox, seed: Seed, cfg: ChaosConfig) -> Scenario:
    directory = sandbox.graph.directory
    tenant = seed.home_tenant_id
    groups = [g["id"] for g in directory.seed_groups(tenant, cfg.groups, prefix="Chaos")]
    old_group, new_groups = groups[0], groups[1:]
    total = cfg.sweep_leavers + cfg.movers + cfg.leavers + cfg.bystanders
    users = directory.seed_users(tenant, total, leavers=cfg.sweep_leavers, domain=DOMAIN)
    at = 0

    def take(n: int) -> list[dict[str, Any]]:
        nonlocal at
        chunk = users[at : at + n]
        at += n
        return chunk

    sweep_users, mover_users = take(cfg.sweep_leavers), take(cfg.movers)
    leaver_users, bystander_users = take(cfg.leavers), take(cfg.bystanders)
    movers = []
    for k, user in enumerate(mover_users):
        directory.add_member(tenant, old_group, user["id"])
        movers.append(
            {
                "employeeId": user["employeeId"],
                "department": f"Moved {k % 7}",
                "groups": [new_groups[k % len(new_groups)]],
                "removeGroups": [old_group],
            }
        )
    joiners = [
        {
            "employeeId": f"J{i:06d}",
            "givenName": "Chaos",
            "surname": f"Joiner{i:06d}",
            "department": "Engineering",
            "jobTitle": "Engineer",
            "groups": [new_groups[i % len(new_groups)]],
        }
        for i in range(cfg.joiners)
    ]
    return Scenario(
        tenant=tenant,
        groups=groups,
        old_group=old_group,
        joiners=joiners,
        movers=movers,
        mover_ids={u["employeeId"]: u["id"] for u in mover_users},
        leavers={u["employeeId"]: u["id"] for u in leaver_users},
        sweep_leavers={u["employeeId"]: u["id"] for u in sweep_users},
        bystanders={u["employeeId"]: u["id"] for u in bystander_users},
    )


def _envelope(tenant: str, correlation: str, payload: Mapping[str, Any]) -> str:
    from shared.jobs.envelope import JobMessage

    return JobMessage.new("provision", tenant, payload, correlation_id=correlation).to_json()


def valid_messages(scenario: Scenario, cfg: ChaosConfig) -> list[tuple[str, str]]:
    """(correlation id, JSON text) of every valid message, kinds interleaved; records in
    ``scenario.carriers`` which message carries each person."""
    size = cfg.people_per_message
    out: list[tuple[str, str]] = []
    kinds: list[tuple[str, str, list[dict[str, Any]]]] = [
        ("joiners", "j", scenario.joiners),
        ("movers", "m", scenario.movers),
        ("leavers", "l", [{"employeeId": eid} for eid in scenario.leavers]),
    ]
    chunks = []
    for key, tag, people in kinds:
        for n, start in enumerate(range(0, len(people), size)):
            chunks.append((key, f"chaos-{tag}-{n:04d}", people[start : start + size]))
    # interleave so every wave carries every kind
    chunks.sort(key=lambda c: (int(c[1].rsplit("-", 1)[1]), c[1]))
    for key, correlation, people in chunks:
        for person in people:
            scenario.carriers[str(person["employeeId"])] = correlation
        out.append((correlation, _envelope(scenario.tenant, correlation, {key: people})))
    return out


def bad_person_message(scenario: Scenario) -> tuple[str, str, list[str]]:
    """A valid message whose one joiner has a lone surrogate: the other joiners must exist."""
    good: list[dict[str, Any]] = [
        {
            "employeeId": f"JOK{i:07d}",
            "givenName": "Good",
            "surname": f"Neighbour{i}",
            "groups": [scenario.groups[1]],
        }
        for i in range(3)
    ]
    bad: dict[str, Any] = {
        "employeeId": scenario.poisoned_person,
        "givenName": "Bad",
        "surname": "Value",
        "jobTitle": "\ud800",
    }
    correlation = "chaos-badperson-0000"
    for person in [*good, bad]:
        scenario.carriers[str(person["employeeId"])] = correlation
    return (
        correlation,
        _envelope(scenario.tenant, correlation, {"joiners": [*good, bad]}),
        [str(p["employeeId"]) for p in good],
    )


def invalid_messages(scenario: Scenario, seed: Seed) -> list[tuple[str, str, bool]]:
    """(label, text, encode) of messages that can never succeed. ``encode`` False: sent as
    plain text although the host expects base64."""

    def env(correlation: str, **fields: Any) -> str:
        base: dict[str, Any] = {
            "version": 1,
            "job": "provision",
            "tenant": scenario.tenant,
            "correlationId": correlation,
            "dryRun": False,
            "payload": {},
        }
        base.update(fields)
        return json.dumps(base)

    deep = "[" * 1000 + "]" * 1000
    huge = "9" * 5000
    return [
        ("not-json", "this is not JSON {", True),
        ("json-array", "[1, 2, 3]", True),
        ("version-2", env("chaos-bad-version", version=2), True),
        ("unknown-job", env("chaos-bad-job", job="explode"), True),
        ("tenant-not-allowed", env("chaos-bad-tenant", tenant=seed.unconsented_tenant_id), True),
        (
            "nested-1000",
            env("chaos-bad-deep").replace('"payload": {}', f'"payload": {{"joiners": {deep}}}'),
            True,
        ),
        (
            "integer-5000-digits",
            env("chaos-bad-int").replace('"version": 1', f'"version": {huge}'),
            True,
        ),
        ("payload-not-list", env("chaos-bad-payload", payload={"joiners": "everyone"}), True),
        ("not-base64", env("chaos-bad-encoding"), False),
    ]


# -- processes ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    started: float


class Processes:
    """The worker and sweep processes this harness started (it ends only these, by pid)."""

    def __init__(
        self, env: Mapping[str, str], host_json: Path, logs: Path, lease_margin: float = 30.0
    ) -> None:
        self.env = dict(env)
        self.host_json = host_json
        self.lease_margin = lease_margin
        self.logs = logs
        self.workers: dict[int, Proc] = {}
        self.sweeps: list[Proc] = []
        self.kills = 0
        self.sweep_kills = 0
        self._serial = 0
        self._sizes: dict[int, int] = {}

    def _spawn(self, name: str, args: Sequence[str]) -> Proc:
        self._serial += 1
        log = self.logs / f"{self._serial:03d}-{name}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "shared.host",
                    "--host-json",
                    str(self.host_json),
                    "--lease-margin",
                    str(self.lease_margin),
                    *args,
                ],
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return Proc(name, popen, log, time.monotonic())

    def start_worker(self, slot: int) -> None:
        self.workers[slot] = self._spawn(f"worker{slot}", ["serve"])
        self._sizes[slot] = 0

    def active_workers(self) -> list[int]:
        """Workers whose log grew since the last call (they are processing something)."""
        active = []
        for slot, proc in self.workers.items():
            with contextlib.suppress(OSError):
                size = proc.log.stat().st_size
                if size > self._sizes.get(slot, 0) and proc.popen.poll() is None:
                    active.append(slot)
                self._sizes[slot] = size
        return active

    def kill_worker(self, slot: int) -> None:
        proc = self.workers[slot]
        if proc.popen.poll() is None:
            proc.popen.send_signal(signal.SIGKILL)
            proc.popen.wait()
            self.kills += 1

    def start_sweep(self) -> Proc:
        proc = self._spawn("sweep", ["run-timer", "sweep_timer"])
        self.sweeps.append(proc)
        return proc

    def kill(self, proc: Proc) -> bool:
        if proc.popen.poll() is None:
            proc.popen.send_signal(signal.SIGKILL)
            proc.popen.wait()
            return True
        return False

    def sweeps_running(self) -> bool:
        return any(p.popen.poll() is None for p in self.sweeps)

    def stop_all(self, timeout: float = 30.0) -> None:
        procs = [*self.workers.values(), *self.sweeps]
        for proc in procs:
            if proc.popen.poll() is None:
                proc.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(max(0.1, deadline - time.monotonic()))
            if proc.popen.poll() is None:
                proc.popen.send_signal(signal.SIGKILL)
                proc.popen.wait()

    def all_logs(self) -> Iterator[Path]:
        yield from sorted(self.logs.glob("*.log"))


def _last_line(path: Path) -> str:
    with contextlib.suppress(OSError):
        lines = path.read_text(errors="replace").strip().splitlines()
        return lines[-1][:200] if lines else ""
    return ""


def _log_contains(path: Path, needle: str) -> bool:
    with contextlib.suppress(OSError):
        return needle in path.read_text(errors="replace")
    return False


# -- the run -----------------------------------------------------------------------------------


class Timeline:
    def __init__(self) -> None:
        self.start = time.monotonic()
        self.events: list[dict[str, Any]] = []

    def now(self) -> float:
        return time.monotonic() - self.start

    def note(self, event: str, **details: Any) -> None:
        entry = {"t": round(self.now(), 2), "event": event, **details}
        self.events.append(entry)
        logger.info("chaos %6.1fs %s %s", entry["t"], event, details or "")


def _wave_times(cfg: ChaosConfig) -> list[float]:
    """When to send each wave: one at the start and one just before each fault window opens
    (so work is in flight when it hits), the rest spread over the first 60 % of the run."""
    D = cfg.chaos_seconds
    lead = 0.5  # the workers poll at most every second: the wave is being worked on
    anchors = [0.0]
    for share, seconds in (
        (cfg.graph_outage_at, cfg.graph_outage_seconds),
        (cfg.storm_at, cfg.storm_seconds),
        (cfg.keyvault_outage_at, cfg.keyvault_outage_seconds),
    ):
        if seconds > 0:
            anchors.append(max(0.0, share * D - lead))
    spread = [D * 0.6 * w / cfg.waves for w in range(cfg.waves)]
    times = sorted(set(anchors[: cfg.waves]))
    for t in spread:
        if len(times) >= cfg.waves:
            break
        if all(abs(t - other) > 1.0 for other in times):
            times.append(t)
    return sorted(times)


def _host_json(path: Path, cfg: ChaosConfig) -> None:
    def span(seconds: float) -> str:
        whole = int(seconds)
        frac = seconds - whole
        text = f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"
        return text + (f".{round(frac * 1000):03d}" if frac else "")

    document = {
        "version": "2.0",
        "functionTimeout": span(cfg.function_timeout),
        "extensions": {
            "queues": {
                "batchSize": 8,
                "newBatchThreshold": 4,
                "maxDequeueCount": cfg.max_dequeue_count,
                "visibilityTimeout": span(cfg.visibility_timeout),
                "maxPollingInterval": "00:00:01",
                "messageEncoding": "base64",
            }
        },
    }
    path.write_text(json.dumps(document, indent=2))


def _queue_clients(settings: Mapping[str, str], queue: str) -> tuple[Any, Any, Any]:
    connection = storage_connection(settings, "AzureWebJobsStorage")
    encoded = connection.queue_client(queue, base64=True)
    plain = connection.queue_client(queue, base64=False)
    poison = connection.queue_client(f"{queue}-poison", base64=False)
    with contextlib.suppress(Exception):
        plain.create_queue()
    return encoded, plain, poison


def _message_count(client: Any) -> int:
    try:
        return int(client.get_queue_properties().approximate_message_count or 0)
    except Exception:  # a missing queue is empty
        return 0


def _drain_queue(client: Any) -> list[tuple[str, str]]:
    """(message id, decoded text) of every message left in a queue (received, not deleted)."""
    out = []
    with contextlib.suppress(Exception):
        while True:
            batch = list(client.receive_messages(messages_per_page=32, visibility_timeout=600))
            if not batch:
                break
            for message in batch:
                raw = str(message.content or "")
                try:
                    text = base64.b64decode(raw.encode("ascii"), validate=True).decode("utf-8")
                except (ValueError, UnicodeError):
                    text = raw
                out.append((str(message.id), text))
    return out


def run_chaos(
    cfg: ChaosConfig,
    *,
    workdir: Path | None = None,
    progress: Callable[[str], None] | None = None,
    on_start: Callable[[Sandbox, Azurite], None] | None = None,
) -> ChaosResult:
    """Run the scenario; return the counts. ``workdir`` keeps host.json and the process logs
    (without it they go to a temporary directory, removed after a clean run);
    ``on_start`` sees the sandbox and Azurite once they run (tests register their secrets)."""
    rng = random.Random(cfg.seed)
    own_dir = workdir is None
    work = Path(tempfile.mkdtemp(prefix="chaos-")) if workdir is None else workdir
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    host_json = work / "host.json"
    _host_json(host_json, cfg)
    graph_config = GraphConfig().scaled(budget=1.0, time=1.0 / cfg.time_factor)
    graph_config.fractional_retry_after = True
    graph_config.replication_delay = cfg.replication_delay
    say = progress or (lambda text: None)
    with ChaosSandbox(graph_config=graph_config) as sandbox, Azurite() as azurite:
        if on_start is not None:
            on_start(sandbox, azurite)
        seed = seed_default(sandbox)
        scenario = build_scenario(sandbox, seed, cfg)
        queue = f"chaos-{uuid.uuid4().hex[:10]}"
        settings = {
            **os.environ,
            **settings_for(seed, sandbox, "keyvault-certificate"),
            "AzureWebJobsStorage": azurite.connection_string,
            "DAEMON_JOBS_QUEUE": queue,
            "DAEMON_SWEEP_SCHEDULE": NEVER,
            "DAEMON_USER_DOMAIN": DOMAIN,
            "DAEMON_ALLOWED_TENANTS": scenario.tenant,
            "DAEMON_SWEEP_CHUNK_SIZE": str(cfg.sweep_chunk_size),
            "DAEMON_CERTIFICATE_CHECK_SECONDS": "5",
            "DAEMON_MAX_CHANGES_PER_RUN": "100000",
            "DAEMON_API_WRITES_PER_SECOND": str(
                graph_config.app_tenant_write_limit / graph_config.app_tenant_write_window
            ),
            "DAEMON_API_RESOURCE_UNITS_PER_SECOND": str(
                graph_config.ru_limits[2] / graph_config.ru_window
            ),
            "PYTHONUNBUFFERED": "1",
        }
        encoded, plain, poison_client = _queue_clients(settings, queue)
        procs = Processes(settings, host_json, logs, cfg.lease_margin)
        timeline = Timeline()
        try:
            result = _drive(
                cfg, rng, sandbox, seed, scenario, settings, encoded, plain, procs, timeline, say
            )
            leftover = _drain_queue(poison_client)
        finally:
            procs.stop_all()
            for client in (encoded, plain, poison_client):
                client.close()
        data = _evaluate(cfg, sandbox, scenario, settings, procs, timeline, result, leftover)
    outcome = ChaosResult(data)
    if own_dir and outcome.ok:
        shutil.rmtree(work, ignore_errors=True)
        data["logs"] = None
    else:  # kept: the worker and sweep logs say why something was lost or poisoned
        data["logs"] = str(logs)
    return outcome


@dataclasses.dataclass
class DriveResult:
    sent: dict[str, str]  # queue message id -> label (correlation id or invalid label)
    invalid_texts: dict[str, str]  # text -> label
    bad_person_neighbours: list[str]
    settled: bool
    seconds: float
    faults: Counter[str]


class _Drive:
    """The chaos phase, step by step: faults on, workers up, the timed events (waves of
    messages, the Graph outage, the throttling storm, the rotation with Key Vault out, the
    sweeps), workers and a sweep killed on the way; then everything settles."""

    def __init__(
        self,
        cfg: ChaosConfig,
        rng: random.Random,
        sandbox: ChaosSandbox,
        seed: Seed,
        scenario: Scenario,
        encoded: Any,
        plain: Any,
        procs: Processes,
        timeline: Timeline,
        say: Callable[[str], None],
    ) -> None:
        self.cfg = cfg
        self.rng = rng
        self.sandbox = sandbox
        self.graph = sandbox.graph
        self.seed = seed
        self.scenario = scenario
        self.encoded = encoded
        self.plain = plain
        self.procs = procs
        self.timeline = timeline
        self.say = say
        self.faults: Counter[str] = Counter()
        self.sent: dict[str, str] = {}
        self.pending: list[tuple[float, str, Callable[[], None]]] = []
        self.sweep_to_kill: list[Proc] = []
        self.kill_sweep_at: float | None = None
        self.next_kill = 0.0
        self.kills = 0

    def at(self, share_or_seconds: float, name: str, action: Callable[[], None]) -> None:
        self.pending.append((share_or_seconds, name, action))

    # -- set-up and the timed events

    def set_faults(self) -> None:
        cfg = self.cfg
        self.graph.faults.set(
            seed=cfg.seed,
            latency_base=cfg.latency_base,
            latency_jitter=cfg.latency_jitter,
            error_rate=cfg.error_rate,
            reset_rate=cfg.reset_rate,
            reset_after_apply_rate=cfg.reset_after_apply_rate,
            slow_rate=cfg.slow_rate,
            slow_seconds=cfg.slow_seconds,
        )

    def schedule_waves(self) -> tuple[dict[str, str], list[str]]:
        """The messages in waves (the bad person in the middle, the invalid ones with the
        first wave); returns (invalid text -> label, the bad person's neighbours)."""
        messages = valid_messages(self.scenario, self.cfg)
        bad_label, bad_text, neighbours = bad_person_message(self.scenario)
        messages.insert(len(messages) // 2, (bad_label, bad_text))
        invalid = invalid_messages(self.scenario, self.seed) if self.cfg.invalid_messages else []
        wave_times = _wave_times(self.cfg)
        per_wave = -(-len(messages) // len(wave_times))
        self.timeline.start = time.monotonic()
        self.timeline.note(
            "start", messages=len(messages), invalid=len(invalid), workers=self.cfg.workers
        )

        def send_wave(w: int) -> Callable[[], None]:
            def go() -> None:
                chunk = messages[w * per_wave : (w + 1) * per_wave]
                for label, text in chunk:
                    self.sent[str(self.encoded.send_message(text).id)] = label
                if w == 0:
                    for label, text, encode in invalid:
                        client = self.encoded if encode else self.plain
                        self.sent[str(client.send_message(text).id)] = label
                self.timeline.note("wave", n=w, messages=len(chunk))

            return go

        for w, t in enumerate(wave_times):
            self.at(t, f"wave {w}", send_wave(w))
        return {text: label for label, text, _ in invalid}, neighbours

    def schedule_outage(self) -> None:
        cfg, graph = self.cfg, self.graph
        if cfg.graph_outage_seconds <= 0:
            return

        def outage() -> None:
            graph.faults.outage_for(graph.clock(), cfg.graph_outage_seconds)
            self.faults["graph_outage_seconds"] += int(cfg.graph_outage_seconds)
            self.timeline.note("graph outage", seconds=cfg.graph_outage_seconds)

        self.at(cfg.graph_outage_at * cfg.chaos_seconds, "graph outage", outage)

    def schedule_storm(self) -> None:
        cfg, graph = self.cfg, self.graph
        if cfg.storm_seconds <= 0:
            return
        normal = (graph.config.app_tenant_write_limit, graph.config.tenant_write_limit)

        def storm_on() -> None:
            limit = max(1, int(normal[0] * cfg.storm_budget_share))
            graph.config.update({"app_tenant_write_limit": limit})
            self.faults["throttling_storms"] += 1
            self.timeline.note("throttling storm", write_limit=limit)

        def storm_off() -> None:
            graph.config.update({"app_tenant_write_limit": normal[0]})
            self.timeline.note("throttling storm over")

        start = cfg.storm_at * cfg.chaos_seconds
        self.at(start, "storm on", storm_on)
        self.at(start + cfg.storm_seconds, "storm off", storm_off)

    def schedule_rotation(self) -> None:
        """Certificate rotation + Key Vault outage + every token revoked once."""
        cfg, sandbox = self.cfg, self.sandbox

        def rotate_and_revoke() -> None:
            state = sandbox.state
            old = state.certificate_versions(CERTIFICATE_NAME)[-1]
            state.rotate_certificate(CERTIFICATE_NAME, register=True)
            with contextlib.suppress(KeyError):
                state.unregister_app_certificate(self.seed.client_id, old.x5t)
            if cfg.keyvault_outage_seconds > 0:
                sandbox.keyvault_outage.active = True
                self.faults["keyvault_outages"] += 1
            self.graph.revoke_all_tokens()
            self.faults["certificate_rotations"] += 1
            self.timeline.note(
                "certificate rotated (old one unregistered), Key Vault out, tokens revoked",
                keyvault_outage_seconds=cfg.keyvault_outage_seconds,
            )

        def keyvault_back() -> None:
            sandbox.keyvault_outage.active = False
            self.timeline.note("Key Vault back")

        start = cfg.keyvault_outage_at * cfg.chaos_seconds
        self.at(start, "rotate", rotate_and_revoke)
        self.at(start + cfg.keyvault_outage_seconds, "kv back", keyvault_back)

    def schedule_sweeps(self) -> None:
        """Overlapping sweeps, the first one to be killed mid-run."""
        for n, share in enumerate(self.cfg.sweeps_at):

            def sweep(n: int = n) -> None:
                proc = self.procs.start_sweep()
                running = sum(1 for p in self.procs.sweeps if p.popen.poll() is None)
                self.timeline.note("sweep started", n=n, running=running)
                if self.cfg.kill_sweep and n == 0:
                    self.sweep_to_kill.append(proc)

            self.at(share * self.cfg.chaos_seconds, f"sweep {n}", sweep)

    # -- the chaos loop

    def run_events(self) -> None:
        """Run the timed events, killing workers (and the sweep) on the way, until the
        chaos phase is over and every event has run."""
        self.pending.sort(key=lambda p: p[0])
        self.next_kill = self.rng.uniform(*self.cfg.kill_every)
        while True:
            now = self.timeline.now()
            while self.pending and self.pending[0][0] <= now:
                _, _, action = self.pending.pop(0)
                action()
            if now >= self.cfg.chaos_seconds and not self.pending:
                break
            self.maybe_kill_worker(now)
            if self.sweep_to_kill:
                self.maybe_kill_sweep(now, self.sweep_to_kill[0])
            time.sleep(0.005 if self.sweep_to_kill else 0.1)

    def maybe_kill_worker(self, now: float) -> None:
        cfg = self.cfg
        active = self.procs.active_workers()
        due = now >= self.next_kill and now < cfg.chaos_seconds
        allowed = cfg.max_kills is None or self.kills < cfg.max_kills
        if not (due and allowed and (active or now >= self.next_kill + 2.0)):
            return
        # a worker that is busy (its log grew since the last look), so that messages are in
        # flight when it dies; an idle one if none was busy for 2 s
        slot = self.rng.choice(active) if active else self.rng.randrange(cfg.workers)
        self.procs.kill_worker(slot)
        self.kills += 1
        self.timeline.note("worker SIGKILL", slot=slot, busy=bool(active))
        self.procs.start_worker(slot)
        self.next_kill = now + self.rng.uniform(*cfg.kill_every)

    def maybe_kill_sweep(self, now: float, proc: Proc) -> None:
        if self.kill_sweep_at is None and _log_contains(
            proc.log, "Executing timer function sweep_timer"
        ):
            self.kill_sweep_at = now + self.rng.uniform(*self.cfg.sweep_kill_after)
        if self.kill_sweep_at is not None and now >= self.kill_sweep_at:
            finished = _log_contains(proc.log, "Executed timer function")
            killed = self.procs.kill(proc)
            if killed:
                self.procs.sweep_kills += 1
            last = _last_line(proc.log)
            self.timeline.note("sweep SIGKILL", mid_run=killed and not finished, last_log_line=last)
            self.sweep_to_kill.clear()
        elif proc.popen.poll() is not None:
            self.timeline.note("sweep to kill finished before the kill")
            self.sweep_to_kill.clear()

    # -- settling

    def settle(self) -> bool:
        """Faults off, the next timer tick, then wait for the queue to empty."""
        self.graph.faults.reset()
        self.sandbox.keyvault_outage.active = False
        self.timeline.note("chaos over: faults cleared")
        while self.procs.sweeps_running():
            time.sleep(0.2)
        final = self.procs.start_sweep()
        final.popen.wait()
        self.timeline.note("final sweep", status=final.popen.returncode)
        settled = self.wait_for_empty_queue()
        self.timeline.note("settled" if settled else "settle timeout")
        return settled

    def wait_for_empty_queue(self) -> bool:
        """True once the queue stayed empty for 2 s (dead workers restarted meanwhile)."""
        deadline = time.monotonic() + self.cfg.settle_timeout
        quiet_since: float | None = None
        last_report = 0.0
        while time.monotonic() < deadline:
            waiting = _message_count(self.encoded)
            for slot, proc in list(self.procs.workers.items()):
                if proc.popen.poll() is not None:  # a worker that died on its own: restart
                    self.timeline.note("worker exited", slot=slot, status=proc.popen.returncode)
                    self.procs.start_worker(slot)
            if waiting == 0:
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since >= 2.0:
                    return True
            else:
                quiet_since = None
            if time.monotonic() - last_report > 10:
                self.say(f"settling: {waiting} message(s) in the queue")
                last_report = time.monotonic()
            time.sleep(0.5)
        return False


def _drive(
    cfg: ChaosConfig,
    rng: random.Random,
    sandbox: ChaosSandbox,
    seed: Seed,
    scenario: Scenario,
    settings: Mapping[str, str],
    encoded: Any,
    plain: Any,
    procs: Processes,
    timeline: Timeline,
    say: Callable[[str], None],
) -> DriveResult:
    drive = _Drive(cfg, rng, sandbox, seed, scenario, encoded, plain, procs, timeline, say)
    drive.set_faults()
    for slot in range(cfg.workers):
        procs.start_worker(slot)
    invalid_texts, neighbours = drive.schedule_waves()
    drive.schedule_outage()
    drive.schedule_storm()
    drive.schedule_rotation()
    drive.schedule_sweeps()
    drive.run_events()
    settled = drive.settle()
    return DriveResult(
        sent=drive.sent,
        invalid_texts=invalid_texts,
        bad_person_neighbours=neighbours,
        settled=settled,
        seconds=timeline.now(),
        faults=drive.faults,
    )


# -- the verdict -------------------------------------------------------------------------------


class _Ledger:
    """What the directory shows against what the work should have produced: the expected
    changes missing (lost), the objects or memberships written twice (duplicated), and the
    idempotent writes applied again (reapplied)."""

    def __init__(self, sandbox: ChaosSandbox, scenario: Scenario) -> None:
        self.scenario = scenario
        self.tenant = scenario.tenant
        self.directory = sandbox.graph.directory.tenant(self.tenant)
        self.stats = sandbox.graph.stats
        self.users_by_eid: dict[str, list[dict[str, Any]]] = {}
        for user in self.directory.users.values():
            eid = user.get("employeeId")
            if isinstance(eid, str):
                self.users_by_eid.setdefault(eid, []).append(user)
        self.lost: list[str] = []
        self.duplicated: list[str] = []
        self.lost_by_kind: Counter[str] = Counter()
        self.reapplied: Counter[str] = Counter()

    def member(self, group: str, uid: str) -> bool:
        return uid in self.directory.members.get(group, {})

    def miss(self, who: str, what: str) -> None:
        """One expected change not found: ``who`` is "<kind> <employeeId>"."""
        kind, eid = who.rsplit(" ", 1)
        self.lost_by_kind[f"{kind}: {_GUID.sub('<group>', what)}"] += 1
        where = self.scenario.carriers.get(eid, "sweep" if kind == "sweep leaver" else "?")
        self.lost.append(f"{who}: {what} [message {where}]")

    def key(self, *parts: str) -> str:
        return "/".join([self.tenant, *parts])

    def check_joiners(self, bad_person_neighbours: list[str]) -> None:
        """Joiners (and the bad-person message's good neighbours): created once, in their
        groups once."""
        scenario, stats, key = self.scenario, self.stats, self.key
        joiner_groups = {j["employeeId"]: list(j["groups"]) for j in scenario.joiners}
        for eid in bad_person_neighbours:
            joiner_groups[eid] = [scenario.groups[1]]
        for eid, groups in joiner_groups.items():
            found = self.users_by_eid.get(eid, [])
            if not found:
                self.miss(f"joiner {eid}", "not created")
                continue
            if len(found) > 1:
                self.duplicated.append(f"joiner {eid}: {len(found)} users with this employeeId")
            user = found[0]
            upn = str(user["userPrincipalName"])
            if stats.user_creates.get(key(upn), 0) > 1:
                self.duplicated.append(
                    f"joiner {eid}: created {stats.user_creates[key(upn)]} times"
                )
            for group in groups:
                if not self.member(group, user["id"]):
                    self.miss(f"joiner {eid}", f"not in group {group}")
                adds = stats.member_adds.get(key(group, user["id"]), 0)
                if adds > 1:
                    self.duplicated.append(f"joiner {eid}: added to group {group} {adds} times")

    def check_movers(self) -> None:
        for mover in self.scenario.movers:
            eid = mover["employeeId"]
            uid = self.scenario.mover_ids[eid]
            moved = self.directory.users.get(uid)
            if moved is None:
                self.miss(f"mover {eid}", "user gone")
                continue
            if moved.get("department") != mover["department"]:
                self.miss(f"mover {eid}", f"department {moved.get('department')!r}")
            self.check_mover_groups(eid, uid, mover)
            updates = self.stats.user_updates.get(self.key(uid), 0)
            if updates > 1:
                self.reapplied["mover PATCH"] += updates - 1

    def check_mover_groups(self, eid: str, uid: str, mover: Mapping[str, Any]) -> None:
        stats, key = self.stats, self.key
        for group in mover["groups"]:
            if not self.member(group, uid):
                self.miss(f"mover {eid}", f"not in group {group}")
            if stats.member_adds.get(key(group, uid), 0) > 1:
                self.duplicated.append(f"mover {eid}: added to {group} more than once")
        for group in mover["removeGroups"]:
            if self.member(group, uid):
                self.miss(f"mover {eid}", f"still in group {group}")
            if stats.member_removes.get(key(group, uid), 0) > 1:
                self.duplicated.append(f"mover {eid}: removed from {group} more than once")

    def check_leavers(self) -> None:
        """Leavers named in messages and leavers found by the sweep: disabled, sessions
        revoked."""
        scenario, stats, key = self.scenario, self.stats, self.key
        for kind, people in (
            ("leaver", scenario.leavers),
            ("sweep leaver", scenario.sweep_leavers),
        ):
            for eid, uid in people.items():
                left = self.directory.users.get(uid)
                if left is None:
                    self.miss(f"{kind} {eid}", "user gone")
                    continue
                if left.get("accountEnabled") is not False:
                    self.miss(f"{kind} {eid}", "still enabled")
                revocations = stats.revocations.get(key(uid), 0)
                if revocations == 0:
                    self.miss(f"{kind} {eid}", "sessions not revoked")
                elif revocations > 1:
                    self.reapplied["revokeSignInSessions"] += revocations - 1
                updates = stats.user_updates.get(key(uid), 0)
                if updates > 1:
                    self.reapplied["leaver PATCH"] += updates - 1

    def unexpected(self) -> list[str]:
        """Bystanders changed, and the joiner that can never be valid created."""
        scenario, stats = self.scenario, self.stats
        out = [
            f"bystander {eid}: changed"
            for eid, uid in scenario.bystanders.items()
            if stats.user_updates.get(self.key(uid), 0)
            or (self.directory.users.get(uid) or {}).get("accountEnabled") is False
        ]
        if self.users_by_eid.get(scenario.poisoned_person):
            out.append(
                f"joiner {scenario.poisoned_person} (a lone surrogate in jobTitle) was created"
            )
        return out


def _poisoned(
    procs: Processes, drive: DriveResult, poisoned: list[tuple[str, str]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(valid messages poisoned, invalid messages poisoned), each with the host's reason."""
    host_reasons: dict[str, str] = {}
    for path in procs.all_logs():
        with contextlib.suppress(OSError):
            for line in path.read_text(errors="replace").splitlines():
                match = _MOVED_LINE.search(line)
                if match:
                    host_reasons[match.group(1)] = match.group(4)[:300]
    label_reasons = {drive.sent.get(mid, mid): reason for mid, reason in host_reasons.items()}
    valid_poisoned: list[dict[str, Any]] = []
    invalid_poisoned: list[dict[str, Any]] = []
    for _, text in poisoned:
        label = drive.invalid_texts.get(text)
        if label is not None:
            invalid_poisoned.append({"message": label, "reason": label_reasons.get(label)})
            continue
        try:
            correlation = str(json.loads(text).get("correlationId"))
        except (ValueError, AttributeError, RecursionError):
            correlation = text[:60]
        valid_poisoned.append({"message": correlation, "reason": label_reasons.get(correlation)})
    return valid_poisoned, invalid_poisoned


def _fault_counts(sandbox: ChaosSandbox, procs: Processes, drive: DriveResult) -> Counter[str]:
    stats = sandbox.graph.stats
    faults = Counter({f"graph_{k}": v for k, v in stats.faults.items()})
    faults.update(drive.faults)
    faults["graph_429"] = stats.throttled
    faults["keyvault_503"] = sandbox.keyvault_outage.rejected
    faults["worker_sigkill"] = procs.kills
    faults["sweep_sigkill"] = procs.sweep_kills
    return faults


def _evaluate(
    cfg: ChaosConfig,
    sandbox: ChaosSandbox,
    scenario: Scenario,
    settings: Mapping[str, str],
    procs: Processes,
    timeline: Timeline,
    drive: DriveResult,
    poisoned: list[tuple[str, str]],
) -> dict[str, Any]:
    stats = sandbox.graph.stats
    ledger = _Ledger(sandbox, scenario)
    ledger.check_joiners(drive.bad_person_neighbours)
    ledger.check_movers()
    ledger.check_leavers()
    unexpected = ledger.unexpected()
    valid_poisoned, invalid_poisoned = _poisoned(procs, drive, poisoned)
    runs = asyncio.run(_run_records(settings, scenario.tenant))
    faults = _fault_counts(sandbox, procs, drive)
    # every injected event: each 5xx, reset, slow answer, outage 503, 429, Key Vault 503,
    # revocation, rotation, storm and kill (the outage's length in seconds is not a count)
    faults_total = sum(v for k, v in faults.items() if not k.endswith("_seconds"))
    return {
        "operations": cfg.expected_operations + 2 * len(drive.bad_person_neighbours),
        "lost": len(ledger.lost),
        "duplicated": len(ledger.duplicated),
        "valid_messages_poisoned": len(valid_poisoned),
        "invalid_messages_poisoned": len(invalid_poisoned),
        "worker_kills": procs.kills,
        "sweep_kills": procs.sweep_kills,
        "faults_injected": faults_total,
        "faults": dict(sorted(faults.items())),
        "writes_reapplied": dict(ledger.reapplied),
        "unexpected_changes": len(unexpected),
        "settled": drive.settled,
        "seconds": round(drive.seconds, 1),
        "writes_applied": stats.writes_applied,
        "graph_operations": stats.operations,
        "token_requests": sandbox.state.counter("token_requests"),
        "run_records": runs,
        "details": {
            "lost_by_kind": dict(sorted(ledger.lost_by_kind.items())),
            "lost": ledger.lost[:2000],
            "duplicated": ledger.duplicated[:200],
            "valid_poisoned": valid_poisoned,
            "invalid_poisoned": invalid_poisoned,
            "unexpected": unexpected[:50],
        },
        "parameters": {
            **{
                k: (list(v) if isinstance(v, tuple) else v)
                for k, v in dataclasses.asdict(cfg).items()
            },
            "expected_operations": cfg.expected_operations,
        },
        "timeline": timeline.events,
    }


async def _run_records(settings: Mapping[str, str], tenant: str) -> dict[str, Any]:
    store = StateStore.from_env(settings)
    try:
        statuses: Counter[str] = Counter()
        for job in ("provision", "sweep"):
            for record in await store.list_runs(job, tenant=tenant, limit=5000):
                statuses[f"{job}:{record.status}"] += 1
        return dict(sorted(statuses.items()))
    except Exception as exc:  # the verdict is about the directory; records are extra
        return {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        store.close()


# -- command line ------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.chaos",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="≥ 1,000 operations, a few minutes")
    parser.add_argument("--json", type=Path, default=None, help="where to write the JSON")
    parser.add_argument("--workdir", type=Path, default=None, help="keep host.json and logs here")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logger.setLevel(logging.INFO)
    logging.getLogger("azure").setLevel(logging.WARNING)
    cfg = ChaosConfig.quick() if args.quick else ChaosConfig.full()
    if args.seed is not None:
        cfg = dataclasses.replace(cfg, seed=args.seed)
    out = args.json or RESULTS / ("chaos_quick.json" if args.quick else "chaos.json")

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    result = run_chaos(cfg, workdir=args.workdir, progress=say)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result.data, indent=2) + "\n")
    d = result.data
    print(
        f"chaos{' --quick' if args.quick else ''}: {d['operations']} operations, lost "
        f"{d['lost']}, duplicated {d['duplicated']}, valid messages poisoned "
        f"{d['valid_messages_poisoned']}, invalid messages poisoned "
        f"{d['invalid_messages_poisoned']}, worker kills {d['worker_kills']}, faults injected "
        f"{d['faults_injected']}, {d['seconds']} s -> {out}"
    )
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
