"""Key Vault's refusals: :class:`VaultError` renders Key Vault's error shape
``{"error": {"code", "message", "innererror"}}``."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse, Response

NOT_FOUND_HELP = (
    " If you recently deleted this {kind} you may be able to recover it using the correct "
    "recovery command. For help resolving this issue, please see "
    "https://go.microsoft.com/fwlink/?linkid=2125182"
)


class VaultError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        inner: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.inner = inner
        self.headers = headers or {}

    def response(self) -> Response:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.inner:
            error["innererror"] = {"code": self.inner}
        return JSONResponse({"error": error}, self.status, headers=self.headers)


def not_found(kind: str, code: str, name: str, version: str | None) -> VaultError:
    ident = f"{name}/{version}" if version else name
    article = "An" if kind[0] in "aeiou" else "A"
    return VaultError(
        404,
        code,
        f"{article} {kind} with (name/id) {ident} was not found in this key vault."
        + NOT_FOUND_HELP.format(kind=kind),
    )


def disabled(operation: str, kind: str, inner: str) -> VaultError:
    return VaultError(
        403, "Forbidden", f"Operation {operation} is not allowed on a disabled {kind}.", inner
    )
