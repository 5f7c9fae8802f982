"""Concept text → AST: the Lark parser, the input limits, and error messages with carets.

The grammar file (``grammar/concepts.lark``) is the specification; :class:`_Builder` only maps
each rule to a node constructor. The parser is LALR with ``strict=True`` and builds nodes while
it parses (no intermediate parse tree, no recursion), so even a 10 000-leaf expression parses
without touching Python's recursion limit. Limits are checked on the token stream before any
node is built. Every failure on any input string is a :class:`ConceptSyntaxError`.

A binding ``at(0.3, 0.3)[red & circle]`` is parsed by the grammar; the two rules it cannot say
(a place has arguments, a body holds no binding) are the :class:`Bound` constructor's, and
:meth:`_Builder.bound` gives its refusal a position.
"""

from __future__ import annotations

import functools
import unicodedata
from pathlib import Path

from .errors import ConceptSyntaxError
from .expr import And, Bound, Concept, Expr, Not, Or, Weighted, _walk, register_parser

__all__ = ["parse", "MAX_CHARS", "MAX_DEPTH", "MAX_LEAVES", "grammar_path"]

MAX_CHARS = 100_000
MAX_DEPTH = 200
MAX_LEAVES = 10_000

_GRAMMAR_FILE = "concepts.lark"
_CONTEXT = 40  # characters of context shown on each side of the caret

# How terminals are named in "expected ..." messages, in the order they are listed.
_DESCRIBE = {
    "NAME": "a concept name",
    "QUOTED": "a quoted name",
    "NOT": "'~'",
    "NUMBER": "a number",
    "LPAR": "'('",
    "RPAR": "')'",
    "LSQB": "'['",
    "RSQB": "']'",
    "_AND": "'&'",
    "_OR": "'|'",
    "STAR": "'*'",
    "EQUAL": "'='",
    "COMMA": "','",
    "MINUS": "'-'",
    "$END": "end of input",
}
_OPERATOR_WORDS = {"and": "&", "or": "|", "not": "~"}


def grammar_path() -> Path:
    """Where the grammar file is: inside the installed package, else in the source tree."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "grammar" / _GRAMMAR_FILE, here.parent / "grammar" / _GRAMMAR_FILE):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"the grammar file {_GRAMMAR_FILE} is missing from {here}/grammar "
                            f"and {here.parent}/grammar; reinstall conceptalg")


class _SemanticError(Exception):
    """A rule that parsed but is not allowed (a zero weight); carries the offending position."""

    def __init__(self, message: str, pos: int) -> None:
        super().__init__(message)
        self.message, self.pos = message, pos


class _Arg:
    __slots__ = ("value", "start", "end")

    def __init__(self, value: float, start: int, end: int) -> None:
        self.value, self.start, self.end = value, start, end


def _start(x) -> int:
    return x.start_pos if hasattr(x, "start_pos") else (x.span[0] if isinstance(x, Expr) else x.start)


def _end(x) -> int:
    return x.end_pos if hasattr(x, "end_pos") else (x.span[1] if isinstance(x, Expr) else x.end)


def _number(token, what: str) -> float:
    value = float(token)
    if value != value or value in (float("inf"), float("-inf")):
        raise _SemanticError(f"{what} {str(token)!r} is too large: it must be finite", token.start_pos)
    return value


def _weight(token) -> float:
    value = _number(token, "weight")
    if value <= 0:
        raise _SemanticError(f"weight {str(token)!r} must be > 0 (to negate a term use ~)",
                             token.start_pos)
    return value


def _unquote(token) -> str:
    body = str(token)[1:-1]
    out, i = [], 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":  # the grammar only admits \' \" \\ here
            i += 1
            ch = body[i]
        out.append(ch)
        i += 1
    return "".join(out)


class _Builder:
    """One short method per grammar rule: children in, AST node out (spans from tokens)."""

    def start(self, c):
        return c[0]

    def or_(self, c):
        return Or(*c, span=(_start(c[0]), _end(c[-1])))

    def and_(self, c):
        return And(*c, span=(_start(c[0]), _end(c[-1])))

    def not_(self, c):
        return Not(c[1], span=(_start(c[0]), _end(c[1])))

    def prefix_weight(self, c):
        return self._weighted(_weight(c[0]), c[2], c[0], (_start(c[0]), _end(c[2])))

    def postfix_weight(self, c):
        node, numbers = c[0], c[2::2]
        weight = 1.0
        for token in numbers:
            weight *= _weight(token)
        return self._weighted(weight, node, numbers[-1], (_start(c[0]), _end(c[-1])))

    @staticmethod
    def _weighted(weight, node, token, span):
        try:
            return Weighted(weight, node, span=span)
        except ValueError:  # a chain whose product overflows or underflows
            product = weight * node.weight if isinstance(node, Weighted) else weight
            raise _SemanticError(f"the chained weights multiply to {product!r}; the product must "
                                 "be finite and > 0", token.start_pos) from None

    def group(self, c):
        node = c[1]
        return type(node)(*node._args(), span=(_start(c[0]), _end(c[2])))

    def bare(self, c):
        return Concept(str(c[0]), span=(_start(c[0]), _end(c[0])))

    def quoted(self, c):
        return Concept(_unquote(c[0]), span=(_start(c[0]), _end(c[0])))

    def qualified(self, c):
        factor, value = c[0], c[2]
        text = _unquote(value) if value.type == "QUOTED" else str(value)
        return Concept(text, factor=str(factor), span=(_start(factor), _end(value)))

    def bound(self, c):
        place, body = c[0], c[2]
        try:
            return Bound(place, body, span=(_start(place), _end(c[3])))
        except ValueError as e:  # at()[...], or a binding in the body: point at the culprit
            nested = next((n for n in _walk(body) if isinstance(n, Bound)), None)
            pos = _start(nested) if nested is not None else _end(place) - 1
            raise _SemanticError(str(e), pos) from None

    def parametric(self, c):
        args = tuple(a.value for a in c if isinstance(a, _Arg))
        return Concept(str(c[0]), args=args, span=(_start(c[0]), _end(c[-1])))

    def arg(self, c):
        minus, number = c
        value = _number(number, "argument")
        start = minus.start_pos if minus is not None else number.start_pos
        return _Arg(-value if minus is not None else value, start, number.end_pos)


@functools.lru_cache(maxsize=1)
def _parser():
    from lark import Lark  # lark is imported on first parse, not on `import conceptalg`

    return Lark(grammar_path().read_text(encoding="utf-8"), parser="lalr", lexer="basic",
                strict=True, maybe_placeholders=True, transformer=_Builder())


@functools.lru_cache(maxsize=1)
def _lexer():
    """A lexer-only twin of the parser, built once, for the limit checks on the token stream.

    ``strict`` is off here only because the parser above already proved the same terminals
    collision-free (the check costs tens of milliseconds).
    """
    from lark import Lark

    _parser()
    return Lark(grammar_path().read_text(encoding="utf-8"), parser=None, lexer="basic")


@functools.lru_cache(maxsize=4096)
def parse(text: str) -> Expr:
    """Parse concept-expression text into an AST.

    Raises :class:`ConceptSyntaxError` (with ``.line``, ``.column`` and a caret message) for any
    text that is not a valid expression, and ``TypeError`` for a non-string.

    Example:
        >>> parse("2*~red & circle | 'or'")
        Or(And(Weighted(2.0, Not(Concept('red'))), Concept('circle')), Concept('or'))
    """
    if not isinstance(text, str):
        raise TypeError(f"parse() takes a str, got {type(text).__name__}")
    return _parse(text)


def _parse(text: str) -> Expr:
    from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

    if len(text) > MAX_CHARS:
        raise _error(text, MAX_CHARS, f"the expression is {len(text)} characters long; the limit "
                     f"is {MAX_CHARS}")
    tokens, lexed_all = _check_limits(text)
    if not tokens and lexed_all:
        raise _error(text, 0, "empty expression; expected a concept such as `red` or "
                     "`red & circle`")
    try:
        return _parser().parse(text)
    except _SemanticError as e:
        raise _error(text, e.pos, e.message) from None
    except UnexpectedToken as e:
        raise _unexpected_token(text, e, tokens) from None
    except UnexpectedCharacters as e:
        raise _unexpected_character(text, e.pos_in_stream) from None
    except UnexpectedInput as e:  # any other lark complaint still becomes our error
        raise _error(text, getattr(e, "pos_in_stream", 0) or 0, str(e).splitlines()[0]) from None
    except RecursionError:  # not reachable with the limits above; a last line of defence
        raise _error(text, 0, "the expression is nested too deeply") from None


def _check_limits(text: str) -> tuple[list, bool]:
    """Lex ``text`` and check nesting depth and leaf count before any node is built.

    Depth counts open parentheses and brackets, pending prefix operators (``~``, ``2 *``) and
    postfix weight chains (``a * 2 * 3``); the operators before a place (``~at(p)[``) stay
    pending in its body. Returns the tokens lexed (up to the first bad character, which the
    parser then reports in order) and whether the whole text lexed.
    """
    from lark.exceptions import UnexpectedCharacters

    tokens, lexed_all = [], True
    try:
        for tok in _lexer().lex(text):
            tokens.append(tok)
    except UnexpectedCharacters:
        lexed_all = False
    opened: list[int] = []  # prefix operators pending when each "(" or "[" opened
    pending_in_groups = pending = postfix = leaves = before_name = 0
    in_args = after_operand = after_postfix_star = False
    for i, tok in enumerate(tokens):
        kind = tok.type
        prev = tokens[i - 1].type if i else None
        postfix_star, operand = False, False
        if in_args:  # inside at(0.3, -0.7): numbers, not nesting
            in_args = kind != "RPAR"
            after_operand = not in_args
            continue
        if kind == "NOT":
            pending += 1
        elif kind == "NUMBER":
            operand = after_postfix_star or prev == "EQUAL"
            pending += not operand  # a prefix weight `2 * ...`
        elif kind == "STAR":
            postfix_star = after_operand
            postfix += postfix_star
        elif kind == "LPAR" and prev == "NAME":
            in_args = True
        elif kind in ("LPAR", "LSQB"):
            pending = before_name if kind == "LSQB" else pending
            opened.append(pending)
            pending_in_groups += pending
            pending = postfix = 0
        elif kind in ("RPAR", "RSQB"):
            pending_in_groups -= opened.pop() if opened else 0
            pending, operand = 0, True
        elif kind in ("NAME", "QUOTED"):
            leaves += prev != "EQUAL"
            before_name, pending, operand = pending, 0, True
        elif kind in ("_AND", "_OR"):
            pending = postfix = 0
        after_operand, after_postfix_star = operand, postfix_star
        depth = len(opened) + pending_in_groups + pending + postfix
        if depth > MAX_DEPTH:
            raise _error(text, tok.start_pos, f"the expression is nested more than {MAX_DEPTH} "
                         "deep (parentheses, brackets, ~ chains and weight chains all count); "
                         "flatten it, e.g. write `a & b & c` rather than `(a & (b & c))`")
        if leaves > MAX_LEAVES:
            raise _error(text, tok.start_pos, f"the expression has more than {MAX_LEAVES} "
                         "concepts; split it into several expressions")
    return tokens, lexed_all


# --- error messages -----------------------------------------------------------------------

def _line_col(text: str, pos: int) -> tuple[int, int]:
    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return line, column


def _visible(ch: str) -> str:
    if ch == "\t":
        return " "
    return "?" if unicodedata.category(ch) in ("Cc", "Cs", "Cf", "Zl", "Zp") else ch


def _context(text: str, pos: int) -> str:
    line_start = text.rfind("\n", 0, pos) + 1
    line_end = text.find("\n", pos)
    line_end = len(text) if line_end < 0 else line_end
    lo, hi = max(line_start, pos - _CONTEXT), min(line_end, pos + _CONTEXT)
    prefix = "..." if lo > line_start else ""
    suffix = "..." if hi < line_end else ""
    shown = "".join(_visible(ch) for ch in text[lo:hi])
    return f"  {prefix}{shown}{suffix}\n  {' ' * (len(prefix) + pos - lo)}^"


def error_position(text: str, pos: int) -> dict:
    """Where an error at character ``pos`` of ``text`` is: the keywords ``text``, ``line``,
    ``column`` (1-based, in code points) and ``context`` (the line with a caret) that
    :class:`ConceptSyntaxError` and :class:`~conceptalg.errors.ConceptArgumentError` take.

    Example:
        >>> where = error_position("red & at(0.3)", 6)
        >>> where["line"], where["column"]
        (1, 7)
        >>> print(where["context"])
          red & at(0.3)
                ^
    """
    pos = max(0, min(pos, len(text)))
    line, column = _line_col(text, pos)
    return dict(text=text, line=line, column=column, context=_context(text, pos))


def argument_position(text: str, span: tuple[int, int], index: int) -> int:
    """Where argument ``index`` (0-based) of the parametric concept that ``span`` covers in
    ``text`` starts (its sign included); the concept's start when it has no such argument.

    Example:
        >>> argument_position("red & at(0.3, -2)", (6, 17), 1)
        14
    """
    start, end = span
    k, opens_argument = 0, False
    for tok in _lexer().lex(text[start:end]):
        if tok.type in ("LPAR", "COMMA"):
            opens_argument = True
            continue
        if opens_argument:
            if k == index:
                return start + tok.start_pos
            k += 1
        opens_argument = False
    return start


def _error(text: str, pos: int, message: str) -> ConceptSyntaxError:
    return ConceptSyntaxError(message, **error_position(text, pos))


def _show(value: str) -> str:
    value = value if len(value) <= 30 else value[:27] + "..."
    return repr(value)


def _describe_expected(expected) -> str:
    names = [_DESCRIBE[k] for k in _DESCRIBE if k in expected]
    names += sorted(k for k in expected if k not in _DESCRIBE)
    if len(names) <= 1:
        return names[0] if names else "nothing"
    return ", ".join(names[:-1]) + " or " + names[-1]


def _unexpected_token(text: str, e, tokens: list) -> ConceptSyntaxError:
    tok, expected = e.token, set(e.expected)
    if tok.type == "$END":
        pos = tokens[-1].end_pos if tokens else 0
        found = "end of input"
    else:
        pos = tok.start_pos
        found = _show(str(tok))
        if tok.type in ("_AND", "_OR", "NOT") and str(tok) in _OPERATOR_WORDS:
            found = f"reserved word {found}"
    index = next((i for i, t in enumerate(tokens) if t.start_pos == pos), len(tokens))
    # LALR merges look-ahead sets across contexts: of ')', ']' and the end of input keep only
    # the one that closes the innermost open bracket, so the message lists what could come next.
    opened = _open_brackets(tokens[:index])
    expected -= {"RPAR", "RSQB", "$END"} - {_CLOSES[opened[-1]] if opened else "$END"}
    message = f"unexpected {found}; expected {_describe_expected(expected)}"
    hint = _hint(tok, expected, tokens, index, opened)
    if hint:
        message += f". {hint}"
    return _error(text, pos, message)


_CLOSES = {"LPAR": "RPAR", "LSQB": "RSQB"}
_BODY_EXAMPLE = "`at(0.3, 0.3)[red & circle]`"


def _open_brackets(tokens: list) -> list[str]:
    """The brackets (``LPAR``, ``LSQB``) still open after ``tokens``, outermost first."""
    opened: list[str] = []
    for t in tokens:
        if t.type in _CLOSES:
            opened.append(t.type)
        elif t.type in ("RPAR", "RSQB") and opened:
            opened.pop()
    return opened


def _hint(tok, expected, tokens, index, opened) -> str:
    value = str(tok)
    wants_operand = "NAME" in expected
    prev = tokens[index - 1] if index > 0 else None
    if tok.type == "NAME" and value.lower() in _OPERATOR_WORDS:
        return (f"Did you mean `{_OPERATOR_WORDS[value.lower()]}`? The words and/or/not are "
                f"operators only in lower case; `{value}` is a concept name")
    if tok.type in ("_AND", "_OR", "NOT") and value in _OPERATOR_WORDS and wants_operand:
        return f"`{value}` is a reserved word: quote it ('{value}') to use it as a concept name"
    if prev is not None and prev.type == "STAR" and tok.type != "NUMBER":
        return ("A weight multiplies one term by a number; combine concepts with & "
                "(e.g. `a & 0.5 * b`)")
    if "MINUS" in expected and tok.type != "NUMBER":
        return ("The arguments of a parametric concept are numbers, e.g. `at(0.3, -0.7)`; "
                "if you meant a group, put an operator before '(' (missing operator?)")
    if tok.type in ("LSQB", "RSQB") or (tok.type == "RPAR" and opened[-1:] == ["LSQB"]):
        return _bracket_hint(tok, expected, tokens, index, opened)
    if tok.type == "MINUS":
        return "Weights must be positive: negate a term with ~ (e.g. `a & ~b`)"
    if tok.type in ("NAME", "QUOTED", "LPAR", "NUMBER", "NOT") and ("_AND" in expected
                                                                     or "_OR" in expected):
        before = _show(str(prev)) if prev is not None else "the previous term"
        return f"Missing operator between {before} and {_show(value)}: write & (and) or | (or)"
    if tok.type == "RPAR" and not wants_operand and not opened:
        return "This ')' has no matching '('"
    if tok.type == "RPAR" and prev is not None and prev.type == "LPAR":
        return "Empty parentheses: put an expression inside, e.g. `(a | b)`"
    if tok.type == "$END" and "RPAR" in expected:
        return "A '(' is never closed"
    if tok.type == "$END" and "RSQB" in expected:
        return "A '[' is never closed: end the binding's body with ']'"
    return ""


def _bracket_hint(tok, expected, tokens, index, opened) -> str:
    """The hint for a '[' or ']' out of place, or a ')' that would close a binding's body."""
    prev = tokens[index - 1] if index > 0 else None
    innermost = opened[-1] if opened else None
    if "COMMA" in expected:  # `at(0.3, 0.3[red]`, `at(0.3]`
        return f"Close the arguments of a place with ')' before its body, e.g. {_BODY_EXAMPLE}"
    if tok.type == "LSQB" and "NAME" not in expected:  # `red[`, `color=red[`, `(a)[`, `2[`
        after_equal = index > 2 and tokens[index - 2].type == "EQUAL"
        if prev.type == "RSQB":
            return f"A binding takes one body: put every property in it, e.g. {_BODY_EXAMPLE}"
        if prev.type == "NUMBER" and not after_equal:
            return ("A weight takes no body: weight the whole binding, e.g. "
                    "`2 * at(0.3, 0.3)[red]` or `at(0.3, 0.3)[red] * 2`")
        what = ("A group" if prev.type == "RPAR" else
                f"`{tokens[index - 3]}={prev}`" if after_equal else f"`{prev}`")
        return (f"{what} names no place, so it takes no body: only a place with arguments "
                f"does, e.g. {_BODY_EXAMPLE}; to join concepts write & (e.g. `red & circle`)")
    if tok.type == "LSQB":
        return f"'[' opens the body of a binding and follows a place, e.g. {_BODY_EXAMPLE}"
    if tok.type == "RPAR":
        return "A binding's body is still open: close it with ']' before ')'"
    if innermost is None:
        return "This ']' has no matching '['"
    if innermost == "LPAR":
        return "A '(' is still open: close it with ')' before ']'"
    if prev is not None and prev.type == "LSQB":
        return (f"Empty brackets: a binding's body names the object's properties, e.g. "
                f"{_BODY_EXAMPLE}")
    body = tokens[max(i for i, t in enumerate(tokens[:index]) if t.type == "LSQB") + 1:index]
    if not any(t.type in ("NAME", "QUOTED") for t in body):  # `at(p)[2]`, `at(p)[~]`
        return f"The body of a binding must name a concept, e.g. {_BODY_EXAMPLE}"
    return ""


def _unexpected_character(text: str, pos: int) -> ConceptSyntaxError:
    ch = text[pos]
    message = f"unexpected character {_show(ch)}"
    if ch in "'\"":
        message += (f"; a quoted name must be closed on the same line with {ch}, be non-empty, "
                    "and use only the escapes \\' \\\" \\\\")
    elif ch == "-":
        message += "; weights must be positive: negate a term with ~ (e.g. `a & ~b`)"
    elif ch.isalpha() or ch.isdigit():
        message += ("; names use ASCII letters, digits and _ (quote other names, e.g. "
                    f"'{ch}')")
    else:
        message += ("; expected a concept name, a quoted name, a number or one of "
                    "& | ~ ! ( ) [ ] * , =")
    return _error(text, pos, message)


register_parser(parse)  # text becomes expressions everywhere: `a & "b | c"`
