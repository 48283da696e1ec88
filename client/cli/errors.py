"""What the command line says when a call fails, and the exit codes it returns."""

from __future__ import annotations

import grpc

from ..errors import field_violations

EXIT_RPC_ERROR = 1
EXIT_WRITE_ERROR = 1  # -o FILE or --plot FILE.png could not be written
EXIT_INTERRUPTED = 130
# How the server's UNAVAILABLE begins when it ends a stream or subscription because it is stopping,
# as against a server that cannot be reached at all.
SHUTTING_DOWN = "server is shutting down"


def describe_error(error: grpc.RpcError, target: str, timeout: float | None, secure: bool = False) -> str:
    """One readable line (or a few) for an RPC failure; ``secure``: the call used TLS."""
    code = error.code()
    details = error.details() or ""
    if code == grpc.StatusCode.UNAVAILABLE and details.startswith(SHUTTING_DOWN):
        return f"error: the server at {target} is shutting down ({details}); retry or use another server"
    if code == grpc.StatusCode.UNAVAILABLE:
        hint = (
            "If it serves TLS, is --tls-ca the CA that signed its certificate, and for mTLS are "
            "--tls-cert and --tls-key a client certificate it trusts?"
            if secure
            else "Is it running? Start one with `make run`. If it serves TLS, add --tls-ca FILE (or --tls)."
        )
        return f"error: cannot reach the server at {target} ({details}). {hint}"
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return f"error: the server refused the call: {details}"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return (
            f"error: deadline exceeded: no complete answer within {timeout} s. "
            "Raise --timeout or ask for less."
        )
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        fields = ", ".join(field for field, _ in field_violations(error))
        return f"error: invalid argument{f' ({fields})' if fields else ''}: {details}"
    return f"error: {code.name}: {details}"
