"""TLS for broker connections: an `ssl.SSLContext` built from `TlsSettings` (AMQP, Redis).

PEM values arrive as inline text, `file://` paths or already-substituted `${env:}`
values. The standard library loads client certificates only from files, so inline
PEM is written to a private temporary file for the moment it takes to load it.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from pathlib import Path
from typing import Any

from relevo.drivers.settings import TlsSettings
from relevo.errors import SettingError

_PEM_MARK = "-----BEGIN"


class _ServerNameContext(ssl.SSLContext):
    """A client context that presents `server_name` (SNI, hostname check) instead of the host.

    asyncio passes the URL's host as `server_hostname`; `tls.server_name` overrides it,
    for brokers reached through an IP address or a tunnel.
    """

    server_name: str | None = None

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        if self.server_name is not None:
            kwargs["server_hostname"] = self.server_name
        return super().wrap_bio(*args, **kwargs)


def read_pem(value: str, field: str) -> str:
    """The PEM text behind a setting: inline PEM, a `file://` path or a plain path."""
    if _PEM_MARK in value:
        return value
    path = Path(value.removeprefix("file://"))
    try:
        text = path.read_text()
    except OSError as exc:
        raise _tls_error(field, f"cannot read {str(path)!r}: {exc.strerror}") from None
    if _PEM_MARK not in text:
        raise _tls_error(field, f"{str(path)!r} holds no PEM block")
    return text


def ssl_context(tls: TlsSettings) -> ssl.SSLContext:
    """The context for `tls`; raises SettingError naming the field that cannot be used."""
    context = _ServerNameContext(ssl.PROTOCOL_TLS_CLIENT)
    context.server_name = tls.server_name
    if tls.ca is not None:
        try:
            context.load_verify_locations(cadata=read_pem(tls.ca, "tls.ca"))
        except ssl.SSLError as exc:
            raise _tls_error("tls.ca", f"not a usable CA certificate ({exc.reason})") from None
    else:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if tls.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if (tls.cert is None) != (tls.key is None):
        raise _tls_error("tls.cert", "a client certificate needs both `cert` and `key`")
    if tls.cert is not None and tls.key is not None:
        _load_client_pair(context, read_pem(tls.cert, "tls.cert"), read_pem(tls.key, "tls.key"))
    return context


def _load_client_pair(context: ssl.SSLContext, cert: str, key: str) -> None:
    with tempfile.TemporaryDirectory(prefix="relevo-tls-") as folder:
        cert_path, key_path = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
        for path, text in ((cert_path, cert), (key_path, key)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
        try:
            context.load_cert_chain(cert_path, key_path)
        except ssl.SSLError as exc:
            raise _tls_error(
                "tls.cert", f"certificate and key do not load together ({exc.reason})"
            ) from None


def _tls_error(field: str, message: str) -> SettingError:
    return SettingError(field, message)
