"""The ``evaluate`` and ``extrapolate`` subcommands (registered by :mod:`conceptalg.cli`).

``conceptalg evaluate`` samples each ``--expr`` from a trained model and prints accuracy (with
its standard error), the valid fraction, the spread of the factors the expression leaves free
and, for ORs, the achieved mixture, next to the evaluator's own accuracy on real held-out data.
``conceptalg extrapolate`` samples every combination of two factors and draws the matrix.
Arguments and output paths are checked before any sampling (:mod:`conceptalg.cli_args`);
torch-heavy modules are imported inside the command functions.
"""

from __future__ import annotations

import argparse
import json
import math

from ..cli_args import (UsageError, check_device, check_output_file, check_picture,
                        holdout_pairs, positive_float, positive_int, set_threads)
from ..cli_args import err as _err
from ..cli_args import out as _out

__all__ = ["REGISTER"]


def _percent(value: float) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{100 * value:.1f} %"


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, metavar="DIR",
                   help="a trained model (run directory or checkpoint)")
    p.add_argument("--evaluator", choices=("decoder", "classifier"), default="decoder",
                   help="decoder: the exact analytic decoder (default); classifier: per-factor "
                        "classifiers trained on real images of every pair (shapes only)")
    p.add_argument("--sampler", choices=("langevin", "mala", "hmc", "mh", "heun"), default=None,
                   help="default: the sampler the model was trained with")
    p.add_argument("--steps", type=positive_int, default=None,
                   help="sampler steps (default: the model's)")
    p.add_argument("--step-size", type=positive_float, default=None)
    p.add_argument("--semantics", choices=("product", "guidance", "logic"), default=None,
                   help="default: the model's own")
    p.add_argument("--guidance-scale", type=positive_float, default=None, metavar="W",
                   help="guidance: E = E_0 + W * sum(E_c - E_0) (default: the model's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu (default) or cuda")
    p.add_argument("--threads", type=positive_int, default=None, metavar="N",
                   help="torch threads (one per process when runs share cores)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _load(args: argparse.Namespace, exprs=()):
    """Load the model and check that it can be evaluated and that ``exprs`` compose over it."""
    from .. import compose
    from .protocol import model_info

    check_device(args.device)
    set_threads(args.threads)
    info = model_info(args.model, device=args.device)
    if info.data not in ("shapes", "scenes"):
        raise UsageError(f"no evaluator for a model trained on {info.data!r} data; built-in "
                         f"evaluators cover shapes and scenes")
    if args.evaluator == "classifier" and info.data != "shapes":
        raise UsageError(f"--evaluator classifier needs a shapes model; {info.data} are "
                         f"evaluated by the decoder")
    for expr in exprs:  # unknown names and bad semantics before any sampling
        compose(expr, info.model, semantics=args.semantics, guidance_scale=args.guidance_scale)
    return info


def _setup(args: argparse.Namespace, info):
    """The generator and the evaluator (with its real-data accuracy) of a loaded model."""
    from .classifiers import make_evaluator
    from .protocol import ModelSampler

    if args.evaluator == "classifier":
        _err("training the evaluator classifiers on real images of every pair ...")
    evaluator = make_evaluator(info.data, args.evaluator, seed=args.seed, device=args.device)
    generate = ModelSampler(info.model, semantics=args.semantics,
                            guidance_scale=args.guidance_scale, sampler=args.sampler,
                            steps=args.steps, step_size=args.step_size, device=args.device,
                            progress=not args.no_progress)
    return generate, evaluator


def _evaluator_line(evaluator) -> str:
    report = evaluator.real_accuracy()
    if "all pairs" in report:
        text = f"all factors {_percent(report['all pairs']['all'])} on all pairs"
        if "held-out pairs" in report:
            text += f", {_percent(report['held-out pairs']['all'])} on the held-out pairs"
    else:
        text = f"{_percent(report['all'])} of {report['n']} images read exactly"
    return f"evaluator: {evaluator.name} (on real held-out data: {text})"


# --- evaluate -------------------------------------------------------------------------------

def _describe_diversity(d: dict) -> str:
    parts = [f"{f} {v:.2f}" for f, v in d.get("entropy", {}).items() if math.isfinite(v)]
    return ", ".join(parts) or "-"


def _describe_mixture(mixture: dict) -> str:
    if not mixture:
        return ""
    return "; ".join(", ".join(f"{d} {_percent(p)}" for d, p in parts.items())
                     for parts in mixture.values())


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from ..syntax import parse
    from .metrics import json_safe
    from .protocol import evaluate_expressions

    exprs = [parse(e) for e in args.expr]  # syntax errors before any work
    if args.json:
        check_output_file(args.json, "--json")
    if args.grid:
        check_picture(args.grid, "--grid")
    info = _load(args, args.expr)  # the texts, so that an error points into them
    generate, evaluator = _setup(args, info)
    results = evaluate_expressions(generate, exprs, evaluator, args.n, seed=args.seed,
                                   keep_samples=args.grid is not None)
    _out(f"model: {info.describe()}")
    _out(_evaluator_line(evaluator))
    _out(f"samples: {args.n} per expression, seed {args.seed}; correct = valid and every "
         f"concept holds")
    header = ["expression", "accuracy", "n", "valid", "free-factor entropy", "centre spread",
              "OR mixture"]
    table = [header]
    for s, _ in results:
        spread = s.diversity.get("centre spread", float("nan"))
        table.append([s.expr, str(s.accuracy), str(s.accuracy.n), _percent(s.valid.value),
                      _describe_diversity(s.diversity),
                      f"{spread:.3f}" if math.isfinite(spread) else "-",
                      _describe_mixture(s.mixture)])
    widths = [max(len(row[k]) for row in table) for k in range(len(header))]
    for i, row in enumerate(table):
        _out("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        if i == 0:
            _out("  ".join("-" * w for w in widths))
    _out("(entropy: normalised H/log V of each factor the expression leaves free, among the "
         "correct samples; 1 = all values equally often)")
    if args.json:
        payload = {"model": str(info.path), "data": info.data, "step": info.step,
                   "heads": info.model.config.heads,
                   "evaluator": {"name": evaluator.name,
                                 "real accuracy": evaluator.real_accuracy()},
                   "settings": {"n": args.n, "seed": args.seed, "sampler": args.sampler,
                                "steps": args.steps, "step_size": args.step_size,
                                "semantics": args.semantics},
                   "results": [s.as_dict() for s, _ in results]}
        with open(args.json, "w") as f:
            json.dump(json_safe(payload), f, indent=2)
        _out(f"wrote {args.json}")
    if args.grid:
        from ..plots import save_expression_grid

        rows = {s.expr: x for s, x in results}
        notes = {s.expr: str(s.accuracy) for s, _ in results}
        save_expression_grid(rows, args.grid, notes=notes, ncol=min(args.n, 16))
        _out(f"wrote {args.grid}")
    return 0


def _register_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="score composed expressions with an evaluator",
                       description="Sample each expression from a trained shapes or scenes "
                                   "model and score the samples with an evaluator that never "
                                   "saw a generated sample: accuracy ± standard error, valid "
                                   "fraction, diversity of the free factors, OR proportions.",
                       epilog='Example: conceptalg evaluate --model models/shapes --expr '
                              '"red & circle" --expr "circle & ~red" --n 200 --json out.json')
    p.add_argument("--expr", action="append", required=True, metavar="EXPR",
                   help="an expression to evaluate (repeat the option for several)")
    p.add_argument("--n", type=positive_int, default=200,
                   help="samples per expression (default 200)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the results as JSON")
    p.add_argument("--grid", default=None, metavar="PNG",
                   help="also draw the samples, one row per expression")
    _common(p)
    p.set_defaults(func=_cmd_evaluate)


# --- extrapolate ----------------------------------------------------------------------------

def _cmd_extrapolate(args: argparse.Namespace) -> int:
    from ..data.shapes import DEFAULT_HOLDOUT, resolve_holdout
    from .extrapolation import extrapolation_matrix, write_matrix_csv
    from .figures import save_extrapolation_figure

    names = [f.strip() for f in args.factors.split(",")]
    if len(names) != 2 or not all(names):
        raise UsageError(f"--factors takes two factor names like 'shape,color', got "
                         f"{args.factors!r}")
    holdout = None
    if args.holdout is not None:
        try:
            holdout = DEFAULT_HOLDOUT if args.holdout == "default" else \
                resolve_holdout(None if args.holdout == "none" else args.holdout)
        except ValueError as e:
            raise UsageError(f"--holdout: {e}") from None
    check_picture(args.out, "--out")
    if args.csv:
        check_output_file(args.csv, "--csv")
    info = _load(args)
    if args.holdout is None:
        holdout = info.holdout
    missing = [f for f in names if f not in info.model.config.factors]
    if missing:
        raise UsageError(f"the model has no factor(s) {', '.join(map(repr, missing))}; its "
                         f"factors are {', '.join(info.model.config.factors) or 'none'}")
    generate, evaluator = _setup(args, info)
    matrix = extrapolation_matrix(generate, evaluator, info.model.config.factors, names[0],
                                  names[1], args.n, holdout=holdout, seed=args.seed)
    _out(f"model: {info.describe()}")
    _out(_evaluator_line(evaluator))
    width = max(len(c) for c in matrix.cols + ["held out*"]) + 1
    lead = max(len(r) for r in matrix.rows + [names[0]]) + 1
    _out(f"accuracy of {names[0]}=a & {names[1]}=b, {args.n} samples per cell "
         f"(* held out of training)")
    _out(f"{names[0]:<{lead}}" + "".join(f"{c:>{width}}" for c in matrix.cols))
    for a in matrix.rows:
        line = f"{a:<{lead}}"
        for b in matrix.cols:
            cell = matrix.cells[(a, b)]
            text = f"{100 * cell.score.accuracy.value:.0f}%" + ("*" if cell.held_out else "")
            line += f"{text:>{width}}"
        _out(line)
    seen, held = matrix.pooled(False), matrix.pooled(True)
    _out(f"seen combinations: {seen} (n = {seen.n})" +
         (f"; held out: {held} (n = {held.n})" if held.n else ""))
    read_seen, read_held = matrix.pooled(False, read=True), matrix.pooled(True, read=True)
    _out(f"read (both values read back, clean or not): seen {read_seen}" +
         (f"; held out {read_held}" if read_held.n else ""))
    save_extrapolation_figure(matrix, args.out)
    _out(f"wrote {args.out}")
    if args.csv:
        write_matrix_csv(matrix, args.csv)
        _out(f"wrote {args.csv}")
    return 0


def _register_extrapolate(sub) -> None:
    p = sub.add_parser("extrapolate", help="sample every combination of two factors",
                       description="Sample factor_a=a & factor_b=b for every pair of values, "
                                   "score each cell, draw the matrix (held-out cells outlined) "
                                   "and optionally write a CSV.",
                       epilog="Example: conceptalg extrapolate --model models/shapes --factors "
                              "shape,color --n 16 --out matrix.png --csv matrix.csv")
    p.add_argument("--factors", default="shape,color", metavar="A,B",
                   help="the row and column factors (default shape,color)")
    p.add_argument("--n", type=positive_int, default=16, help="samples per cell (default 16)")
    p.add_argument("--out", default="matrix.png", metavar="PNG", help="the figure")
    p.add_argument("--csv", default=None, metavar="FILE",
                   help="also write one line per cell (values, held_out, accuracy, stderr, n)")
    p.add_argument("--holdout", type=holdout_pairs, default=None, metavar="PAIRS",
                   help="the pairs held out of training, as for conceptalg train: 'default', "
                        "'none' or 'circle:red,square:green' (default: the model's own)")
    _common(p)
    p.set_defaults(func=_cmd_extrapolate)


REGISTER = [_register_evaluate, _register_extrapolate]
