"""The log query language: Lucene-style text compiled to a parameterised SQL condition over ``public.logs``.

    payment failed                     both words, anywhere in the body (full text, word by word)
    "payment failed"                   the phrase: the words next to each other, in that order
    timeout*                           a word starting with "timeout"
    severity:error  level:warn         a level: trace, debug, info, warn, error, fatal (or a number 0..24)
    severity>=warn                     a level and above (>, >=, <, <= also work on numeric attributes)
    service:api  service:"web app"     the service; ``service:api*`` a prefix
    trace_id:5b8e…  span_id:eee1…      correlation ids
    attributes.http.status_code:500    an attribute (the number 500 or the string "500"); ``:*`` = has it
    resource.host.name:web-1           a resource attribute
    body:"card declined"               the same as a bare phrase
    -service:api  NOT debug            negation;  a OR b;  a AND b (also implied by a space);  ( … )

``OR`` binds looser than ``AND``; operators are upper case (lower-case ``or`` is a word to search).

Parsing (``parse``) gives a small immutable syntax tree; ``compile_log_query`` turns it into a ``LogFilter``:
an SQL condition over the unqualified columns of ``public.logs`` and its named parameters (``lq0``, ``lq1``,
…). Every value the user typed is a bound parameter: the SQL text is built from constant fragments only.
A malformed query raises ``QuerySyntaxError`` (a 400) naming the 0-based character position.

Full text uses the stored ``search`` tsvector (``to_tsvector('simple', body)``, GIN index): a word
matches whole tokens, case-insensitively ("fail" does not match "failed"; ``fail*`` does). Attributes are
stored as ingested: OTel keys are flat and dotted (``{"http.status_code": 500}``), so ``attributes.a.b:v``
matches the flat key ``a.b`` and also the nested document ``{"a": {"b": v}}``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from dataclasses import field as _field
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from psycopg import sql
from psycopg.types.json import Jsonb

from observai.errors import QuerySyntaxError

MAX_QUERY_LENGTH = 2_000
MAX_TERMS = 64
MAX_DEPTH = 16  # nested parentheses and NOTs
MAX_VALUE_LENGTH = 1_024
MAX_KEY_LENGTH = 256

# OTel SeverityNumber ranges (the first number of each range is what ingestion stores for a level name).
SEVERITY_RANGES: dict[str, tuple[int, int]] = {
    "unspecified": (0, 0),
    "trace": (1, 4),
    "debug": (5, 8),
    "info": (9, 12),
    "warn": (13, 16),
    "error": (17, 20),
    "fatal": (21, 24),
}
SEVERITY_ALIASES = {"warning": "warn", "information": "info", "err": "error", "critical": "fatal", "crit": "fatal"}
LEVELS = tuple(SEVERITY_RANGES)

FIELDS = ("severity", "service", "trace_id", "span_id", "body", "attributes", "resource")
FIELD_ALIASES = {"level": "severity", "message": "body", "msg": "body"}
MAP_FIELDS = ("attributes", "resource")
Comparison = Literal[":", ">", ">=", "<", "<="]

_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SEPARATORS = frozenset(' \t\r\n\f\v()"')
_WORD_CHARS = re.compile(r"\w+")
_INT = re.compile(r"-?(0|[1-9][0-9]{0,17})")
_FLOAT = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")


# --- syntax tree -------------------------------------------------------------------------------------------------
# Positions are kept for error messages but left out of equality: a reformatted query parses to an equal tree.


@dataclass(frozen=True, slots=True)
class Text:
    """Free text: a word, a "phrase" (quoted) or a prefix (``word*``)."""

    value: str
    quoted: bool = _field(default=False, compare=False)  # a quoted word and a bare one search the same
    prefix: bool = False
    position: int = _field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class FieldTerm:
    """``field:value`` or ``field<op>value``; ``key`` is the attribute key of ``attributes.<key>``/``resource.<key>``.
    ``value`` None means ``field:*`` (the field is present)."""

    field: str
    op: Comparison
    value: str | None
    key: str | None = None
    quoted: bool = False
    prefix: bool = False
    position: int = _field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Not:
    child: Node


@dataclass(frozen=True, slots=True)
class And:
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    children: tuple[Node, ...]


Node = Text | FieldTerm | Not | And | Or


@dataclass(frozen=True)
class LogFilter:
    where: sql.Composable  # a boolean SQL expression over the UNQUALIFIED columns of public.logs
    params: dict[str, object]  # named placeholders (sql.Placeholder) it uses, keys prefixed "lq"


# --- lexer -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Token:
    kind: Literal["(", ")", "AND", "OR", "NOT", "-", "TERM"]
    position: int
    term: Text | FieldTerm | None = None


def _error(message: str, position: int) -> QuerySyntaxError:
    return QuerySyntaxError(f"{message} at position {position}", position=position)


def _read_quoted(text: str, start: int) -> tuple[str, int]:
    """The string of the quote at ``start`` (``\\"`` and ``\\\\`` escape) and the index after its closing quote."""
    out: list[str] = []
    i = start + 1
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
            continue
        if char == '"':
            return "".join(out), i + 1
        out.append(char)
        i += 1
    raise _error("Unclosed quote", start)


def _read_bare(text: str, start: int) -> int:
    i = start
    while i < len(text) and text[i] not in _SEPARATORS:
        i += 1
    return i


def _split_field(raw: str) -> tuple[str, Comparison, str] | None:
    """``name`` ``op`` ``rest`` when the bare word starts with a field name and an operator."""
    for i, char in enumerate(raw):
        if char in ":<>":
            op: Comparison
            if char == ":":
                op = ":"
            elif raw[i + 1 : i + 2] == "=":
                op = ">=" if char == ">" else "<="
            else:
                op = ">" if char == ">" else "<"
            return raw[:i], op, raw[i + len(op) :]
    return None


def _resolve_field(name: str, position: int) -> tuple[str, str | None] | None:
    """(field, attribute key) for a known field name; None when ``name`` is not field-like (then it is text)."""
    lowered = name.lower()
    for map_field in MAP_FIELDS:
        if lowered.startswith(map_field + "."):
            key = name[len(map_field) + 1 :]
            if not key or len(key) > MAX_KEY_LENGTH:
                raise _error(f"An attribute key of 1 to {MAX_KEY_LENGTH} characters must follow {map_field}.", position)
            return map_field, key
    lowered = FIELD_ALIASES.get(lowered, lowered)
    if lowered in FIELDS:
        if lowered in MAP_FIELDS:
            raise _error(f"Name the key: {lowered}.<key>:value", position)
        return lowered, None
    if _FIELD_NAME.fullmatch(name):
        raise _error(
            f"Unknown field {name!r} (fields: {', '.join(FIELDS)}; quote the term to search it as text)", position
        )
    return None


def _text_term(raw: str, position: int) -> Text:
    prefix = raw.endswith("*")
    word = raw[:-1] if prefix else raw
    if "*" in word:
        raise _error("A wildcard * only ends a word (prefix search)", position + word.index("*"))
    if prefix:
        if not _WORD_CHARS.fullmatch(word):
            raise _error("A prefix search (word*) takes letters, digits and underscores only", position)
    elif not _WORD_CHARS.search(word):
        raise _error("A search term needs at least one letter or digit", position)
    if len(word) > MAX_VALUE_LENGTH:
        raise _error(f"Terms are at most {MAX_VALUE_LENGTH} characters", position)
    return Text(word, prefix=prefix, position=position)


def _field_term(
    name: str, op: Comparison, value: str, quoted: bool, position: int, value_position: int
) -> FieldTerm | None:
    resolved = _resolve_field(name, position)
    if resolved is None:
        return None
    fld, key = resolved
    if len(value) > MAX_VALUE_LENGTH:
        raise _error(f"Values are at most {MAX_VALUE_LENGTH} characters", value_position)
    if not quoted and value == "":
        raise _error(f"A value must follow {name}{op}", value_position)
    if not quoted and value == "*":
        if op != ":":
            raise _error("Compare with a value, not *", value_position)
        return FieldTerm(fld, op, None, key=key, position=position)
    prefix = not quoted and value.endswith("*")
    if prefix:
        value = value[:-1]
    if not quoted and "*" in value:
        raise _error("A wildcard * only ends a value (prefix match)", value_position + value.index("*"))
    if prefix and (op != ":" or fld == "severity" or fld == "body"):
        raise _error(f"{fld} does not take a prefix match", value_position)
    if op != ":" and fld not in ("severity", *MAP_FIELDS):
        raise _error(f"{fld} takes field:value only (comparisons work on severity and attributes)", position)
    term = FieldTerm(fld, op, value, key=key, quoted=quoted, prefix=prefix, position=position)
    _check_value(term, value_position)
    return term


def _check_value(term: FieldTerm, position: int) -> None:
    """Values that cannot mean anything are errors now, not empty results later."""
    value = term.value or ""
    if term.field == "severity" and severity_range(value) is None:
        raise _error(f"Unknown severity {value!r} (levels: {', '.join(LEVELS)}, or a number 0 to 24)", position)
    if term.op != ":" and term.field in MAP_FIELDS and _number(value) is None:
        raise _error(f"{term.op} compares numbers: {value!r} is not one", position)
    if term.field == "body" and not _WORD_CHARS.search(value):
        raise _error("A search term needs at least one letter or digit", position)


def _tokens(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char.isspace():
            i += 1
        elif char in "()":
            tokens.append(_Token(char, i))  # type: ignore[arg-type]
            i += 1
        elif char == '"':
            value, end = _read_quoted(text, i)
            if not _WORD_CHARS.search(value):
                raise _error("A phrase needs at least one letter or digit", i)
            if len(value) > MAX_VALUE_LENGTH:
                raise _error(f"Phrases are at most {MAX_VALUE_LENGTH} characters", i)
            tokens.append(_Token("TERM", i, Text(value, quoted=True, position=i)))
            i = end
        elif char == "-":
            if i + 1 >= n or text[i + 1].isspace() or text[i + 1] == ")":
                raise _error("A term must follow -", i)
            tokens.append(_Token("-", i))
            i += 1
        else:
            end = _read_bare(text, i)
            raw = text[i:end]
            if raw in ("AND", "OR", "NOT"):
                tokens.append(_Token(raw, i))  # type: ignore[arg-type]
                i = end
                continue
            split = _split_field(raw)
            term: Text | FieldTerm | None = None
            if split is not None:
                name, op, value = split
                value_position = i + len(name) + len(op)
                quoted = False
                if value == "" and end < n and text[end] == '"':
                    value, end = _read_quoted(text, end)
                    quoted = True
                term = _field_term(name, op, value, quoted, i, value_position)
            tokens.append(_Token("TERM", i, term or _text_term(raw, i)))
            i = end
    return tokens


# --- parser ------------------------------------------------------------------------------------------------------


class _Parser:
    """query := or ; or := and ("OR" and)* ; and := unary (["AND"] unary)* ; unary := ("NOT" | "-") unary | atom ;
    atom := "(" or ")" | term."""

    def __init__(self, tokens: list[_Token], length: int) -> None:
        self.tokens = tokens
        self.i = 0
        self.length = length
        self.terms = 0

    def peek(self) -> _Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def where(self) -> int:
        token = self.peek()
        return token.position if token else self.length

    def parse(self) -> Node:
        node = self.or_(0)
        token = self.peek()
        if token is not None:
            raise _error("Unexpected )" if token.kind == ")" else f"Unexpected {token.kind}", token.position)
        return node

    def or_(self, depth: int) -> Node:
        children = [self.and_(depth)]
        while (token := self.peek()) is not None and token.kind == "OR":
            self.i += 1
            children.append(self.and_(depth))
        return children[0] if len(children) == 1 else Or(tuple(children))

    def and_(self, depth: int) -> Node:
        children = [self.unary(depth)]
        while (token := self.peek()) is not None and token.kind not in ("OR", ")"):
            if token.kind == "AND":
                self.i += 1
            children.append(self.unary(depth))
        return children[0] if len(children) == 1 else And(tuple(children))

    def unary(self, depth: int) -> Node:
        token = self.peek()
        if token is None:
            raise _error("Expected a term", self.length)
        if token.kind in ("NOT", "-"):
            if depth >= MAX_DEPTH:
                raise _error(f"Nested deeper than {MAX_DEPTH} levels", token.position)
            self.i += 1
            return Not(self.unary(depth + 1))
        if token.kind == "(":
            if depth >= MAX_DEPTH:
                raise _error(f"Nested deeper than {MAX_DEPTH} levels", token.position)
            self.i += 1
            if (inner := self.peek()) is not None and inner.kind == ")":
                raise _error("Empty parentheses", token.position)
            node = self.or_(depth + 1)
            closing = self.peek()
            if closing is None or closing.kind != ")":
                raise _error("Unclosed parenthesis", token.position)
            self.i += 1
            return node
        if token.kind == "TERM":
            self.terms += 1
            if self.terms > MAX_TERMS:
                raise _error(f"More than {MAX_TERMS} terms", token.position)
            self.i += 1
            assert token.term is not None
            return token.term
        raise _error(f"Expected a term, found {token.kind}", token.position)


def parse(text: str) -> Node | None:
    """The syntax tree of a query; None for an empty query (everything matches)."""
    if len(text) > MAX_QUERY_LENGTH:
        raise _error(f"Queries are at most {MAX_QUERY_LENGTH} characters", MAX_QUERY_LENGTH)
    if "\x00" in text:
        raise _error("NUL characters are not allowed", text.index("\x00"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate: Postgres could not store it either
        raise _error("Not valid Unicode text", exc.start) from exc
    tokens = _tokens(text)
    if not tokens:
        return None
    return _Parser(tokens, len(text)).parse()


# --- formatting (the canonical text of a tree: parse(format_query(t)) == t) ---------------------------------------


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_query(node: Node | None) -> str:
    if node is None:
        return ""
    if isinstance(node, Text):
        if node.prefix:
            return node.value + "*"
        return _quote(node.value)
    if isinstance(node, FieldTerm):
        name = node.field if node.key is None else f"{node.field}.{node.key}"
        if node.value is None:
            return f"{name}:*"
        if node.prefix:
            return f"{name}{node.op}{node.value}*"
        return f"{name}{node.op}{_quote(node.value) if node.quoted else node.value}"
    if isinstance(node, Not):
        return "NOT " + _wrap(node.child)
    joiner = " AND " if isinstance(node, And) else " OR "
    return joiner.join(_wrap(child) for child in node.children)


def _wrap(node: Node) -> str:
    text = format_query(node)
    return f"({text})" if isinstance(node, And | Or) else text


# --- compiling ---------------------------------------------------------------------------------------------------


def severity_range(value: str) -> tuple[int, int] | None:
    """The SeverityNumber range a level name ("warn", "error"...) or a number 0..24 stands for; None: neither."""
    lowered = value.strip().lower()
    lowered = SEVERITY_ALIASES.get(lowered, lowered)
    if lowered in SEVERITY_RANGES:
        return SEVERITY_RANGES[lowered]
    if _INT.fullmatch(lowered) and 0 <= int(lowered) <= 24:
        return int(lowered), int(lowered)
    return None


def _number(value: str) -> Decimal | None:
    if not _FLOAT.fullmatch(value) or len(value) > 64:
        return None
    try:
        number = Decimal(value)
    except InvalidOperation:
        return None
    # Within a double's range: the value is also bound as a JSON number and compared as numeric.
    return number if number.is_finite() and -300 <= number.adjusted() <= 300 else None


def _json_candidates(value: str, quoted: bool) -> list[Any]:
    """The JSON values a typed value may mean: always the string; unquoted, also the number/boolean/null."""
    candidates: list[Any] = [value]
    if quoted:
        return candidates
    if _INT.fullmatch(value):
        candidates.append(int(value))
    elif (number := _number(value)) is not None:
        candidates.append(float(number))
    elif value in ("true", "false"):
        candidates.append(value == "true")
    elif value == "null":
        candidates.append(None)
    return candidates


def _like_prefix(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class LogSqlCompiler:
    """A parsed query → SQL over public.logs, every value a bound parameter (``params``). Subclassed by the log
    volume (``observai.logs.volume``), which answers the terms its pre-aggregated columns can."""

    def __init__(self) -> None:
        self.params: dict[str, object] = {}

    def bind(self, value: object) -> sql.Placeholder:
        name = f"lq{len(self.params)}"
        self.params[name] = value
        return sql.Placeholder(name)

    def node(self, node: Node) -> sql.Composable:
        if isinstance(node, Text):
            return self.text(node.value, node.quoted, node.prefix)
        if isinstance(node, FieldTerm):
            return self.field(node)
        if isinstance(node, Not):
            # "is not true": a NULL column (no service, no attribute) does not match "x" so it matches "-x".
            return sql.SQL("(({}) is not true)").format(self.node(node.child))
        joiner = sql.SQL(" and ") if isinstance(node, And) else sql.SQL(" or ")
        return sql.SQL("({})").format(joiner.join(self.node(child) for child in node.children))

    def text(self, value: str, quoted: bool, prefix: bool) -> sql.Composable:
        if prefix:
            # Letters, digits and underscores only (checked when parsed): no tsquery operator can come in.
            return sql.SQL("(search @@ to_tsquery('simple', {}))").format(self.bind(value.lower() + ":*"))
        return sql.SQL("(search @@ phraseto_tsquery('simple', {}))").format(self.bind(value))

    def field(self, term: FieldTerm) -> sql.Composable:
        if term.field == "severity":
            return self.severity(term)
        if term.field == "body":
            return self.text(term.value or "", True, False)
        if term.field in MAP_FIELDS:
            return self.attribute(term)
        column = sql.Identifier(term.field)
        if term.value is None:
            return sql.SQL("({} is not null)").format(column)
        value = term.value.lower() if term.field in ("trace_id", "span_id") else term.value
        if term.prefix:
            return sql.SQL("({} like {})").format(column, self.bind(_like_prefix(value)))
        return sql.SQL("({} = {})").format(column, self.bind(value))

    def severity(self, term: FieldTerm) -> sql.Composable:
        if term.value is None:
            return sql.SQL("(severity_number > 0)")
        found = severity_range(term.value)
        assert found is not None  # checked when parsed
        low, high = found
        if term.op == ":":
            if low == high:
                return sql.SQL("(severity_number = {})").format(self.bind(low))
            return sql.SQL("(severity_number between {} and {})").format(self.bind(low), self.bind(high))
        bound = {">": high, ">=": low, "<": low, "<=": high}[term.op]
        return sql.SQL("(severity_number {} {})").format(sql.SQL(term.op), self.bind(bound))

    def attribute(self, term: FieldTerm) -> sql.Composable:
        column = sql.Identifier(term.field)
        key = term.key or ""
        path = key.split(".")
        nested = len(path) > 1
        if term.value is None:
            if nested:
                return sql.SQL("({0} ? {1} or {0} #> {2} is not null)").format(column, self.bind(key), self.bind(path))
            return sql.SQL("({} ? {})").format(column, self.bind(key))
        if term.prefix:
            pattern = self.bind(_like_prefix(term.value))
            flat = sql.SQL("{} ->> {} like {}").format(column, self.bind(key), pattern)
            if not nested:
                return sql.SQL("({})").format(flat)
            return sql.SQL("({} or {} #>> {} like {})").format(flat, column, self.bind(path), pattern)
        if term.op != ":":
            number = _number(term.value)
            assert number is not None  # checked when parsed
            value = sql.SQL("{} -> {}").format(column, self.bind(key))
            if nested:
                value = sql.SQL("coalesce({}, {} #> {})").format(value, column, self.bind(path))
            # CASE, not AND: the cast must never see a string (AND does not promise an evaluation order).
            return sql.SQL("((case when jsonb_typeof({0}) = 'number' then ({0})::numeric end) {1} {2})").format(
                value, sql.SQL(term.op), self.bind(number)
            )
        documents: list[Any] = []
        for candidate in _json_candidates(term.value, term.quoted):
            documents.append({key: candidate})
            if nested:
                document: Any = candidate
                for part in reversed(path):
                    document = {part: document}
                documents.append(document)
        # One containment test per candidate, OR-ed: each can use a GIN index on the column (= ANY cannot).
        tests = [sql.SQL("{} @> {}::jsonb").format(column, self.bind(Jsonb(document))) for document in documents]
        return sql.SQL("({})").format(sql.SQL(" or ").join(tests))


def compile_node(node: Node | None) -> LogFilter:
    if node is None:
        return LogFilter(sql.SQL("true"), {})
    compiler = LogSqlCompiler()
    return LogFilter(compiler.node(node), compiler.params)


def compile_log_query(text: str) -> LogFilter:
    """The SQL condition of a log query; "" or whitespace → ``true``. Raises QuerySyntaxError (400) when malformed."""
    return compile_node(parse(text))
