"""A config-time guard against the regexes that backtrack catastrophically.

Python's ``re`` has no time limit, so a pattern like ``(a+)+$`` can hold a worker for
minutes on a few dozen characters. The classic cause is an unbounded repeat nested inside
another unbounded repeat; this module finds it in the parsed pattern and the config refuses
it. Possessive quantifiers (``a++``) and atomic groups (``(?>...)``) never backtrack into
themselves and are accepted. It reads the pattern tree through ``re._parser``, the parser
``re.compile`` itself uses; were that module ever missing, the check is skipped (the path
length bound still applies).
"""

from __future__ import annotations

import importlib
from typing import Any


def has_nested_unbounded_repeat(pattern: str) -> bool:
    """True when ``pattern`` repeats, without bound, something that itself repeats without bound."""
    try:
        parser: Any = importlib.import_module("re._parser")
        constants: Any = importlib.import_module("re._constants")
    except ImportError:  # pragma: no cover - CPython 3.11+ has both
        return False
    return _walk(parser.parse(pattern), constants, inside_unbounded=False)


def _walk(items: Any, constants: Any, *, inside_unbounded: bool) -> bool:
    for op, argument in items:
        if op in (constants.MAX_REPEAT, constants.MIN_REPEAT):
            _low, high, body = argument
            unbounded = high == constants.MAXREPEAT
            if unbounded and inside_unbounded:
                return True
            if _walk(body, constants, inside_unbounded=inside_unbounded or unbounded):
                return True
        elif op == constants.SUBPATTERN:
            if _walk(argument[-1], constants, inside_unbounded=inside_unbounded):
                return True
        elif op == constants.BRANCH:
            if any(_walk(branch, constants, inside_unbounded=inside_unbounded) for branch in argument[1]):
                return True
        elif op in (constants.ASSERT, constants.ASSERT_NOT):
            if _walk(argument[1], constants, inside_unbounded=inside_unbounded):
                return True
        elif op == constants.GROUPREF_EXISTS:
            _group, yes, no = argument
            branches = [yes] if no is None else [yes, no]
            if any(_walk(branch, constants, inside_unbounded=inside_unbounded) for branch in branches):
                return True
    return False
