"""The AST: immutability, equality without spans, operators, printers, simplify, concepts()."""

import math
import pickle

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import conceptalg
from conceptalg import And, Bound, Concept, Not, Or, Weighted, concepts, parse, simplify
from conceptalg.expr import NODE_TYPES
from conceptalg.treeviews import from_dict, to_dict

a, b, c = Concept("a"), Concept("b"), Concept("c")
p = Concept("at", args=(1.0, 2.0))


# --- construction and identity ------------------------------------------------------------

def test_nodes_are_immutable():
    for node in [a, Not(a), Weighted(2, a), And(a, b), Or(a, b)]:
        with pytest.raises(AttributeError, match="immutable"):
            node.span = (0, 1)
        with pytest.raises(AttributeError):
            del node.span


def test_spans_are_ignored_by_equality_and_hash():
    x, y = parse("a & b"), parse("  a   &   b  ")
    assert x.span != y.span and x == y and hash(x) == hash(y)
    assert len({x, y, And(a, b)}) == 1


def test_parser_records_spans():
    e = parse("x & ~(y | z)")
    assert e.span == (0, 12)
    assert e.terms[1].span == (4, 12)
    assert e.terms[1].expr.span == (5, 12)
    assert e.terms[1].expr.terms[1].span == (10, 11)


def test_different_node_kinds_are_unequal():
    assert And(a, b) != Or(a, b)
    assert Concept("red") != Concept("red", factor="color")
    assert Concept("at", args=()) != Concept("at")
    assert Weighted(2, a) != Weighted(3, a)
    assert a != "a"


def test_and_or_flatten_and_need_two_terms():
    assert And(And(a, b), c) == And(a, b, c) == And(a, And(b, c))
    assert Or(Or(a, b), Or(c, a)).terms == (a, b, c, a)
    assert And(Or(a, b), c).terms == (Or(a, b), c)  # other kinds are not flattened
    for cls in (And, Or):
        with pytest.raises(ValueError, match="at least 2 terms"):
            cls(a)
        with pytest.raises(ValueError, match="at least 2 terms"):
            cls()


@pytest.mark.parametrize("weight,error", [
    (0, ValueError), (-1, ValueError), (math.inf, ValueError), (math.nan, ValueError),
    (-0.0, ValueError), ("2", TypeError), (None, TypeError), (True, TypeError),
])
def test_weights_must_be_finite_and_positive(weight, error):
    with pytest.raises(error, match="weight"):
        Weighted(weight, a)


def test_nested_weights_multiply_and_overflow_is_an_error():
    assert Weighted(2, Weighted(3, a)) == Weighted(6, a)
    with pytest.raises(ValueError, match="finite"):
        Weighted(1e200, Weighted(1e200, a))


@pytest.mark.parametrize("kwargs,error", [
    (dict(name=""), ValueError),
    (dict(name="a\nb"), ValueError),
    (dict(name=3), ValueError),
    (dict(name="red", factor="not an id"), ValueError),
    (dict(name="red", factor="or"), ValueError),
    (dict(name="at", args=(math.inf,)), ValueError),
    (dict(name="at", args=("1",)), TypeError),
    (dict(name="at x", args=(1.0,)), ValueError),
    (dict(name="x", factor="f", args=(1.0,)), ValueError),
])
def test_concept_validation(kwargs, error):
    with pytest.raises(error):
        Concept(**kwargs)


def test_concept_keys():
    assert Concept("red").key == "red"
    assert Concept("red", factor="color").key == "color=red"
    assert Concept("at", args=(0.3, 0.7)).key == "at"
    assert Concept("at", args=(1,)).args == (1.0,)


def test_nodes_pickle_and_round_trip_through_dicts():
    e = parse("2*~color=red & (at(0.5, -1) | 'x y')")
    assert pickle.loads(pickle.dumps(e)) == e
    assert from_dict(to_dict(e)) == e
    assert from_dict(to_dict(e)).span == e.span


# --- Python operators build the parser's trees ----------------------------------------------

OPERATOR_CASES = [
    ("a & b", lambda: a & b),
    ("a | b", lambda: a | b),
    ("~a", lambda: ~a),
    ("2 * a", lambda: 2 * a),
    ("a * 2", lambda: a * 2),
    ("2*~a", lambda: 2 * ~a),
    ("~2*a", lambda: ~(2 * a)),
    ("a*2*3", lambda: a * 2 * 3),
    ("a & b & c", lambda: a & b & c),
    ("a & (b & c)", lambda: a & (b & c)),
    ("a | b & c", lambda: a | b & c),
    ("(a | b) & c", lambda: (a | b) & c),
    ("a & ~(b | c)", lambda: a & ~(b | c)),
    ("a & b", lambda: a & "b"),
    ("a | b & c", lambda: "a" | (b & "c")),
]


@pytest.mark.parametrize("text,build", OPERATOR_CASES, ids=[t for t, _ in OPERATOR_CASES])
def test_python_operators_build_the_same_trees_as_the_parser(text, build):
    assert build() == parse(text)


def test_multiplying_two_expressions_is_an_error():
    with pytest.raises(TypeError, match="combine concepts with &"):
        a * b
    with pytest.raises(TypeError):
        a & 3


# --- printers -----------------------------------------------------------------------------

PRINT_CASES = {
    Concept: [(a, "a", "Concept('a')"),
              (Concept("or"), "'or'", "Concept('or')"),
              (Concept("it's"), r"'it\'s'", "Concept(\"it's\")"),
              (Concept("red", factor="color"), "color=red", "Concept('red', factor='color')"),
              (Concept("3", factor="digit"), "digit=3", "Concept('3', factor='digit')"),
              (Concept("dark red", factor="c"), "c='dark red'", "Concept('dark red', factor='c')"),
              (Concept("at", args=(0.3, -0.7)), "at(0.3, -0.7)",
               "Concept('at', args=(0.3, -0.7))")],
    Not: [(Not(a), "~a", "Not(Concept('a'))"),
          (Not(Not(a)), "~~a", "Not(Not(Concept('a')))"),
          (Not(And(a, b)), "~(a & b)", "Not(And(Concept('a'), Concept('b')))")],
    Weighted: [(Weighted(2, a), "2 * a", "Weighted(2.0, Concept('a'))"),
               (Weighted(1e22, a), "1e+22 * a", "Weighted(1e+22, Concept('a'))"),
               (Weighted(0.1, Not(a)), "0.1 * ~a", "Weighted(0.1, Not(Concept('a')))"),
               (Not(Weighted(2, a)), "~2 * a", "Not(Weighted(2.0, Concept('a')))"),
               (Weighted(2, Or(a, b)), "2 * (a | b)",
                "Weighted(2.0, Or(Concept('a'), Concept('b')))")],
    And: [(And(a, b), "a & b", "And(Concept('a'), Concept('b'))"),
          (And(Or(a, b), c), "(a | b) & c", "And(Or(Concept('a'), Concept('b')), Concept('c'))")],
    Or: [(Or(a, b), "a | b", "Or(Concept('a'), Concept('b'))"),
         (Or(And(a, b), c), "a & b | c", "Or(And(Concept('a'), Concept('b')), Concept('c'))")],
    Bound: [(Bound(p, a), "at(1, 2)[a]", "Bound(Concept('at', args=(1.0, 2.0)), Concept('a'))"),
            (Bound(p, Or(a, Not(b))), "at(1, 2)[a | ~b]",
             "Bound(Concept('at', args=(1.0, 2.0)), Or(Concept('a'), Not(Concept('b'))))"),
            (Not(Bound(p, a)), "~at(1, 2)[a]",
             "Not(Bound(Concept('at', args=(1.0, 2.0)), Concept('a')))"),
            (Weighted(2, Bound(p, a)), "2 * at(1, 2)[a]",
             "Weighted(2.0, Bound(Concept('at', args=(1.0, 2.0)), Concept('a')))")],
}


@pytest.mark.parametrize("node,text,constructor",
                         [case for cases in PRINT_CASES.values() for case in cases],
                         ids=[t for cases in PRINT_CASES.values() for _, t, _ in cases])
def test_printers(node, text, constructor):
    assert str(node) == text
    assert repr(node) == constructor
    assert parse(text) == node
    assert eval(constructor, vars(conceptalg)) == node  # repr is the constructor form


# --- simplify -----------------------------------------------------------------------------

SIMPLIFY_CASES = {
    Concept: [("a", "a")],
    Not: [("~~a", "a"), ("~~~a", "~a"), ("~(2*~a)", "2 * a"), ("~(3*a)", "3 * ~a")],
    Weighted: [("1*a", "a"), ("2*~(3*a)", "6 * ~a"), ("2*~~(0.5*a)", "a"),
               ("0.5*(a & a)", "a")],
    And: [("a & a", "2 * a"), ("a & b & a", "2 * a & b"), ("a & 2*a", "3 * a"),
          ("a & ~a", "a & ~a"), ("~a & ~a & b", "2 * ~a & b"),
          ("~~a & 2*~(3*b) & a", "2 * a & 6 * ~b"), ("(a | b) & (b | a)", "(a | b) & (b | a)"),
          ("(a | b) & (a | b)", "2 * (a | b)"), ("a & (a & ~~a)", "3 * a"),
          ("a & 1*(a & b)", "2 * a & b"), ("a & 2*(b & ~~(c & a))", "3 * a & 2 * b & 2 * c"),
          ("a & ~(a & b)", "a & ~(a & b)")],
    Or: [("a | a", "a | a"), ("~~a | b", "a | b"), ("(a & a) | b", "2 * a | b")],
    Bound: [("at(1, 2)[~~a]", "at(1, 2)[a]"), ("at(1, 2)[a & a]", "at(1, 2)[2 * a]"),
            ("at(1, 2)[a] & at(1, 2)[a]", "2 * at(1, 2)[a]"),
            ("~(2*at(1, 2)[a])", "2 * ~at(1, 2)[a]")],
}


@pytest.mark.parametrize("text,expected",
                         [case for cases in SIMPLIFY_CASES.values() for case in cases],
                         ids=[t for cases in SIMPLIFY_CASES.values() for t, _ in cases])
def test_simplify(text, expected):
    assert str(simplify(parse(text))) == expected


def test_every_node_class_has_printer_round_trip_and_simplify_cases():
    # A new node kind must come with cases in each table above.
    for cls in NODE_TYPES:
        assert PRINT_CASES.get(cls), f"no printer cases for {cls.__name__}"
        assert SIMPLIFY_CASES.get(cls), f"no simplify cases for {cls.__name__}"
        assert any(type(node) is cls for node, _, _ in PRINT_CASES[cls])
        assert any(type(parse(t)) is cls for t, _ in SIMPLIFY_CASES[cls])


def test_concepts_lists_distinct_leaves_in_order():
    e = parse("red & ~(blue | red) & at(0.5, 0.5) & color=red & at(0.5, 0.5) & at(1, 0)")
    assert [str(x) for x in concepts(e)] == ["red", "blue", "at(0.5, 0.5)", "color=red",
                                             "at(1, 0)"]
    assert concepts(a) == [a]


# --- property-based round trips -----------------------------------------------------------

_names = st.one_of(
    st.sampled_from(["a", "b", "red", "or", "and", "not", "AND", "x y", "it's", "\\", "é", "1"]),
    st.text(alphabet=st.characters(blacklist_characters="\n", blacklist_categories=("Cs",)),
            min_size=1, max_size=6),
)
_numbers = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
_weights = st.one_of(st.floats(min_value=1e-3, max_value=1e3), st.sampled_from([1e22, 1e-7, 1.0]))
_leaves = st.one_of(
    st.builds(Concept, _names),
    st.builds(lambda n, f: Concept(n, factor=f), _names,
              st.sampled_from(["color", "shape", "digit", "_f"])),
    st.builds(lambda n, xs: Concept(n, args=xs), st.sampled_from(["at", "near", "size"]),
              st.lists(_numbers, max_size=3)),
)


def _extend(children):
    return st.one_of(
        st.builds(Not, children),
        st.builds(Weighted, _weights, children),
        st.builds(lambda xs: And(*xs), st.lists(children, min_size=2, max_size=4)),
        st.builds(lambda xs: Or(*xs), st.lists(children, min_size=2, max_size=4)),
    )


# a binding's body is any tree without a binding in it
_places = st.builds(lambda n, xs: Concept(n, args=xs), st.sampled_from(["at", "near"]),
                    st.lists(_numbers, min_size=1, max_size=3))
_bindings = st.builds(Bound, _places, st.recursive(_leaves, _extend, max_leaves=5))
trees = st.recursive(st.one_of(_leaves, _bindings), _extend, max_leaves=12)


@given(trees)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_printed_text_reparses_to_an_equal_tree(expr):
    text = str(expr)
    assert parse(text) == expr
    assert eval(repr(expr), vars(conceptalg)) == expr


@given(trees)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_simplify_is_idempotent_and_keeps_every_concept(expr):
    s = simplify(expr)
    assert simplify(s) == s
    assert set(concepts(s)) == set(concepts(expr))  # repeats are folded, never dropped
    assert parse(str(s)) == s
