"""A throwaway certificate authority and the sandbox's TLS server certificate.

The CA certificate (public) is written to a temporary directory so that clients can trust it
through ``REQUESTS_CA_BUNDLE`` / ``SSL_CERT_FILE``. The server's private key only ever touches
disk inside a private (0700) temporary directory, for the instant it takes to load it into an
``ssl.SSLContext``; the directory is removed on :meth:`SandboxCA.close`.
"""

from __future__ import annotations

import logging
import os
import shutil
import ssl
import tempfile
from pathlib import Path

import trustme

logger = logging.getLogger(__name__)

SERVER_NAMES: tuple[str, ...] = ("127.0.0.1", "localhost")


class SandboxCA:
    """trustme CA plus one server certificate for 127.0.0.1 and localhost."""

    def __init__(self) -> None:
        self._ca = trustme.CA(organization_name="Graph daemon sandbox")
        self._server_cert = self._ca.issue_cert(*SERVER_NAMES)
        self.ca_pem: bytes = self._ca.cert_pem.bytes()
        self._public_dir = Path(tempfile.mkdtemp(prefix="sandbox-ca-"))
        self._private_dir = Path(tempfile.mkdtemp(prefix="sandbox-tls-"))  # mkdtemp: 0700
        os.chmod(self._private_dir, 0o700)
        self.ca_path = str(self._public_dir / "sandbox-ca.pem")
        Path(self.ca_path).write_bytes(self.ca_pem)
        self._closed = False

    @property
    def private_dir(self) -> Path:
        """The 0700 directory the server key passes through (empty but for that instant)."""
        return self._private_dir

    def server_ssl_context(self) -> ssl.SSLContext:
        """A server-side TLS context; the key file exists only while it is being loaded."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_alpn_protocols(["http/1.1"])
        key_path = self._private_dir / "server-key-and-chain.pem"
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(self._server_cert.private_key_and_cert_chain_pem.bytes())
            ctx.load_cert_chain(str(key_path))
        finally:
            key_path.unlink(missing_ok=True)
        return ctx

    def client_ssl_context(self) -> ssl.SSLContext:
        """A client context trusting only this CA (handy for httpx in tests)."""
        return ssl.create_default_context(cadata=self.ca_pem.decode("ascii"))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        shutil.rmtree(self._private_dir, ignore_errors=True)
        shutil.rmtree(self._public_dir, ignore_errors=True)
        logger.debug("sandbox CA files removed")
