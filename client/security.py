"""How a client proves who it is and checks whom it talks to: TLS files and a bearer token.

``Security`` holds what the caller gave (the CA file to trust, a client
certificate and key for mTLS, a token) and turns it into gRPC credentials and
interceptors. The token travels as ``authorization: Bearer <token>`` metadata
on every call, added by an interceptor, so it works over TLS and, for a
loopback or otherwise trusted network, over plaintext too.
"""

from __future__ import annotations

import collections
import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass

import grpc

# What a bearer token may hold (RFC 6750's token68), as the server's token file checks.
_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
# The command line's environment variables, also read by Security.from_environment.
ENVIRONMENT = {
    "token": "MARKETDATA_TOKEN",
    "ca_file": "MARKETDATA_TLS_CA",
    "cert_file": "MARKETDATA_TLS_CERT",
    "key_file": "MARKETDATA_TLS_KEY",
}


@dataclass(frozen=True)
class Security:
    """``tls`` (implied by any file) with system roots or ``ca_file``; mTLS with ``cert_file`` and
    ``key_file``; ``token`` for servers started with --auth-tokens."""

    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    token: str | None = None

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together: give both for mTLS, or neither")
        if self.token is not None and not _TOKEN.fullmatch(self.token):
            # gRPC would refuse such a header on every call with a bare INTERNAL "Invalid metadata".
            raise ValueError(
                "token: give the token itself, without 'Bearer', spaces or line breaks: letters, "
                "digits and -._~+/ (then '=' padding), as the server's token file holds them"
            )

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None, **given: object) -> Security:
        """``given`` values, each falling back on its MARKETDATA_* variable when None."""
        environ = os.environ if environ is None else environ
        values = {
            name: given.get(name) if given.get(name) is not None else environ.get(variable) or None
            for name, variable in ENVIRONMENT.items()
        }
        return cls(tls=bool(given.get("tls")), **values)

    @property
    def secure(self) -> bool:
        return self.tls or self.ca_file is not None or self.cert_file is not None

    def channel_credentials(self) -> grpc.ChannelCredentials | None:
        """TLS credentials, or None for plaintext; OSError naming a file that cannot be read,
        ValueError one that holds no certificate (ca_file, cert_file) or key (key_file)."""
        if not self.secure:
            return None
        return grpc.ssl_channel_credentials(
            root_certificates=_read("ca_file", self.ca_file),
            private_key=_read("key_file", self.key_file),
            certificate_chain=_read("cert_file", self.cert_file),
        )

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()


def _read(name: str, path: str | None) -> bytes | None:
    """The file's bytes; OSError naming it when it cannot be read, ValueError when it is
    not what ``name`` needs (gRPC would fail each connection with lines of its own)."""
    if path is None:
        return None
    try:
        with open(path, "rb") as file:
            data = file.read(1 << 20)  # a certificate chain or a key is a few KiB
    except OSError as err:
        raise OSError(f"{name} {path}: cannot read it ({err.strerror or err})") from None
    wanted = b"PRIVATE KEY-----" if name == "key_file" else b"-----BEGIN CERTIFICATE-----"
    if wanted not in data:
        what = "a private key" if name == "key_file" else "a certificate"
        raise ValueError(f"{name} {path}: not {what} in PEM (no line with {wanted.decode()!r})")
    if name == "ca_file":
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=data.decode("ascii"))
        except (ssl.SSLError, UnicodeDecodeError, ValueError):
            raise ValueError(f"{name} {path}: its certificates do not parse as PEM") from None
    return data


class _CallDetails(
    collections.namedtuple(
        "_CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")
    ),
    grpc.ClientCallDetails,
):
    """A sync call's details with metadata of our own added (gRPC's own class cannot be copied)."""


class BearerToken(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds the token to every call of a sync channel."""

    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self._metadata = metadata

    def _details(self, details: grpc.ClientCallDetails) -> _CallDetails:
        return _CallDetails(
            details.method,
            details.timeout,
            (*(details.metadata or ()), *self._metadata),
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation, details, requests):
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation, details, requests):
        return continuation(self._details(details), requests)


def aio_interceptors(metadata: tuple[tuple[str, str], ...]) -> list[grpc.aio.ClientInterceptor]:
    """Interceptors that add the token to every call of a grpc.aio channel."""

    def details(call_details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        return call_details._replace(metadata=grpc.aio.Metadata(*(call_details.metadata or ()), *metadata))

    class UnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):
        async def intercept_unary_unary(self, continuation, call_details, request):
            return await continuation(details(call_details), request)

    class UnaryStream(grpc.aio.UnaryStreamClientInterceptor):
        async def intercept_unary_stream(self, continuation, call_details, request):
            return await continuation(details(call_details), request)

    class StreamUnary(grpc.aio.StreamUnaryClientInterceptor):
        async def intercept_stream_unary(self, continuation, call_details, requests):
            return await continuation(details(call_details), requests)

    class StreamStream(grpc.aio.StreamStreamClientInterceptor):
        async def intercept_stream_stream(self, continuation, call_details, requests):
            return await continuation(details(call_details), requests)

    return [UnaryUnary(), UnaryStream(), StreamUnary(), StreamStream()]
