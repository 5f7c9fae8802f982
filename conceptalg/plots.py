"""Figures: labelled image grids, 2-D sample plots and training curves (matplotlib, Agg).

Images are float tensors ``[N, C, H, W]`` in ``[0, 1]`` (docs/design.md §0); one- and three-channel
images are drawn as they are, other channel counts show their first channel.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

__all__ = ["tile", "save_image_grid", "save_expression_grid", "save_points", "save_training_curve"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def tile(images, ncol: int | None = None, pad: int = 1) -> np.ndarray:
    """``[N, C, H, W]`` → one ``[rows·(H+pad), cols·(W+pad), 3]`` array (grey padding)."""
    x = np.asarray(images.detach().cpu() if hasattr(images, "detach") else images,
                   dtype=np.float32).clip(0, 1)
    if x.ndim != 4:
        raise ValueError(f"images must be [N, C, H, W], got shape {x.shape}")
    n, c, h, w = x.shape
    if c == 1:
        x = np.repeat(x, 3, axis=1)
    elif c != 3:
        x = np.repeat(x[:, :1], 3, axis=1)
    ncol = ncol or max(1, math.ceil(math.sqrt(n)))
    nrow = max(1, math.ceil(n / ncol))
    out = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, 3), 0.35, dtype=np.float32)
    for i in range(n):
        r, col = divmod(i, ncol)
        y0, x0 = pad + r * (h + pad), pad + col * (w + pad)
        out[y0:y0 + h, x0:x0 + w] = x[i].transpose(1, 2, 0)
    return out


def save_image_grid(images, path: str | Path, *, ncol: int | None = None,
                    title: str | None = None, scale: float = 0.12) -> Path:
    """Save a grid of images as a PNG (with an optional title); returns the path."""
    plt = _pyplot()
    grid = tile(images, ncol)
    fig, ax = plt.subplots(figsize=(max(2.0, grid.shape[1] * scale / 3),
                                    max(2.0, grid.shape[0] * scale / 3 + (0.4 if title else 0))))
    ax.imshow(grid, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    path = Path(path)
    fig.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(fig)
    return path


def save_expression_grid(rows: Mapping[str, object], path: str | Path, *,
                         notes: Mapping[str, str] | None = None, ncol: int = 8,
                         title: str | None = None) -> Path:
    """One row of sample images per expression, the expression (and a note such as the
    accuracy) written at the left. ``rows`` maps expression text → images ``[N, C, H, W]``."""
    plt = _pyplot()
    notes = notes or {}
    n = len(rows)
    fig, axes = plt.subplots(n, 1, figsize=(ncol * 0.55 + 2.6, 0.75 * n + 0.4), squeeze=False)
    for ax, (expr, images) in zip(axes[:, 0], rows.items()):
        ax.imshow(tile(images[:ncol], ncol), interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        label = expr if expr not in notes else f"{expr}\n{notes[expr]}"
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(fig)
    return path


def save_points(samples: Mapping[str, object], path: str | Path, *,
                bounds: tuple[float, float] | None = None) -> Path:
    """2-D samples as one 2-D histogram per expression (``samples``: text → ``[N, 2]``)."""
    plt = _pyplot()
    n = len(samples)
    fig, axes = plt.subplots(1, n, figsize=(3 * n, 3.2), squeeze=False)
    for ax, (expr, x) in zip(axes[0], samples.items()):
        x = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x)
        extent = None if bounds is None else [list(bounds), list(bounds)]
        ax.hist2d(x[:, 0], x[:, 1], bins=60, range=extent, cmap="magma")
        ax.set_title(expr, fontsize=9)
        ax.set_aspect("equal")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def save_training_curve(history: Sequence[Mapping[str, float]], path: str | Path) -> Path:
    """Mean E+ and E− (and the loss) against the training step; the loss alone (log scale)
    for denoising score matching, whose history has no energies."""
    plt = _pyplot()
    steps = [m["step"] for m in history]
    if history and "E+" not in history[0]:
        fig, ax = plt.subplots(figsize=(5, 3.2))
        ax.plot(steps, [m["loss"] for m in history], color="k")
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title("denoising loss (EDM-weighted)", fontsize=9)
        fig.tight_layout()
        fig.savefig(Path(path), dpi=120)
        plt.close(fig)
        return Path(path)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
    for key in ("E+", "E-"):
        ax1.plot(steps, [m[key] for m in history], label=key)
    ax1.set_xlabel("step")
    ax1.set_title("mean energy of data (E+) and of samples (E-)", fontsize=9)
    ax1.legend()
    ax2.plot(steps, [m["loss"] for m in history], color="k", label="loss")
    if history and "cross entropy" in history[0]:
        ax2.plot(steps, [m["cross entropy"] for m in history], label="cross entropy")
    ax2.set_xlabel("step")
    ax2.set_title("loss", fontsize=9)
    ax2.legend()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
