"""The ``infer`` subcommand (registered by :mod:`conceptalg.cli`): which value of each factor
some images show, read from a trained model by :func:`conceptalg.infer`.

``IMAGE`` is picture files (PNG, or JPEG through Pillow; read as float ``[C, H, W]`` in
``[0, 1]``, alpha dropped, grayscale as one channel) or one tensor file (``.pt`` read with
``weights_only=True``, ``.safetensors`` or ``.npz``; a tensor ``[N, C, H, W]``, e.g. what
``conceptalg sample --save`` wrote). Every argument is checked before the model runs: the files
exist and are of one kind, ``--csv`` can be written, the factors are the model's and the images
have the model's size; a damaged IMAGE or checkpoint is a usage error (exit 2), like a missing
one. Prints one line per image, ``name  shape=circle (0.97)  color=red (0.99)``; ``--probs``
adds every value's probability, ``--csv`` writes the table.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from .cli_args import (UsageError, check_device, check_file, check_output_file,
                       nonnegative_int, positive_int, set_threads, sigma_list)
from .cli_args import err as _err
from .cli_args import out as _out

__all__ = ["register", "PICTURE_SUFFIXES", "TENSOR_SUFFIXES"]

PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg")
TENSOR_SUFFIXES = (".pt", ".safetensors", ".npz")
_WHAT = "picture files (.png, .jpg) or one tensor file (.pt, .safetensors, .npz)"


def _check_infer_args(args: argparse.Namespace) -> tuple[list[Path], list[str] | None]:
    """Every check that needs no model: the inputs exist and are of one kind, ``--csv`` can be
    written, the device is there; returns the input paths and the factor names (or None)."""
    paths = [check_file(p, "IMAGE", _WHAT) for p in args.images]
    suffixes = {p.suffix.lower() for p in paths}
    unknown = [p for p in paths if p.suffix.lower() not in PICTURE_SUFFIXES + TENSOR_SUFFIXES]
    if unknown:
        raise UsageError(f"IMAGE {unknown[0]}: cannot tell its kind from its name; IMAGE takes "
                         f"{_WHAT}")
    if suffixes & set(TENSOR_SUFFIXES) and len(paths) > 1:
        raise UsageError(f"IMAGE: give one tensor file, or picture files; got {len(paths)} "
                         f"files ({', '.join(p.name for p in paths[:4])}...)")
    if args.csv is not None:
        check_output_file(args.csv, "--csv", (".csv",))
    check_device(args.device)
    factors = None
    if args.factors is not None:
        factors = list(dict.fromkeys(f.strip() for f in args.factors.split(",") if f.strip()))
        if not factors:
            raise UsageError(f"--factors takes factor names separated by commas, like "
                             f"'shape,color'; got {args.factors!r}")
    return paths, factors


def _cmd_infer(args: argparse.Namespace) -> int:
    paths, factors = _check_infer_args(args)
    set_threads(args.threads)
    from .inference import infer, inference_cost
    from .training.checkpoint import load

    model = load(args.model)
    known = list(model.config.factors)
    missing = [f for f in factors or () if f not in known]
    if missing:
        raise UsageError(f"the model has no factor(s) {', '.join(map(repr, missing))}; its "
                         f"factors are {', '.join(known) or 'none'}")
    asked = None if args.method is None else args.method.replace("-", " ")
    sigma = args.sigma[0] if args.sigma is not None and len(args.sigma) == 1 else args.sigma
    try:
        method, cost = inference_cost(model, factors, samples=args.samples, method=asked)
    except ValueError as e:
        raise UsageError(f"--method: {e}") from None
    _check_sigma(args.sigma, model, method)
    names, images = _read_inputs(paths, tuple(model.config.sample_shape))
    _err(f"inferring {', '.join(factors or known)} of {len(names)} image(s) ({method}: {cost} "
         f"network input(s) per image, {cost * len(names):,} in all)")
    labels, probs = infer(model, images, factors, return_probs=True, sigma=sigma,
                          batch_size=args.batch_size, device=args.device,
                          samples=args.samples, seed=args.seed, method=asked,
                          progress=False if args.no_progress else None)
    values = {f: model.config.factors[f] for f in labels}
    _print_table(names, labels, probs, values, every=args.probs)
    if args.csv is not None:
        _write_csv(Path(args.csv), names, labels, probs, values, every=args.probs)
        _out(f"wrote {args.csv}")
    return 0


def _check_sigma(levels: list[float] | None, model, method: str) -> None:
    if levels is None:
        return
    if getattr(model.config, "objective", "cd") != "dsm":
        raise UsageError("--sigma applies to diffusion models (--objective dsm); this model was "
                         "trained by contrastive divergence and has no noise levels: drop --sigma")
    if len(levels) > 1 and method != "diffusion classifier":
        raise UsageError(f"--sigma: this model is read at one noise level ({method}); give one "
                         f"number (several levels apply to score-only diffusion models)")


# --- reading the inputs ---------------------------------------------------------------------

def _read_inputs(paths: list[Path], shape: tuple[int, ...]):
    """``(names, images[N, *shape])`` from picture files or one tensor file."""
    import torch

    want = "×".join(map(str, shape))
    if paths[0].suffix.lower() in TENSOR_SUFFIXES:
        (path,) = paths
        x = _read_tensor_file(path)
        if tuple(x.shape) == shape:
            x = x[None]
        if x.dim() != len(shape) + 1 or tuple(x.shape[1:]) != shape:
            raise UsageError(f"IMAGE {path} holds a tensor {list(x.shape)}; the model takes "
                             f"[N, {', '.join(map(str, shape))}] (N samples of {want})")
        return [f"{path.name}[{i}]" for i in range(x.shape[0])], _as_float(x)
    pictures = []
    for path in paths:
        picture = _read_picture(path, shape)
        if tuple(picture.shape) != shape:
            got = "×".join(map(str, picture.shape))
            raise UsageError(f"IMAGE {path} is {got} (channels×height×width); the model takes "
                             f"{want} images: resize it")
        pictures.append(picture)
    return [str(p) for p in paths], torch.stack(pictures)


def _read_picture(path: Path, shape: tuple[int, ...]):
    """A picture as float ``[C, H, W]`` in ``[0, 1]``: alpha dropped, grayscale one channel
    (and an RGB picture whose channels are equal, for a one-channel model)."""
    import numpy as np
    import torch
    from matplotlib.image import imread

    try:
        a = np.asarray(imread(path))
    except (OSError, ValueError, SyntaxError) as e:  # Pillow reports a damaged file these ways
        raise UsageError(f"cannot read IMAGE {path}: {e}") from None
    if np.issubdtype(a.dtype, np.integer):
        a = a / np.iinfo(a.dtype).max
    a = a.astype(np.float32)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4):
        raise UsageError(f"IMAGE {path}: expected a grayscale or colour picture, got an array "
                         f"of shape {list(a.shape)}")
    a = a[:, :, :1] if a.shape[2] == 2 else a[:, :, :3]  # drop alpha
    if a.shape[2] == 3 and len(shape) == 3 and shape[0] == 1 \
            and np.array_equal(a[:, :, 0], a[:, :, 1]) and np.array_equal(a[:, :, 0], a[:, :, 2]):
        a = a[:, :, :1]  # a gray picture saved as RGB (matplotlib's imsave writes RGBA)
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))


def _read_tensor_file(path: Path):
    import numpy as np
    import torch

    try:
        if path.suffix == ".pt":
            data = torch.load(path, map_location="cpu", weights_only=True)  # never unpickle code
        elif path.suffix == ".safetensors":
            from safetensors.torch import load_file

            data = load_file(str(path))
        else:
            with np.load(path, allow_pickle=False) as npz:
                data = {k: torch.from_numpy(npz[k]) for k in npz.files}
    except Exception as e:  # torch, safetensors and numpy each raise their own kinds
        raise UsageError(f"cannot read IMAGE {path}: {type(e).__name__}: {e}; the file is "
                         f"truncated or corrupt") from None
    if isinstance(data, torch.Tensor):
        return data
    tensors = {k: v for k, v in data.items() if isinstance(v, torch.Tensor)} \
        if isinstance(data, dict) else {}
    if len(tensors) == 1:
        return next(iter(tensors.values()))
    for key in ("images", "samples"):
        if key in tensors:
            return tensors[key]
    raise UsageError(f"IMAGE {path} holds {sorted(tensors) or type(data).__name__}; give a file "
                     f"with one tensor (or one named 'images' or 'samples')")


def _as_float(x):
    """Tensors as the model reads them: 8-bit images scaled to ``[0, 1]``, others as float."""
    import torch

    return x.float() / 255 if x.dtype == torch.uint8 else x.float()


# --- writing the results --------------------------------------------------------------------

def _print_table(names, labels, probs, values, *, every: bool) -> None:
    cells = [[f"{f}={labels[f][i]} ({float(probs[f][i].max()):.2f})" for f in labels]
             for i in range(len(names))]
    name_width = max(map(len, names), default=0)
    widths = [max((len(row[j]) for row in cells), default=0) for j in range(len(labels))]
    for i, (name, row) in enumerate(zip(names, cells)):
        line = "  ".join([name.ljust(name_width)] + [c.ljust(w) for c, w in zip(row, widths)])
        _out(line.rstrip())
        if every:
            for f in labels:
                shown = ", ".join(f"{v} {float(p):.2f}" for v, p in zip(values[f], probs[f][i]))
                _out(f"    {f}: {shown}")


def _write_csv(path: Path, names, labels, probs, values, *, every: bool) -> None:
    header = ["image"]
    for f in labels:
        header += [f, f"{f} probability"] + ([f"{f}={v}" for v in values[f]] if every else [])
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(header)
        for i, name in enumerate(names):
            row = [name]
            for f in labels:
                row += [labels[f][i], f"{float(probs[f][i].max()):.6g}"]
                if every:
                    row += [f"{float(p):.6g}" for p in probs[f][i]]
            writer.writerow(row)


def register(sub) -> None:
    """Add the ``infer`` subcommand to argparse's subparsers ``sub``."""
    p = sub.add_parser("infer", help="read which concepts images show",
                       description="For each factor of a trained model, the most probable value "
                                   "of each image and its probability (concept inference from "
                                   "the model's own heads: classifier heads, energies, or a "
                                   "diffusion classifier for score-only diffusion models).",
                       epilog="Example: conceptalg infer --model models/shapes a.png b.png "
                              "--factors shape,color --csv labels.csv")
    p.add_argument("images", nargs="+", metavar="IMAGE", help=_WHAT)
    p.add_argument("--model", required=True, metavar="DIR",
                   help="a trained model (run directory or checkpoint)")
    p.add_argument("--factors", default=None, metavar="A,B",
                   help="the factors to infer, e.g. shape,color (default: all)")
    p.add_argument("--probs", action="store_true",
                   help="also print (and write with --csv) every value's probability")
    p.add_argument("--csv", default=None, metavar="PATH",
                   help="write the table: image, then per factor its value and probability")
    p.add_argument("--sigma", type=sigma_list, default=None, metavar="S[,S2,...]",
                   help="diffusion models: the noise level to read (default: the smallest "
                        "trained one); score-only models: the levels of the diffusion "
                        "classifier, largest first (default: 8 from 1 down to 0.05 times the "
                        "data's scale)")
    p.add_argument("--samples", type=positive_int, default=8, metavar="N",
                   help="score-only diffusion models: noise draws per level (default 8)")
    p.add_argument("--seed", type=nonnegative_int, default=0,
                   help="seed of the diffusion classifier's noise draws (default 0)")
    p.add_argument("--batch-size", type=positive_int, default=256, metavar="N",
                   help="network inputs per forward pass (default 256)")
    p.add_argument("--method", choices=("classifier", "diffusion-classifier"), default=None,
                   help="how to read the model (default: its own classifiers when it has them, "
                        "one pass per image; else its energies or, for score-only models, the "
                        "diffusion classifier: levels × samples × values passes per image)")
    p.add_argument("--no-progress", action="store_true", help="no progress report")
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=positive_int, default=None, metavar="N",
                   help="torch threads (one per process when runs share cores)")
    p.set_defaults(func=_cmd_infer)
