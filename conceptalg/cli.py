"""The ``conceptalg`` command line: ``parse``, ``explain``, ``train``, ``sample``, ``evaluate``,
``extrapolate``.

Each subcommand is one ``_cmd_*`` function taking the parsed arguments and returning an exit
code; :func:`main` wires them to argparse. Output is written with ``errors="backslashreplace"``
so any input, even text with lone surrogates, prints safely. Exit codes: 0 success, 1 a
runtime failure, 2 bad usage or an expression that does not parse.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap

from .errors import ConceptAlgError, ConceptSyntaxError

__all__ = ["main", "build_parser"]


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")


def _cmd_parse(args: argparse.Namespace) -> int:
    from .expr import format_tree, simplify, to_dict
    from .syntax import parse

    expr = parse(args.expr)
    if args.json:
        payload = {"canonical": str(expr), "simplified": str(simplify(expr)), "tree": to_dict(expr)}
        _out(json.dumps(payload, indent=2, ensure_ascii=False))
    else:
        _out(f"canonical:  {expr}")
        _out(f"simplified: {simplify(expr)}")
        _out("tree:")
        _out(textwrap.indent(format_tree(expr), "  "))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of the ``conceptalg`` command (one subparser per subcommand)."""
    parser = argparse.ArgumentParser(
        prog="conceptalg",
        description="Compositional generation with energy-based models.",
        epilog='Example: conceptalg parse "red & ~circle | 2 * blue"')
    from . import __version__
    parser.add_argument("--version", action="version", version=f"conceptalg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("parse", help="parse an expression; print its canonical form and tree",
                       description="Parse a concept expression and print its canonical text, "
                                   "its simplified form and its tree.")
    p.add_argument("expr", metavar="EXPR", help='a concept expression, e.g. "red & ~circle"')
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=_cmd_parse)

    for register in _EXTRA_COMMANDS:
        register(sub)
    return parser


# Other modules add their subcommands here (a function taking the subparsers object), so that
# the CLI file does not import torch-heavy code until a command that needs it runs.
_EXTRA_COMMANDS: list = []


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (``python -m conceptalg`` exits with it)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="backslashreplace")  # type: ignore[attr-defined]
        except (AttributeError, ValueError):
            pass
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConceptSyntaxError as e:
        _err(f"conceptalg {args.command}: syntax error at {e}")
        return 2
    except ConceptAlgError as e:
        _err(f"conceptalg {args.command}: {type(e).__name__}: {e}")
        return 1
    except KeyboardInterrupt:
        _err("interrupted")
        return 130


def _cmd_explain(args: argparse.Namespace) -> int:
    from .compiler import explain

    concepts = None
    if args.model is not None:
        try:
            from . import load
        except (ImportError, AttributeError) as e:
            _err(f"conceptalg explain: cannot load models in this installation "
                 f"(conceptalg.load is unavailable: {e})")
            return 1
        try:
            concepts = load(args.model)
        except ConceptAlgError:
            raise
        except (OSError, ValueError, ImportError) as e:
            _err(f"conceptalg explain: cannot load a model from {args.model}: {e}")
            return 1
    _out(explain(args.expr, concepts, semantics=args.semantics,
                 or_temperature=args.or_temperature))
    if concepts is None:
        _out("(no --model: names are not checked and a base energy E_0 is assumed)")
    return 0


def _register_explain(sub) -> None:
    p = sub.add_parser("explain", help="show how an expression compiles to an energy",
                       description="Print the normal form of a concept expression, its leaves "
                                   "and its energy formula under a semantics. With --model, "
                                   "check every name against a trained model.",
                       epilog='Example: conceptalg explain "red & ~circle | 2 * blue" '
                              '--semantics guidance')
    p.add_argument("expr", metavar="EXPR", help='a concept expression, e.g. "red & ~circle"')
    p.add_argument("--semantics", choices=("product", "guidance", "logic"), default="product",
                   help="how AND/OR/NOT become energies (default: product)")
    p.add_argument("--or-temperature", type=float, default=1.0, metavar="TAU",
                   help="temperature of OR's soft minimum (default: 1)")
    p.add_argument("--model", metavar="DIR", default=None,
                   help="a trained model (run directory or checkpoint) to check names against")
    p.set_defaults(func=_cmd_explain)


_EXTRA_COMMANDS.append(_register_explain)
