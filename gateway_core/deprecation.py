"""Deprecating a public name: it keeps working, with a warning, for one minor version.

The policy (``docs/reference/public-api.md``): a public name that is going away is first
marked deprecated in a release; it then warns with :class:`GatewayDeprecationWarning` on every
use until the next minor release, which may remove it. :func:`deprecated` marks a function or
class (and records the mark where the public-API test and type checkers see it, PEP 702's
``__deprecated__``); :func:`warn_deprecated` covers what has no object to decorate, such as a
keyword argument or a settings key. Both refuse a removal version the policy does not allow.

This module only warns; it never removes or hides anything.
"""

from __future__ import annotations

import inspect
import re
import warnings
from collections.abc import Callable
from typing import TypeVar

from typing_extensions import deprecated as pep702_deprecated

__all__ = ["GatewayDeprecationWarning", "deprecated", "deprecation_message", "warn_deprecated"]

T = TypeVar("T")

_VERSION = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?$")


class GatewayDeprecationWarning(DeprecationWarning):
    """A public name of ``gateway_core`` used here is removed in a coming minor release."""


def _minor(version: str) -> tuple[int, int]:
    match = _VERSION.match(version)
    if match is None:
        raise ValueError(f"{version!r} is not a MAJOR.MINOR[.PATCH] version")
    return int(match.group(1)), int(match.group(2))


def deprecation_message(what: str, *, since: str, removal: str, use: str | None = None) -> str:
    """The warning text for ``what``; ValueError when ``removal`` comes too soon for the policy.

    ``removal`` must be a later minor (or major) release than ``since``: a deprecated name
    warns for at least one minor version before it may go.
    """
    since_major, since_minor = _minor(since)
    if _minor(removal) < (since_major, since_minor + 1):
        raise ValueError(
            f"{what}: deprecated in {since}, it may be removed in {since_major}.{since_minor + 1} at the "
            f"earliest, not {removal} (deprecations warn for one minor version)"
        )
    instead = f"; use {use} instead" if use else ""
    return f"{what} is deprecated since {since} and will be removed in {removal}{instead}"


def deprecated(*, since: str, removal: str, use: str | None = None) -> Callable[[T], T]:
    """Mark a function or class deprecated: each call (or instantiation) warns.

    ``since`` is the release that deprecates it, ``removal`` the one that may remove it,
    ``use`` what to use instead.
    """

    def mark(target: T) -> T:
        name = getattr(target, "__qualname__", repr(target))
        module = getattr(target, "__module__", "gateway_core")
        message = deprecation_message(f"{module}.{name}", since=since, removal=removal, use=use)
        signature = inspect.signature(target) if isinstance(target, type) else None
        marked: T = pep702_deprecated(message, category=GatewayDeprecationWarning, stacklevel=1)(target)
        if signature is not None:  # the warning wraps __new__; keep the class's own signature visible
            marked.__signature__ = signature  # type: ignore[attr-defined]
        return marked

    return mark


def warn_deprecated(what: str, *, since: str, removal: str, use: str | None = None, stacklevel: int = 2) -> None:
    """Warn that ``what`` (a parameter, a settings key) is deprecated; call it where it is used.

    ``stacklevel`` counts from the caller of this function (2: its caller's caller).
    """
    message = deprecation_message(what, since=since, removal=removal, use=use)
    warnings.warn(message, GatewayDeprecationWarning, stacklevel=stacklevel + 1)
