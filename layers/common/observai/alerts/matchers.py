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


# The first characters a parsed pattern can start with: characters, categories (\d, \w, \s) or anything.
_ANY = ("any", "")
_CATEGORIES = {"CATEGORY_DIGIT": "d", "CATEGORY_WORD": "w", "CATEGORY_SPACE": "s"}


def _first(items: Any) -> set[tuple[str, str]]:
    from re import _constants as sre  # type: ignore[attr-defined]

    found: set[tuple[str, str]] = set()
    for op, av in items:
        found |= _op_first(op, av, sre)
        if not _nullable([(op, av)]):
            break
    return found


def _op_first(op: Any, av: Any, sre: Any) -> set[tuple[str, str]]:
    if op == sre.LITERAL:
        return {("c", chr(av))}
    if op == sre.IN:
        found: set[tuple[str, str]] = set()
        for item_op, item_av in av:
            if item_op == sre.LITERAL:
                found.add(("c", chr(item_av)))
            elif item_op == sre.RANGE and item_av[1] - item_av[0] <= 256:
                found |= {("c", chr(c)) for c in range(item_av[0], item_av[1] + 1)}
            elif item_op == sre.CATEGORY and str(item_av) in _CATEGORIES:
                found.add(("cat", _CATEGORIES[str(item_av)]))
            else:  # a negation, a wide range, a negated category
                return {_ANY}
        return found
    if op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
        return _first(av[2])
    if op == sre.SUBPATTERN:
        return _first(av[3])
    if op == sre.BRANCH:
        return set().union(*(_first(branch) for branch in av[1]))
    if op in (sre.AT, sre.ASSERT, sre.ASSERT_NOT):
        return set()
    return {_ANY}


def _nullable(items: Any) -> bool:
    """Whether the parsed pattern can match the empty string."""
    from re import _constants as sre  # type: ignore[attr-defined]

    for op, av in items:
        if op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
            if av[0] > 0 and not _nullable(av[2]):
                return False
        elif op == sre.SUBPATTERN:
            if not _nullable(av[3]):
                return False
        elif op == sre.BRANCH:
            if not any(_nullable(branch) for branch in av[1]):
                return False
        elif op not in (sre.AT, sre.ASSERT, sre.ASSERT_NOT):
            return False
    return True


def _overlap(a: set[tuple[str, str]], b: set[tuple[str, str]]) -> bool:
    if not a or not b:
        return False
    if _ANY in a or _ANY in b or a & b:
        return True
    for kind, value in a:
        for other_kind, other in b:
            if kind == "cat" and other_kind == "cat" and {value, other} == {"w", "d"}:
                return True  # \w holds \d
            if kind == "cat" and other_kind == "c" and re.fullmatch(f"\\{value}", other):
                return True
            if kind == "c" and other_kind == "cat" and re.fullmatch(f"\\{other}", value):
                return True
    return False


def _ambiguous_alternation(items: Any, inside_repeat: bool) -> bool:
    """Whether an alternation inside an unbounded repetition has two branches that can start alike (or one that can
    match nothing): ``(a|aa)+``, ``(\\w|\\d)*``, ``(x|y?)+``. The repetition can then split one input in
    exponentially many ways, and Python's ``re`` tries them all before failing."""
    from re import _constants as sre  # type: ignore[attr-defined]

    for op, av in items:
        if op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
            if _ambiguous_alternation(av[2], inside_repeat or av[1] == sre.MAXREPEAT):
                return True
        elif op == sre.SUBPATTERN:
            if _ambiguous_alternation(av[3], inside_repeat):
                return True
        elif op == sre.BRANCH:
            branches = av[1]
            if inside_repeat:
                if any(_nullable(branch) for branch in branches):
                    return True
                firsts = [_first(branch) for branch in branches]
                for i, first in enumerate(firsts):
                    if any(_overlap(first, other) for other in firsts[i + 1 :]):
                        return True
            if any(_ambiguous_alternation(branch, inside_repeat) for branch in branches):
                return True
    return False


def check_regex(pattern: str) -> None:
    """ValueError unless ``pattern`` compiles and has no nested unbounded repetition."""
    from re import _parser as sre_parse  # type: ignore[attr-defined]

    try:
        compiled(pattern)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from None
    parsed = sre_parse.parse(pattern).data
    if _repeats(parsed, False):
        raise ValueError(
            "a repetition inside a repetition ((a+)+, (.*x)*) can take exponential time: rewrite it without nesting"
        )
    if _ambiguous_alternation(parsed, False):
        raise ValueError(
            "a repetition of alternatives that can start alike ((a|aa)+, (\\w|\\d)*) can take exponential time:"
            " make the alternatives start differently, or use a character class"
        )


class Matcher(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

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
