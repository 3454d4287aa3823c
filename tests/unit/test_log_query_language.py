"""The log query language: the grammar (trees, precedence, errors with positions, limits), the SQL it compiles
to, and properties over generated input (no crash but the syntax error, no user text in the SQL, every value a
parameter, canonical text round-trips)."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from observai.errors import QuerySyntaxError
from observai.http.exception_handlers import status_for
from observai.logs.query_language import (
    MAX_DEPTH,
    MAX_QUERY_LENGTH,
    MAX_TERMS,
    MAX_VALUE_LENGTH,
    And,
    FieldTerm,
    LogFilter,
    Node,
    Not,
    Or,
    Text,
    compile_log_query,
    compile_node,
    format_query,
    parse,
)
from psycopg import sql
from psycopg.types.json import Jsonb


def render(log_filter: LogFilter) -> str:
    return log_filter.where.as_string(None)


# --- the grammar -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "tree"),
    [
        ("payment", Text("payment")),
        ('"payment failed"', Text("payment failed", quoted=True)),
        ("time*", Text("time", prefix=True)),
        ("payment failed", And((Text("payment"), Text("failed")))),
        ("a AND b", And((Text("a"), Text("b")))),
        ("a OR b", Or((Text("a"), Text("b")))),
        # AND (explicit or implied) binds tighter than OR.
        ("a b OR c", Or((And((Text("a"), Text("b"))), Text("c")))),
        ("a OR b c", Or((Text("a"), And((Text("b"), Text("c")))))),
        ("a (b OR c)", And((Text("a"), Or((Text("b"), Text("c")))))),
        ("-a", Not(Text("a"))),
        ("NOT a b", And((Not(Text("a")), Text("b")))),
        ("NOT (a b)", Not(And((Text("a"), Text("b"))))),
        # Lower-case operators are words.
        ("a or b", And((Text("a"), Text("or"), Text("b")))),
        ("severity:error", FieldTerm("severity", ":", "error")),
        ("level:WARN", FieldTerm("severity", ":", "WARN")),
        ("severity>=warn", FieldTerm("severity", ">=", "warn")),
        ("service:api", FieldTerm("service", ":", "api")),
        ('service:"web app"', FieldTerm("service", ":", "web app", quoted=True)),
        ("service:api*", FieldTerm("service", ":", "api", prefix=True)),
        ("service:*", FieldTerm("service", ":", None)),
        ("attributes.http.status_code:500", FieldTerm("attributes", ":", "500", key="http.status_code")),
        ("attributes.http.status_code>=500", FieldTerm("attributes", ">=", "500", key="http.status_code")),
        ("resource.host.name:web-1", FieldTerm("resource", ":", "web-1", key="host.name")),
        ('body:"card declined"', FieldTerm("body", ":", "card declined", quoted=True)),
        ("-service:api", Not(FieldTerm("service", ":", "api"))),
        # A colon after something that is not a field name is text.
        ("10:30", Text("10:30")),
        ("user-agent", Text("user-agent")),
        ('"say \\"hi\\""', Text('say "hi"', quoted=True)),
    ],
)
def test_queries_parse_to_their_trees(text: str, tree: Node) -> None:
    # Given a query / When it is parsed / Then its tree is the expected one
    assert parse(text) == tree


def test_empty_and_blank_queries_match_everything() -> None:
    for text in ("", "   ", "\n\t"):
        log_filter = compile_log_query(text)
        assert render(log_filter) == "true"
        assert log_filter.params == {}


@pytest.mark.parametrize(
    ("text", "position", "fragment"),
    [
        ("(payment", 0, "Unclosed parenthesis"),
        ("payment)", 7, "Unexpected )"),
        ('error "timed out', 6, "Unclosed quote"),
        ("a OR", 4, "Expected a term"),
        ("OR a", 0, "Expected a term"),
        ("a AND OR b", 6, "Expected a term"),
        ("a - b", 2, "A term must follow -"),
        ("NOT", 3, "Expected a term"),
        ("()", 0, "Empty parentheses"),
        ("sevrity:error", 0, "Unknown field 'sevrity'"),
        ("http://example.com", 0, "Unknown field 'http'"),
        ("severity:loud", 9, "Unknown severity"),
        ("severity:25", 9, "Unknown severity"),
        ("service:", 8, "A value must follow"),
        ("x service:a*b", 11, "wildcard"),
        ("pay*ment", 3, "wildcard"),
        ("*", 0, "prefix search"),
        ("a-b*", 0, "prefix search"),
        ("!!!", 0, "at least one letter or digit"),
        ('"..."', 0, "at least one letter or digit"),
        ("service>3", 0, "field:value only"),
        ("attributes.code>high", 16, "compares numbers"),
        ("attributes.:x", 0, "attribute key"),
        ("attributes:x", 0, "Name the key"),
        ("severity:err*", 9, "does not take a prefix"),
        ("a \x00", 2, "NUL"),
        ("a \ud800", 2, "Unicode"),
    ],
)
def test_syntax_errors_name_the_position(text: str, position: int, fragment: str) -> None:
    # Given a malformed query / When it is compiled / Then the error names where and what
    with pytest.raises(QuerySyntaxError) as caught:
        compile_log_query(text)
    error = caught.value
    assert error.position == position
    assert error.details == {"loc": ["query", "q"], "position": position}
    assert fragment in error.message
    assert error.message.endswith(f"at position {position}")
    assert error.code == "query_syntax_error"
    assert status_for(error) == 400


def test_limits_on_length_terms_and_depth() -> None:
    # Given queries just within and just over each limit / Then only the latter fail, at the offending position
    within = '"' + "x" * 1000 + '" "' + "y" * (MAX_QUERY_LENGTH - 1005) + '"'
    assert len(within) == MAX_QUERY_LENGTH
    parse(within)
    with pytest.raises(QuerySyntaxError) as too_long:
        parse(within + " ")
    assert too_long.value.position == MAX_QUERY_LENGTH

    parse(" ".join(["w"] * MAX_TERMS))
    with pytest.raises(QuerySyntaxError) as long_term:
        parse("a " + "w" * (MAX_VALUE_LENGTH + 1))
    assert long_term.value.position == 2
    with pytest.raises(QuerySyntaxError) as too_many:
        parse(" ".join(["w"] * (MAX_TERMS + 1)))
    assert too_many.value.position == 2 * MAX_TERMS
    assert "terms" in too_many.value.message

    parse("(" * MAX_DEPTH + "a" + ")" * MAX_DEPTH)
    with pytest.raises(QuerySyntaxError) as too_deep:
        parse("(" * (MAX_DEPTH + 1) + "a" + ")" * (MAX_DEPTH + 1))
    assert too_deep.value.position == MAX_DEPTH
    with pytest.raises(QuerySyntaxError):
        parse("NOT " * (MAX_DEPTH + 1) + "a")


# --- compiling ---------------------------------------------------------------------------------------------------


def test_words_and_phrases_use_the_tsvector_and_prefixes_a_prefix_tsquery() -> None:
    log_filter = compile_log_query('Payment "card declined" time*')
    assert render(log_filter) == (
        "((search @@ phraseto_tsquery('simple', %(lq0)s)) and (search @@ phraseto_tsquery('simple', %(lq1)s))"
        " and (search @@ to_tsquery('simple', %(lq2)s)))"
    )
    assert log_filter.params == {"lq0": "Payment", "lq1": "card declined", "lq2": "time:*"}


def test_severity_names_map_to_otel_ranges_and_comparisons_to_their_ends() -> None:
    cases = {
        "severity:error": ("(severity_number between %(lq0)s and %(lq1)s)", [17, 20]),
        "severity:warning": ("(severity_number between %(lq0)s and %(lq1)s)", [13, 16]),
        "severity:9": ("(severity_number = %(lq0)s)", [9]),
        "severity:unspecified": ("(severity_number = %(lq0)s)", [0]),
        "severity>=warn": ("(severity_number >= %(lq0)s)", [13]),
        "severity>warn": ("(severity_number > %(lq0)s)", [16]),
        "severity<info": ("(severity_number < %(lq0)s)", [9]),
        "severity<=info": ("(severity_number <= %(lq0)s)", [12]),
    }
    for text, (expected_sql, values) in cases.items():
        log_filter = compile_log_query(text)
        assert render(log_filter) == expected_sql, text
        assert list(log_filter.params.values()) == values, text


def test_attribute_values_match_their_json_types_flat_and_nested() -> None:
    # Given an unquoted number on a dotted key
    log_filter = compile_log_query("attributes.http.status_code:500")
    # Then the string and the number, as a flat key and as nested objects, are each a containment test
    documents = [p.obj for p in log_filter.params.values() if isinstance(p, Jsonb)]
    assert documents == [
        {"http.status_code": "500"},
        {"http": {"status_code": "500"}},
        {"http.status_code": 500},
        {"http": {"status_code": 500}},
    ]
    assert render(log_filter).count("@>") == 4
    # A quoted value is a string only; booleans and null are typed too
    assert [p.obj for p in compile_log_query('attributes.code:"500"').params.values()] == [{"code": "500"}]
    assert [p.obj for p in compile_log_query("attributes.ok:true").params.values()] == [{"ok": "true"}, {"ok": True}]
    assert [p.obj for p in compile_log_query("attributes.x:null").params.values()] == [{"x": "null"}, {"x": None}]
    assert [p.obj for p in compile_log_query("attributes.f:1.5").params.values()] == [{"f": "1.5"}, {"f": 1.5}]


def test_negation_is_null_safe_and_numeric_comparisons_never_cast_strings() -> None:
    assert render(compile_log_query("-service:api")) == '((("service" = %(lq0)s)) is not true)'
    compared = compile_log_query("attributes.ms>12.5")
    assert "case when jsonb_typeof" in render(compared)
    assert compared.params["lq1"] == Decimal("12.5")


def test_prefix_values_escape_like_wildcards() -> None:
    log_filter = compile_log_query("service:a_b%c*")
    assert render(log_filter) == '("service" like %(lq0)s)'
    assert log_filter.params == {"lq0": "a\\_b\\%c%"}


def test_trace_and_span_ids_compare_lower_case() -> None:
    assert compile_log_query("trace_id:5B8EFF").params == {"lq0": "5b8eff"}
    assert compile_log_query("span_id:EEE1").params == {"lq0": "eee1"}


# --- properties --------------------------------------------------------------------------------------------------

_SAFE_CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
_WORD = st.from_regex(r"[a-z0-9][a-z0-9_]{0,7}", fullmatch=True)
_BARE_VALUE = st.from_regex(r"[A-Za-z0-9._:/@+-]{1,12}", fullmatch=True).filter(lambda v: not v.startswith("-"))
_PHRASE = st.text(_SAFE_CHARS, min_size=1, max_size=20).filter(lambda v: re.search(r"\w", v) is not None)
_KEY = st.from_regex(r"[a-z][a-z0-9_]{0,5}(\.[a-z][a-z0-9_]{0,5}){0,2}", fullmatch=True)
_LEVEL = st.sampled_from(["trace", "debug", "info", "warn", "error", "fatal", "unspecified", "0", "17", "24"])
_DECIMAL = st.from_regex(r"-?[1-9][0-9]{0,3}\.[0-9]{1,3}", fullmatch=True)
_NUMBER = st.one_of(st.integers(-(10**6), 10**6).map(str), _DECIMAL)


def _valued(field: str, key: str | None = None) -> st.SearchStrategy[FieldTerm]:
    bare = st.builds(lambda v: FieldTerm(field, ":", v, key=key), _BARE_VALUE)
    quoted = st.builds(lambda v: FieldTerm(field, ":", v, key=key, quoted=True), _PHRASE)
    prefix = st.builds(lambda v: FieldTerm(field, ":", v, key=key, prefix=True), _WORD)
    exists = st.just(FieldTerm(field, ":", None, key=key))
    return st.one_of(bare, quoted, prefix, exists)


_LEAVES: st.SearchStrategy[Node] = st.one_of(
    st.builds(Text, _WORD),
    st.builds(lambda v: Text(v, quoted=True), _PHRASE),
    st.builds(lambda v: Text(v, prefix=True), _WORD),
    st.builds(lambda op, v: FieldTerm("severity", op, v), st.sampled_from([":", ">", ">=", "<", "<="]), _LEVEL),
    _valued("service"),
    _valued("trace_id"),
    _valued("span_id"),
    st.builds(lambda v: FieldTerm("body", ":", v, quoted=True), _PHRASE),
    _KEY.flatmap(lambda k: st.one_of(_valued("attributes", k), _valued("resource", k))),
    st.builds(
        lambda f, k, op, v: FieldTerm(f, op, v, key=k),
        st.sampled_from(["attributes", "resource"]),
        _KEY,
        st.sampled_from([">", ">=", "<", "<="]),
        _NUMBER,
    ),
)

TREES: st.SearchStrategy[Node] = st.recursive(
    _LEAVES,
    lambda children: st.one_of(
        st.builds(Not, children),
        st.builds(lambda cs: And(tuple(cs)), st.lists(children, min_size=2, max_size=4)),
        st.builds(lambda cs: Or(tuple(cs)), st.lists(children, min_size=2, max_size=4)),
    ),
    max_leaves=12,
)


def _depth(node: Node) -> int:
    """Nesting the parser counts in the canonical text: each NOT, and each parenthesised AND/OR."""
    if isinstance(node, Not):
        return 1 + _depth(node.child)
    if isinstance(node, And | Or):
        return max((1 if isinstance(c, And | Or) else 0) + _depth(c) for c in node.children)
    return 0


def _values(node: Node) -> list[tuple[str, str]]:
    """(field or "text", value) of every term that carries a value."""
    if isinstance(node, Text):
        return [("text", node.value)]
    if isinstance(node, FieldTerm):
        return [(node.field, node.value)] if node.value is not None else []
    if isinstance(node, Not):
        return _values(node.child)
    return [v for c in node.children for v in _values(c)]


def _unlike(pattern: str) -> str:
    return pattern.replace("\\_", "_").replace("\\%", "%").replace("\\\\", "\\")


def _leaves(value: object) -> list[str]:
    """Every string and number inside a bound parameter (Jsonb documents and lists included), as text."""
    if isinstance(value, Jsonb):
        return _leaves(value.obj)
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in (str(k), *_leaves(v))]
    if isinstance(value, list):
        return [leaf for item in value for leaf in _leaves(item)]
    return [str(value)]


# Everything the compiled SQL may contain besides placeholders: our fragments, never the user's words.
_SQL_WORDS = {
    "search", "phraseto_tsquery", "to_tsquery", "and", "or", "is", "not", "true", "between", "severity_number",
    "like", "case", "when", "jsonb_typeof", "then", "numeric", "end", "coalesce", "jsonb", "null",
}  # fmt: skip
_SQL_IDENTIFIERS = {'"service"', '"trace_id"', '"span_id"', '"attributes"', '"resource"'}
_SQL_LITERALS = {"'simple'", "'number'"}
_TOKEN = re.compile(
    r"%\((?P<ph>[a-z0-9]+)\)s|(?P<lit>'[^']*')|(?P<ident>\"[^\"]*\")|(?P<word>[A-Za-z_]+)|(?P<other>\S)"
)
_OPERATORS = set("()@><=#?:,-")  # ->, #>, @@, @>, ::, ?


def _check_sql_is_ours(log_filter: LogFilter) -> None:
    text = render(log_filter)
    used = set()
    for match in _TOKEN.finditer(text):
        if match["ph"]:
            used.add(match["ph"])
        elif match["lit"]:
            assert match["lit"] in _SQL_LITERALS, text
        elif match["ident"]:
            assert match["ident"] in _SQL_IDENTIFIERS, text
        elif match["word"]:
            assert match["word"] in _SQL_WORDS, text
        else:
            assert match["other"] in _OPERATORS, (match["other"], text)
    # Every placeholder is bound, every bound value is used, and the names carry the lq prefix.
    assert used == set(log_filter.params)
    assert all(name.startswith("lq") for name in log_filter.params)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(_SAFE_CHARS | st.sampled_from(list('()"-*:<>= \\')), max_size=60))
def test_no_input_crashes_the_parser(text: str) -> None:
    # Given any text / When compiled / Then a filter of our own SQL, or the syntax error with a position in range
    try:
        log_filter = compile_log_query(text)
    except QuerySyntaxError as error:
        assert 0 <= error.position <= len(text)
        return
    _check_sql_is_ours(log_filter)


@settings(max_examples=200)
@given(st.text(max_size=40))
def test_arbitrary_unicode_never_crashes(text: str) -> None:
    try:
        compile_log_query(text)
    except QuerySyntaxError as error:
        assert 0 <= error.position <= len(text)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(TREES)
def test_canonical_text_round_trips_and_compiles_to_parameters_only(tree: Node) -> None:
    assume(_depth(tree) <= MAX_DEPTH)
    # Given a tree / When formatted and parsed again / Then it is the same tree
    text = format_query(tree)
    assert parse(text) == tree
    # And its SQL is built from our fragments only, every user value being a bound parameter
    log_filter = compile_node(tree)
    _check_sql_is_ours(log_filter)
    # Each bound leaf as it is and as a LIKE pattern means it: only patterns are escaped (a value ending in a
    # backslash, bound for an equality, is not)
    leaves = [leaf for value in log_filter.params.values() for leaf in _leaves(value)]
    bound = [*leaves, *map(_unlike, leaves)]
    for field_or_text, value in _values(tree):
        if field_or_text != "severity":  # severity names are bound as their SeverityNumber range
            assert any(value in leaf or value.lower() in leaf for leaf in bound), (value, bound)


def test_the_filter_is_composable_sql_for_callers() -> None:
    # Given a filter / When a caller embeds it in its own statement / Then the placeholders survive as named ones
    log_filter = compile_log_query("service:api error")
    statement = sql.SQL("select id from public.logs where project_id = %(project)s and {}").format(log_filter.where)
    text = statement.as_string(None)
    assert "%(project)s" in text and "%(lq0)s" in text and "%(lq1)s" in text
