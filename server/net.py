"""Addresses as the server names them in its messages, and why one cannot be bound: shared by
the gRPC, health, HTTP and /metrics ports."""

from __future__ import annotations

import errno
import ipaddress

_BIND_ERRORS = {  # why an address cannot be bound, and what to do, for errnos a user can fix
    errno.EADDRINUSE: "the port is in use by another process: choose another {flag}{zero}",
    errno.EADDRNOTAVAIL: "--host {host} is not an address of this machine: use one of its own, or 0.0.0.0",
    errno.EACCES: "permission denied: ports below 1024 need privileges, choose a higher {flag}",
}
_PORT_ZERO = {"--port": " (0 picks a free one)"}  # what 0 means for the flag, where it picks a port


def address(host: str, port: int) -> str:
    """``host:port``, an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def why_not_bound(err: OSError, host: str, flag: str) -> str:
    """Why binding ``host`` on the port of ``flag`` failed, and what to do, in one line."""
    if err.errno in _BIND_ERRORS:
        return _BIND_ERRORS[err.errno].format(host=host, flag=flag, zero=_PORT_ZERO.get(flag, ""))
    return err.strerror or str(err)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable only from this machine (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
