"""Bindings in the language: `at(0.3, 0.3)[red & circle]` parses, prints and round-trips,
composes like an atom, and every malformed binding is a ConceptSyntaxError with a caret
(docs/design.md §3)."""

import json
import pickle

import pytest

from conceptalg import (And, Bound, Concept, ConceptSyntaxError, Not, Or, Weighted, concepts,
                        parse, simplify)
from conceptalg.cli import main
from conceptalg.treeviews import format_tree, from_dict, to_dict
from conceptalg.syntax import MAX_DEPTH

red, blue, circle, square = (Concept(n) for n in ("red", "blue", "circle", "square"))
p, q = Concept("at", args=(1.0, 2.0)), Concept("at", args=(0.3, 0.3))


def at(x, y):
    return Concept("at", args=(x, y))


# (text, tree, canonical text)
VALID = [
    ("at(0.3, 0.3)[red & circle]", Bound(q, And(red, circle)), "at(0.3, 0.3)[red & circle]"),
    ("at(0.3,0.3)[red&circle]", Bound(q, And(red, circle)), "at(0.3, 0.3)[red & circle]"),
    ("at(1, 2) [ red ]", Bound(p, red), "at(1, 2)[red]"),
    ("at(-1, 2e3)[~red]", Bound(at(-1, 2000), Not(red)), "at(-1, 2000)[~red]"),
    ("at(1, 2)[red | blue & ~square]", Bound(p, Or(red, And(blue, Not(square)))),
     "at(1, 2)[red | blue & ~square]"),
    ("at(1, 2)[color=red & shape='big circle']",
     Bound(p, And(Concept("red", factor="color"), Concept("big circle", factor="shape"))),
     "at(1, 2)[color=red & shape='big circle']"),
    ("at(1, 2)[2*red & circle*3]", Bound(p, And(Weighted(2, red), Weighted(3, circle))),
     "at(1, 2)[2 * red & 3 * circle]"),
    ("at(1, 2)[not red and circle]", Bound(p, And(Not(red), circle)), "at(1, 2)[~red & circle]"),
    ("at(1, 2)[(red)]", Bound(p, red), "at(1, 2)[red]"),
    ("(at(1, 2)[red])", Bound(p, red), "at(1, 2)[red]"),
    ("at(1, 2)[\n  red &  # the colour\n  circle\n]", Bound(p, And(red, circle)),
     "at(1, 2)[red & circle]"),
    ("at(1, 2)['or' & \"it's\"]", Bound(p, And(Concept("or"), Concept("it's"))),
     "at(1, 2)['or' & 'it\\'s']"),
    # any parametric concept may take a body: whether it names a place is the library's call
    ("near(0.5)[red]", Bound(Concept("near", args=(0.5,)), red), "near(0.5)[red]"),
    # a place without a body inside a body is a plain concept, not a binding
    ("at(1, 2)[red & at(3, 4)]", Bound(p, And(red, at(3, 4))), "at(1, 2)[red & at(3, 4)]"),
    ("at(0.3, 0.3)[red & circle] & at(0.7, 0.7)[blue & ~square]",
     And(Bound(q, And(red, circle)), Bound(at(0.7, 0.7), And(blue, Not(square)))),
     "at(0.3, 0.3)[red & circle] & at(0.7, 0.7)[blue & ~square]"),
    ("at(1, 2)[red] | at(1, 2)[blue]", Or(Bound(p, red), Bound(p, blue)),
     "at(1, 2)[red] | at(1, 2)[blue]"),
]

# A bound term is an atom: & | ~ and weights apply to the whole binding.
PRECEDENCE = [
    ("~at(1,2)[red] & blue", And(Not(Bound(p, red)), blue), "~at(1, 2)[red] & blue"),
    ("2 * at(1,2)[red | blue]", Weighted(2, Bound(p, Or(red, blue))), "2 * at(1, 2)[red | blue]"),
    ("at(1,2)[red]*3", Weighted(3, Bound(p, red)), "3 * at(1, 2)[red]"),
    ("at(1,2)[red]*2*3", Weighted(6, Bound(p, red)), "6 * at(1, 2)[red]"),
    ("~at(1,2)[red]*3", Not(Weighted(3, Bound(p, red))), "~3 * at(1, 2)[red]"),
    ("2*~at(1,2)[red]", Weighted(2, Not(Bound(p, red))), "2 * ~at(1, 2)[red]"),
    ("at(1,2)[~red]", Bound(p, Not(red)), "at(1, 2)[~red]"),
    ("~at(1,2)[~red]", Not(Bound(p, Not(red))), "~at(1, 2)[~red]"),
    ("blue | at(1,2)[red] & circle", Or(blue, And(Bound(p, red), circle)),
     "blue | at(1, 2)[red] & circle"),
    ("at(1,2)[red | blue] & circle", And(Bound(p, Or(red, blue)), circle),
     "at(1, 2)[red | blue] & circle"),
    ("~(at(1,2)[red] | at(0.3,0.3)[blue])", Not(Or(Bound(p, red), Bound(q, blue))),
     "~(at(1, 2)[red] | at(0.3, 0.3)[blue])"),
    ("0.5 * (at(1,2)[red] & blue)", Weighted(0.5, And(Bound(p, red), blue)),
     "0.5 * (at(1, 2)[red] & blue)"),
]

CASES = VALID + PRECEDENCE


@pytest.mark.parametrize("text,tree,canonical", CASES, ids=[t for t, _, _ in CASES])
def test_bindings_parse_to_expected_trees_and_canonical_text(text, tree, canonical):
    expr = parse(text)
    assert expr == tree
    assert str(expr) == canonical
    assert parse(canonical) == tree  # the printer's text reads back as the same tree


@pytest.mark.parametrize("text,tree,canonical", CASES, ids=[t for t, _, _ in CASES])
def test_bindings_round_trip_through_dicts_repr_and_pickle(text, tree, canonical):
    import conceptalg

    expr = parse(text)
    back = from_dict(json.loads(json.dumps(to_dict(expr))))
    assert back == expr and back.span == expr.span
    assert eval(repr(expr), vars(conceptalg)) == expr
    assert pickle.loads(pickle.dumps(expr)) == expr


def test_binding_spans_cover_place_and_brackets():
    expr = parse("blue & ~at(1, 2)[ red ]")
    bound = expr.terms[1].expr
    assert bound.span == (8, 23)
    assert bound.place.span == (8, 16)
    assert bound.body.span == (18, 21)
    assert parse("(at(1,2)[red])").span == (0, 14)


# (Python, text): the operators and Concept[...] build the parser's trees.
OPERATOR_CASES = [
    (lambda: p[red & circle], "at(1, 2)[red & circle]"),
    (lambda: p["red & circle"], "at(1, 2)[red & circle]"),
    (lambda: ~p[red] & "blue", "~at(1, 2)[red] & blue"),
    (lambda: 2 * p[red | blue], "2 * at(1, 2)[red | blue]"),
    (lambda: p[red] * 3, "at(1, 2)[red] * 3"),
    (lambda: p[~red], "at(1, 2)[~red]"),
    (lambda: q[red & circle] & at(0.7, 0.7)[blue & ~square],
     "at(0.3, 0.3)[red & circle] & at(0.7, 0.7)[blue & ~square]"),
]


@pytest.mark.parametrize("build,text", OPERATOR_CASES, ids=[t for _, t in OPERATOR_CASES])
def test_python_operators_build_the_parsers_bindings(build, text):
    assert build() == parse(text)


@pytest.mark.parametrize("build,error,words", [
    (lambda: red[circle], ValueError, "names a place"),
    (lambda: Concept("red", factor="color")[circle], ValueError, "names a place"),
    (lambda: Concept("at", args=())[red], ValueError, "needs arguments"),
    (lambda: p[q[red]], ValueError, "cannot hold another binding"),
    (lambda: p[red & ~q[blue]], ValueError, "cannot hold another binding"),
    (lambda: p[3], TypeError, "concept expressions"),
    (lambda: Bound(red & blue, circle), ValueError, "names a place"),
], ids=["bare", "qualified", "no-arguments", "nested", "nested-deep", "number", "and-place"])
def test_python_bindings_are_checked_at_construction(build, error, words):
    with pytest.raises(error, match=words):
        build()


# One table of malformed bindings: (text, line, column, words the message must contain).
MALFORMED = [
    # a binding inside a binding
    ("at(1,2)[at(3,4)[red]]", 1, 9, ["cannot hold another binding", "joined by &"]),
    ("at(1,2)[red & ~at(3,4)[blue]]", 1, 16, ["cannot hold another binding"]),
    ("at(1,2)[(red | at(3,4)[b])]", 1, 16, ["cannot hold another binding"]),
    ("at(1,2)\n[at(3,4)[red]]", 2, 2, ["cannot hold another binding"]),
    # an empty body
    ("at(1,2)[]", 1, 9, ["empty brackets", "at(0.3, 0.3)[red & circle]"]),
    ("at(1,2)[ # nothing\n]", 2, 1, ["empty brackets"]),
    ("~at(1,2)[] & red", 1, 10, ["empty brackets"]),
    # a body that names no concept
    ("at(1,2)[2]", 1, 10, ["expected '*'", "must name a concept"]),
    ("at(1,2)[~]", 1, 10, ["must name a concept"]),
    ("at(1,2)[2 * ~]", 1, 14, ["must name a concept"]),
    ("at(1,2)[()]", 1, 10, ["empty parentheses"]),
    # a body on a concept that does not name a place
    ("red[circle]", 1, 4, ["`red` names no place", "red & circle"]),
    ("color=red[circle]", 1, 10, ["`color=red` names no place"]),
    ("'x y'[a]", 1, 6, ["`'x y'` names no place"]),
    ("(at(1,2))[red]", 1, 10, ["a group names no place"]),
    ("at()[red]", 1, 4, ["at() names no place", "needs arguments", "at(0.3, 0.3)[red]"]),
    ("2[red]", 1, 2, ["a weight takes no body"]),
    ("at(1,2)*2[red]", 1, 10, ["a weight takes no body", "at(0.3, 0.3)[red] * 2"]),
    ("at(1,2)[a][b]", 1, 11, ["one body"]),
    ("red & [circle]", 1, 7, ["follows a place"]),
    ("at(1, 2[red]", 1, 8, ["close the arguments", "')'"]),
    # unclosed and mismatched brackets
    ("at(1,2)[red", 1, 12, ["end of input", "expected ']'", "never closed"]),
    ("at(1,2)[red & circle\n\n", 1, 21, ["never closed"]),
    ("at(1,2)[red)", 1, 12, ["expected ']'", "close it with ']'"]),
    ("(at(1,2)[red)]", 1, 13, ["close it with ']'"]),
    ("at(1,2)[(red]", 1, 13, ["expected ')'", "close it with ')'"]),
    ("at(1,2)[red]]", 1, 13, ["no matching '['"]),
    ("red]", 1, 4, ["no matching '['"]),
    # the usual errors keep their hints inside a body
    ("at(1,2)[red circle]", 1, 13, ["missing operator"]),
    ("at(1,2)[red & or]", 1, 15, ["reserved word 'or'"]),
    ("at(1,2)[red*]", 1, 13, ["combine concepts with &"]),
    ("at(1,2)[red] at(3,4)[blue]", 1, 14, ["missing operator"]),
]


@pytest.mark.parametrize("text,line,column,words", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_bindings_report_position_cause_and_caret(text, line, column, words):
    with pytest.raises(ConceptSyntaxError) as info:
        parse(text)
    err = info.value
    assert (err.line, err.column) == (line, column), str(err)
    message = str(err).lower()
    for word in words:
        assert word.lower() in message, f"{word!r} not in {str(err)!r}"
    shown, caret = str(err).splitlines()[-2:]
    assert shown[2:] == text.split("\n")[line - 1]
    assert caret.index("^") - 2 == column - 1


# --- tree functions -----------------------------------------------------------------------

def test_concepts_lists_the_place_and_the_body_leaves():
    expr = parse("at(0.3, 0.3)[red & circle] & ~at(0.7, 0.7)[red] & blue")
    assert [str(c) for c in concepts(expr)] == ["at(0.3, 0.3)", "red", "circle", "at(0.7, 0.7)",
                                                "blue"]


@pytest.mark.parametrize("text,expected", [
    ("at(1,2)[~~red]", "at(1, 2)[red]"),
    ("at(1,2)[red & red]", "at(1, 2)[2 * red]"),
    ("~~at(1,2)[2*~(3*red)]", "at(1, 2)[6 * ~red]"),
    ("at(1,2)[red] & at(1,2)[~~red]", "2 * at(1, 2)[red]"),
    ("2*~(3*at(1,2)[red])", "6 * ~at(1, 2)[red]"),
    ("at(1,2)[red] & at(3,4)[red]", "at(1, 2)[red] & at(3, 4)[red]"),
    ("at(1,2)[red] & 2*(at(1,2)[red] & blue)", "3 * at(1, 2)[red] & 2 * blue"),
    ("at(1,2)[red] | at(1,2)[red & red]", "at(1, 2)[red] | at(1, 2)[2 * red]"),
], ids=lambda x: x)
def test_simplify_treats_a_binding_as_an_atom_and_simplifies_its_body(text, expected):
    s = simplify(parse(text))
    assert str(s) == expected
    assert simplify(s) == s and parse(str(s)) == s


def test_format_tree_shows_the_place_and_the_body():
    assert format_tree(parse("2 * at(1, 2)[red & ~circle] | blue")) == "\n".join([
        "Or",
        "  Weighted 2",
        "    Bound at(1, 2)",
        "      And",
        "        Concept red",
        "        Not",
        "          Concept circle",
        "  Concept blue",
    ])


# --- limits and the command line ----------------------------------------------------------

def test_brackets_and_the_operators_before_a_place_count_towards_the_nesting_limit():
    inside = MAX_DEPTH - 1  # the brackets themselves are one level
    parse("at(1)[" + "(" * inside + "a" + ")" * inside + "]")
    with pytest.raises(ConceptSyntaxError, match=f"more than {MAX_DEPTH} deep"):
        parse("at(1)[" + "(" * (inside + 1) + "a" + ")" * (inside + 1) + "]")
    k = 50  # pending `~` before the place stay pending inside its body
    parse("~" * k + "at(1)[" + "(" * (inside - k) + "a" + ")" * (inside - k) + "]")
    with pytest.raises(ConceptSyntaxError, match="deep"):
        parse("~" * k + "at(1)[" + "(" * (inside - k + 1) + "a" + ")" * (inside - k + 1) + "]")


def test_cli_parse_prints_a_binding(capsys):
    assert main(["parse", "~at(0.3,0.3)[red & ~~circle]"]) == 0
    out = capsys.readouterr().out
    assert "canonical:  ~at(0.3, 0.3)[red & ~~circle]" in out
    assert "simplified: ~at(0.3, 0.3)[red & circle]" in out
    assert "tree:\n  Not\n    Bound at(0.3, 0.3)\n      And\n        Concept red\n" in out


def test_cli_parse_json_of_a_binding(capsys):
    assert main(["parse", "--json", "at(0.3, 0.3)[red]"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["canonical"] == "at(0.3, 0.3)[red]"
    assert data["tree"]["type"] == "Bound"
    assert data["tree"]["place"] == {"type": "Concept", "name": "at", "args": [0.3, 0.3],
                                     "span": [0, 12]}
    assert data["tree"]["body"] == {"type": "Concept", "name": "red", "span": [13, 16]}
    assert from_dict(data["tree"]) == parse("at(0.3, 0.3)[red]")


def test_cli_parse_reports_a_malformed_binding_with_a_caret(capsys):
    assert main(["parse", "at(1,2)[at(3,4)[red]]"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "line 1, column 9" in captured.err and "cannot hold another binding" in captured.err
    assert captured.err.rstrip().endswith("at(1,2)[at(3,4)[red]]\n          ^")
