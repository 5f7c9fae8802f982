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

#: ``--sampler`` choices (the names of ``conceptalg.sampling.SAMPLERS``; no torch import here)
SAMPLER_NAMES = ("langevin", "mala", "hmc", "mh", "heun")

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
    semantics = args.semantics if args.semantics is not None or concepts is not None \
        else "product"
    _out(explain(args.expr, concepts, semantics=semantics, or_temperature=args.or_temperature,
                 guidance_scale=args.guidance_scale))
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
    p.add_argument("--guidance-scale", type=float, default=None, metavar="W",
                   help="guidance: E = E_0 + W * sum(E_c - E_0) (default: the model's, else 1)")
    p.add_argument("--or-temperature", type=float, default=1.0, metavar="TAU",
                   help="temperature of OR's soft minimum (default: 1)")
    p.add_argument("--model", metavar="DIR", default=None,
                   help="a trained model (run directory or checkpoint) to check names against")
    p.set_defaults(func=_cmd_explain)


_EXTRA_COMMANDS.append(_register_explain)


# --- train ----------------------------------------------------------------------------------

def _parse_pairs(text: str):
    """``default`` | ``none`` | ``circle:red,square:green`` → a holdout for ``shapes``."""
    if text in ("default", "none"):
        return text
    pairs = []
    for item in text.split(","):
        shape, sep, color = item.strip().partition(":")
        if not sep or not shape or not color:
            raise argparse.ArgumentTypeError(
                f"--holdout takes 'default', 'none' or pairs like 'circle:red,square:green'; "
                f"got {item!r}")
        pairs.append((shape, color))
    return pairs


def _training_data(args: argparse.Namespace):
    from .training import ConceptData, builtin_data

    if args.data in ("toy2d", "shapes", "scenes", "digits"):
        holdout = args.holdout
        if args.data == "shapes" and holdout == "none":
            holdout = None
        return builtin_data(args.data, n=args.n, seed=args.seed, holdout=holdout)
    if args.root is None:
        raise SystemExit(f"conceptalg train: --data {args.data} needs --root DIR")
    import torch

    from .data.attributes import load_attribute_folder, load_celeba

    attributes = args.attributes.split(",") if args.attributes else None
    if args.data == "celeba":
        dataset = load_celeba(args.root, "train", attributes, resolution=args.resolution)
    else:
        dataset = load_attribute_folder(args.root, args.csv, attributes,
                                        resolution=args.resolution)
    n = min(len(dataset), args.n)
    images, values = zip(*(dataset[i] for i in range(n)))
    x, values = torch.stack(images), torch.stack(values)                 # [N, 3, R, R], [N, A]
    names = dataset.table.names
    # each binary attribute is a concept trained on the images that have it
    factors = {a: [a] for a in names}
    labels = {a: torch.where(values[:, j] > 0, 0, -1) for j, a in enumerate(names)}
    return ConceptData(x, factors, labels, name=args.data)


def _write_metrics(history, out_dir) -> None:
    import csv
    from pathlib import Path

    keys = sorted({k for m in history for k in m}, key=lambda k: (k != "step", k))
    path = Path(out_dir) / "metrics.csv"
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)
    tmp.replace(path)


def _cmd_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .plots import save_training_curve
    from .training import Trainer, TrainingDiverged, default_train_config
    from .training import distributed
    from .training.dsm import DSMTrainer, default_dsm_config
    from .training.checkpoint import latest_checkpoint

    if args.threads is not None:
        if args.threads < 1:
            _err(f"conceptalg train: --threads must be ≥ 1, got {args.threads}")
            return 2
        import torch
        torch.set_num_threads(args.threads)
    if args.objective == "cd" and args.parameterization != "energy":
        _err("conceptalg train: --parameterization score needs --objective dsm (contrastive "
             "divergence trains energies)")
        return 2
    # Under torchrun every process runs this command: join them (None when alone). Rank 0
    # logs and writes files; saving is collective (the others wait for rank 0's write).
    ours = not (distributed.dist.is_available() and distributed.dist.is_initialized())
    group = distributed.from_environment(args.device, timeout=args.timeout)
    device = group.device if group else args.device
    main = group is None or group.is_main
    say = _err if main else (lambda text: None)
    out = Path(args.out)
    try:
        data = _training_data(args)
        dsm = args.objective == "dsm"
        if dsm and group is not None:
            say("conceptalg train: --objective dsm trains in one process; run it without "
                "torchrun")
            return 2
        if args.resume and latest_checkpoint(out) is not None:
            if dsm:
                trainer = DSMTrainer.resume(out, data, device=device, steps=args.steps)
            else:
                trainer = Trainer.resume(out, data, device=device, steps=args.steps)
            say(f"resuming {out} at step {trainer.step} of {trainer.config.steps}")
        else:
            if args.resume:
                say(f"no checkpoint in {out} yet: starting a new run")
            overrides = {k: v for k, v in dict(
                steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                langevin_steps=args.langevin_steps, log_every=args.log_every).items()
                if v is not None}
            options = {"width": args.width} if args.width and len(data.sample_shape) == 3 \
                else None
            try:
                if dsm:
                    overrides.pop("langevin_steps", None)
                    trainer = DSMTrainer(data, config=default_dsm_config(data.sample_shape,
                                                                         **overrides),
                                         parameterization=args.parameterization, device=device)
                else:
                    config = default_train_config(data.sample_shape, **overrides)
                    trainer = Trainer(data, config=config, heads=args.heads, device=device,
                                      backbone_options=options,
                                      colour_blind=[f for f in args.colour_blind.split(",")
                                                    if f])
            except ValueError as e:  # a model the options cannot build: a usage error
                say(f"conceptalg train: {e}")
                return 2
        if group is not None:
            say(f"training on {group.world_size} processes ({group.backend}): "
                f"{trainer.config.batch_size} samples per process and step, "
                f"{trainer.config.batch_size * group.world_size} in all")
        if main:
            out.mkdir(parents=True, exist_ok=True)

        def checkpoint(tr, metrics) -> None:
            if main:
                _write_metrics(tr.history, out)
            if tr.step % args.checkpoint_every == 0 or tr.step >= tr.config.steps:
                tr.save(out, keep=args.keep)  # every rank: the buffers are gathered
                if main:
                    save_training_curve(tr.history, out / "training.png")

        restore = _stop_on_sigterm()
        try:
            trainer.fit(progress=not args.no_progress, callback=checkpoint)
        except TrainingDiverged as e:
            say(f"conceptalg train: {e}\nThe last checkpoint in {out} holds good weights.")
            return 1
        except KeyboardInterrupt:
            if group is not None:  # the others may be anywhere: a collective save could hang
                say(f"interrupted at step {trainer.step}; continue from the last checkpoint "
                    f"with --resume")
                if ours:
                    distributed.shutdown(wait=False)
                return 130
            trainer.save(out, keep=args.keep)
            _err(f"interrupted at step {trainer.step}: saved; continue with --resume")
            return 130
        finally:
            restore()
        path = trainer.save(out, keep=args.keep)
        if main:
            if trainer.history:
                save_training_curve(trainer.history, out / "training.png")
                _write_metrics(trainer.history, out)
            _out(f"trained {trainer.step} steps: {path}")
            _out(f"metrics: {out / 'metrics.csv'}, curve: {out / 'training.png'}")
        return 0
    except BaseException:
        if ours:  # the others may be gone: do not wait for them
            distributed.shutdown(wait=False)
        raise
    finally:
        if ours:  # a normal end (a no-op after a failure); a caller's group stays the caller's
            distributed.shutdown()


def _stop_on_sigterm():
    """Treat SIGTERM like Ctrl-C while training (save, then exit 130): ``kill``, job schedulers
    and the background jobs of a non-interactive shell, which ignore SIGINT, all send it.
    Returns a function that puts the previous handler back."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def stop(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    return lambda: signal.signal(signal.SIGTERM, previous)


def _register_train(sub) -> None:
    p = sub.add_parser("train", help="train concept heads by contrastive divergence",
                       description="Train a concept model on built-in or local data; writes "
                                   "checkpoints, metrics.csv and training.png into --out. Runs "
                                   "on several processes under torchrun (one per GPU, or CPU "
                                   "processes with gloo); rank 0 writes the files.",
                       epilog="Example: conceptalg train --data shapes --out runs/shapes "
                              "--heads linear --steps 20000")
    p.add_argument("--data", required=True,
                   choices=("toy2d", "shapes", "scenes", "digits", "celeba", "folder"))
    p.add_argument("--out", required=True, metavar="DIR", help="run directory")
    p.add_argument("--objective", choices=("cd", "dsm"), default="cd",
                   help="cd: contrastive divergence (default); dsm: denoising score matching "
                        "of noise-conditioned energies (EDM recipe, no chains in training)")
    p.add_argument("--parameterization", choices=("energy", "score"), default="energy",
                   help="dsm: 'energy' (scalar energies: every semantics and sampler) or "
                        "'score' (cheaper to train; scores only: AND/NOT, langevin and heun)")
    p.add_argument("--heads", choices=("linear", "film", "classifier"), default="linear")
    p.add_argument("--holdout", type=_parse_pairs, default="default", metavar="PAIRS",
                   help="shapes: 'default', 'none' or 'circle:red,square:green'")
    p.add_argument("--steps", type=int, default=None, help="training iterations")
    # --num-samples: under torchrun, `--n` is an ambiguous abbreviation of torchrun's own options
    p.add_argument("--n", "--num-samples", dest="n", type=int, default=20_000,
                   help="number of training samples")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--langevin-steps", type=int, default=None)
    p.add_argument("--width", type=int, default=None, help="conv trunk width")
    p.add_argument("--colour-blind", default="", metavar="FACTORS",
                   help="comma-separated factors whose heads read a colour-blind trunk "
                        "(conv, linear or classifier heads), e.g. shape,size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="torch threads (one per process when runs share cores)")
    p.add_argument("--log-every", type=int, default=None)
    p.add_argument("--checkpoint-every", type=int, default=200)
    p.add_argument("--keep", type=int, default=3, help="checkpoints kept")
    p.add_argument("--device", default=None,
                   help="cpu (default) or cuda (under torchrun: each process's cuda:LOCAL_RANK)")
    p.add_argument("--timeout", type=float, default=600.0, metavar="SECONDS",
                   help="under torchrun: how long a process waits for the others before "
                        "failing (default 600)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--root", default=None, help="celeba/folder: the data directory")
    p.add_argument("--csv", default=None, help="folder: the attribute CSV")
    p.add_argument("--attributes", default=None, help="celeba/folder: comma-separated names")
    p.add_argument("--resolution", type=int, default=64, help="celeba/folder image size")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)


# --- export ---------------------------------------------------------------------------------

def _cmd_export(args: argparse.Namespace) -> int:
    from .training.export import export_model

    try:
        path = export_model(args.run, args.out, init_bank=args.init_bank,
                            sampler_defaults=dict(args.set))
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
    p.add_argument("--init-bank", type=int, default=None, metavar="N",
                   help="start images kept with the model (default 256; 0: none; dsm "
                        "models keep none)")
    p.add_argument("--set", type=_key_value, action="append", default=[], metavar="KEY=VALUE",
                   help="replace a sampling default of the model (repeatable), e.g. "
                        "--set steps=200 --set step_size=6e-5; the keys semantics and "
                        "guidance_scale set the composition defaults (--set guidance_scale=4)")
    p.set_defaults(func=_cmd_export)


def _sigmas(text: str) -> list[float]:
    """``"10,1,0.1"`` → ``[10.0, 1.0, 0.1]`` (the sampler checks the order and signs)."""
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--sigmas takes numbers separated by commas, e.g. "
                                         f"10,1,0.1; got {text!r}") from None


def _key_value(text: str) -> tuple[str, object]:
    """``steps=200`` → ``("steps", 200)``; the value is read as JSON when it parses, else kept
    as text (``sampler=mala``)."""
    import json

    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


# --- sample ---------------------------------------------------------------------------------

def _cmd_sample(args: argparse.Namespace) -> int:
    from pathlib import Path

    from . import compose, load, sample
    from .plots import save_expression_grid, save_points

    if args.save and Path(args.save).suffix not in (".safetensors", ".npz"):
        _err("--save must end in .safetensors or .npz (pickle is never written)")
        return 2
    group = None
    if args.distributed:  # opt-in: chains split over the torchrun processes
        from .training import distributed

        group = distributed.from_environment(args.device)
    try:
        model = load(args.model)
        energy = compose(args.expr, model, semantics=args.semantics,
                         guidance_scale=args.guidance_scale)
        options = {k: v for k, v in dict(sampler=args.sampler, steps=args.steps,
                                         step_size=args.step_size,
                                         sigmas=args.sigmas).items() if v is not None}
        x = sample(energy, args.n, seed=args.seed,
                   device=group.device if group is not None else args.device,
                   progress=not args.no_progress and (group is None or group.rank == 0),
                   distributed=group is not None, **options)
        if group is not None and group.rank != 0:
            return 0  # every process holds all samples; rank 0 writes them
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
    elif x.dim() == 2 and x.shape[1] == 2:
        save_points({args.expr: x}, out, bounds=model.config.bounds)
    else:
        _err(f"samples of shape {tuple(x.shape[1:])} have no picture; use --save")
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
    p.add_argument("--n", "--num-samples", dest="n", type=int, default=64,
                   help="number of samples (write --num-samples under torchrun, which claims "
                        "--n as an abbreviation of its own options)")
    p.add_argument("--out", default="samples.png")
    p.add_argument("--sampler", choices=SAMPLER_NAMES, default=None,
                   help="default: the model's (heun for models trained with --objective dsm)")
    p.add_argument("--steps", type=int, default=None,
                   help="sampler steps (per noise level with --sigmas)")
    p.add_argument("--step-size", type=float, default=None)
    p.add_argument("--sigmas", type=_sigmas, default=None, metavar="S1,S2,...",
                   help="noise levels to anneal over, non-increasing (default: the model's)")
    p.add_argument("--semantics", choices=("product", "guidance", "logic"), default=None,
                   help="default: the model's own (guidance for dsm image models, else product)")
    p.add_argument("--guidance-scale", type=float, default=None, metavar="W",
                   help="guidance: E = E_0 + W * sum(E_c - E_0) (default: the model's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--save", default=None, metavar="FILE",
                   help="also save the samples (.safetensors or .npz)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--distributed", action="store_true",
                   help="under torchrun: split the chains over the processes (same samples "
                        "for a seed whatever the number of processes); rank 0 writes")
    p.set_defaults(func=_cmd_sample)


_EXTRA_COMMANDS.extend([_register_train, _register_export, _register_sample])


def _register_evaluation(sub) -> None:
    from .evaluation.commands import REGISTER

    for register in REGISTER:
        register(sub)


_EXTRA_COMMANDS.append(_register_evaluation)
