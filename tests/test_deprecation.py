"""Deprecations warn at the caller, keep working, and keep to the one-minor-version policy."""

from __future__ import annotations

import inspect
import warnings

import pytest

from gateway_core import GatewayDeprecationWarning
from gateway_core.deprecation import deprecated, deprecation_message, warn_deprecated


@deprecated(since="0.2.0", removal="0.3.0", use="new_total")
def old_total(values: list[int], *, start: int = 0) -> int:
    """Sum the values."""
    return sum(values, start)


@deprecated(since="0.2", removal="1.0")
class OldCounter:
    """Counts."""

    def __init__(self, start: int = 0) -> None:
        self.count = start


def test_a_deprecated_function_warns_at_the_caller_and_still_works() -> None:
    with pytest.warns(GatewayDeprecationWarning) as caught:
        assert old_total([1, 2], start=3) == 6
    (warning,) = caught
    assert str(warning.message) == (
        f"{__name__}.old_total is deprecated since 0.2.0 and will be removed in 0.3.0; use new_total instead"
    )
    assert warning.filename == __file__
    assert old_total.__deprecated__ == str(warning.message)  # type: ignore[attr-defined]
    assert old_total.__doc__ == "Sum the values."
    assert str(inspect.signature(old_total)) == "(values: 'list[int]', *, start: 'int' = 0) -> 'int'"


def test_a_deprecated_class_warns_when_made_and_keeps_its_signature() -> None:
    with pytest.warns(GatewayDeprecationWarning, match=r"OldCounter is deprecated since 0\.2 .* removed in 1\.0$"):
        counter = OldCounter(4)
    assert counter.count == 4
    assert isinstance(counter, OldCounter)
    assert str(inspect.signature(OldCounter)) == "(start: 'int' = 0) -> 'None'"


def test_deprecation_warnings_are_deprecation_warnings() -> None:
    assert issubclass(GatewayDeprecationWarning, DeprecationWarning)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert old_total([1]) == 1  # a program silencing DeprecationWarning silences these too


def test_warn_deprecated_names_the_callers_caller() -> None:
    def takes_old_keyword(**options: int) -> int:
        if "size" in options:
            warn_deprecated("the size= keyword", since="0.4.1", removal="0.5.0", use="limit=")
        return options.get("size", 0)

    with pytest.warns(GatewayDeprecationWarning, match=r"the size= keyword is deprecated since 0\.4\.1") as caught:
        takes_old_keyword(size=3)
    assert caught[0].filename == __file__
    assert caught[0].lineno == inspect.currentframe().f_lineno - 2  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("since", "removal"),
    [("0.2.0", "0.2.9"), ("0.2.0", "0.1.0"), ("1.4", "1.4.1"), ("2.0.0", "1.9.0")],
)
def test_a_removal_sooner_than_the_next_minor_version_is_refused(since: str, removal: str) -> None:
    with pytest.raises(ValueError, match="deprecations warn for one minor version"):
        deprecation_message("x", since=since, removal=removal)
    with pytest.raises(ValueError, match="deprecations warn for one minor version"):
        deprecated(since=since, removal=removal)(old_total)


def test_versions_must_be_major_minor_patch() -> None:
    with pytest.raises(ValueError, match=r"'next' is not a MAJOR\.MINOR"):
        deprecation_message("x", since="0.2.0", removal="next")
