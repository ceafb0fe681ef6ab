"""Cold start: a fresh process to its first token and its first API response.

``ours`` (``Instance.from_env`` → the token cache → ``ApiClient``) against ``msgraph_sdk``
(``GraphServiceClient`` with an azure-identity ``ClientSecretCredential``, configured as in
``benchmarks/peers.py``), both with a client secret against the same sandbox (in this
process; the child processes reach it over HTTPS). Each run starts a new interpreter
(``python -m benchmarks.coldstart --child NAME``) and reads the wall-clock instants it
reports: imports done, first token, first API response (``GET /users?$top=1``), measured
from just before the process was started. Runs alternate between contenders; medians are
reported. Target: ours' first API response sooner than msgraph-sdk's.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.output import default_path

__all__ = ["CONTENDERS", "main", "run"]

CONTENDERS = ("ours", "msgraph_sdk")
ROOT = Path(__file__).resolve().parents[1]


# -- the child ---------------------------------------------------------------------------


async def _child_ours() -> dict[str, float]:
    from shared.instance import Instance

    imported = time.time()
    instance = Instance.from_env(os.environ)
    try:
        await instance.token_cache.get_token()
        token = time.time()
        answer = await instance.api_client().request("GET", "/users", params={"$top": "1"})
        response = time.time()
        if not answer.ok:
            raise SystemExit(f"ours: GET /users answered {answer.status}")
    finally:
        await instance.aclose()
    return {"imported": imported, "token": token, "response": response}


async def _child_msgraph() -> dict[str, float]:
    import httpx
    from azure.identity.aio import ClientSecretCredential
    from kiota_abstractions.base_request_configuration import RequestConfiguration
    from kiota_authentication_azure.azure_identity_authentication_provider import (
        AzureIdentityAuthenticationProvider,
    )
    from msgraph.generated.users.users_request_builder import UsersRequestBuilder
    from msgraph.graph_request_adapter import GraphRequestAdapter
    from msgraph.graph_service_client import GraphServiceClient
    from msgraph_core import GraphClientFactory  # type: ignore[import-untyped]

    imported = time.time()
    env = os.environ
    authority = env["DAEMON_AUTHORITY_HOST"]
    ca = env["SSL_CERT_FILE"]
    credential = ClientSecretCredential(
        env["DAEMON_TENANT_ID"],
        env["DAEMON_CLIENT_ID"],
        env["DAEMON_CLIENT_SECRET"],
        authority=authority,
        connection_verify=ca,
    )
    scope = env["DAEMON_API_SCOPE"]
    http = GraphClientFactory.create_with_default_middleware(client=httpx.AsyncClient(verify=ca))
    try:
        auth = AzureIdentityAuthenticationProvider(
            credential, scopes=[scope], allowed_hosts=[httpx.URL(authority).host]
        )
        adapter = GraphRequestAdapter(auth, client=http)
        adapter.base_url = env["DAEMON_API_BASE_URL"]
        client = GraphServiceClient(request_adapter=adapter)
        await credential.get_token(scope)
        token = time.time()
        query = UsersRequestBuilder.UsersRequestBuilderGetQueryParameters(top=1)
        await client.users.get(request_configuration=RequestConfiguration(query_parameters=query))
        response = time.time()
    finally:
        await http.aclose()
        await credential.close()
    return {"imported": imported, "token": token, "response": response}


def _child(name: str) -> int:
    run = _child_ours if name == "ours" else _child_msgraph
    print(json.dumps(asyncio.run(run())))
    return 0


# -- the parent --------------------------------------------------------------------------


def _one(name: str, env: dict[str, str]) -> dict[str, float]:
    started = time.time()
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.coldstart", "--child", name],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"cold start child {name!r} failed: {done.stderr.strip()[-600:]}")
    at = json.loads(done.stdout.strip().splitlines()[-1])
    return {k: round(v - started, 4) for k, v in at.items()}


def run(runs: int, label: str) -> dict[str, Any]:
    from sandbox.seed import PLATFORM_SETTING_NAMES, seed_default, settings_for
    from sandbox.server import Sandbox

    when = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    started = time.perf_counter()
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in CONTENDERS}
    with Sandbox() as sandbox:
        seed = seed_default(sandbox)
        values = settings_for(seed, sandbox, "client-secret")
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("DAEMON_") and k not in PLATFORM_SETTING_NAMES
        }
        env.update(values)
        env.update(
            {
                "DAEMON_JOBS_QUEUE": "daemon-jobs",
                "DAEMON_SWEEP_SCHEDULE": "0 */15 * * * *",
                "PYTHONDONTWRITEBYTECODE": "1",
            }
        )
        _one("ours", env)  # warm the OS file cache for both, measured runs follow
        _one("msgraph_sdk", env)
        for _ in range(runs):
            for name in CONTENDERS:
                samples[name].append(_one(name, env))
    medians = {
        name: {
            key: round(statistics.median(s[key] for s in rows), 3)
            for key in ("imported", "token", "response")
        }
        for name, rows in samples.items()
    }
    ours, theirs = medians["ours"]["response"], medians["msgraph_sdk"]["response"]
    checks = {"ours' first API response sooner than msgraph-sdk's (median)": ours < theirs}
    return {
        "benchmark": "coldstart",
        "mode": label,
        "generated_at": when,
        "duration_seconds": round(time.perf_counter() - started, 1),
        "config": {
            "runs_per_contender": runs,
            "auth": "client secret (both)",
            "first_request": "GET /users?$top=1",
            "python": sys.version.split()[0],
        },
        "median_seconds": medians,
        "ratio_first_response_msgraph_over_ours": round(theirs / ours, 3) if ours else None,
        "samples": samples,
        "targets": {"met": all(checks.values()), "checks": checks},
    }


def render(result: dict[str, Any]) -> str:
    lines = [
        f"cold start ({result['mode']}): median of {result['config']['runs_per_contender']} "
        "fresh processes, seconds from process start",
        f"{'contender':<12} {'imports':>8} {'1st token':>10} {'1st response':>13}",
    ]
    for name, m in result["median_seconds"].items():
        lines.append(f"{name:<12} {m['imported']:>8.3f} {m['token']:>10.3f} {m['response']:>13.3f}")
    for check, ok in result["targets"]["checks"].items():
        lines.append(f"  {'met   ' if ok else 'MISSED'} {check}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks coldstart",
        description="A fresh process to its first token and first API response.",
    )
    parser.add_argument("--quick", action="store_true", help="3 runs per contender (else 7)")
    parser.add_argument("--runs", type=int, help="runs per contender")
    parser.add_argument("--output", type=Path, help="where to write the JSON")
    parser.add_argument("--child", choices=CONTENDERS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(args.child)
    runs = args.runs or (3 if args.quick else 7)
    if runs < 1:
        parser.error(f"--runs must be at least 1, got {runs}")
    result = run(runs, "quick" if args.quick else "full")
    output = args.output or default_path("coldstart_quick.json" if args.quick else "coldstart.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(render(result))
    print(f"results: {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
