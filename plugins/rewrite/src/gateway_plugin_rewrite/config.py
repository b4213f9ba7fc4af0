"""The ``meta-native.io/plugin.rewrite`` annotation, validated.

Every check that can be made on the rule alone is made here, so a bad rule rejects the
Ingress instead of failing requests: prefixes and replacements start with ``/``, the regex
compiles, is bounded in length and free of nested unbounded repeats, and every ``$n`` in the
replacement names a group the regex has.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway_plugin_rewrite.backtracking import has_nested_unbounded_repeat
from gateway_plugin_rewrite.paths import check_literal, has_dot_segment
from gateway_plugin_rewrite.template import Template

MAX_REGEX_LENGTH = 512
"""The longest regex an annotation may hold."""


def clean_prefix(value: str, where: str) -> str:
    """A prefix as rules use it: absolute, no query, no dot segments, no trailing ``/``."""
    if not value.startswith("/"):
        raise ValueError(f"{where} must start with '/'")
    check_literal(value, where)
    if "?" in value:
        raise ValueError(f"{where} is a path and must not contain '?'")
    if has_dot_segment(value):
        raise ValueError(f"{where} must not contain '.' or '..' segments")
    if "//" in value:
        raise ValueError(f"{where} must not contain empty segments ('//')")
    return value.rstrip("/") or "/"


class PrefixReplacement(BaseModel):
    """Replace one path prefix with another."""

    model_config = ConfigDict(extra="forbid")

    from_: str = Field(
        alias="from",
        min_length=1,
        max_length=1024,
        description="Prefix to replace, matched on whole segments of the decoded path (`/api` matches "
        "`/api` and `/api/x`, not `/apix`). `/` matches every path, so `to` is prepended.",
    )
    to: str = Field(
        min_length=1,
        max_length=1024,
        description="Prefix put in its place (decoded text; encoded on the wire). "
        "The rest of the path follows byte for byte.",
    )

    @field_validator("from_")
    @classmethod
    def _from(cls, value: str) -> str:
        return clean_prefix(value, "replace_prefix.from")

    @field_validator("to")
    @classmethod
    def _to(cls, value: str) -> str:
        return clean_prefix(value, "replace_prefix.to")


class RewriteConfig(BaseModel):
    """One rewrite rule for the route's paths: a prefix strip, a prefix replacement or a regex."""

    model_config = ConfigDict(extra="forbid")

    strip_prefix: str | None = Field(
        None,
        min_length=1,
        max_length=1024,
        description="Prefix removed from the path, matched on whole segments of the decoded path: "
        "with `/api`, `/api/v1/x` goes upstream as `/v1/x` and `/api` as `/`.",
    )
    replace_prefix: PrefixReplacement | None = Field(
        None, description="Prefix replaced by another: `{from: /api, to: /internal}`."
    )
    regex: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_REGEX_LENGTH,
        description="Python regular expression searched in the decoded path (anchor it with `^...$`). "
        "Nested unbounded repeats such as `(a+)+` are refused; a path that does not match is forwarded unchanged.",
    )
    replacement: str | None = Field(
        None,
        min_length=1,
        max_length=1024,
        description="With `regex`: the new path, starting with `/`; `$1`..`$9`, `${n}` or `${name}` insert a "
        "capture, `$$` a dollar sign. A `?` starts a query, to which the client's query is appended with `&`.",
    )
    max_path_length: int = Field(
        2048,
        ge=16,
        le=8192,
        description="With `regex`: the longest raw path the regex is run on; a longer one is answered "
        "`414` (it bounds the regex's work per request).",
    )
    x_original_uri: bool = Field(
        False,
        description="Send the path and query the client asked for in `X-Original-URI` (any value the client "
        "sent in that header is replaced).",
    )

    @field_validator("strip_prefix")
    @classmethod
    def _strip(cls, value: str | None) -> str | None:
        if value is None:
            return None
        cleaned = clean_prefix(value, "strip_prefix")
        if cleaned == "/":
            raise ValueError("strip_prefix '/' would remove nothing")
        return cleaned

    @field_validator("regex")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            re.compile(value)
        except re.error as error:
            raise ValueError(f"regex does not compile: {error}") from None
        if has_nested_unbounded_repeat(value):
            raise ValueError(
                "regex nests an unbounded repeat inside another (like '(a+)+'), which can backtrack "
                "for minutes; use a possessive quantifier ('a++') or an atomic group ('(?>...)')"
            )
        return value

    @model_validator(mode="after")
    def _one_rule(self) -> RewriteConfig:
        given = [name for name in ("strip_prefix", "replace_prefix", "regex") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                f"set exactly one of strip_prefix, replace_prefix or regex (got {', '.join(given) or 'none'})"
            )
        if (self.regex is None) != (self.replacement is None):
            raise ValueError("regex and replacement go together: set both or neither")
        if self.regex is not None and self.replacement is not None:
            self.template()
        return self

    def pattern(self) -> re.Pattern[str]:
        """The compiled regex (only when ``regex`` is set)."""
        assert self.regex is not None
        return re.compile(self.regex)

    def template(self) -> Template:
        """The parsed replacement (only when ``regex`` is set); ValueError when invalid."""
        assert self.replacement is not None
        return Template.parse(self.replacement, self.pattern())
