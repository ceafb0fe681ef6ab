"""A small OData ``$filter`` parser and evaluator, and ``$select`` handling.

Grammar (case-insensitive keywords)::

    expr    := and ( 'or' and )*
    and     := unary ( 'and' unary )*
    unary   := 'not' unary | '(' expr ')' | func | compare
    func    := ( 'startswith' | 'endswith' ) '(' prop ',' literal ')'
    compare := prop ( 'eq' | 'ne' | 'lt' | 'le' | 'gt' | 'ge' ) literal
             | prop 'in' '(' literal ( ',' literal )* ')'
    literal := 'string' | true | false | null | number | DateTimeOffset | GUID

String comparisons are case-insensitive, as they are for directory objects.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .directory import parse_datetime
from .errors import GraphError, bad_request, unknown_property

Predicate = Callable[[dict[str, Any]], bool]

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^']|'')*')
      | (?P<punct>[(),])
      | (?P<word>[^\s(),']+)
    )""",
    re.VERBOSE,
)
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}(T[\d:.]+(Z|[+-]\d{2}:\d{2})?)?$", re.IGNORECASE)
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")
_COMPARE = ("eq", "ne", "lt", "le", "gt", "ge")


@dataclass
class FilterInfo:
    """What the parsed filter used, for the advanced-query check."""

    advanced: bool = False
    # The whole filter is ``prop eq 'v'`` or ``prop in ('v', …)`` on a string property: the
    # property and the lower-cased values, so a caller with an index looks the candidates up
    # instead of scanning (the predicate still decides). None for any other filter.
    equals: tuple[str, frozenset[str]] | None = None


class _Str(str):
    """A quoted string literal (distinguishes 'null' from null)."""


def tokenize(text: str) -> list[str]:
    tokens: list[str] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise invalid_filter(text)
        pos = match.end()
        if match.group("string") is not None:
            tokens.append(_Str(match.group("string")[1:-1].replace("''", "'")))
        else:
            tokens.append(match.group("punct") or match.group("word"))
    return tokens


def invalid_filter(text: str) -> GraphError:
    return GraphError(400, "BadRequest", f"Invalid filter clause: syntax error in '{text}'.")


def unsupported_filter(prop: str, type_name: str) -> GraphError:
    return GraphError(
        400,
        "Request_UnsupportedQuery",
        f"Unsupported or invalid query filter clause specified for property '{prop}' of "
        f"resource '{type_name}'.",
    )


class _Parser:
    def __init__(self, text: str, schema: dict[str, str], type_name: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.pos = 0
        self.schema = schema
        self.type_name = type_name
        self.info = FilterInfo()
        self._terms = 0  # comparisons, functions and 'not's parsed
        self._equals: tuple[str, frozenset[str]] | None = None

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def peek_word(self) -> str | None:
        token = self.peek()
        if token is None or isinstance(token, _Str):
            return None
        return token.lower()

    def take(self) -> str:
        token = self.peek()
        if token is None:
            raise invalid_filter(self.text)
        self.pos += 1
        return token

    def expect(self, value: str) -> None:
        token = self.take()
        if isinstance(token, _Str) or token.lower() != value:
            raise invalid_filter(self.text)

    def parse(self) -> Predicate:
        predicate = self.expr()
        if self.peek() is not None:
            raise invalid_filter(self.text)
        if self._terms == 1:  # one comparison, no and/or/not
            self.info.equals = self._equals
        return predicate

    def expr(self) -> Predicate:
        parts = [self.conj()]
        while self.peek_word() == "or":
            self.take()
            parts.append(self.conj())
        if len(parts) == 1:
            return parts[0]
        return lambda obj: any(p(obj) for p in parts)

    def conj(self) -> Predicate:
        parts = [self.unary()]
        while self.peek_word() == "and":
            self.take()
            parts.append(self.unary())
        if len(parts) == 1:
            return parts[0]
        return lambda obj: all(p(obj) for p in parts)

    def unary(self) -> Predicate:
        word = self.peek_word()
        if word == "not":
            self.take()
            self._terms += 1
            self.info.advanced = True
            inner = self.unary()
            return lambda obj: not inner(obj)
        if word == "(":
            self.take()
            inner = self.expr()
            self.expect(")")
            return inner
        if word in ("startswith", "endswith"):
            self.take()
            self._terms += 1
            self.expect("(")
            prop = self.prop()
            self.expect(",")
            literal = self.literal()
            self.expect(")")
            if not isinstance(literal, str) or self.schema[prop] != "str":
                raise unsupported_filter(prop, self.type_name)
            needle = literal.lower()
            if word == "endswith":
                self.info.advanced = True
                return lambda obj: str(obj.get(prop) or "").lower().endswith(needle)
            return lambda obj: str(obj.get(prop) or "").lower().startswith(needle)
        return self.compare()

    def prop(self) -> str:
        token = self.take()
        if isinstance(token, _Str) or token in "(),":
            raise invalid_filter(self.text)
        if token not in self.schema:
            raise unknown_property(token, f"microsoft.graph.{self.type_name.lower()}")
        if self.schema[token] == "obj":
            raise unsupported_filter(token, self.type_name)
        return token

    def literal(self) -> Any:
        token = self.take()
        if isinstance(token, _Str):
            return str(token)
        low = token.lower()
        if low in ("true", "false"):
            return low == "true"
        if low == "null":
            return None
        if _NUMBER.match(token):
            return float(token)
        if _DATETIME.match(token):
            try:
                return parse_datetime(token)
            except ValueError:
                raise invalid_filter(self.text) from None
        if re.fullmatch(r"[0-9a-fA-F-]{36}", token):
            return token
        raise invalid_filter(self.text)

    def compare(self) -> Predicate:
        self._terms += 1
        prop = self.prop()
        op = self.peek_word()
        if op == "in":
            self.take()
            self.expect("(")
            values = [self.literal()]
            while self.peek() == ",":
                self.take()
                values.append(self.literal())
            self.expect(")")
            kind = self.schema[prop]
            if kind == "str" and all(isinstance(v, str) for v in values):
                return self._string_equals(prop, values)
            return lambda obj: any(_matches(kind, obj.get(prop), "eq", v) for v in values)
        if op not in _COMPARE:
            raise invalid_filter(self.text)
        self.take()
        value = self.literal()
        kind = self.schema[prop]
        if op == "ne" or (value is None):
            self.info.advanced = True
        if kind == "strs":
            raise unsupported_filter(prop, self.type_name)
        if op in ("lt", "le", "gt", "ge") and kind == "bool":
            raise unsupported_filter(prop, self.type_name)
        if kind == "datetime" and value is not None and not isinstance(value, dt.datetime):
            if isinstance(value, str):
                try:
                    value = parse_datetime(value)
                except ValueError:
                    raise unsupported_filter(prop, self.type_name) from None
            else:
                raise unsupported_filter(prop, self.type_name)
        if kind == "bool" and value is not None and not isinstance(value, bool):
            raise unsupported_filter(prop, self.type_name)
        if kind == "str" and value is not None and not isinstance(value, str):
            raise unsupported_filter(prop, self.type_name)
        if op == "eq" and kind == "str" and isinstance(value, str):
            return self._string_equals(prop, [value])
        return lambda obj: _matches(kind, obj.get(prop), op, value)

    def _string_equals(self, prop: str, values: list[Any]) -> Predicate:
        """``prop eq 'v'`` / ``prop in (…)`` on a string property, case-insensitive as
        :func:`_matches` (a missing value matches no string), without its per-object work."""
        needles = frozenset(str(v).lower() for v in values)
        self._equals = (prop, needles)

        def predicate(obj: dict[str, Any]) -> bool:
            actual = obj.get(prop)
            return actual is not None and str(actual).lower() in needles

        return predicate


def _matches(kind: str, actual: Any, op: str, expected: Any) -> bool:
    if expected is None or actual is None:
        same = expected is None and actual is None
        if op == "eq":
            return same
        if op == "ne":
            return not same
        return False
    left: Any = actual
    right: Any = expected
    if kind == "str":
        left, right = str(actual).lower(), str(expected).lower()
    elif kind == "datetime":
        left = parse_datetime(str(actual))
        if isinstance(expected, dt.datetime):
            right = expected
    if op == "eq":
        return bool(left == right)
    if op == "ne":
        return bool(left != right)
    try:
        if op == "lt":
            return bool(left < right)
        if op == "le":
            return bool(left <= right)
        if op == "gt":
            return bool(left > right)
        if op == "ge":
            return bool(left >= right)
    except TypeError:
        return False
    raise bad_request(f"Unsupported operator '{op}'.")


def parse_filter(text: str, schema: dict[str, str], type_name: str) -> tuple[Predicate, FilterInfo]:
    """Compile ``$filter`` text against a property schema; raise Graph's 400 when invalid."""
    parser = _Parser(text, schema, type_name)
    return parser.parse(), parser.info


def parse_select(text: str, schema: dict[str, str], type_name: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise bad_request("Invalid $select value.", code="BadRequest")
    for name in names:
        if name not in schema:
            raise unknown_property(name, f"microsoft.graph.{type_name.lower()}")
    return names


def parse_top(text: str, maximum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise GraphError(
            400, "BadRequest", f"Invalid value '{text}' for $top query option found."
        ) from None
    if value < 1 or value > maximum:
        raise GraphError(
            400,
            "Request_BadRequest",
            f"Invalid page size specified: '{value}'. Must be between 1 and {maximum} inclusive.",
        )
    return value
