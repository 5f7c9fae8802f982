"""Argument types and up-front checks shared by the ``conceptalg`` subcommands (no torch here).

Two kinds of checks, both before any work starts. Argparse *types* (:func:`positive_int`,
:func:`holdout_pairs`, ...) refuse a malformed value while the command line is read. The
``check_*`` functions run first thing in a command and look at the world: that an output's
folder exists, that a run directory is not someone else's run, that a device is there. They
raise :class:`UsageError`, which :func:`conceptalg.cli.main` prints as one line,
``conceptalg <cmd>: <what is wrong and how to fix it>``, with exit code 2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

__all__ = ["UsageError", "out", "err", "positive_int", "nonnegative_int", "positive_float",
           "sigma_list", "holdout_pairs", "key_value", "check_output_file", "check_picture",
           "check_run_dir", "check_folder", "check_file", "check_device", "set_threads"]


class UsageError(Exception):
    """A mistake in the command line that the user can fix; ``main`` prints it on one line,
    after ``conceptalg <cmd>: ``, and exits with code 2 (argparse's convention).

    Example:
        >>> str(UsageError("--n must be ≥ 1, got 0"))
        '--n must be ≥ 1, got 0'
    """


def out(text: str = "") -> None:
    """Write a line of results to stdout."""
    sys.stdout.write(text + "\n")


def err(text: str) -> None:
    """Write a line of progress or diagnostics to stderr."""
    sys.stderr.write(text + "\n")


# --- argparse types -------------------------------------------------------------------------

def positive_int(text: str) -> int:
    """An integer ≥ 1 (``--n``, ``--steps``, ``--threads``, ...).

    Example:
        >>> positive_int("3")
        3
    """
    return _integer(text, 1)


def nonnegative_int(text: str) -> int:
    """An integer ≥ 0 (``--init-bank``).

    Example:
        >>> nonnegative_int("0")
        0
    """
    return _integer(text, 0)


def _integer(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer ≥ {low}, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be an integer ≥ {low}, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (``--step-size``, ``--lr``, ``--guidance-scale``, ...).

    Example:
        >>> positive_float("1e-3")
        0.001
    """
    return _number(text, "a number > 0", "a finite number > 0",
                   lambda v: math.isfinite(v) and v > 0)


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (a loss weight).

    Example:
        >>> non_negative_float("0")
        0.0
    """
    return _number(text, "a number >= 0", "a finite number >= 0",
                   lambda v: math.isfinite(v) and v >= 0)


def unit_fraction(text: str) -> float:
    """A number in [0, 1] (a fraction of samples).

    Example:
        >>> unit_fraction("0.5")
        0.5
    """
    return _number(text, "a number in [0, 1]", "in [0, 1]", lambda v: 0 <= v <= 1)


def _number(text: str, expected: str, rule: str, ok) -> float:
    """``float(text)`` when ``ok`` holds for it; else argparse's error naming the rule."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"must be {rule}, got {text!r}")
    return value


def sigma_list(text: str) -> list[float]:
    """``"10,1,0.1"`` → ``[10.0, 1.0, 0.1]``: noise levels > 0, non-increasing (the sampler's
    own check, :func:`conceptalg.sampling.anneal.check_sigmas`, run here on the text).

    Example:
        >>> sigma_list("10, 1,0.1")
        [10.0, 1.0, 0.1]
    """
    try:
        levels = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes numbers separated by commas, e.g. 10,1,0.1; "
                                         f"got {text!r}") from None
    from .sampling.anneal import check_sigmas  # imports torch: only when --sigmas is given

    try:
        return list(check_sigmas(levels))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{e} (write them from the largest down, e.g. "
                                         f"10,1,0.1)") from None


#: ``--net`` options of a dsm UNet and how each value is read
NET_OPTIONS = {"decoder": ("full", "light"), "zero_init": ("true", "false"),
               "embedding_dim": int, "noise_embedding": ("wide", "positional")}


def net_options(text: str) -> dict:
    """``KEY=VALUE,...`` → backbone options of a dsm network (``--net``): ``decoder`` (full,
    light), ``zero_init`` (true, false), ``embedding_dim`` (an integer ≥ 8), ``noise_embedding``
    (wide, positional).

    Example:
        >>> net_options("decoder=light, zero_init=false, embedding_dim=128")
        {'decoder': 'light', 'zero_init': False, 'embedding_dim': 128}
    """
    out: dict = {}
    for item in filter(None, (i.strip() for i in text.split(","))):
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep or key not in NET_OPTIONS:
            raise argparse.ArgumentTypeError(
                f"{item!r}: expected KEY=VALUE with KEY one of {', '.join(NET_OPTIONS)}")
        rule = NET_OPTIONS[key]
        if rule is int:
            if not (value.isdigit() and int(value) >= 8):
                raise argparse.ArgumentTypeError(f"{key}={value!r}: expected an integer >= 8")
            out[key] = int(value)
        elif value not in rule:
            raise argparse.ArgumentTypeError(f"{key}={value!r}: expected one of "
                                             f"{', '.join(rule)}")
        else:
            out[key] = value == "true" if key == "zero_init" else value
    return out


def holdout_pairs(text: str) -> str | list[tuple[str, str]]:
    """``default`` | ``none`` | ``circle:red,square:green`` → a hold-out for ``shapes`` (the
    command checks the names against the dataset before it starts).

    Example:
        >>> holdout_pairs("circle:red, square:green")
        [('circle', 'red'), ('square', 'green')]
    """
    if text in ("default", "none"):
        return text
    pairs = []
    for item in text.split(","):
        shape, sep, color = item.strip().partition(":")
        if not sep or not shape or not color:
            raise argparse.ArgumentTypeError(
                f"takes 'default', 'none' or pairs like 'circle:red,square:green'; got {item!r}")
        pairs.append((shape, color))
    return pairs


def key_value(text: str) -> tuple[str, object]:
    """``steps=200`` → ``("steps", 200)``; the value is read as JSON when it parses, else kept
    as text (``sampler=mala``).

    Example:
        >>> key_value("steps=200"), key_value("sampler=mala")
        (('steps', 200), ('sampler', 'mala'))
    """
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


# --- checks before any work -----------------------------------------------------------------

def check_output_file(path: str | os.PathLike, option: str,
                      suffixes: tuple[str, ...] | None = None) -> Path:
    """``path`` can be written: not a folder, its folder exists and is writable, and it ends in
    one of ``suffixes`` (when given). Raises :class:`UsageError` naming ``option``.

    Example:
        >>> check_output_file("results.json", "--json").name
        'results.json'
    """
    path = Path(path)
    if suffixes is not None and path.suffix not in suffixes:
        raise UsageError(f"{option} {path}: the name must end in {_either(suffixes)}")
    if path.is_dir():
        raise UsageError(f"{option} {path}: is a folder; give a file name in it, e.g. "
                         f"{path / ('out' + (path.suffix or ''))}")
    _check_folder_writable(path.parent, option, path)
    return path


def check_picture(path: str | os.PathLike, option: str) -> Path:
    """:func:`check_output_file` for a figure: a format matplotlib writes (``.png``, ``.pdf``,
    ``.svg``, ...)."""
    from matplotlib.backend_bases import FigureCanvasBase

    path = Path(path)
    if path.suffix.lower()[1:] not in FigureCanvasBase.get_supported_filetypes():
        raise UsageError(f"{option} {path}: the name must end in a picture format such as "
                         f".png, .pdf or .svg")
    return check_output_file(path, option)


def check_run_dir(path: str | os.PathLike, *, resume: bool, option: str = "--out",
                  holds: str = "the checkpoints, metrics.csv and training.png") -> Path:
    """A run directory training may write (it will hold ``holds``): a folder or a path that can
    become one, and not another run's unless ``resume`` (a new run there would prune its
    checkpoints).

    Example:
        >>> check_run_dir("runs/new-run", resume=False).name
        'new-run'
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option} {path}: is a file; give a folder (it will hold {holds})")
    if (path / "latest").exists() and not resume:
        raise UsageError(f"{option} {path}: already holds a training run; add --resume to "
                         f"continue it, or choose a new --out folder")
    if resume and not (path / "latest").exists():
        raise UsageError(f"{option} {path}: --resume found no training run to continue there "
                         f"(no checkpoint); drop --resume to start a new run in it")
    ancestor = path
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UsageError(f"{option} {path}: {ancestor} is a file, so the folder cannot be "
                         f"created there; choose another {option}")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {path}: cannot write in {ancestor} (permission denied); "
                         f"choose a folder you can write")
    return path


def check_folder(path: str | os.PathLike | None, option: str, what: str) -> Path:
    """``path`` is an existing folder (an input such as ``--root``).

    Example:
        >>> check_folder(".", "--root", "the image folder").is_dir()
        True
    """
    if path is None:
        raise UsageError(f"{option} is required: {what}")
    folder = Path(path).expanduser()
    if not folder.is_dir():
        state = "is a file" if folder.exists() else "no such folder"
        raise UsageError(f"{option} {path}: {state}; {option} takes {what}")
    return folder


def check_file(path: str | os.PathLike, option: str, what: str) -> Path:
    """``path`` is an existing file (an input such as ``--csv``)."""
    file = Path(path).expanduser()
    if not file.is_file():
        state = "is a folder" if file.is_dir() else "no such file"
        raise UsageError(f"{option} {path}: {state}; {option} takes {what}")
    return file


def check_device(device: str | None) -> None:
    """``device`` names a device this machine has (``None``: the default, CPU)."""
    if device is None:
        return
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise UsageError(f"--device {device}: not a device name; use cpu, cuda or cuda:N") \
            from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UsageError(f"--device {device}: CUDA is not available on this machine; use "
                             f"--device cpu")
        if dev.index is not None and dev.index >= count:
            raise UsageError(f"--device {device}: this machine has {count} CUDA device(s), "
                             f"cuda:0 to cuda:{count - 1}")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"--device {device}: MPS is not available on this machine; use "
                         f"--device cpu")


def set_threads(threads: int | None) -> None:
    """``torch.set_num_threads(threads)`` when given: one thread per process is what
    side-by-side runs on shared cores need."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def _check_folder_writable(folder: Path, option: str, path: Path) -> None:
    folder = folder if str(folder) else Path(".")
    if not folder.is_dir():
        state = "is a file" if folder.exists() else "does not exist"
        raise UsageError(f"{option} {path}: the folder {folder} {state}; create it first "
                         f"(mkdir -p {folder}) or choose another path")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {path}: cannot write in {folder} (permission denied); "
                         f"choose a folder you can write")


def _either(options: tuple[str, ...]) -> str:
    shown = list(options[:6])
    head = ", ".join(shown[:-1])
    return f"{head} or {shown[-1]}" if head else shown[0]
