"""Label matchers, as Alertmanager spells them: ``{label, op, value}`` with op ``=``, ``!=``, ``=~``, ``!~``.

* Regexes match the whole value (anchored, as Prometheus and Alertmanager do): ``api|web`` matches ``api`` and
  ``web``, never ``my-api``.
* A label the alert does not have is the empty string, so ``team=""`` matches an alert without ``team`` and
  ``team!=""`` one with it.
* Regexes are checked when a policy or silence is saved (they compile, are at most ``MAX_VALUE`` characters, and
  repeat nothing unbounded inside a repetition): only this module runs them, with Python's ``re``, which has no
  time limit.

A matcher may also be written as Alertmanager's text form, ``service=~"api|web"`` (quotes optional).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, ValidationInfo, field_validator

MAX_VALUE = 256
MAX_MATCHERS = 50
Op = Literal["=", "!=", "=~", "!~"]
# Alert labels are the rule's (identifier-like) and the series' (attribute names such as http.route).
LabelName = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f]+$")]

_TEXT_FORM = re.compile(
    r'^\s*(?P<label>[^\s=!~"]+)\s*(?P<op>=~|!~|!=|=)\s*(?:"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<bare>[^"]*?))\s*$',
    re.DOTALL,
)


def parse_text(text: str) -> dict[str, str]:
    """``service=~"api|web"`` → ``{"label": "service", "op": "=~", "value": "api|web"}``."""
    match = _TEXT_FORM.match(text)
    if match is None:
        raise ValueError('a matcher is {"label", "op", "value"} or text such as service=~"api|web"')
    quoted = match.group("quoted")
    value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else (match.group("bare") or "")
    return {"label": match.group("label"), "op": match.group("op"), "value": value}


def _from_text(value: Any) -> Any:
    return parse_text(value) if isinstance(value, str) else value


@functools.lru_cache(maxsize=4096)
def compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _repeats(items: Any, inside_repeat: bool) -> bool:
    """Whether a parsed pattern repeats, inside a repeat, something without bound: ``(a+)+``, ``(.*x)*``. Python's
    ``re`` backtracks exponentially on those, and one tenant's regex would stall the dispatcher for every tenant."""
    from re import _constants as sre  # type: ignore[attr-defined]

    for op, av in items:
        if op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
            _, high, sub = av
            if inside_repeat and high == sre.MAXREPEAT:
                return True
            if _repeats(sub, inside_repeat or high > 1):
                return True
        elif op == sre.SUBPATTERN:
            if _repeats(av[3], inside_repeat):
                return True
        elif op == sre.BRANCH:
            if any(_repeats(branch, inside_repeat) for branch in av[1]):
                return True
        elif op in (sre.ASSERT, sre.ASSERT_NOT):
            if _repeats(av[1], inside_repeat):
                return True
        elif op == sre.ATOMIC_GROUP and _repeats(av, inside_repeat):
            return True
    return False


def check_regex(pattern: str) -> None:
    """ValueError unless ``pattern`` compiles and has no nested unbounded repetition."""
    from re import _parser as sre_parse  # type: ignore[attr-defined]

    try:
        compiled(pattern)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from None
    if _repeats(sre_parse.parse(pattern).data, False):
        raise ValueError(
            "a repetition inside a repetition ((a+)+, (.*x)*) can take exponential time: rewrite it without nesting"
        )


class Matcher(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    label: LabelName
    op: Op = "="
    value: str = Field(default="", max_length=MAX_VALUE)

    @field_validator("value")
    @classmethod
    def _regex_compiles(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("op") in ("=~", "!~"):
            check_regex(value)
        return value

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.label, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        found = compiled(self.value).fullmatch(actual) is not None
        return found if self.op == "=~" else not found

    def text(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.label}{self.op}"{escaped}"'


# What the API takes: the object, or its text form.
MatcherIn = Annotated[Matcher, BeforeValidator(_from_text)]


def all_match(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    """Every matcher matches (an empty list matches everything, as a route without matchers does)."""
    return all(m.matches(labels) for m in matchers)


def matches_empty(matcher: Matcher) -> bool:
    """Whether the matcher matches an alert without its label: a silence made only of these would mute everything."""
    return matcher.matches({})
