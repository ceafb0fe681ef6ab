"""Run the sandbox services over HTTPS (uvicorn, h11) in a background thread.

>>> with Sandbox() as sandbox:          # doctest: +SKIP
...     seed = seed_default(sandbox)
...     sandbox.url, sandbox.ca_path

One Starlette app serves Entra ID, the managed-identity endpoint, Key Vault (at the root, so
the vault URL is the sandbox URL), the admin API under ``/_sandbox/`` and any ``extra_routes``
(the Graph API mounted at ``/v1.0``). Several sandboxes may run in one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from sandbox.ca import SandboxCA
from sandbox.entra import EntraService
from sandbox.graph import GraphConfig, GraphService
from sandbox.keyvault import KeyVaultService
from sandbox.managed_identity import ManagedIdentityService
from sandbox.state import SandboxState
from sandbox.tokens import TokenIssuer

logger = logging.getLogger(__name__)

START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0


class AdminService:
    """``/_sandbox/``: inspection and control for out-of-process tests (no secrets served)."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/_sandbox/stats", self.stats, methods=["GET"]),
            Route("/_sandbox/state", self.snapshot, methods=["GET"]),
            Route("/_sandbox/revoke-tokens", self.revoke_tokens, methods=["POST"]),
            Route("/_sandbox/certificates/{name}/rotate", self.rotate, methods=["POST"]),
        ]

    async def stats(self, request: Request) -> Response:
        return JSONResponse({"counters": self.state.counters()})

    async def snapshot(self, request: Request) -> Response:
        return JSONResponse(self.state.snapshot())

    async def revoke_tokens(self, request: Request) -> Response:
        self.state.revoke_all_tokens()
        return JSONResponse({"revoked": True})

    async def rotate(self, request: Request) -> Response:
        name = request.path_params["name"]
        register = request.query_params.get("register", "true").lower() != "false"
        if not self.state.certificate_versions(name):
            return JSONResponse({"error": f"no certificate named {name!r}"}, 404)
        # Key generation takes a moment: keep the event loop free.
        version = await asyncio.to_thread(self.state.rotate_certificate, name, register=register)
        return JSONResponse(
            {
                "name": name,
                "version": version.version,
                "x5t": version.x5t,
                "x5t#S256": version.x5t_s256,
            }
        )


def build_routes(state: SandboxState, extra_routes: Sequence[BaseRoute] = ()) -> list[BaseRoute]:
    """Every route of the sandbox app. ``extra_routes`` (e.g. ``Mount("/v1.0", ...)``) come
    before the Entra routes, whose first path segment is a tenant parameter."""
    routes: list[BaseRoute] = []
    routes += AdminService(state).routes()
    routes += ManagedIdentityService(state).routes()
    routes += KeyVaultService(state).routes()
    routes += list(extra_routes)
    routes += EntraService(state).routes()
    return routes


def _listening_socket(port: int = 0) -> socket.socket:
    """A listening TCP socket on 127.0.0.1 (port 0: a free one). Created with IPPROTO_TCP and
    TCP_NODELAY so accepted connections do not wait ~40 ms (Nagle + delayed ACK) per reply."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


class Sandbox:
    """The sandbox server. Use as a context manager, or call :meth:`start` / :meth:`stop`."""

    def __init__(
        self,
        extra_routes: Sequence[BaseRoute] = (),
        *,
        clock: Callable[[], float] = time.time,
        token_lifetime: int = 3600,
        refresh_in: int | None = None,
        port: int = 0,
        graph_config: GraphConfig | None = None,
        graph_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``clock`` drives Entra ID, the managed-identity endpoint and Key Vault (token and
        assertion lifetimes); ``graph_clock`` drives the directory API (throttling buckets,
        page/delta token lifetimes, replication delay) and may be a fake clock in tests."""
        self.issuer = TokenIssuer(clock)
        self.state = SandboxState(
            clock, self.issuer, token_lifetime=token_lifetime, refresh_in=refresh_in
        )
        # The Graph-like directory API at /v1.0, its inspection API at /_sandbox/graph.
        self.graph = GraphService(self.issuer, clock=graph_clock, config=graph_config)
        self.extra_routes: list[BaseRoute] = [
            Mount("/v1.0", routes=self.graph.routes()),
            Mount("/_sandbox/graph", routes=self.graph.admin_routes()),
            *extra_routes,
        ]
        self._port = port
        self._ca: SandboxCA | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._socket: socket.socket | None = None
        self._url = ""
        self._alt_url = ""

    # ------------------------------------------------------------------ attributes

    @property
    def url(self) -> str:
        """``https://127.0.0.1:PORT`` (authority host, vault URL and MI host alike)."""
        self._require_started()
        return self._url

    @property
    def alt_url(self) -> str:
        """``https://localhost:PORT``: the same server under its other name."""
        self._require_started()
        return self._alt_url

    @property
    def port(self) -> int:
        self._require_started()
        return int(self._url.rsplit(":", 1)[1])

    @property
    def ca_path(self) -> str:
        """Path of the CA certificate (PEM) that clients must trust."""
        self._require_started()
        assert self._ca is not None
        return self._ca.ca_path

    @property
    def ca_pem(self) -> bytes:
        self._require_started()
        assert self._ca is not None
        return self._ca.ca_pem

    @property
    def tls_key_dir(self) -> str:
        """The private (0700) directory the TLS key passes through; removed on stop."""
        self._require_started()
        assert self._ca is not None
        return str(self._ca.private_dir)

    def client_ssl_context(self) -> ssl.SSLContext:
        self._require_started()
        assert self._ca is not None
        return self._ca.client_ssl_context()

    @property
    def identity_header(self) -> str:
        return self.state.identity_header

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _require_started(self) -> None:
        if not self._url:
            raise RuntimeError("the sandbox is not started")

    # ----------------------------------------------------------------- lifecycle

    def build_app(self) -> Starlette:
        return Starlette(routes=build_routes(self.state, self.extra_routes))

    def start(self) -> Sandbox:
        if self._thread is not None:
            raise RuntimeError("the sandbox is already started")
        self._ca = ca = SandboxCA()
        try:
            sock = _listening_socket(self._port)
            self._socket = sock
            port = sock.getsockname()[1]
            self._url = f"https://127.0.0.1:{port}"
            self._alt_url = f"https://localhost:{port}"
            self.state.url, self.state.alt_url = self._url, self._alt_url

            def ssl_factory(config: Any, default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
                return ca.server_ssl_context()

            config = uvicorn.Config(
                self.build_app(),
                http="h11",
                lifespan="off",
                loop="asyncio",
                log_config=None,
                access_log=False,
                ssl_context_factory=ssl_factory,
                timeout_graceful_shutdown=1,
                timeout_keep_alive=5,
            )
            server = uvicorn.Server(config)
            self._server = server
            self._thread = threading.Thread(
                target=self._run, args=(server, sock), name=f"sandbox-{port}", daemon=True
            )
            self._thread.start()
            deadline = time.monotonic() + START_TIMEOUT
            while not server.started:
                if not self._thread.is_alive() or time.monotonic() > deadline:
                    raise RuntimeError("the sandbox server did not start")
                time.sleep(0.002)
        except BaseException:
            self.stop()
            raise
        logger.info("sandbox listening on %s", self._url)
        return self

    def _run(self, server: uvicorn.Server, sock: socket.socket) -> None:
        """The server thread: uvicorn on an event loop of our own (so stop() can reach it)."""
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(server.serve(sockets=[sock]))
        finally:
            try:
                pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
                for task in pending:
                    task.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    @staticmethod
    def _abort_connections(server: uvicorn.Server) -> None:
        """Drop kept-alive client connections at once (no TLS close_notify round trip)."""
        for connection in list(server.server_state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.abort()

    def stop(self) -> None:
        server, thread, loop = self._server, self._thread, self._loop
        if server is not None:
            server.should_exit = True
            if loop is not None and thread is not None and thread.is_alive():
                with contextlib.suppress(RuntimeError):  # the loop closed in the meantime
                    loop.call_soon_threadsafe(self._abort_connections, server)
        if thread is not None:
            thread.join(STOP_TIMEOUT)
            if thread.is_alive() and server is not None:
                server.force_exit = True
                thread.join(STOP_TIMEOUT)
        if self._socket is not None:
            self._socket.close()
        if self._ca is not None:
            self._ca.close()
        self._server = self._thread = self._socket = None
        self._ca = None
        self._loop = None
        if self._url:
            logger.info("sandbox on %s stopped", self._url)
        self._url = self._alt_url = ""

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
