"""Run Azurite (the Azure Storage emulator) from the project's own ``node_modules``.

>>> with Azurite() as azurite:          # doctest: +SKIP
...     store = StateStore.from_env({"AzureWebJobsStorage": azurite.connection_string})

Azurite is installed by ``npm ci --no-audit --no-fund`` from ``package.json`` and
``package-lock.json`` (pinned). Each instance listens on free ports (never the defaults
10000-10002, so tests can run beside a developer's own Azurite), keeps its data in memory
(plus a temporary workspace that is removed on stop), skips the API version check and does
not log requests. ``connection_string`` carries the well-known development account key
(public, documented by Microsoft); it is still never logged.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from shared.errors import AzuriteError

logger = logging.getLogger(__name__)

__all__ = [
    "DEV_ACCOUNT_KEY",
    "DEV_ACCOUNT_NAME",
    "Azurite",
    "AzuriteError",
    "project_root",
]

DEV_ACCOUNT_NAME = "devstoreaccount1"
# The development storage account key: public, the same in every Azurite and in the docs.
DEV_ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
_START_ATTEMPTS = 3  # a free port may be taken between choosing it and Azurite binding it


def project_root() -> Path:
    """The repository root, where ``npm ci`` installs Azurite into ``node_modules`` (this
    development tool lives in the repository's ``sandbox/``; :class:`Azurite` takes another
    ``root``)."""
    return Path(__file__).resolve().parents[1]


def _free_ports(count: int) -> list[int]:
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _accepts(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
        return True
    return False


class Azurite:
    """One Azurite process (blob, queue and table services) on free ports, in memory."""

    def __init__(
        self,
        *,
        root: Path | None = None,
        start_timeout: float = START_TIMEOUT,
        stop_timeout: float = STOP_TIMEOUT,
    ) -> None:
        self.root = root or project_root()
        self.executable = self.root / "node_modules" / ".bin" / "azurite"
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.blob_port = 0
        self.queue_port = 0
        self.table_port = 0
        self.start_seconds: float | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._workspace: Path | None = None
        self._output: Path | None = None

    # -- endpoints ---------------------------------------------------------------------------

    def _endpoint(self, port: int) -> str:
        if not port:
            raise AzuriteError("Azurite is not running: call start() first")
        return f"http://127.0.0.1:{port}/{DEV_ACCOUNT_NAME}"

    @property
    def blob_endpoint(self) -> str:
        return self._endpoint(self.blob_port)

    @property
    def queue_endpoint(self) -> str:
        return self._endpoint(self.queue_port)

    @property
    def table_endpoint(self) -> str:
        return self._endpoint(self.table_port)

    @property
    def connection_string(self) -> str:
        """A connection string for this instance (contains the public dev key: never log it)."""
        return (
            f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT_NAME};"
            f"AccountKey={DEV_ACCOUNT_KEY};"
            f"BlobEndpoint={self.blob_endpoint};"
            f"QueueEndpoint={self.queue_endpoint};"
            f"TableEndpoint={self.table_endpoint};"
        )

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return (
            f"Azurite({state}, blob={self.blob_port}, queue={self.queue_port}, "
            f"table={self.table_port})"
        )

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Azurite:
        if self._process is not None:
            raise AzuriteError("this Azurite is already started")
        if not self.executable.exists():
            raise AzuriteError(
                f"Azurite is not installed: {self.executable} is missing. Run `npm ci` "
                f"(npm ci --no-audit --no-fund) in {self.root} first."
            )
        began = time.monotonic()
        last_error: AzuriteError | None = None
        for attempt in range(1, _START_ATTEMPTS + 1):
            try:
                self._start_once()
            except AzuriteError as exc:
                self._cleanup()
                if "EADDRINUSE" not in str(exc):
                    raise
                last_error = exc
                logger.warning("Azurite start attempt %d: a port was taken, retrying", attempt)
                continue
            self.start_seconds = time.monotonic() - began
            logger.info(
                "Azurite started in %.2fs (blob %d, queue %d, table %d)",
                self.start_seconds,
                self.blob_port,
                self.queue_port,
                self.table_port,
            )
            return self
        assert last_error is not None
        raise last_error

    def _start_once(self) -> None:
        self.blob_port, self.queue_port, self.table_port = _free_ports(3)
        self._workspace = Path(tempfile.mkdtemp(prefix="azurite-"))
        self._output = self._workspace / "azurite.out"
        args = [
            str(self.executable),
            "--inMemoryPersistence",  # (exclusive with --location: the cwd is a temp dir)
            "--skipApiVersionCheck",
            "--disableTelemetry",
            "--silent",
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(self.blob_port),
            "--queueHost",
            "127.0.0.1",
            "--queuePort",
            str(self.queue_port),
            "--tableHost",
            "127.0.0.1",
            "--tablePort",
            str(self.table_port),
        ]
        with self._output.open("wb") as output:
            self._process = subprocess.Popen(
                args,
                cwd=self._workspace,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the terminal is ours to forward
            )
        deadline = time.monotonic() + self.start_timeout
        pending = [self.blob_port, self.queue_port, self.table_port]
        while pending:
            if self._process.poll() is not None:
                raise AzuriteError(
                    f"Azurite exited with status {self._process.returncode} during start: "
                    f"{self._tail()}"
                )
            if time.monotonic() > deadline:
                raise AzuriteError(
                    f"Azurite did not listen on ports {pending} within {self.start_timeout}s: "
                    f"{self._tail()}"
                )
            pending = [port for port in pending if not _accepts(port)]
            if pending:
                time.sleep(0.05)

    def _tail(self) -> str:
        if self._output is None or not self._output.exists():
            return "(no output)"
        text = self._output.read_text(errors="replace").strip()
        return text[-800:] or "(no output)"

    def stop(self) -> None:
        """Terminate Azurite (SIGTERM, then SIGKILL after ``stop_timeout``) and clean up."""
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                logger.warning("Azurite did not stop within %ss: killing it", self.stop_timeout)
                process.kill()
                process.wait(timeout=self.stop_timeout)
        self._cleanup()

    def _cleanup(self) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=self.stop_timeout)
        self._process = None
        if self._workspace is not None:
            shutil.rmtree(self._workspace, ignore_errors=True)
        self._workspace = None
        self._output = None

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
