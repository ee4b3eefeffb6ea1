"""The reader's fast JSON decoding gives exactly the json module's values, or leaves the line to it."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from target_klaviyo.reader import FAST_DECODER, SingerInput


def standard(line: str) -> Any:
    return json.loads(line, parse_float=Decimal)


def same(a: Any, b: Any) -> bool:
    """Equal, with the same types all the way down, and Decimals with the same digits and exponent.

    Walks with its own stack: a line may nest deeper than Python's recursion limit allows a
    recursive comparison (on Python 3.13, each level costs more frames).
    """
    pending = [(a, b)]
    while pending:
        x, y = pending.pop()
        if type(x) is not type(y):
            return False
        if isinstance(x, dict):
            if list(x) != list(y):
                return False
            pending += [(x[key], y[key]) for key in x]
        elif isinstance(x, list):
            if len(x) != len(y):
                return False
            pending += list(zip(x, y, strict=True))
        elif isinstance(x, Decimal):
            if x.as_tuple() != y.as_tuple():
                return False
        elif x != y:
            return False
    return True


numbers = st.one_of(
    st.integers(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.from_regex(r"-?(0|[1-9][0-9]{0,30})(\.[0-9]{1,30})?([eE][+-]?[0-9]{1,5})?", fullmatch=True),
)
json_texts = st.recursive(
    st.one_of(
        st.sampled_from(["null", "true", "false"]),
        numbers.map(str),
        st.text().map(lambda text: json.dumps(text, ensure_ascii=False)),
        st.text().map(json.dumps),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4).map(lambda items: "[" + ", ".join(items) + "]"),
        st.lists(st.tuples(st.text(max_size=5), children), max_size=4).map(
            lambda pairs: "{" + ",".join(f"{json.dumps(key)}:{value}" for key, value in pairs) + "}"
        ),
    ),
    max_leaves=12,
)


@st.composite
def mangled(draw: st.DrawFn) -> str:
    """A JSON text with a few characters inserted, replaced or removed."""
    text = list(draw(json_texts))
    for _ in range(draw(st.integers(1, 3))):
        position = draw(st.integers(0, len(text)))
        char = draw(st.sampled_from(list(',:[]{}"\\ .eE+-0123456789aNInfity\ud800\t\n\x00')))
        if position < len(text) and draw(st.booleans()):
            text[position] = char
        else:
            text.insert(position, char)
    return "".join(text)


@given(line=st.one_of(json_texts, mangled()))
@example(line='{"a": 1, "a": 2}')
@example(line='{"a": "\\ud800"}')
@example(line="[1e400, -0.0, 1.0E+5, 10000000000000000000000000000]")
@example(line="[" * 2000 + "]" * 2000)
@example(line='{"a": ' + "9" * 5000 + "}")
@example(line='{"a": 1e5555555555555555555555}')
def test_the_fast_decoder_gives_the_json_modules_value_or_declines(line):
    try:
        fast = FAST_DECODER.decode(line)
    except (ValueError, RecursionError, ArithmeticError):
        return  # the reader then reads the line with the json module
    assert same(fast, standard(line))


def test_the_reader_decodes_through_the_fast_path_and_falls_back():
    reader = SingerInput()
    assert same(reader._decode('{"x": 1.50, "y": [1, "é"]}', 1), {"x": Decimal("1.50"), "y": [1, "é"]})
    assert same(reader._decode('{"x": NaN}', 1), {"x": Decimal("NaN")})
    assert reader._nonfinite
