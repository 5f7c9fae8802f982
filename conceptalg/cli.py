"""The ``conceptalg`` command line: ``parse``, ``explain``, ``train``, ``export``, ``sample``,
``evaluate``, ``extrapolate``, ``infer`` (``train`` lives in :mod:`.cli_train`, ``evaluate`` and
``extrapolate`` in :mod:`.evaluation.commands`, ``infer`` in :mod:`.cli_infer`).

Each subcommand is one ``_cmd_*`` function taking the parsed arguments and returning an exit
code; :func:`main` wires them to argparse. Output is written with ``errors="backslashreplace"``
so any input, even text with lone surrogates, prints safely.

Errors are one line, ``conceptalg <cmd>: <what is wrong and how to fix it>``, never a
traceback. Every argument is checked before any work starts (argparse types and the checks of
:mod:`conceptalg.cli_args`: output folders exist, a run directory is not another run's), so a
mistake never costs a sampling or training run. Exit codes: 0 success; 1 a failure of the
model or data (an unknown concept, an expression the model cannot compose, a file that cannot
be written); 2 bad usage: an argument that is wrong — an expression that does not parse or
writes a concept with the wrong arguments (``at(0.3)`` for ``at(x, y)``), a checkpoint or input
file that is missing, truncated or corrupt (:class:`~conceptalg.errors.CheckpointError`, a
damaged picture) — which the user fixes by changing the command; 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap

from .cli_args import (UsageError, check_device, check_output_file, check_picture, check_run_dir,
                       key_value, non_negative_float, nonnegative_int, positive_float,
                       positive_int, set_threads, sigma_list)
from .cli_args import err as _err
from .cli_args import out as _out
from .errors import CheckpointError, ConceptAlgError, ConceptArgumentError, ConceptSyntaxError

#: ``--sampler`` choices (the names of ``conceptalg.sampling.SAMPLERS``; no torch import here)
SAMPLER_NAMES = ("langevin", "mala", "hmc", "mh", "heun")

__all__ = ["main", "build_parser"]


def sigma_range(text: str) -> tuple[float, float | None]:
    """``LO,HI`` noise levels for ``--negation-sigmas``, ``0 <= LO < HI``; ``LO,`` has no upper
    bound.

    Example:
        >>> sigma_range("1,"), sigma_range("0.5,8")
        ((1.0, None), (0.5, 8.0))
    """
    lo, sep, hi = text.partition(",")
    try:
        if not sep:
            raise ValueError
        low = non_negative_float(lo.strip())
        high = None if not hi.strip() else positive_float(hi.strip())
    except (ValueError, argparse.ArgumentTypeError):
        raise argparse.ArgumentTypeError(f"expected LO,HI noise levels (LO >= 0; 'LO,' for no "
                                         f"upper bound), got {text!r}") from None
    if high is not None and not high > low:
        raise argparse.ArgumentTypeError(f"expected LO < HI, got {text!r}")
    return low, high


def _add_negation_options(p) -> None:
    p.add_argument("--negation-scale", type=non_negative_float, default=None, metavar="NU",
                   help="guidance: each negated term's weight times NU (default: the model's, "
                        "else 1)")
    p.add_argument("--negation-sigmas", type=sigma_range, default=None, metavar="LO,HI",
                   help="guidance: count negated terms only at noise levels LO <= σ <= HI "
                        "('1,': σ >= 1; default: the model's, else every level)")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``conceptalg sample: argument --n: ...``) instead of the
    usage block; subcommand parsers inherit it."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _cmd_parse(args: argparse.Namespace) -> int:
    from .expr import simplify
    from .treeviews import format_tree, to_dict
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
    parser = _Parser(
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
    where = f"conceptalg {args.command}"
    try:
        return int(args.func(args) or 0)
    except UsageError as e:
        _err(f"{where}: {e}")
        return 2
    except ConceptSyntaxError as e:
        _err(f"{where}: syntax error at {e}")
        return 2
    except ConceptArgumentError as e:  # the text is wrong, as with a syntax error
        _err(f"{where}: wrong arguments at {e}" if e.line is not None else f"{where}: {e}")
        return 2
    except CheckpointError as e:  # the checkpoint the command was given: missing or damaged
        _err(f"{where}: CheckpointError: {e}")
        return 2
    except ConceptAlgError as e:
        _err(f"{where}: {type(e).__name__}: {e}")
        return 1
    except ValueError as e:
        # The library checks its arguments with ValueError (naming the parameter, its value and
        # the rule); what reaches here is an argument the command passed on unchecked.
        _err(f"{where}: {e}")
        return 2
    except OSError as e:  # a file or folder that cannot be read or written
        _err(f"{where}: {e}")
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
    semantics = args.semantics if args.semantics is not None or concepts is not None \
        else "product"
    _out(explain(args.expr, concepts, semantics=semantics, or_temperature=args.or_temperature,
                 guidance_scale=args.guidance_scale, negation_scale=args.negation_scale,
                 negation_sigmas=args.negation_sigmas))
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
    p.add_argument("--semantics", choices=("product", "guidance", "logic"), default=None,
                   help="how AND/OR/NOT become energies (default: the model's, else product)")
    p.add_argument("--guidance-scale", type=positive_float, default=None, metavar="W",
                   help="guidance: E = E_0 + W * sum(E_c - E_0) (default: the model's, else 1)")
    p.add_argument("--or-temperature", type=positive_float, default=1.0, metavar="TAU",
                   help="temperature of OR's soft minimum (default: 1)")
    _add_negation_options(p)
    p.add_argument("--model", metavar="DIR", default=None,
                   help="a trained model (run directory or checkpoint) to check names against")
    p.set_defaults(func=_cmd_explain)


_EXTRA_COMMANDS.append(_register_explain)


# --- export ---------------------------------------------------------------------------------

def _cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    run, out = Path(args.run), Path(args.out)
    if out.exists() and run.exists() and out.resolve() == run.resolve():
        raise UsageError(f"OUT {out} is the run itself; export writes the model to a new folder")
    if any((c / "optimizer.safetensors").exists() for c in out.glob("ckpt-*")):
        raise UsageError(f"OUT {out} holds a training run (checkpoints with optimiser state), "
                         f"which export would prune to one checkpoint; choose a new folder")
    # an earlier export in OUT is replaced: resume lets it through (and only it: resume
    # with no run there is an error)
    check_run_dir(out, resume=(out / "latest").exists(), option="OUT",
                  holds="the exported model")
    from .training.export import export_model

    try:
        path = export_model(args.run, args.out, init_bank=args.init_bank,
                            sampler_defaults=dict(args.set), classifiers=args.classifiers)
    except ValueError as e:
        if isinstance(e, ConceptAlgError):  # e.g. CheckpointError: reported by main()
            raise
        _err(f"conceptalg export: {e}")
        return 2
    size = sum(f.stat().st_size for f in path.iterdir())
    _out(f"exported {path} ({size / 1e6:.1f} MB); load it with conceptalg.load({str(args.out)!r})")
    return 0


def _register_export(sub) -> None:
    p = sub.add_parser("export", help="write a small model for users from a training run",
                       description="Copy a run's weights and config (no optimiser, no replay "
                                   "buffers) into a new directory, keeping the newest samples "
                                   "of the base replay buffer as the model's default starting "
                                   "points for sampling.",
                       epilog="Example: conceptalg export runs/shapes models/shapes")
    p.add_argument("run", help="run directory (its latest checkpoint) or checkpoint directory")
    p.add_argument("out", help="directory to write (a run directory with one checkpoint)")
    p.add_argument("--classifiers", default=None, metavar="RUN",
                   help="dsm: put the factor classifiers of RUN (trained with --heads "
                        "classifier --base over this model) beside the model's own heads, "
                        "for fast conceptalg infer")
    p.add_argument("--init-bank", type=nonnegative_int, default=None, metavar="N",
                   help="start images kept with the model (default 256; 0: none; dsm "
                        "models keep none)")
    p.add_argument("--set", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                   help="replace a sampling default of the model (repeatable), e.g. "
                        "--set steps=200 --set step_size=6e-5; the keys semantics and "
                        "guidance_scale set the composition defaults (--set guidance_scale=4)")
    p.set_defaults(func=_cmd_export)


# --- sample ---------------------------------------------------------------------------------

def _cmd_sample(args: argparse.Namespace) -> int:
    check_picture(args.out, "--out")
    if args.save:
        check_output_file(args.save, "--save", (".safetensors", ".npz"))  # never pickle
    check_device(args.device)
    set_threads(args.threads)
    from . import compose, load, sample
    from .plots import save_expression_grid, save_points
    from .sampling.mixture import is_mixture

    group = None
    if args.distributed:  # opt-in: chains split over the torchrun processes
        from . import distributed

        group = distributed.from_environment(args.device)
    try:
        model = load(args.model)
        shape = tuple(model.config.sample_shape)
        if len(shape) != 3 and shape != (2,) and not args.save:
            raise UsageError(f"samples of shape {shape} have no picture; add --save FILE.npz "
                             f"(or .safetensors)")
        energy = compose(args.expr, model, semantics=args.semantics,
                         guidance_scale=args.guidance_scale, negation_scale=args.negation_scale,
                         negation_sigmas=args.negation_sigmas)
        options = {k: v for k, v in dict(sampler=args.sampler, steps=args.steps,
                                         step_size=args.step_size,
                                         sigmas=args.sigmas).items() if v is not None}
        mixture = is_mixture(energy)  # an OR of a score-only model: a disjunct per chain
        x = sample(energy, args.n, seed=args.seed,
                   device=group.device if group is not None else args.device,
                   progress=not args.no_progress and (group is None or group.rank == 0),
                   distributed=group is not None, return_info=mixture, **options)
        if group is not None and group.rank != 0:
            return 0  # every process holds all samples; rank 0 writes them
        if mixture:
            x, info = x
            drawn = ", ".join(f"{text} {count}/{args.n} (weight {w:.3g})" for text, count, w
                              in zip(info["branches"], info["branch counts"],
                                     info["branch weights"]))
            _out(f"OR as a mixture (a disjunct per chain, equal partition functions): {drawn}")
        _write_samples(args, x, model, save_expression_grid, save_points)
    finally:
        if group is not None:
            distributed.shutdown()
    return 0


def _write_samples(args, x, model, save_expression_grid, save_points) -> None:
    from pathlib import Path

    out = Path(args.out)
    if x.dim() == 4:
        save_expression_grid({args.expr: x}, out, ncol=min(args.n, 16))
        _out(f"wrote {out}")
    elif x.dim() == 2 and x.shape[1] == 2:
        save_points({args.expr: x}, out, bounds=model.config.bounds)
        _out(f"wrote {out}")
    if args.save:
        path = Path(args.save)
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file({"samples": x.contiguous().cpu()}, str(path))
        else:
            import numpy as np

            np.savez(path, samples=x.cpu().numpy())
        _out(f"wrote {path}")


def _register_sample(sub) -> None:
    p = sub.add_parser("sample", help="sample from a composed expression",
                       description="Compose EXPR over a trained model and draw samples; writes "
                                   "an image grid (or a 2-D histogram).",
                       epilog='Example: conceptalg sample "red & circle" --model models/shapes '
                              '--n 64 --out grid.png')
    p.add_argument("expr", metavar="EXPR")
    p.add_argument("--model", required=True, metavar="DIR")
    p.add_argument("--n", "--num-samples", dest="n", type=positive_int, default=64,
                   help="number of samples (write --num-samples under torchrun, which claims "
                        "--n as an abbreviation of its own options)")
    p.add_argument("--out", default="samples.png", metavar="PNG",
                   help="the picture (its folder must exist)")
    p.add_argument("--sampler", choices=SAMPLER_NAMES, default=None,
                   help="default: the model's (heun for models trained with --objective dsm)")
    p.add_argument("--steps", type=positive_int, default=None,
                   help="sampler steps (per noise level with --sigmas)")
    p.add_argument("--step-size", type=positive_float, default=None)
    p.add_argument("--sigmas", type=sigma_list, default=None, metavar="S1,S2,...",
                   help="noise levels to anneal over, non-increasing (default: the model's)")
    p.add_argument("--semantics", choices=("product", "guidance", "logic"), default=None,
                   help="default: the model's own (guidance for dsm image models, else product)")
    p.add_argument("--guidance-scale", type=positive_float, default=None, metavar="W",
                   help="guidance: E = E_0 + W * sum(E_c - E_0) (default: the model's)")
    _add_negation_options(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=positive_int, default=None, metavar="N",
                   help="torch threads (one per process when runs share cores)")
    p.add_argument("--save", default=None, metavar="FILE",
                   help="also save the samples (.safetensors or .npz)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--distributed", action="store_true",
                   help="under torchrun: split the chains over the processes (same samples "
                        "for a seed whatever the number of processes); rank 0 writes")
    p.set_defaults(func=_cmd_sample)


def _register_train(sub) -> None:
    from .cli_train import register

    register(sub)


_EXTRA_COMMANDS.extend([_register_train, _register_export, _register_sample])


def _register_evaluation(sub) -> None:
    from .evaluation.commands import REGISTER

    for register in REGISTER:
        register(sub)


_EXTRA_COMMANDS.append(_register_evaluation)


def _register_infer(sub) -> None:
    from .cli_infer import register

    register(sub)


_EXTRA_COMMANDS.append(_register_infer)
