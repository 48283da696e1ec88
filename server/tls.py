"""TLS for the gRPC and HTTP ports: the certificate files, checked at start and re-read when
they change.

gRPC asks ``CertificateFiles.fetch`` for the certificate configuration at
every new connection (its certificate-configuration fetcher). The answer is
None while the files are unchanged, so a connection costs a few ``stat``
calls; when a file changes (a renewal, or Kubernetes swapping a mounted
Secret) the pair is read, checked and handed over. Connections already open
keep the certificate they were made with, so no stream is dropped. A
half-written or mismatched pair is refused with a warning and the previous
pair stays in use until the files are whole again. The HTTP port's ``ssl_context``
looks at the files the same way at each handshake.
"""

from __future__ import annotations

import contextlib
import logging
import os
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import grpc

from .files import file_signature, read_regular_file

_LOGGER = logging.getLogger(__name__)


class TlsFileError(ValueError):
    """A certificate, key or CA file that cannot be used; the message names the flag and the file."""


@dataclass(frozen=True)
class TlsOptions:
    """The TLS flags: ``cert`` and ``key`` serve TLS, ``client_ca`` also requires client certificates."""

    cert: str
    key: str
    client_ca: str | None = None

    @property
    def mutual(self) -> bool:
        return self.client_ca is not None


@dataclass(frozen=True)
class _Pair:
    """The bytes of one consistent set of files, and what they looked like on disk."""

    key: bytes
    cert: bytes
    client_ca: bytes | None
    signature: tuple


class CertificateFiles:
    """The server's certificate, key and (for mTLS) client CA, as gRPC fetches them."""

    def __init__(self, options: TlsOptions) -> None:
        self.options = options
        self._lock = threading.Lock()  # gRPC may fetch from several of its threads
        self._current = self._load()  # TlsFileError at start: the server does not start
        self._refused: tuple | None = None  # the last signature that failed, warned about once
        self.reloads = 0

    def credentials(self) -> grpc.ServerCredentials:
        """Server credentials that pick up changed files at the next connection."""
        return grpc.dynamic_ssl_server_credentials(
            self._configuration(self._current),
            self.fetch,
            require_client_authentication=self.options.mutual,
        )

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """gRPC's callback: a new configuration when the files changed and are whole, else None."""
        pair = self._refreshed()
        return self._configuration(pair) if pair is not None else None

    def _refreshed(self) -> _Pair | None:
        """The files read again if they changed and are whole (then the current pair), else None."""
        try:
            with self._lock:
                signature = self._signature()
                if signature in (self._current.signature, self._refused):
                    return None
                try:
                    pair = self._load()
                except TlsFileError as err:
                    self._refused = signature
                    _LOGGER.warning("%s; still serving the previous certificate", err)
                    return None
                self._current, self._refused = pair, None
                self.reloads += 1
            _LOGGER.info("TLS certificate files changed: new connections get the new certificate")
            return pair
        except Exception:  # never let an error escape into a handshake
            _LOGGER.exception("could not check the TLS files; still serving the previous certificate")
            return None

    def ssl_context(self) -> ssl.SSLContext:
        """A context for the HTTP port serving the same files, the changed ones from the next
        handshake on (each handshake looks at the files, as gRPC's fetch does)."""
        built: dict[tuple, ssl.SSLContext] = {}

        def context_for(pair: _Pair) -> ssl.SSLContext:
            if pair.signature not in built:
                built.clear()
                built[pair.signature] = self._ssl_context(pair, on_handshake)
            return built[pair.signature]

        def on_handshake(connection: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> None:
            self._refreshed()
            current = context_for(self._current)
            if connection.context is not current:
                connection.context = current

        return context_for(self._current)

    def _ssl_context(self, pair: _Pair, on_handshake) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        with _as_path(pair.cert, self.options.cert) as cert_path, _as_path(pair.key, self.options.key) as key:
            context.load_cert_chain(cert_path, key)
        if pair.client_ca is not None:
            context.load_verify_locations(cadata=pair.client_ca.decode("ascii"))
            context.verify_mode = ssl.CERT_REQUIRED
        context.set_alpn_protocols(["http/1.1"])
        context.sni_callback = on_handshake
        return context

    def _configuration(self, pair: _Pair) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration([(pair.key, pair.cert)], pair.client_ca)

    def _paths(self) -> list[tuple[str, str]]:
        options = self.options
        paths = [("--tls-cert", options.cert), ("--tls-key", options.key)]
        if options.client_ca is not None:
            paths.append(("--tls-client-ca", options.client_ca))
        return paths

    def _signature(self) -> tuple:
        """What the files look like now (a changed file, or a swapped symlink, changes it)."""
        return tuple(file_signature(path) for _, path in self._paths())

    def _load(self) -> _Pair:
        """Read every file, and check that the key matches the certificate and the CA parses.

        The files are read, checked, and their signature compared before and after, so a
        pair caught half-way through a renewal is refused rather than served."""
        before = self._signature()
        contents = {flag: _read(flag, path) for flag, path in self._paths()}
        _check_pair(self.options, contents["--tls-cert"], contents["--tls-key"])
        client_ca = contents.get("--tls-client-ca")
        if client_ca is not None:
            _check_ca(self.options.client_ca or "", client_ca)
        after = self._signature()
        if before != after:
            raise TlsFileError("the TLS files changed while they were being read")
        return _Pair(contents["--tls-key"], contents["--tls-cert"], client_ca, after)


def _read(flag: str, path: str) -> bytes:
    try:
        data = read_regular_file(path, 1 << 20)  # a certificate chain is a few KiB
    except OSError as err:
        raise TlsFileError(f"{flag} {path}: cannot read it ({err.strerror or err})") from None
    if b"-----BEGIN " not in data:
        raise TlsFileError(f"{flag} {path}: not a PEM file (no -----BEGIN line)")
    return data


def _check_pair(options: TlsOptions, cert: bytes, key: bytes) -> None:
    """TlsFileError unless the certificate chain parses and the key belongs to it.

    The standard library's ssl module does the checking. It reads only paths, so the
    bytes just read (the ones gRPC will get) are handed to it through memory files
    where the system has them (Linux), never through a copy of the key on disk."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with _as_path(cert, options.cert) as cert_path, _as_path(key, options.key) as key_path:
        try:
            context.load_cert_chain(cert_path, key_path)
        except ssl.SSLError as err:
            raise TlsFileError(
                f"--tls-cert {options.cert} and --tls-key {options.key}: not a certificate and its "
                f"private key in PEM ({err.reason or err}); an encrypted key is not supported"
            ) from None


def _check_ca(path: str, data: bytes) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cadata=data.decode("ascii"))
    except (ssl.SSLError, UnicodeDecodeError, ValueError) as err:
        raise TlsFileError(
            f"--tls-client-ca {path}: no CA certificate in PEM ({getattr(err, 'reason', None) or err})"
        ) from None


@contextlib.contextmanager
def _as_path(data: bytes, path: str) -> Iterator[str]:
    """A path whose content is ``data``: a memory file (memfd), or ``path`` itself where the
    system has none (the before-and-after signature check then covers the difference)."""
    if not hasattr(os, "memfd_create"):
        yield path
        return
    fd = os.memfd_create("tls", 0)
    try:
        os.write(fd, data)
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)
