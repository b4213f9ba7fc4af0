"""An htpasswd file read into per-user password hashes, refusing formats the plugin cannot check.

Pure parsing: no I/O and no bcrypt work (checking a password is the plugin's job, off the
event loop). Refusals name the line and the user, never the hash: a line in the wrong format
may well hold a password in plain text, and the reason ends up on the admin ``/routes`` page.
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
from collections import Counter
from dataclasses import dataclass

from gateway_core import PluginConfigError

BCRYPT_COSTS = range(4, 18)
"""bcrypt costs accepted: those ``htpasswd -B -C`` can make (4 to 17). A higher cost would hold a
thread for seconds per check."""

_BCRYPT = re.compile(r"\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{21}[.Oeu][./A-Za-z0-9]{31}")
"""A bcrypt hash: variant, cost, 22 characters of salt (whose last one carries 2 bits, so only
``.Oeu`` are valid there) and 31 of checksum, in bcrypt's base64 alphabet."""
_SHA_PREFIX = "{SHA}"
_UNSUPPORTED = (
    ("$apr1$", "apr1-MD5"),
    ("$1$", "MD5-crypt"),
    ("$5$", "SHA-256-crypt"),
    ("$6$", "SHA-512-crypt"),
    ("$2x$", "bcrypt $2x$ (the buggy-implementation variant)"),
    ("{SSHA}", "salted SHA"),
)


class HashKind(enum.Enum):
    """How a stored password is checked."""

    BCRYPT = "bcrypt"
    SHA1 = "sha1"


@dataclass(frozen=True, slots=True)
class PasswordHash:
    """One user's stored password: a bcrypt hash string, or the 20-byte SHA-1 digest of ``{SHA}``."""

    kind: HashKind
    value: bytes
    cost: int = 0
    """The bcrypt cost (log2 of rounds); 0 for SHA-1."""


def parse_htpasswd(data: bytes, *, source: str) -> dict[str, PasswordHash]:
    """User name -> stored hash, from htpasswd text; PluginConfigError naming the line if unusable.

    Blank lines and lines starting with ``#`` are skipped; a third ``:``-separated field (a
    comment, as nginx allows) is ignored. ``source`` names the file in error messages.
    """
    users: dict[str, PasswordHash] = {}
    lines: dict[str, int] = {}
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            line = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise PluginConfigError(f"{source} line {number}: not valid UTF-8") from None
        if not line or line.startswith("#"):
            continue
        user, colon, rest = line.partition(":")
        if not colon:
            raise PluginConfigError(f"{source} line {number}: expected 'user:hash'")
        where = f"{source} line {number} (user {user!r})"
        _check_user(user, where)
        if user in users:
            raise PluginConfigError(f"{where}: the user is already defined on line {lines[user]}")
        users[user] = _parse_hash(rest.partition(":")[0], where)
        lines[user] = number
    if not users:
        raise PluginConfigError(f"{source} holds no users")
    return users


def usual_bcrypt_cost(users: dict[str, PasswordHash]) -> int | None:
    """The most common bcrypt cost among ``users`` (the higher on a tie); None without bcrypt entries."""
    costs = Counter(entry.cost for entry in users.values() if entry.kind is HashKind.BCRYPT)
    if not costs:
        return None
    return max(costs, key=lambda cost: (costs[cost], cost))


def _check_user(user: str, where: str) -> None:
    if not user:
        raise PluginConfigError(f"{where}: the user name is empty")
    if any(char < " " or char == "\x7f" for char in user):
        raise PluginConfigError(f"{where}: the user name holds control characters")
    try:
        user.encode("latin-1")
    except UnicodeEncodeError:
        raise PluginConfigError(
            f"{where}: the user name cannot travel in the identity header (only Latin-1 characters can)"
        ) from None


def _parse_hash(text: str, where: str) -> PasswordHash:
    match = _BCRYPT.fullmatch(text)
    if match is not None:
        cost = int(match.group(1))
        if cost not in BCRYPT_COSTS:
            raise PluginConfigError(
                f"{where}: bcrypt cost {cost} is outside {BCRYPT_COSTS.start}-{BCRYPT_COSTS.stop - 1}"
            )
        return PasswordHash(HashKind.BCRYPT, text.encode("ascii"), cost)
    if text.startswith(_SHA_PREFIX):
        try:
            digest = base64.b64decode(text.removeprefix(_SHA_PREFIX), validate=True)
        except (binascii.Error, ValueError):
            digest = b""
        if len(digest) != 20:
            raise PluginConfigError(f"{where}: the {{SHA}} hash is not the base64 of a 20-byte SHA-1 digest")
        return PasswordHash(HashKind.SHA1, digest)
    for prefix, name in _UNSUPPORTED:
        if text.startswith(prefix):
            raise PluginConfigError(f"{where}: {name} hashes are not supported; re-create it with `htpasswd -B`")
    if text.startswith("$2"):
        raise PluginConfigError(f"{where}: malformed bcrypt hash")
    raise PluginConfigError(
        f"{where}: unrecognised hash (plain text or DES crypt?); only bcrypt and {{SHA}} are supported, "
        "re-create it with `htpasswd -B`"
    )
