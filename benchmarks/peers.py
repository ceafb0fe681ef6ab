"""Ours against the real peers, side by side in one run, on the strict sandbox.

Contenders (each on a fresh budget: ``GraphService.reset()`` then the latency faults again,
and a fresh client with a cold token cache):

- ``ours``: :class:`BatchEngine` through ``Instance(...).api_client(tenant)``, paced at the
  budget, product defaults otherwise; the tenants of a multi-tenant run side by side.
- ``msgraph_sdk``: the real msgraph-sdk-python used as its documentation shows —
  ``GraphServiceClient`` on a ``GraphRequestAdapter`` (``base_url`` set to the sandbox), an
  azure-identity ``ClientSecretCredential`` (authority = the sandbox) through
  ``AzureIdentityAuthenticationProvider(allowed_hosts=...)``, its default middleware
  (``GraphClientFactory.create_with_default_middleware`` around an ``httpx.AsyncClient`` that
  trusts the sandbox CA), requests built with its request builders and sent with
  ``BatchRequestContentCollection`` / ``client.batch.post``; the 429 items are resent after
  the largest Retry-After of the round (at most 6 rounds), the way a user would; tenants one
  after another (one client per tenant, as a loop over customers would).
- ``naive``: a loop over ``httpx.AsyncClient``: one request at a time, a token from the same
  azure-identity credential before each request (its own cache), honours Retry-After.

Scenarios: ``single_tenant`` (PATCH ``department``), ``joiners`` (a create and two group
adds each, replication delay on) and ``multi_tenant`` (PATCH in several tenants). Where a
peer cannot do a scenario correctly on the strict sandbox the figures say what it achieved
and what it lost (memberships missing, operations not applied) — nothing is hidden.

The budget is Graph's per app and tenant (3,000 writes per 150 s) compressed in time by F
(windows ÷ F, latencies ÷ F). ``single_tenant`` starts with Graph's full bucket; the other
scenarios (and every scenario of ``--quick``) start with a small bucket (1.5 s of the rate)
so the run is spent in the sustained regime. The figure the targets read:
``budget_fraction`` = (writes admitted − starting buckets) ÷ (sustained rate × tenants ×
wall). Budgets: learn.microsoft.com/graph/throttling-limits (identity and access service
limits); batching rules: learn.microsoft.com/graph/json-batching.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks.batch_throughput import REAL_RU_RATE, REAL_WRITE_RATE
from benchmarks.joiners import joiner_operations
from benchmarks.output import default_path
from benchmarks.results_math import budget_fraction, ratio, series, targets_verdict
from sandbox.graph import GraphConfig
from sandbox.seed import API_SCOPE, PLATFORM_SETTING_NAMES, Seed, seed_default, settings_for
from sandbox.server import Sandbox
from sandbox.state import GRAPH_RESOURCE
from shared.instance import Instance
from shared.settings import Settings, load_settings
from shared.webapi import (
    DEFAULT_REPLICATION_SECONDS,
    BatchEngine,
    Operation,
    Outcome,
    PacingConfig,
    RetryPolicy,
    directory_object_url,
    parse_retry_after,
)

__all__ = ["CONTENDERS", "FULL", "QUICK", "SCENARIOS", "PeersParams", "main", "run"]

logger = logging.getLogger(__name__)

AUTH_MODE = "client-secret"  # the same credential type for every contender
DOMAIN = "contoso.example"
SCENARIOS = ("single_tenant", "joiners", "multi_tenant")
CONTENDERS = ("ours", "msgraph_sdk", "naive")
MAX_ROUNDS = 6  # sends of one throttled item before a contender gives up on it
SAMPLE_SECONDS = 0.25


@dataclass(frozen=True)
class PeersParams:
    """What one run measures. Latencies are Graph's real ones; the sandbox gets them ÷ F."""

    factor: float = 10.0
    single_operations: int = 10_000
    joiners: int = 1_000
    tenants: int = 5
    tenant_operations: int = 2_000
    naive_operations: int = 1_000  # the naive loop's share (one request at a time)
    naive_joiners: int = 200
    single_bucket_seconds: float | None = None  # None: Graph's starting bucket (150 s ÷ F)
    bucket_seconds: float = 1.5  # joiners and multi_tenant: a small starting bucket
    real_replication_delay: float = 2.0
    real_latency_base: float = 0.1
    real_latency_jitter: float = 0.2
    real_latency_per_item: float = 0.04
    concurrency: int = 4
    max_seconds: float = 240.0  # hard cap per contender
    scenarios: tuple[str, ...] = SCENARIOS
    contenders: tuple[str, ...] = CONTENDERS
    label: str = "full"

    def __post_init__(self) -> None:
        if self.factor <= 0:
            raise ValueError(f"factor must be positive, got {self.factor}")
        if self.tenants < 1 or self.tenants > 20:
            raise ValueError(f"tenants must be 1–20, got {self.tenants}")
        for name in ("single_operations", "joiners", "tenant_operations", "naive_operations"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        unknown = set(self.scenarios) - set(SCENARIOS)
        if unknown:
            raise ValueError(f"unknown scenario(s): {', '.join(sorted(unknown))}")
        unknown = set(self.contenders) - set(CONTENDERS)
        if unknown:
            raise ValueError(f"unknown contender(s): {', '.join(sorted(unknown))}")

    @property
    def write_rate(self) -> float:
        """The sustained write rate per app and tenant in the compressed sandbox."""
        return REAL_WRITE_RATE * self.factor

    def graph_config(self, bucket_seconds: float | None, replication: bool) -> GraphConfig:
        compressed = GraphConfig(fractional_retry_after=True).scaled(
            budget=1.0, time=1.0 / self.factor
        )
        if bucket_seconds is not None:
            shrink = bucket_seconds / compressed.app_tenant_write_window
            compressed = compressed.scaled(budget=shrink, time=shrink)
        delay = self.real_replication_delay / self.factor if replication else 0.0
        return dataclasses.replace(compressed, replication_delay=delay)

    def faults(self) -> dict[str, float | int]:
        return {
            "seed": 1,
            "latency_base": self.real_latency_base / self.factor,
            "latency_jitter": self.real_latency_jitter / self.factor,
            "latency_per_item": self.real_latency_per_item / self.factor,
        }


FULL = PeersParams()
# Quick runs are long enough for a sustained figure: with 600 operations per tenant the
# whole run lasted about 2 s, so the start (validating, the first round trip) was 10-20 %
# of the wall and the budget fraction measured the start, not the pacing.
QUICK = PeersParams(
    single_operations=2_000,
    joiners=1_000,
    tenant_operations=1_500,
    naive_operations=200,
    naive_joiners=60,
    single_bucket_seconds=1.5,
    max_seconds=40.0,
    label="quick",
)


# -- the world ---------------------------------------------------------------------------


class World:
    """A started sandbox for one scenario: seeded, ``tenants`` consented tenants with users."""

    def __init__(
        self, params: PeersParams, *, tenants: int, users: int, bucket: float | None, repl: bool
    ) -> None:
        self.params = params
        self.sandbox = Sandbox(graph_config=params.graph_config(bucket, repl)).start()
        try:
            self.seed: Seed = seed_default(self.sandbox)
            state = self.sandbox.state
            directory = self.sandbox.graph.directory
            self.tenants = [self.seed.home_tenant_id, self.seed.second_tenant_id][:tenants]
            for i in range(len(self.tenants), tenants):
                extra = state.add_tenant(f"Customer {i}")
                directory.add_verified_domains(extra.tenant_id, extra.domain)
                state.consent(
                    extra.tenant_id,
                    self.seed.client_id,
                    self.seed.graph_roles,
                    resource=GRAPH_RESOURCE,
                )
                self.tenants.append(extra.tenant_id)
            self.users = {
                t: [str(u["id"]) for u in directory.seed_users(t, users)] if users else []
                for t in self.tenants
            }
            values = settings_for(self.seed, self.sandbox, AUTH_MODE)
            values["DAEMON_ALLOWED_TENANTS"] = ",".join(self.tenants)
            # The SDKs read the platform variables (CA bundle) from os.environ.
            for name in PLATFORM_SETTING_NAMES:
                if name in values:
                    os.environ[name] = values[name]
            self.settings: Settings = load_settings(values)
        except BaseException:
            self.sandbox.stop()
            raise

    @property
    def base_url(self) -> str:
        return f"{self.sandbox.url}/v1.0"

    def close(self) -> None:
        self.sandbox.stop()

    def fresh_budget(self) -> None:
        graph = self.sandbox.graph
        graph.reset()
        graph.faults.set(**self.params.faults())

    def patches(self, tenant: str, n: int, label: str) -> list[Operation]:
        return [
            Operation(
                f"{label}-{tenant[:8]}-{i:05d}", "PATCH", f"/users/{uid}", {"department": label}
            )
            for i, uid in enumerate(self.users[tenant][:n])
        ]


@dataclass
class Work:
    """What a contender is given: operations per tenant (joiners: create + adds)."""

    by_tenant: dict[str, list[Operation]]
    joiners: bool = False


@dataclass
class Reported:
    """What a contender reported: a final outcome per operation id it settled."""

    results: dict[str, Outcome] = field(default_factory=dict)
    time_capped: bool = False
    notes: dict[str, Any] = field(default_factory=dict)


Runner = Callable[["World", Work, float], Awaitable[Reported]]


# -- ours ---------------------------------------------------------------------------------


async def run_ours(world: World, work: Work, cap: float) -> Reported:
    params = world.params
    instance = Instance(world.settings)
    f = params.factor
    reported = Reported()
    try:

        async def one(tenant: str, ops: list[Operation]) -> None:
            engine = BatchEngine(
                instance.api_client(tenant),
                concurrency=params.concurrency,
                pacing=PacingConfig(
                    writes_per_second=params.write_rate,
                    resource_units_per_second=REAL_RU_RATE * f,
                    # the product's time constants compressed like Graph's windows
                    headroom_cooldown=PacingConfig().headroom_cooldown / f,
                ),
                retry=RetryPolicy(
                    max_attempts=6, max_total_seconds=900.0 / f, base=1.0 / f, cap=30 / f
                ),
                replication_seconds=DEFAULT_REPLICATION_SECONDS / f,
            )
            report = await engine.run(ops)
            for r in report.results:
                reported.results[r.operation_id] = r.outcome
            stats = dataclasses.asdict(report.stats)
            reported.notes.setdefault("engine_stats", {})[tenant] = stats

        jobs = [one(t, ops) for t, ops in work.by_tenant.items()]
        try:
            await asyncio.wait_for(asyncio.gather(*jobs), timeout=cap)
        except asyncio.TimeoutError:
            reported.time_capped = True
        reported.notes["token_cache"] = instance.token_cache.stats.as_dict()
    finally:
        await instance.aclose()
    return reported


# -- msgraph-sdk --------------------------------------------------------------------------


class _GraphSdk:
    """msgraph-sdk-python pointed at the sandbox, configured as its docs show."""

    def __init__(self, world: World, tenant: str) -> None:
        from azure.identity.aio import ClientSecretCredential
        from kiota_authentication_azure.azure_identity_authentication_provider import (
            AzureIdentityAuthenticationProvider,
        )
        from msgraph.graph_request_adapter import GraphRequestAdapter
        from msgraph.graph_service_client import GraphServiceClient
        from msgraph_core import GraphClientFactory  # type: ignore[import-untyped]

        seed = world.seed
        self.credential = ClientSecretCredential(
            tenant,
            seed.client_id,
            seed.client_secret,
            authority=world.sandbox.url,
            connection_verify=world.sandbox.ca_path,  # each sandbox has its own CA
        )
        host = httpx.URL(world.sandbox.url).host
        auth = AzureIdentityAuthenticationProvider(
            self.credential, scopes=[API_SCOPE], allowed_hosts=[host]
        )
        self.http = GraphClientFactory.create_with_default_middleware(
            client=httpx.AsyncClient(verify=world.sandbox.ca_path)
        )
        adapter = GraphRequestAdapter(auth, client=self.http)
        adapter.base_url = world.base_url
        self.client = GraphServiceClient(request_adapter=adapter)

    async def aclose(self) -> None:
        await self.http.aclose()
        await self.credential.close()

    def request_info(self, op: Operation, world: World) -> Any:
        """The SDK's own request builders, as a user would call them."""
        from msgraph.generated.models.password_profile import PasswordProfile
        from msgraph.generated.models.reference_create import ReferenceCreate
        from msgraph.generated.models.user import User

        c = self.client
        body = op.body if isinstance(op.body, dict) else {}
        if op.method == "PATCH":
            uid = op.url.rsplit("/", 1)[1]
            return c.users.by_user_id(uid).to_patch_request_information(
                User(department=body["department"])
            )
        if op.url == "/users":
            pw = body["passwordProfile"]
            user = User(
                account_enabled=True,
                display_name=body["displayName"],
                mail_nickname=body["mailNickname"],
                user_principal_name=body["userPrincipalName"],
                employee_id=body["employeeId"],
                password_profile=PasswordProfile(
                    force_change_password_next_sign_in=True, password=pw["password"]
                ),
            )
            return c.users.to_post_request_information(user)
        gid = op.url.split("/")[2]
        return c.groups.by_group_id(gid).members.ref.to_post_request_information(
            ReferenceCreate(odata_id=body["@odata.id"])
        )


def _sdk_item(info: Any, op: Operation, present: set[str]) -> Any:
    from msgraph_core.requests.batch_request_item import BatchRequestItem  # type: ignore[import-untyped]

    depends = [d for d in op.depends_on if d in present]
    return BatchRequestItem(info, id=op.id, depends_on=depends or None)


def _sdk_probe(sdk: _GraphSdk, world: World, ops: list[Operation]) -> dict[str, Any]:
    """What the SDK does with the joiners' chains before anything is sent."""
    from kiota_serialization_json.json_serialization_writer import JsonSerializationWriter
    from msgraph_core.requests.batch_request_content import BatchRequestContent  # type: ignore[import-untyped]
    from msgraph_core.requests.batch_request_content_collection import (  # type: ignore[import-untyped]
        BatchRequestContentCollection,
    )

    notes: dict[str, Any] = {}
    collection = BatchRequestContentCollection()
    try:
        present: set[str] = set()
        for op in ops:
            present.add(op.id)
            collection.add_batch_request_item(_sdk_item(sdk.request_info(op, world), op, present))
        notes["collection_refused_chains"] = None
    except (ValueError, RuntimeError) as exc:
        notes["collection_refused_chains"] = " ".join(str(exc).split())[:200]
    content = BatchRequestContent({})
    present = set()
    for op in ops[:3]:
        present.add(op.id)
        content.add_request(op.id, _sdk_item(sdk.request_info(op, world), op, present))
    writer = JsonSerializationWriter()
    content.serialize(writer)
    text = writer.get_serialized_content().decode()
    notes["sends_depends_on"] = '"depends_on"' in text
    notes["sends_dependsOn"] = '"dependsOn"' in text
    return notes


async def _sdk_rounds(
    sdk: _GraphSdk, world: World, ops: list[Operation], deadline: float, reported: Reported
) -> dict[str, Any]:
    """Send ``ops`` as a user of the SDK would: one ``BatchRequestContentCollection`` (the
    SDK cuts it by 20 and posts the batches one after another), then the items answered 429
    again after the largest Retry-After, at most MAX_ROUNDS rounds. Sets each operation's
    outcome; returns the last response part (``BatchResponseContent``) per operation id."""
    from kiota_abstractions.api_error import APIError
    from msgraph_core.requests.batch_request_content_collection import (
        BatchRequestContentCollection,
    )

    by_id = {o.id: o for o in ops}
    parts: dict[str, Any] = {}
    pending = list(ops)
    for _round in range(MAX_ROUNDS):
        if not pending:
            break
        if time.monotonic() > deadline:
            reported.time_capped = True
            break
        reported.notes["rounds"] = reported.notes.get("rounds", 0) + 1
        collection = BatchRequestContentCollection()
        for op in pending:
            collection.add_batch_request_item(_sdk_item(sdk.request_info(op, world), op, set()))
        try:
            answer = await sdk.client.batch.post(batch_request_content=collection)
        except APIError as exc:
            # one refused batch raises out of the whole collection: every answer is lost
            reported.notes["collections_refused"] = reported.notes.get("collections_refused", 0) + 1
            logger.debug("msgraph_sdk: collection refused: %s", exc)
            for op in pending:
                reported.results[op.id] = Outcome.FAILED
            return parts
        throttled: list[Operation] = []
        wait = 0.0
        for part in answer.get_responses():
            for rid, item in (part.responses or {}).items():
                sent = by_id.get(rid)
                if sent is None:
                    continue
                parts[rid] = part
                status = item.status or 0
                if 200 <= status < 300:
                    reported.results[rid] = Outcome.SUCCEEDED
                elif status == 429:
                    throttled.append(sent)
                    after = parse_retry_after(item.headers or {})
                    wait = max(wait, 1.0 if after is None else after)
                else:
                    reported.results[rid] = Outcome.FAILED
        pending = throttled
        if pending:
            await asyncio.sleep(min(wait, max(0.0, deadline - time.monotonic())))
    for op in pending:
        reported.results[op.id] = Outcome.GAVE_UP
    return parts


async def _sdk_created_ids(
    sdk: _GraphSdk, creates: list[Operation], parts: dict[str, Any], reported: Reported
) -> dict[str, str]:
    """The created users' ids, as the SDK documents it: ``response_body(id, User)``; a read
    by userPrincipalName for those it does not give."""
    from msgraph.generated.models.user import User

    ids: dict[str, str] = {}
    unreadable: list[Operation] = []
    for op in creates:
        if reported.results.get(op.id) is not Outcome.SUCCEEDED:
            continue
        try:
            user = parts[op.id].response_body(op.id, User)
        except (ValueError, RuntimeError) as exc:  # the SDK's own parsing refused the body
            reported.notes.setdefault("create_body_error", str(exc)[:160])
            user = None
        if user is not None and getattr(user, "id", None):
            ids[op.id] = str(user.id)
        else:
            unreadable.append(op)

    async def read(op: Operation) -> None:
        upn = str(op.body["userPrincipalName"])
        got = await sdk.client.users.by_user_id(upn).get()
        if got is not None and got.id:
            ids[op.id] = str(got.id)

    for i in range(0, len(unreadable), 20):  # reads by UPN, 20 at a time
        await asyncio.gather(*(read(op) for op in unreadable[i : i + 20]))
    reported.notes["create_bodies_unreadable"] = len(unreadable)
    return ids


async def run_msgraph(world: World, work: Work, cap: float) -> Reported:
    """PATCHes: one collection per tenant, tenants in turn. Joiners: the creates first, then
    the group adds by the created ids (the SDK's own way — adds in the creates' batches with
    ``depends_on`` — is probed and reported, see :func:`_sdk_probe`); a non-429 error is
    final, as for a user who resends only what was throttled."""
    deadline = time.monotonic() + cap
    reported = Reported()
    for tenant, ops in work.by_tenant.items():
        sdk = _GraphSdk(world, tenant)
        try:
            if not work.joiners:
                await _sdk_rounds(sdk, world, ops, deadline, reported)
                continue
            reported.notes.update(_sdk_probe(sdk, world, ops))
            creates = [o for o in ops if o.url == "/users"]
            parts = await _sdk_rounds(sdk, world, creates, deadline, reported)
            ids = await _sdk_created_ids(sdk, creates, parts, reported)
            adds: list[Operation] = []
            for op in ops:
                if op.url == "/users":
                    continue
                created = ids.get(op.depends_on[0])
                if created is None:
                    reported.results[op.id] = Outcome.FAILED  # its create did not succeed
                    continue
                body = {"@odata.id": directory_object_url(world.base_url, created)}
                adds.append(dataclasses.replace(op, body=body, depends_on=()))
            await _sdk_rounds(sdk, world, adds, deadline, reported)
        finally:
            await sdk.aclose()
    return reported


# -- naive ----------------------------------------------------------------------------------


async def run_naive(world: World, work: Work, cap: float) -> Reported:
    from azure.identity.aio import ClientSecretCredential

    deadline = time.monotonic() + cap
    reported = Reported()
    base = world.base_url
    async with httpx.AsyncClient(verify=world.sandbox.ca_path, timeout=30.0) as http:
        for tenant, ops in work.by_tenant.items():
            credential = ClientSecretCredential(
                tenant,
                world.seed.client_id,
                world.seed.client_secret,
                authority=world.sandbox.url,
                connection_verify=world.sandbox.ca_path,
            )
            try:
                created: dict[str, str] = {}  # create operation id -> the new user's id
                for op in ops:
                    if time.monotonic() > deadline:
                        reported.time_capped = True
                        break
                    body = op.body
                    if op.reference_from is not None:
                        if op.reference_from not in created:
                            reported.results[op.id] = Outcome.FAILED  # its create failed
                            continue
                        body = {"@odata.id": directory_object_url(base, created[op.reference_from])}
                    outcome = Outcome.GAVE_UP
                    for _attempt in range(MAX_ROUNDS):
                        token = (await credential.get_token(API_SCOPE)).token
                        answer = await http.request(
                            op.method,
                            base + op.url,
                            json=body,
                            headers={"Authorization": f"Bearer {token}"},
                        )
                        if op.url == "/users" and answer.status_code == 201:
                            created[op.id] = str(answer.json()["id"])
                        if answer.status_code == 429:
                            after = parse_retry_after(answer.headers)
                            await asyncio.sleep(1.0 if after is None else after)
                            continue
                        outcome = Outcome.SUCCEEDED if answer.is_success else Outcome.FAILED
                        break
                    reported.results[op.id] = outcome
            finally:
                await credential.close()
    return reported


RUNNERS: dict[str, Runner] = {"ours": run_ours, "msgraph_sdk": run_msgraph, "naive": run_naive}
DESCRIPTIONS = {
    "ours": "BatchEngine (Instance.api_client), paced at the budget; tenants side by side",
    "msgraph_sdk": "msgraph-sdk 1.65 GraphServiceClient + BatchRequestContentCollection, "
    "azure-identity ClientSecretCredential, default middleware; 429 items resent after the "
    "largest Retry-After (≤ 6 rounds); tenants one after another; joiners: creates, then "
    "adds by the created ids (read back by UPN, 20 at a time, where the SDK cannot parse "
    "a batch item's body)",
    "naive": "httpx.AsyncClient loop, one request at a time, azure-identity token per request "
    "(its cache), honours Retry-After; tenants one after another",
}


# -- measuring ----------------------------------------------------------------------------


async def _sample(world: World, into: list[tuple[float, int, int]], label: str) -> None:
    """Writes admitted and 429s answered, every SAMPLE_SECONDS (the plots' time series)."""
    stats = world.sandbox.graph.stats
    start = time.perf_counter()
    tty = sys.stderr.isatty()
    while True:
        now = time.perf_counter() - start
        into.append((round(now, 3), stats.writes_applied, stats.statuses.get(429, 0)))
        if tty:
            print(
                f"\r  {label}: {now:6.1f} s  writes {stats.writes_applied:>6}  "
                f"429s {stats.statuses.get(429, 0):>5}",
                end="",
                file=sys.stderr,
                flush=True,
            )
        await asyncio.sleep(SAMPLE_SECONDS)


async def measure(world: World, scenario: str, name: str, work: Work) -> dict[str, Any]:
    params = world.params
    world.fresh_budget()
    graph = world.sandbox.graph
    before = world.sandbox.state.counters()
    ops = [o for tenant_ops in work.by_tenant.values() for o in tenant_ops]
    cap = params.max_seconds
    samples: list[tuple[float, int, int]] = []
    sampler = asyncio.create_task(_sample(world, samples, f"{scenario}/{name}"))
    start = time.perf_counter()
    try:
        reported = await RUNNERS[name](world, work, cap)
    finally:
        wall = time.perf_counter() - start
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
    stats = graph.stats
    samples.append((round(wall, 3), stats.writes_applied, stats.statuses.get(429, 0)))
    # the progress display: a live line on a terminal, one line per contender always
    print(
        f"{chr(13) if sys.stderr.isatty() else ''}  {scenario}/{name}: {len(reported.results)}"
        f"/{len(ops)} settled in {wall:.1f} s, {stats.writes_applied} writes admitted, "
        f"{stats.statuses.get(429, 0)} 429s" + (" (capped)" if reported.time_capped else ""),
        file=sys.stderr,
        flush=True,
    )
    after = world.sandbox.state.counters()
    counts = {o.value: 0 for o in Outcome}
    for value in reported.results.values():
        counts[value.value] += 1
    lost = sum(1 for o in ops if o.id not in reported.results)
    item_responses = stats.operations
    throttled = stats.statuses.get(429, 0)
    tenants = len(work.by_tenant)
    bucket = graph.config.app_tenant_write_limit
    figures: dict[str, Any] = {
        "description": DESCRIPTIONS[name],
        "tenants": tenants,
        "operations": len(ops),
        "succeeded": counts[Outcome.SUCCEEDED.value],
        "failed": counts[Outcome.FAILED.value],
        "gave_up": counts[Outcome.GAVE_UP.value],
        "lost": lost,
        "time_capped": reported.time_capped,
        "wall_seconds": round(wall, 3),
        "writes_admitted": stats.writes_applied,
        "writes_per_second": round(stats.writes_applied / wall, 2) if wall else 0.0,
        "budget_fraction": round(
            budget_fraction(
                stats.writes_applied, bucket * tenants, params.write_rate * tenants, wall
            ),
            4,
        ),
        "http_requests": stats.requests,
        "batch_requests": stats.batch_requests,
        "batch_shapes": dict(stats.batch_shapes),
        "item_responses": item_responses,
        "item_responses_429": throttled,
        "item_429_percent": round(100.0 * throttled / item_responses, 3) if item_responses else 0.0,
        "early_retries": len(stats.early_retries),
        "token_requests": after.get("token_requests", 0) - before.get("token_requests", 0),
        "series": series(samples, bin_seconds=0.5),
    }
    if work.joiners:
        figures.update(_joiner_figures(world, work))
    else:
        figures.update(_patch_figures(world, work, reported))
    done = figures["joiners_complete"] if work.joiners else figures["applied"]
    figures["units_done"] = done
    figures["units_per_second"] = round(done / wall, 2) if wall else 0.0
    figures["notes"] = reported.notes
    logger.info(
        "%s/%s: %d/%d succeeded in %.1fs, %d 429s",
        scenario,
        name,
        figures["succeeded"],
        len(ops),
        wall,
        throttled,
    )
    return figures


def _patch_figures(world: World, work: Work, reported: Reported) -> dict[str, Any]:
    updates = world.sandbox.graph.stats.user_updates
    applied = duplicates = succeeded_not_applied = 0
    for tenant, ops in work.by_tenant.items():
        for o in ops:
            n = updates[f"{tenant}/{o.url.rsplit('/', 1)[1]}"]
            applied += n > 0
            duplicates += n > 1
            succeeded_not_applied += reported.results.get(o.id) is Outcome.SUCCEEDED and n == 0
    total = sum(len(v) for v in work.by_tenant.values())
    return {
        "applied": applied,
        "not_applied": total - applied,
        "duplicates": duplicates,
        "succeeded_not_applied": succeeded_not_applied,
    }


def _joiner_figures(world: World, work: Work) -> dict[str, Any]:
    graph = world.sandbox.graph
    complete = missing = 0
    for tenant, ops in work.by_tenant.items():
        tenant_dir = graph.directory.tenant(tenant)
        groups: dict[str, list[str]] = {}
        for o in ops:
            if o.method == "POST" and o.url == "/users":
                groups[str(o.body["userPrincipalName"])] = []
            else:
                upn = str(o.body["@odata.id"]).rsplit("/", 1)[1]
                groups[upn].append(o.url.split("/")[2])
        for upn, gids in groups.items():
            user = tenant_dir.find_user(upn)
            absent = sum(1 for g in gids if user is None or user["id"] not in tenant_dir.members[g])
            missing += absent
            complete += user is not None and absent == 0
    stats = graph.stats
    return {
        "joiners": sum(1 for ops in work.by_tenant.values() for o in ops if o.url == "/users"),
        "joiners_complete": complete,
        "memberships_missing": missing,
        "duplicate_creates": sum(1 for v in stats.user_creates.values() if v > 1),
        "duplicate_member_adds": sum(1 for v in stats.member_adds.values() if v > 1),
    }


# -- scenarios ----------------------------------------------------------------------------


def _scenario_world(params: PeersParams, scenario: str) -> World:
    if scenario == "single_tenant":
        return World(
            params,
            tenants=1,
            users=params.single_operations,
            bucket=params.single_bucket_seconds,
            repl=False,
        )
    if scenario == "joiners":
        return World(params, tenants=1, users=0, bucket=params.bucket_seconds, repl=True)
    return World(
        params,
        tenants=params.tenants,
        users=params.tenant_operations,
        bucket=params.bucket_seconds,
        repl=False,
    )


def _work(world: World, scenario: str, name: str) -> Work:
    params = world.params
    tag = {"ours": "O", "msgraph_sdk": "M", "naive": "N"}[name]
    if scenario == "joiners":
        tenant = world.tenants[0]
        directory = world.sandbox.graph.directory
        groups = [directory.add_group(tenant, f"{name} {g}")["id"] for g in ("All", "New")]
        n = params.naive_joiners if name == "naive" else params.joiners
        return Work({tenant: joiner_operations(tag, n, groups, world.base_url)}, joiners=True)
    if scenario == "single_tenant":
        n = params.naive_operations if name == "naive" else params.single_operations
        return Work({world.tenants[0]: world.patches(world.tenants[0], n, name)})
    share = max(1, params.naive_operations // len(world.tenants))
    n = share if name == "naive" else params.tenant_operations
    return Work({t: world.patches(t, n, name) for t in world.tenants})


def _scenario_config(world: World, scenario: str) -> dict[str, Any]:
    g = world.sandbox.graph.config
    params = world.params
    return {
        "tenants": len(world.tenants),
        "write_rate_per_tenant": params.write_rate,
        "starting_bucket_per_tenant": g.app_tenant_write_limit,
        "write_window_s": g.app_tenant_write_window,
        "replication_delay_s": g.replication_delay,
        "operation": {
            "single_tenant": "PATCH /users/{id} {department}",
            "joiners": "POST /users, then POST /groups/{id}/members/$ref × 2 (depend on it)",
            "multi_tenant": "PATCH /users/{id} {department} in every tenant",
        }[scenario],
    }


async def _scenario(params: PeersParams, scenario: str) -> dict[str, Any]:
    world = _scenario_world(params, scenario)
    try:
        contenders: dict[str, Any] = {}
        for name in params.contenders:
            work = _work(world, scenario, name)
            contenders[name] = await measure(world, scenario, name, work)
        config = _scenario_config(world, scenario)
    finally:
        world.close()
    ours = contenders.get("ours")
    ratios: dict[str, float | None] = {}
    if ours is not None:
        for other in ("msgraph_sdk", "naive"):
            if other in contenders:
                r = ratio(ours["units_per_second"], contenders[other]["units_per_second"])
                ratios[f"ours_vs_{other}"] = None if r is None else round(r, 3)
    return {"config": config, "contenders": contenders, "ratios": ratios}


def _ours_ok(figures: dict[str, Any]) -> dict[str, bool]:
    nothing_lost = figures["lost"] == 0 and (
        figures.get("memberships_missing", 0) == 0 and figures.get("not_applied", 0) == 0
    )
    return {
        "budget_fraction >= 0.90": figures["budget_fraction"] >= 0.90,
        "0 lost": nothing_lost,
        "item_429_percent < 2": figures["item_429_percent"] < 2.0,
    }


def _targets(scenarios: dict[str, Any]) -> dict[str, object]:
    checks: dict[str, bool | None] = {}
    for name, body in scenarios.items():
        ours = body["contenders"].get("ours")
        if ours is None:
            continue
        for check, ok in _ours_ok(ours).items():
            checks[f"{name}: ours {check}"] = ok
    wanted = [
        ("single_tenant", "msgraph_sdk", 1.4),
        ("joiners", "msgraph_sdk", 3.0),
        ("multi_tenant", "msgraph_sdk", 3.0),
        ("multi_tenant", "naive", 10.0),
    ]
    for scenario, other, at_least in wanted:
        if scenario not in scenarios:
            continue
        r = scenarios[scenario]["ratios"].get(f"ours_vs_{other}")
        checks[f"{scenario}: ours ÷ {other} >= {at_least:g}×"] = (
            None if r is None else r >= at_least
        )
    return targets_verdict(checks)


def run(params: PeersParams) -> dict[str, Any]:
    started = time.perf_counter()
    when = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    scenarios: dict[str, Any] = {}
    for scenario in params.scenarios:
        print(f"peers: {scenario} …", file=sys.stderr, flush=True)
        scenarios[scenario] = asyncio.run(_scenario(params, scenario))
    from importlib.metadata import version

    return {
        "benchmark": "peers",
        "mode": params.label,
        "generated_at": when,
        "duration_seconds": round(time.perf_counter() - started, 1),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "note": "sandbox and clients share one process (sandbox in a thread)",
        },
        "config": {
            **dataclasses.asdict(params),
            "auth_mode": AUTH_MODE,
            "real_writes_per_second": REAL_WRITE_RATE,
            "max_rounds": MAX_ROUNDS,
            "versions": {
                p: version(p) for p in ("msgraph-sdk", "msgraph-core", "azure-identity", "httpx")
            },
            "budget_fraction": "(writes admitted − starting buckets) ÷ (rate × tenants × wall)",
        },
        "scenarios": scenarios,
        "targets": _targets(scenarios),
    }


# -- output -------------------------------------------------------------------------------


def render(result: dict[str, Any]) -> str:
    c = result["config"]
    lines = [
        f"peers ({result['mode']}): F={c['factor']:g}, "
        f"{c['real_writes_per_second'] * c['factor']:g} writes/s per app and tenant, "
        f"auth {c['auth_mode']}, took {result['duration_seconds']:.0f} s",
    ]
    for scenario, body in result["scenarios"].items():
        sc = body["config"]
        lines += [
            "",
            f"{scenario}: {sc['tenants']} tenant(s), starting bucket "
            f"{sc['starting_bucket_per_tenant']} writes, replication delay "
            f"{sc['replication_delay_s']:g} s — {sc['operation']}",
            f"{'contender':<12} {'ops':>6} {'ok/fail/gaveup/lost':>19} {'not done':>8} "
            f"{'wall s':>7} {'units/s':>8} {'budget':>7} {'429s':>6} {'429 %':>7} {'tokens':>6}",
        ]
        for name, f in body["contenders"].items():
            outcome = f"{f['succeeded']}/{f['failed']}/{f['gave_up']}/{f['lost']}"
            not_done = f.get("memberships_missing", f.get("not_applied", 0))
            lines.append(
                f"{name:<12} {f['operations']:>6} {outcome:>19} {not_done:>8} "
                f"{f['wall_seconds']:>7.1f} {f['units_per_second']:>8.1f} "
                f"{f['budget_fraction']:>7.1%} {f['item_responses_429']:>6} "
                f"{f['item_429_percent']:>6.2f}% {f['token_requests']:>6}"
                + ("  CAPPED" if f["time_capped"] else "")
            )
            notes = f.get("notes", {})
            if name == "msgraph_sdk" and scenario == "joiners":
                lines.append(
                    f"  msgraph_sdk: sends depends_on={notes.get('sends_depends_on')} "
                    f"(dependsOn={notes.get('sends_dependsOn')}); collection with chains: "
                    f"{notes.get('collection_refused_chains') or 'accepted'}"
                )
        for key, value in body["ratios"].items():
            lines.append(f"{key}: {'n/a' if value is None else f'{value:.2f}×'}")
    lines.append("")
    lines.append(
        "units/s: operations applied (joiners: joiners complete) per second; budget: (writes − "
        "starting buckets) ÷ (rate × tenants × wall); not done: not applied / memberships missing"
    )
    t = result["targets"]
    for check, ok in t["checks"].items():
        lines.append(f"  {'met   ' if ok else 'n/a   ' if ok is None else 'MISSED'} {check}")
    lines.append(f"targets: {'MET' if t['met'] else 'MISSED or not measured'}")
    return "\n".join(lines)


def parse(argv: Sequence[str] | None) -> tuple[PeersParams, Path, bool, int]:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks peers",
        description="Ours vs msgraph-sdk-python vs a naive httpx loop on the strict sandbox.",
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run (about a minute)")
    parser.add_argument("--scenarios", help=f"comma-separated among {', '.join(SCENARIOS)}")
    parser.add_argument("--contenders", help=f"comma-separated among {', '.join(CONTENDERS)}")
    parser.add_argument("--factor", type=float, help="time compression F (default 10)")
    parser.add_argument("--output", type=Path, help="where to write the JSON")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    args = parser.parse_args(argv)
    params = QUICK if args.quick else FULL
    changes: dict[str, Any] = {}
    if args.scenarios:
        changes["scenarios"] = tuple(x.strip() for x in args.scenarios.split(",") if x.strip())
    if args.contenders:
        changes["contenders"] = tuple(x.strip() for x in args.contenders.split(",") if x.strip())
    if args.factor is not None:
        changes["factor"] = args.factor
    if changes:
        try:
            params = dataclasses.replace(params, **changes)
        except ValueError as exc:
            parser.error(str(exc))
    name = "peers_quick.json" if args.quick else "peers.json"
    return params, args.output or default_path(name), not args.no_plots, args.verbose


def main(argv: Sequence[str] | None = None) -> int:
    params, output, plots, verbose = parse(argv)
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    result = run(params)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(render(result))
    print(f"results: {output}")
    if plots:
        from benchmarks.plots import plot_peers

        for path in plot_peers(result, output.parent, stem=output.stem):
            print(f"plot: {path}")
    # Timings on a shared machine never fail the command; ours losing work does.
    lost = any(
        not _ours_ok(body["contenders"]["ours"])["0 lost"]
        for body in result["scenarios"].values()
        if "ours" in body["contenders"]
    )
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
