"""No string input may raise anything but ConceptSyntaxError (docs/design.md §3)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conceptalg import ConceptSyntaxError, Expr, parse

TOKENS = ["a", "b", "red", "&", "|", "~", "!", "¬", "∧", "∨", "(", ")", "*", "2", "0.5", "0",
          "1e999", "-", "and", "or", "not", "AND", "'x'", "'", '"', "\\", "=", "color", "at(",
          ",", "#c\n", " ", "\n", "\t", "é", "\ud800", "\x00", "1e", ".", "..", "((", "[", "]",
          "at(1)[", "at(0.3, 0.7)", "at()", "red["]


def _check(text):
    try:
        result = parse(text)
    except ConceptSyntaxError as e:
        lines = text.split("\n")
        assert 1 <= e.line <= len(lines)
        assert 1 <= e.column <= len(lines[e.line - 1]) + 1
        str(e)  # the message itself must build, whatever the input
        return
    assert isinstance(result, Expr)
    assert parse(str(result)) == result


@given(st.text(max_size=60))
@settings(max_examples=500, deadline=None)
def test_random_text(text):
    _check(text)


@given(st.binary(max_size=60))
@settings(max_examples=300, deadline=None)
def test_random_bytes_decoded_with_surrogates(data):
    _check(data.decode("utf-8", errors="surrogateescape"))


@given(st.lists(st.sampled_from(TOKENS), max_size=25))
@settings(max_examples=1500, deadline=None)
def test_token_soup(tokens):
    _check("".join(tokens))


@given(st.lists(st.sampled_from(TOKENS), max_size=25))
@settings(max_examples=500, deadline=None)
def test_token_soup_with_spaces(tokens):
    _check(" ".join(tokens))


@pytest.mark.parametrize("text", ["\ud800", "'\ud800'", "a & \udcff", "\x00", "\r\n", "a\r& b",
                                  "\u2028", "a\u00a0&\u00a0b", "(" * 500, "~" * 10_000 + "a"])
def test_awkward_inputs(text):
    _check(text)
