"""Bearer tokens: who may call MarketDataService when the server runs with --auth-tokens FILE.

The file holds one token a line, ``token`` or ``name:token`` (the name is what
the log shows; a token alone is named after its line). Blank lines and lines
starting with ``#`` are skipped. The file is checked for changes at every call
(one ``stat``) and re-read when it changed, so adding or revoking a token
needs no restart; a file that turns unreadable or invalid keeps the tokens
last read, with a warning.

A call of MarketDataService must carry ``authorization: Bearer <token>``;
health and reflection stay open for probes and tooling. Tokens are compared
as SHA-256 digests with ``hmac.compare_digest``, against every known token
without stopping at a match, so the time taken says nothing about how much of
a token was right. Tokens never reach a log or a reply.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from .files import file_signature, read_regular_file
from .handlers import run_first
from .logs import LinesPerMinute

_LOGGER = logging.getLogger(__name__)

MIN_TOKEN_CHARS = 16
MAX_TOKEN_CHARS = 4096
MAX_TOKENS = 1_000  # every call compares against each: 1,000 cost ~60 us a call on this machine
# The longest file that can hold MAX_TOKENS tokens, with names and comments.
MAX_FILE_BYTES = MAX_TOKENS * (MAX_TOKEN_CHARS + 70)
# The characters RFC 6750 allows in a bearer token (token68).
_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_NAME = re.compile(r"[A-Za-z0-9\-._@]{1,64}")
# (peer, outcome) pairs already logged: a peer's first call under each name and its first
# refusal of each kind. The oldest are forgotten first, so a crowd of strangers cannot make
# this set grow without bound.
LOGGED_PEERS = 10_000
# Refusals are logged at most this many a minute: a stranger who opens connection after
# connection would otherwise write a line for each. The rest are counted, and the next line
# logged says how many; /metrics counts every one (grpc_code="UNAUTHENTICATED").
REFUSAL_LINES_PER_MINUTE = 10
_now = time.monotonic  # the clock of that minute (a test may replace it)


class TokenFileError(ValueError):
    """A token file that cannot be used; the message names the file and the line, never a token."""


def parse_tokens(text: str, path: str) -> dict[bytes, str]:
    """SHA-256 digest of each token -> its name."""
    tokens: dict[bytes, str] = {}
    names: set[str] = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"--auth-tokens {path}: line {number}"
        name, colon, token = line.partition(":")
        if not colon:
            name, token = f"line-{number}", line
        elif not _NAME.fullmatch(name):
            raise TokenFileError(f"{where}: a name before ':' must be 1 to 64 letters, digits or -._@")
        if not _TOKEN.fullmatch(token):
            raise TokenFileError(
                f"{where}: a token may hold only letters, digits and -._~+/ (then '=' padding)"
            )
        if not MIN_TOKEN_CHARS <= len(token) <= MAX_TOKEN_CHARS:
            raise TokenFileError(
                f"{where}: a token must have {MIN_TOKEN_CHARS} to {MAX_TOKEN_CHARS} characters, "
                f"this one has {len(token)} (make one with: openssl rand -base64 32)"
            )
        if name in names:
            raise TokenFileError(f"{where}: the name {name!r} is used twice")
        digest = hashlib.sha256(token.encode("ascii")).digest()
        if digest in tokens:
            raise TokenFileError(f"{where}: the same token as {tokens[digest]!r}")
        names.add(name)
        tokens[digest] = name
        if len(tokens) > MAX_TOKENS:
            raise TokenFileError(f"--auth-tokens {path}: more than {MAX_TOKENS} tokens")
    return tokens


_NOTHING = object()


class TokenFile:
    """The tokens of one file, re-read when the file changes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._signature = file_signature(self.path)
        self._tokens = self._read()  # TokenFileError at start: the server does not start
        if not self._tokens:
            raise TokenFileError(f"--auth-tokens {path}: no tokens in it, so nobody could call")
        self._refused: object = _NOTHING  # the signature last refused (None: the file is gone)

    def _read(self) -> dict[bytes, str]:
        try:
            data = read_regular_file(self.path, MAX_FILE_BYTES + 1)
            if len(data) > MAX_FILE_BYTES:
                # Never parse a prefix: its last line could be the first characters of a token.
                raise TokenFileError(
                    f"--auth-tokens {self.path}: longer than {MAX_FILE_BYTES:,} bytes, "
                    f"more than {MAX_TOKENS:,} tokens of at most {MAX_TOKEN_CHARS} can need"
                )
            # utf-8-sig: a byte order mark (Windows editors write one) is not part of line 1
            text = data.decode("utf-8-sig")
        except (OSError, UnicodeDecodeError) as err:
            why = err.strerror if isinstance(err, OSError) else "not UTF-8 text"
            raise TokenFileError(f"--auth-tokens {self.path}: cannot read it ({why or err})") from None
        return parse_tokens(text, self.path)

    def refresh(self) -> None:
        """Re-read the file if it changed since the last look; on failure keep the old tokens."""
        signature = file_signature(self.path)
        if signature in (self._signature, self._refused):
            return
        try:
            tokens = self._read()
        except TokenFileError as err:
            self._refused = signature
            _LOGGER.warning("%s; the tokens read before stay in force", err)
            return
        self._tokens, self._signature, self._refused = tokens, signature, _NOTHING
        _LOGGER.info("--auth-tokens %s changed: %d tokens now", self.path, len(tokens))
        if not tokens:
            _LOGGER.warning("--auth-tokens %s holds no tokens: every call is refused", self.path)

    def name_of(self, token: str) -> str | None:
        """The name of ``token``, or None; takes the same time whichever token, if any, matches."""
        self.refresh()
        digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        found = None
        for known, name in self._tokens.items():
            if hmac.compare_digest(known, digest):
                found = name
        return found


@dataclass(frozen=True)
class Refusal:
    """Why a call was refused: what the caller is told (never a token)."""

    message: str


MISSING = Refusal(
    "this server requires a token: send metadata 'authorization: Bearer <token>' "
    "(client: token=...; command line: --token or MARKETDATA_TOKEN)"
)
MALFORMED = Refusal("the authorization metadata must be 'Bearer <token>'")
UNKNOWN = Refusal("the token is not valid on this server (unknown, or revoked)")


class TokenAuth(grpc.aio.ServerInterceptor):
    """Lets a call of ``service`` through only with a known bearer token; other services pass."""

    def __init__(self, tokens: TokenFile, service: str) -> None:
        self._tokens = tokens
        self._prefix = f"/{service}/"
        self._logged: collections.OrderedDict[tuple[str, str], None] = collections.OrderedDict()
        self._refusal_lines = LinesPerMinute(REFUSAL_LINES_PER_MINUTE, lambda: _now())

    def check(self, metadata: tuple | None) -> tuple[str | None, Refusal | None]:
        """(the token's name, None) for a known token, else (None, why not)."""
        values = [value for key, value in metadata or () if key == "authorization"]
        if not values:
            return None, MISSING
        if len(values) > 1 or not isinstance(values[0], str):
            return None, MALFORMED
        scheme, _, token = values[0].strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None, MALFORMED
        name = self._tokens.name_of(token)
        return (name, None) if name is not None else (None, UNKNOWN)

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if handler is None or not details.method.startswith(self._prefix):
            return handler
        name, refusal = self.check(details.invocation_metadata)
        if refusal is None:
            return run_first(handler, self._noting(name, details.method))
        # The request is never decoded: a stranger's bytes get no further than this.
        return run_first(handler, self._refusing(refusal, details.method), request_deserializer=None)

    def _first_time(self, peer: str, outcome: str) -> bool:
        """True once per peer and outcome (within the last LOGGED_PEERS seen)."""
        key = (peer, outcome)
        if key in self._logged:
            self._logged.move_to_end(key)
            return False
        self._logged[key] = None
        if len(self._logged) > LOGGED_PEERS:
            self._logged.popitem(last=False)
        return True

    def _noting(self, name: str | None, method: str) -> Callable:
        """The step before a call let through: log the first call of each peer under ``name``."""
        first_time = self._first_time

        async def note(context) -> None:
            peer = context.peer()
            if first_time(peer, name or ""):
                _LOGGER.info("peer %s calls as %s (first call: %s)", peer, name, method)

        return note

    def _refusing(self, refusal: Refusal, method: str) -> Callable:
        """The step that ends a refused call with UNAUTHENTICATED (logged within the limits)."""
        first_time, allowed = self._first_time, self._refusal_lines.allow

        async def refuse(context) -> None:
            peer = context.peer()
            if first_time(peer, refusal.message) and (unlogged := allowed()) is not None:
                _LOGGER.warning(
                    "refused %s from %s: %s%s",
                    method,
                    peer,
                    refusal.message.split(":")[0],
                    f" ({unlogged} more refusals since the last line were not logged)" if unlogged else "",
                )
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, refusal.message)

        return refuse
