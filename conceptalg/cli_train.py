"""The ``train`` subcommand (registered by :mod:`conceptalg.cli`): contrastive divergence or
denoising score matching on built-in or local data, alone or under ``torchrun``.

Every argument is checked before any data is made or loaded (:func:`_check_train_args`): the
run directory can be written and is not another run's unless ``--resume``, ``--root`` and
``--csv`` exist, the hold-out names real shapes and colours. Torch-heavy modules are imported
inside the command.
"""

from __future__ import annotations

import argparse

from .cli_args import (UsageError, check_device, check_file, check_folder, check_run_dir,
                       holdout_pairs, net_options, non_negative_float, positive_float,
                       positive_int, set_threads, unit_fraction)
from .cli_args import err as _err
from .cli_args import out as _out

__all__ = ["register", "IMAGE_DATA"]

#: data kinds whose samples are images: they train by dsm (score) unless --objective says
IMAGE_DATA = ("shapes", "scenes", "digits", "celeba", "folder")


def _check_train_args(args: argparse.Namespace) -> None:
    """Every check of ``train`` that needs no data or model, before any work."""
    _check_objective(args)
    _check_heads_and_views(args)
    _check_model_sources(args)
    check_device(args.device)
    check_run_dir(args.out, resume=args.resume)
    _check_data_args(args)


def _check_objective(args: argparse.Namespace) -> None:
    """The objective and parameterisation (filled in from the data's kind), and the options
    that belong to one objective only."""
    image = args.data in IMAGE_DATA
    if args.objective is None:  # the shipped image models' recipe; CD one flag away
        args.objective = "dsm" if image else "cd"
    if args.parameterization is None:
        args.parameterization = "score" if args.objective == "dsm" and image else "energy"
    cd_only = [name for name, value in (("--langevin-steps", args.langevin_steps),
                                        ("--width", args.width)) if value is not None]
    if cd_only and args.objective != "cd":
        raise UsageError(f"{cd_only[0]} applies to --objective cd (contrastive divergence); "
                         f"add --objective cd (for image data the default is dsm)")
    if args.objective == "cd" and args.parameterization != "energy":
        raise UsageError("--parameterization score needs --objective dsm (contrastive "
                         "divergence trains energies)")
    dsm_only = [name for name, value in (("--augment", args.augment),
                                         ("--base-fraction", args.base_fraction),
                                         ("--init", args.init),
                                         ("--conditioning", args.conditioning),
                                         ("--drop-rate", args.drop_rate),
                                         ("--normalisation", args.normalisation),
                                         ("--ema-schedule", args.ema_schedule),
                                         ("--net", args.net)) if value is not None]
    if dsm_only and args.objective != "dsm":
        raise UsageError(f"{dsm_only[0]} applies to --objective dsm")


def _check_heads_and_views(args: argparse.Namespace) -> None:
    """The head kind (its default by objective) and the views its factors read."""
    if args.heads is None:
        args.heads = "film" if args.objective == "dsm" else "linear"
    if args.objective == "dsm" and args.heads == "linear":
        raise UsageError("--heads linear applies to --objective cd; dsm conditions one network "
                         "on the concept (--heads film, the default) or guides an unconditional "
                         "one with noise-aware classifiers (--heads classifier)")
    from .models.views import parse_views

    try:
        views = parse_views(args.views or "")
    except ValueError as e:
        raise UsageError(f"--views: {e}") from None
    for factor in filter(None, (f.strip() for f in args.colour_blind.split(","))):
        views.setdefault(factor, "colour-blind")  # --colour-blind: an alias
    if views and args.objective == "dsm" and args.heads != "classifier":
        raise UsageError("--views with --objective dsm need --heads classifier (a denoiser "
                         "conditioned on a concept must read the whole image)")
    if args.guidance_weight is not None and not (args.objective == "dsm"
                                                 and args.heads == "classifier"):
        raise UsageError("--guidance-weight applies to --objective dsm --heads classifier")
    args.views_parsed = views


def _check_model_sources(args: argparse.Namespace) -> None:
    """``--base`` and ``--init``: a trained model to build on, and when that is allowed."""
    if args.base is not None:
        if not (args.objective == "dsm" and args.heads == "classifier"):
            raise UsageError("--base applies to --objective dsm --heads classifier (new "
                             "classifiers over a trained model's base)")
        if args.resume:
            raise UsageError("--base starts a new run; --resume continues one (drop --base)")
        check_folder(args.base, "--base", "the trained model (a run or export directory)")
    if args.init is not None:
        if args.base is not None or args.resume:
            raise UsageError("--init starts a new run from a trained model; drop --base and "
                             "--resume")
        check_folder(args.init, "--init", "the trained model (a run or export directory)")


def _check_data_args(args: argparse.Namespace) -> None:
    """The data's own options: folders for local data, the hold-out for shapes."""
    builtin = args.data in ("toy2d", "shapes", "scenes", "digits")
    if builtin:
        for option, value in (("--root", args.root), ("--csv", args.csv),
                              ("--attributes", args.attributes)):
            if value is not None:
                raise UsageError(f"{option} applies to --data celeba or folder; --data "
                                 f"{args.data} is built in")
    else:
        what = "the CelebA folder" if args.data == "celeba" else \
            "the image folder (with attributes.csv, or give --csv)"
        check_folder(args.root, "--root", what)
        if args.csv is not None:
            if args.data != "folder":
                raise UsageError("--csv applies to --data folder (CelebA has its own files)")
            check_file(args.csv, "--csv", "the attribute CSV (filename,attr1,...)")
    if args.augment is not None and args.data in ("shapes", "scenes") and args.holdout != "none":
        raise UsageError("--augment channel-permutations would show the model held-out pairs "
                         "(a green circle with its channels permuted is a red circle); drop "
                         "--augment, or train with --holdout none")
    if args.holdout != "default":
        if args.data not in ("shapes", "scenes"):
            raise UsageError(f"--holdout applies to --data shapes or scenes, not {args.data}")
        if args.holdout != "none":
            from .data.shapes import resolve_holdout

            try:
                resolve_holdout(args.holdout)
            except ValueError as e:
                raise UsageError(f"--holdout: {e}") from None


def _base_model(path: str, option: str):
    """The trained diffusion model (film heads) that ``--base`` or ``--init`` names."""
    from . import load
    from .models import DiffusionModel

    model = load(path)
    if not isinstance(model, DiffusionModel) or model.config.heads != "film":
        raise ValueError(f"{option} {path}: needs a model trained with --objective dsm and film "
                         f"heads")
    return model


def _training_data(args: argparse.Namespace):
    from .training import ConceptData, builtin_data

    if args.data in ("toy2d", "shapes", "scenes", "digits"):
        holdout = args.holdout
        if args.data in ("shapes", "scenes") and holdout == "none":
            holdout = None
        from .training.data import PROCEDURAL_DATA

        n = args.n if args.data in PROCEDURAL_DATA else (args.n or 20_000)
        return builtin_data(args.data, n=n, seed=args.seed, holdout=holdout)
    import torch

    from .data.attributes import load_attribute_folder, load_celeba

    attributes = args.attributes.split(",") if args.attributes else None
    try:
        if args.data == "celeba":
            dataset = load_celeba(args.root, "train", attributes, resolution=args.resolution)
        else:
            dataset = load_attribute_folder(args.root, args.csv, attributes,
                                            resolution=args.resolution)
    except FileNotFoundError as e:  # the loaders name the file they looked for
        raise UsageError(f"{e}; check --root{' and --csv' if args.data == 'folder' else ''}") \
            from None
    n = min(len(dataset), args.n or 20_000)
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


def _trainer(args: argparse.Namespace, data, device, out, say):
    """The run to train: resumed from ``--out`` under ``--resume``, else a new one of the
    chosen objective with the command's overrides (a ``ValueError`` when the options cannot
    build a model)."""
    from .training import Trainer, default_train_config
    from .training.checkpoint import latest_checkpoint
    from .models.guided import GuidedDiffusionModel
    from .training.dsm import DSMTrainer, default_dsm_config

    dsm = args.objective == "dsm"
    if args.resume and latest_checkpoint(out) is not None:
        trainer = (DSMTrainer if dsm else Trainer).resume(out, data, device=device,
                                                          steps=args.steps)
        say(f"resuming {out} at step {trainer.step} of {trainer.config.steps}")
        return trainer
    overrides = {k: v for k, v in dict(
        steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
        langevin_steps=args.langevin_steps, log_every=args.log_every,
        # dsm only (refused with cd by the checks)
        guidance_weight=args.guidance_weight, augment=args.augment,
        base_fraction=args.base_fraction, conditioning=args.conditioning,
        drop_rate=args.drop_rate, normalisation=args.normalisation,
        ema_schedule=args.ema_schedule).items() if v is not None}
    if not dsm:
        options = {"width": args.width} if args.width and len(data.sample_shape) == 3 else None
        return Trainer(data, config=default_train_config(data.sample_shape, **overrides),
                       heads=args.heads, device=device, backbone_options=options,
                       views=args.views_parsed)
    overrides.pop("langevin_steps", None)
    model = None
    if args.init is not None:  # continue from a trained model's weights
        model = _base_model(args.init, "--init")
    if args.base is not None:  # classifiers over a trained, frozen base
        model = GuidedDiffusionModel.over_base(_base_model(args.base, "--base"), args.views_parsed,
                                               object_factors=data.object_factors)
        overrides["freeze_base"] = True
    return DSMTrainer(data, config=default_dsm_config(data.sample_shape, **overrides),
                      model=model, device=device, heads=args.heads, views=args.views_parsed,
                      parameterization=args.parameterization, backbone_options=args.net)


def _cmd_train(args: argparse.Namespace) -> int:
    _check_train_args(args)
    set_threads(args.threads)
    from pathlib import Path

    from . import distributed
    from .plots import save_training_curve
    from .training import TrainingDiverged

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
        try:
            trainer = _trainer(args, data, device, out, say)
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


def register(sub) -> None:
    """Add the ``train`` subcommand to argparse's subparsers ``sub``."""
    p = sub.add_parser("train", help="train concept heads (images: denoising score matching; "
                                     "vectors: contrastive divergence)",
                       description="Train a concept model on built-in or local data; writes "
                                   "checkpoints, metrics.csv and training.png into --out. Runs "
                                   "on several processes under torchrun (one per GPU, or CPU "
                                   "processes with gloo); rank 0 writes the files.",
                       epilog="Example: conceptalg train --data shapes --out runs/shapes "
                              "--steps 20000   (dsm, score, film heads: the shipped models' "
                              "recipe; add --objective cd for contrastive divergence)")
    p.add_argument("--data", required=True,
                   choices=("toy2d", "shapes", "scenes", "digits", "celeba", "folder"))
    p.add_argument("--out", required=True, metavar="DIR", help="run directory")
    p.add_argument("--objective", choices=("cd", "dsm"), default=None,
                   help="dsm: denoising score matching of noise-conditioned energies (EDM "
                        "recipe, no chains in training; the default for image data); cd: "
                        "contrastive divergence (the default for toy2d)")
    p.add_argument("--parameterization", choices=("energy", "score"), default=None,
                   help="dsm: 'score' (the default for images: cheaper; scores only, OR as a "
                        "mixture) or 'energy' (scalar energies: every semantics and sampler; "
                        "the default for vectors)")
    p.add_argument("--heads", choices=("linear", "film", "classifier"), default=None,
                   help="cd: linear (default), film or classifier; dsm: film (default: one "
                        "network conditioned on the concept) or classifier (an unconditional "
                        "network guided by noise-aware classifiers)")
    p.add_argument("--views", default=None, metavar="FACTOR=VIEW,...",
                   help="the view each factor's heads read (declared invariances): "
                        "colour-blind, shape-blind or identity, e.g. "
                        "shape=colour-blind,size=colour-blind,color=shape-blind")
    p.add_argument("--base", default=None, metavar="MODEL",
                   help="dsm --heads classifier: train only the classifiers, over the base of "
                        "this trained dsm model (frozen)")
    p.add_argument("--init", default=None, metavar="MODEL",
                   help="dsm: start from this trained dsm model's weights (fine-tuning)")
    _add_recipe_options(p)
    _add_run_options(p)
    p.set_defaults(func=_cmd_train)


def _add_recipe_options(p: argparse.ArgumentParser) -> None:
    """The data and the training recipe: hold-out, amount, and the dsm recipe's choices."""
    p.add_argument("--augment", choices=("channel-permutations",), default=None,
                   help="dsm: a declared symmetry of the data; the base trains on images with "
                        "their colour channels permuted at random")
    p.add_argument("--base-fraction", type=unit_fraction, default=None, metavar="P",
                   help="dsm: the fraction of samples that train the base (default 0.2)")
    p.add_argument("--guidance-weight", type=non_negative_float, default=None, metavar="W",
                   help="dsm --heads classifier: weight of the loss that trains the "
                        "classifiers' gradients (default 10; 0: cross-entropy only)")
    p.add_argument("--holdout", type=holdout_pairs, default="default", metavar="PAIRS",
                   help="shapes, scenes: (shape, colour) pairs no training image holds: 'default' "
                        "(six), 'none' or 'circle:red,square:green'")
    p.add_argument("--steps", type=positive_int, default=None, help="training iterations")
    # --num-samples: under torchrun, `--n` is an ambiguous abbreviation of torchrun's own options
    p.add_argument("--n", "--num-samples", dest="n", type=positive_int, default=None,
                   help="a fixed set of N training samples; by default generated data (toy2d, "
                        "shapes, scenes) streams fresh samples for every batch, and folders "
                        "load up to 20000")
    p.add_argument("--conditioning", choices=("one", "complete"), default=None,
                   help="dsm: condition each sample on one concept that holds for it, or on "
                        "all its factors at once, each dropped with --drop-rate")
    p.add_argument("--drop-rate", type=unit_fraction, default=None, metavar="P",
                   help="dsm --conditioning complete: each factor's drop probability (0.2)")
    p.add_argument("--normalisation", choices=("measured", "bounds"), default=None,
                   help="dsm: centre and scale of the EDM preconditioning: the data's own mean "
                        "and deviation, or the middle and a quarter of its bounds")
    p.add_argument("--ema-schedule", choices=("rampup", "warmup"), default=None,
                   help="dsm: the weight average's warm-up")
    p.add_argument("--net", type=net_options, default=None, metavar="KEY=VALUE,...",
                   help="dsm image network: decoder=full|light, zero_init=true|false, "
                        "embedding_dim=N, noise_embedding=wide|positional")


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """The optimiser, the model's size, and how the run is executed, saved and resumed."""
    p.add_argument("--batch-size", type=positive_int, default=None)
    p.add_argument("--lr", type=positive_float, default=None)
    p.add_argument("--langevin-steps", type=positive_int, default=None)
    p.add_argument("--width", type=positive_int, default=None, help="conv trunk width")
    p.add_argument("--colour-blind", default="", metavar="FACTORS",
                   help="comma-separated factors whose heads read a colour-blind trunk "
                        "(an alias of --views FACTOR=colour-blind), e.g. shape,size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=positive_int, default=None, metavar="N",
                   help="torch threads (one per process when runs share cores)")
    p.add_argument("--log-every", type=positive_int, default=None)
    p.add_argument("--checkpoint-every", type=positive_int, default=200)
    p.add_argument("--keep", type=positive_int, default=3, help="checkpoints kept")
    p.add_argument("--device", default=None,
                   help="cpu (default) or cuda (under torchrun: each process's cuda:LOCAL_RANK)")
    p.add_argument("--timeout", type=positive_float, default=600.0, metavar="SECONDS",
                   help="under torchrun: how long a process waits for the others before "
                        "failing (default 600)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--root", default=None, help="celeba/folder: the data directory")
    p.add_argument("--csv", default=None, help="folder: the attribute CSV")
    p.add_argument("--attributes", default=None, help="celeba/folder: comma-separated names")
    p.add_argument("--resolution", type=positive_int, default=64,
                   help="celeba/folder image size")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
