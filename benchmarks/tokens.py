"""Token requests: ours (the instance's token cache) vs azure-identity credentials used directly.

Against the sandbox's Entra ID (HTTPS, a client secret for everyone: the same credential
type), counted by the sandbox (``token_requests``), for one tenant and one scope:

- ``per_10000_operations``: 10,000 operations one after another, each asking for a token
  (tokens live an hour);
- ``cold_100``: 100 concurrent invocations on a fresh instance / credential;
- ``at_expiry_100``: a token fetched, left to expire (tokens live ``short_lifetime`` s here),
  then 100 concurrent invocations — a Functions instance that sat idle past its token's
  expiry and then receives a burst of queue messages;
- for azure-identity, the async credential on one event loop and the sync credential called
  from 100 threads (how sync Python functions run on the Functions worker).

Target: 1 token request per (tenant, scope, instance, token lifetime) at any concurrency.
Tokens: learn.microsoft.com/entra/identity-platform/access-tokens (lifetimes);
azure-identity caches tokens but does not make concurrent callers share one request.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.output import default_path
from sandbox.seed import API_SCOPE, PLATFORM_SETTING_NAMES, seed_default, settings_for
from sandbox.server import Sandbox
from shared.instance import Instance
from shared.settings import load_settings

__all__ = ["FULL", "QUICK", "TokensParams", "main", "run"]


@dataclass(frozen=True)
class TokensParams:
    operations: int = 10_000
    concurrency: int = 100
    short_lifetime: int = 2  # seconds, for the at-expiry wave
    label: str = "full"

    def __post_init__(self) -> None:
        if self.operations < 1 or self.concurrency < 1:
            raise ValueError(
                f"operations and concurrency must be at least 1, got {self.operations}, "
                f"{self.concurrency}"
            )
        if self.short_lifetime < 1:
            raise ValueError(f"short_lifetime must be at least 1 s, got {self.short_lifetime}")


FULL = TokensParams()
QUICK = TokensParams(label="quick")  # already quick (seconds): the same counts


class _Bench:
    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.seed = seed_default(sandbox)
        values = settings_for(self.seed, sandbox, "client-secret")
        for name in PLATFORM_SETTING_NAMES:
            if name in values:
                os.environ[name] = values[name]
        self.settings = load_settings(values)

    def requests(self) -> int:
        return self.sandbox.state.counters().get("token_requests", 0)

    async def counted(self, work: Callable[[], Awaitable[Any]]) -> int:
        before = self.requests()
        await work()
        return self.requests() - before

    def async_credential(self) -> Any:
        from azure.identity.aio import ClientSecretCredential

        return ClientSecretCredential(
            self.seed.home_tenant_id,
            self.seed.client_id,
            self.seed.client_secret,
            authority=self.sandbox.url,
            connection_verify=self.sandbox.ca_path,
            # MSAL would otherwise ask login.microsoftonline.com about an unknown authority
            disable_instance_discovery=True,
        )

    def sync_credential(self) -> Any:
        from azure.identity import ClientSecretCredential

        return ClientSecretCredential(
            self.seed.home_tenant_id,
            self.seed.client_id,
            self.seed.client_secret,
            authority=self.sandbox.url,
            connection_verify=self.sandbox.ca_path,
            # MSAL would otherwise ask login.microsoftonline.com about an unknown authority
            disable_instance_discovery=True,
        )


async def _ours(bench: _Bench, params: TokensParams) -> dict[str, int]:
    out: dict[str, int] = {}
    instance = Instance(bench.settings)
    try:
        cache = instance.token_cache

        async def sequential() -> None:
            for _ in range(params.operations):
                await cache.get_token()

        out["per_operations"] = await bench.counted(sequential)
    finally:
        await instance.aclose()
    instance = Instance(bench.settings)
    try:
        cache = instance.token_cache

        async def wave() -> None:
            await asyncio.gather(*(cache.get_token() for _ in range(params.concurrency)))

        out["cold"] = await bench.counted(wave)
    finally:
        await instance.aclose()
    return out


async def _azure_identity_async(bench: _Bench, params: TokensParams) -> dict[str, int]:
    out: dict[str, int] = {}
    credential = bench.async_credential()
    try:

        async def sequential() -> None:
            for _ in range(params.operations):
                await credential.get_token(API_SCOPE)

        out["per_operations"] = await bench.counted(sequential)
    finally:
        await credential.close()
    credential = bench.async_credential()
    try:

        async def wave() -> None:
            await asyncio.gather(
                *(credential.get_token(API_SCOPE) for _ in range(params.concurrency))
            )

        out["cold"] = await bench.counted(wave)
    finally:
        await credential.close()
    return out


def _threads(credential: Any, n: int) -> None:
    with ThreadPoolExecutor(max_workers=n) as pool:
        list(pool.map(lambda _: credential.get_token(API_SCOPE), range(n)))


async def _azure_identity_sync(bench: _Bench, params: TokensParams) -> dict[str, int]:
    credential = bench.sync_credential()
    try:

        async def wave() -> None:
            await asyncio.to_thread(_threads, credential, params.concurrency)

        return {"cold": await bench.counted(wave)}
    finally:
        credential.close()


async def _at_expiry(bench: _Bench, params: TokensParams) -> dict[str, int]:
    """Prime each contender, let the tokens expire, then one wave of concurrent callers."""
    bench.sandbox.state.token_lifetime = params.short_lifetime
    instance = Instance(bench.settings)
    acred = bench.async_credential()
    scred = bench.sync_credential()
    try:
        await instance.token_cache.get_token()
        await acred.get_token(API_SCOPE)
        await asyncio.to_thread(scred.get_token, API_SCOPE)
        await asyncio.sleep(params.short_lifetime + 1.0)  # a benchmark may wait; tests never
        n = params.concurrency
        out = {
            "ours": await bench.counted(
                lambda: asyncio.gather(*(instance.token_cache.get_token() for _ in range(n)))
            ),
            "azure_identity_async": await bench.counted(
                lambda: asyncio.gather(*(acred.get_token(API_SCOPE) for _ in range(n)))
            ),
            "azure_identity_sync_threads": await bench.counted(
                lambda: asyncio.to_thread(_threads, scred, n)
            ),
        }
    finally:
        await instance.aclose()
        await acred.close()
        scred.close()
    return out


async def _run(bench: _Bench, params: TokensParams) -> dict[str, Any]:
    ours = await _ours(bench, params)
    aio = await _azure_identity_async(bench, params)
    sync = await _azure_identity_sync(bench, params)
    expiry = await _at_expiry(bench, params)
    scale = 10_000 / params.operations
    table: dict[str, dict[str, Any]] = {
        "ours": {
            "per_10000_operations": round(ours["per_operations"] * scale, 2),
            "cold_100": ours["cold"],
            "at_expiry_100": expiry["ours"],
        },
        "azure_identity_async": {
            "per_10000_operations": round(aio["per_operations"] * scale, 2),
            "cold_100": aio["cold"],
            "at_expiry_100": expiry["azure_identity_async"],
        },
        "azure_identity_sync_threads": {
            "per_10000_operations": None,
            "cold_100": sync["cold"],
            "at_expiry_100": expiry["azure_identity_sync_threads"],
        },
    }
    o = table["ours"]
    checks = {
        "ours: 1 token request per 10,000 operations (one lifetime)": o["per_10000_operations"]
        <= 1,
        "ours: 1 token request for 100 concurrent invocations (cold)": o["cold_100"] == 1,
        "ours: 1 token request for 100 concurrent invocations at expiry": o["at_expiry_100"] == 1,
    }
    return {"contenders": table, "targets": {"met": all(checks.values()), "checks": checks}}


def run(params: TokensParams) -> dict[str, Any]:
    started = time.perf_counter()
    when = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    sandbox = Sandbox().start()
    try:
        bench = _Bench(sandbox)
        body = asyncio.run(_run(bench, params))
    finally:
        sandbox.stop()
    return {
        "benchmark": "tokens",
        "mode": params.label,
        "generated_at": when,
        "duration_seconds": round(time.perf_counter() - started, 1),
        "config": {**asdict(params), "auth": "client secret (every contender)", "scope": API_SCOPE},
        **body,
    }


def render(result: dict[str, Any]) -> str:
    c = result["config"]
    lines = [
        f"token requests ({result['mode']}): {c['operations']} operations in turn (scaled to "
        f"10,000), {c['concurrency']} concurrent callers cold and after a "
        f"{c['short_lifetime']} s token expired",
        f"{'contender':<28} {'per 10,000 ops':>14} {'cold ×100':>10} {'at expiry ×100':>15}",
    ]
    for name, f in result["contenders"].items():
        per = "—" if f["per_10000_operations"] is None else f"{f['per_10000_operations']:g}"
        lines.append(f"{name:<28} {per:>14} {f['cold_100']:>10} {f['at_expiry_100']:>15}")
    t = result["targets"]
    for check, ok in t["checks"].items():
        lines.append(f"  {'met   ' if ok else 'MISSED'} {check}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks tokens",
        description="Token requests: ours vs azure-identity credentials used directly.",
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--output", type=Path, help="where to write the JSON")
    args = parser.parse_args(argv)
    params = QUICK if args.quick else FULL
    result = run(params)
    output = args.output or default_path("tokens_quick.json" if args.quick else "tokens.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(render(result))
    print(f"results: {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
