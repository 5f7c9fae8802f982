"""The concept language: valid text → expected trees, malformed text → precise errors."""

import pytest

from conceptalg import (And, Concept, ConceptSyntaxError, Not, Or, Weighted, parse)
from conceptalg.syntax import MAX_CHARS, MAX_DEPTH, MAX_LEAVES

a, b, c, d = Concept("a"), Concept("b"), Concept("c"), Concept("d")

VALID = [
    ("a", a),
    ("a & b", And(a, b)),
    ("a | b", Or(a, b)),
    ("~a", Not(a)),
    ("a & b & c", And(a, b, c)),
    ("a | b | c", Or(a, b, c)),
    ("a & b | c & d", Or(And(a, b), And(c, d))),
    ("a & (b | c)", And(a, Or(b, c))),
    ("(a & b) & c", And(a, b, c)),
    ("a & (b & c)", And(a, b, c)),
    ("~a & b", And(Not(a), b)),
    ("~(a & b)", Not(And(a, b))),
    ("~~a", Not(Not(a))),
    ("2*~a", Weighted(2, Not(a))),
    ("~2*a", Not(Weighted(2, a))),
    ("a*2*3", Weighted(6, a)),
    ("2*3*a", Weighted(6, a)),
    ("2*a*3", Weighted(6, a)),
    ("~a*2", Not(Weighted(2, a))),
    ("0.5 * (a | b)", Weighted(0.5, Or(a, b))),
    ("(a | b) * .5", Weighted(0.5, Or(a, b))),
    ("1e+22 * a", Weighted(1e22, a)),
    ("2.5e-3*a", Weighted(0.0025, a)),
    ("b & 0.001*~a", And(b, Weighted(0.001, Not(a)))),
    ("notable", Concept("notable")),
    ("orb", Concept("orb")),
    ("android & order", And(Concept("android"), Concept("order"))),
    ("not_a", Concept("not_a")),
    ("'or'", Concept("or")),
    ('"and" & \'not\'', And(Concept("and"), Concept("not"))),
    ("'red circle'", Concept("red circle")),
    (r"'it\'s'", Concept("it's")),
    (r'"say \"hi\""', Concept('say "hi"')),
    (r"'back\\slash'", Concept("back\\slash")),
    ("'café' & 'µ'", And(Concept("café"), Concept("µ"))),
    ("AND", Concept("AND")),
    ("Or", Concept("Or")),
    ("_x1", Concept("_x1")),
    ("color=red", Concept("red", factor="color")),
    ("color = red", Concept("red", factor="color")),
    ("digit=3", Concept("3", factor="digit")),
    ("color='dark red'", Concept("dark red", factor="color")),
    ("at(0.3, -0.7)", Concept("at", args=(0.3, -0.7))),
    ("at( 1 ,2 )", Concept("at", args=(1.0, 2.0))),
    ("at()", Concept("at", args=())),
    ("at(-0)", Concept("at", args=(-0.0,))),
    ("at(1e3)", Concept("at", args=(1000.0,))),
    ("a # a comment\n& b", And(a, b)),
    ("  a\t&\n b  ", And(a, b)),
    ("(((a)))", a),
    ("2*(a)", Weighted(2, a)),
]


@pytest.mark.parametrize("text,tree", VALID, ids=[t for t, _ in VALID])
def test_valid_expressions_parse_to_expected_trees(text, tree):
    assert parse(text) == tree


@pytest.mark.parametrize("text,tree", VALID, ids=[t for t, _ in VALID])
def test_canonical_text_reparses_to_the_same_tree(text, tree):
    assert parse(str(parse(text))) == tree


ALIASES = [
    ["a & b", "a and b", "a ∧ b", "a&b", "(a) & (b)"],
    ["a | b", "a or b", "a ∨ b", "a|b"],
    ["~a", "!a", "not a", "¬a", "not(a)", "~ a"],
    ["a & ~b | c", "a and not b or c", "a ∧ ¬b ∨ c", "a&!b|c"],
    ["2 * a", "a * 2", "2*a", "a*2", "(a)*2", "a * 1 * 2"],
]


@pytest.mark.parametrize("spellings", ALIASES, ids=[s[0] for s in ALIASES])
def test_aliases_give_equal_trees(spellings):
    trees = [parse(s) for s in spellings]
    assert all(t == trees[0] for t in trees), list(zip(spellings, map(repr, trees)))


# One table of malformed text: (text, line, column, words the message must contain).
MALFORMED = [
    ("a & or", 1, 5, ["reserved word 'or'", "quote it"]),
    ("a*0.5*b", 1, 7, ["expected a number", "combine concepts with &"]),
    ("a*b", 1, 3, ["combine concepts with &"]),
    ("a AND b", 1, 3, ["'AND'", "did you mean `&`"]),
    ("a OR b", 1, 3, ["did you mean `|`"]),
    ("a b", 1, 3, ["missing operator"]),
    ("a (b)", 1, 4, ["arguments of a parametric concept are numbers", "missing operator"]),
    ("", 1, 1, ["empty"]),
    ("   ", 1, 1, ["empty"]),
    ("# just a comment", 1, 1, ["empty"]),
    ("a &", 1, 4, ["end of input", "a concept name"]),
    ("a &   \n  ", 1, 4, ["end of input"]),
    ("a &\n\n  or", 3, 3, ["reserved word"]),
    ("(a & b", 1, 7, ["end of input", "')'", "never closed"]),
    ("a)", 1, 2, ["')'", "no matching"]),
    ("()", 1, 2, ["empty parentheses"]),
    ("-2*a", 1, 1, ["'-'", "negate"]),
    ("a & -b", 1, 5, ["negate"]),
    ("0*a", 1, 1, ["must be > 0"]),
    ("a*0", 1, 3, ["must be > 0"]),
    ("1e999*a", 1, 1, ["finite"]),
    ("1e200*1e200*a", 1, 1, ["multiply to inf", "finite"]),
    ("a*1e-200*1e-200", 1, 10, ["> 0"]),
    ("at(1e999)", 1, 4, ["finite"]),
    ("at(1,)", 1, 6, ["expected a number"]),
    ("at(a)", 1, 4, ["expected a number"]),
    ("x=", 1, 3, ["end of input"]),
    ("'abc", 1, 1, ["quoted name"]),
    ("''", 1, 1, ["quoted name"]),
    (r"'a\n'", 1, 1, ["escapes"]),
    ("café", 1, 4, ["ASCII"]),
    ("a & $", 1, 5, ["unexpected character '$'"]),
    ("a ||  b", 1, 4, ["unexpected '|'"]),
    ("~", 1, 2, ["end of input"]),
    ("2*", 1, 3, ["end of input"]),
    ("and", 1, 1, ["reserved word 'and'"]),
    ("a & b\n& c d", 2, 5, ["missing operator"]),
]


@pytest.mark.parametrize("text,line,column,words", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_expressions_report_position_and_cause(text, line, column, words):
    with pytest.raises(ConceptSyntaxError) as info:
        parse(text)
    err = info.value
    assert (err.line, err.column) == (line, column), str(err)
    message = str(err).lower()
    for word in words:
        assert word.lower() in message, f"{word!r} not in {str(err)!r}"
    assert isinstance(err, ValueError)


@pytest.mark.parametrize("text,line,column,words", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_caret_points_at_the_reported_column(text, line, column, words):
    with pytest.raises(ConceptSyntaxError) as info:
        parse(text)
    shown, caret = str(info.value).splitlines()[-2:]
    source_line = text.split("\n")[line - 1]
    # the shown line is the source line (tabs/control characters made visible), caret under it
    assert caret.strip() == "^"
    assert caret.index("^") - 2 == column - 1
    assert shown[2:] == "".join(" " if ch == "\t" else ch for ch in source_line)[: len(shown) - 2]


def test_long_lines_are_cut_around_the_error():
    text = "a & " * 30 + "b b" + " & c" * 30
    with pytest.raises(ConceptSyntaxError) as info:
        parse(text)
    shown, caret = str(info.value).splitlines()[-2:]
    assert shown.startswith("  ...") and shown.endswith("...")
    assert len(shown) < 100
    assert shown[caret.index("^")] == "b"


def test_column_counts_code_points():
    with pytest.raises(ConceptSyntaxError) as info:
        parse("'µµµ' & ∧ b")
    assert info.value.column == 9


def test_non_string_input_is_a_type_error():
    with pytest.raises(TypeError, match="str"):
        parse(b"a & b")


# --- limits (docs/design.md §3), checked before the tree is built ---------------------------------

def _nested_parens(depth):
    return "(" * depth + "a" + ")" * depth


@pytest.mark.parametrize("build", [
    _nested_parens,
    lambda n: "~" * n + "a",
    lambda n: "a" + "*2" * n,
    lambda n: "2*" * n + "a",
], ids=["parentheses", "negations", "postfix-weights", "prefix-weights"])
def test_nesting_limit(build):
    expr = parse(build(MAX_DEPTH))  # at the limit: parses, and every tree function copes
    assert parse(str(expr)) == expr
    hash(expr), repr(expr)
    with pytest.raises(ConceptSyntaxError, match=f"more than {MAX_DEPTH} deep"):
        parse(build(MAX_DEPTH + 1))


def test_mixed_nesting_counts_all_kinds():
    text = "~(" * 100 + "a" + ")" * 100  # 100 parentheses + 100 negations
    parse(text)
    with pytest.raises(ConceptSyntaxError, match="deep"):
        parse("~(" * 101 + "a" + ")" * 101)


def test_leaf_limit():
    expr = parse(" & ".join(f"c{i}" for i in range(MAX_LEAVES)))
    assert len(expr.terms) == MAX_LEAVES
    with pytest.raises(ConceptSyntaxError, match=f"more than {MAX_LEAVES} concepts"):
        parse(" | ".join(["x"] * (MAX_LEAVES + 1)))


def test_length_limit():
    with pytest.raises(ConceptSyntaxError, match=f"limit is {MAX_CHARS}") as info:
        parse("a" + " " * MAX_CHARS)
    assert (info.value.line, info.value.column) == (1, MAX_CHARS + 1)


def test_limits_are_checked_before_building_nodes():
    # the zero weight would fail while building; the leaf limit must be reported instead
    text = " & ".join(["x"] * (MAX_LEAVES + 1)) + " & 0*y"
    with pytest.raises(ConceptSyntaxError, match="concepts"):
        parse(text)


def test_deep_parse_does_not_hit_the_recursion_limit():
    import sys

    old = sys.getrecursionlimit()
    sys.setrecursionlimit(400)  # the parser itself must not recurse per nesting level
    try:
        parse.cache_clear()
        parse(_nested_parens(MAX_DEPTH))
        parse(" | ".join(["x"] * MAX_LEAVES))
    finally:
        sys.setrecursionlimit(old)
