"""Figures of evaluation results: the extrapolation matrix and the truth table.

The extrapolation matrix: one cell of sample thumbnails per combination, rows and columns
labelled by the two factors' values, the cell's accuracy (± its standard error) and read rate
written in the cell, and the combinations held out of training outlined in red.

The truth table: one row of samples per expression, each framed green when it holds (valid, and
the expression true of its decoded labels) and red when it does not, the expression and its
truth rate at the left; a refused expression shows the compiler's message instead.

The bindings figure: one row of sampled scenes per query, each binding's tolerance circle
(radius 0.1) drawn at its point, green where the binding holds and red where it does not, and
under each scene the object decoded at each point with ✓ or ✗; the frame is green when the
whole sample counts.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Sequence

import torch

from ..plots import _pyplot, tile
from .bindings import BindingReport
from .extrapolation import ExtrapolationMatrix

__all__ = ["save_extrapolation_figure", "framed", "save_truth_figure", "save_bindings_figure"]

HELD_OUT_COLOUR = "#e8112d"
#: frame colours of the truth table: the sample holds / does not
TRUE_RGB, FALSE_RGB = (0.10, 0.75, 0.25), (0.90, 0.07, 0.18)


def save_extrapolation_figure(matrix: ExtrapolationMatrix, path: str | Path, *,
                              per_cell: int = 16, title: str | None = None) -> Path:
    """Draw ``matrix`` (samples kept) as a PNG; at most ``per_cell`` thumbnails per cell.

    Example:
        >>> save_extrapolation_figure(m, "matrix.png")  # doctest: +SKIP
        PosixPath('matrix.png')
    """
    plt = _pyplot()
    nrow, ncol = len(matrix.rows), len(matrix.cols)
    fig, axes = plt.subplots(nrow, ncol, figsize=(1.55 * ncol + 1.0, 1.7 * nrow + 0.9),
                             squeeze=False)
    for i, a in enumerate(matrix.rows):
        for j, b in enumerate(matrix.cols):
            ax, cell = axes[i, j], matrix.cells[(a, b)]
            if cell.samples is not None and cell.samples.dim() == 4 and len(cell.samples):
                images = cell.samples[:per_cell]
                ax.imshow(tile(images, max(1, math.ceil(math.sqrt(len(images))))),
                          interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            acc = cell.score.accuracy
            label = (f"{100 * acc.value:.0f} ± {100 * acc.stderr:.0f} %" if acc.n else "n/a")
            if cell.read is not None and cell.read.n:
                label += f" · read {100 * cell.read.value:.0f} %"
            ax.text(0.5, 0.03, label, transform=ax.transAxes, ha="center", va="bottom",
                    fontsize=8, color="white",
                    bbox={"facecolor": "black", "alpha": 0.65, "pad": 1.5, "edgecolor": "none"})
            if cell.held_out:
                ax.set_xlabel("held out", fontsize=7, labelpad=2, color=HELD_OUT_COLOUR)
            for spine in ax.spines.values():
                spine.set_linewidth(3 if cell.held_out else 0.5)
                spine.set_edgecolor(HELD_OUT_COLOUR if cell.held_out else "0.6")
            if i == 0:
                ax.set_title(b, fontsize=9)
            if j == 0:
                ax.set_ylabel(a, fontsize=9)
    seen, held = matrix.pooled(False), matrix.pooled(True)
    summary = f"{matrix.row_factor} × {matrix.col_factor}: accuracy seen {seen}"
    if held.n:
        summary += f", held out (red) {held}"
    if matrix.pooled(False, read=True).n:
        summary += f"; read seen {matrix.pooled(False, read=True)}"
        if held.n:
            summary += f", held out {matrix.pooled(True, read=True)}"
    fig.suptitle(summary if title is None else f"{title}\n{summary}", fontsize=9)
    return _save(fig, path)


def framed(images, truth, width: int = 2):
    """``images`` ``[N, 3, H, W]`` in frames of ``width`` pixels, green where ``truth`` ``[N]``
    holds and red where it does not: ``[N, 3, H + 2·width, W + 2·width]``.

    Example:
        >>> out = framed(torch.zeros(2, 3, 4, 4), torch.tensor([True, False]))
        >>> out.shape, [round(v, 2) for v in out[1, :, 0, 0].tolist()]
        (torch.Size([2, 3, 8, 8]), [0.9, 0.07, 0.18])
    """
    x = torch.as_tensor(images).detach().cpu().float().clamp(0, 1)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    n, _, h, w = x.shape
    colours = torch.tensor([TRUE_RGB if bool(t) else FALSE_RGB for t in truth],
                           dtype=torch.float32).reshape(n, 3, 1, 1)
    out = colours.expand(n, 3, h + 2 * width, w + 2 * width).clone()
    out[:, :, width:width + h, width:width + w] = x[:, :3]
    return out


def save_truth_figure(rows: Sequence[dict], path: str | Path, *, ncol: int = 16,
                      title: str | None = None) -> Path:
    """Draw the truth table as a PNG: ``rows`` are dicts with ``label`` (the text at the left),
    and either ``images`` ``[N, 3, H, W]`` with ``truth`` ``[N]`` (at most ``ncol`` shown) or
    ``refused`` (a message, written in the row).

    Example:
        >>> rows = [{"label": "red", "images": x, "truth": t}]  # doctest: +SKIP
        >>> save_truth_figure(rows, "t.png")  # doctest: +SKIP
        PosixPath('t.png')
    """
    plt = _pyplot()
    n = len(rows)
    fig, axes = plt.subplots(n, 1, figsize=(ncol * 0.62 + 3.2, 0.95 * n + 0.5), squeeze=False)
    for ax, row in zip(axes[:, 0], rows):
        ax.set_xticks([])
        ax.set_yticks([])
        if row.get("refused") is not None:
            ax.imshow(torch.full((36, 36 * ncol, 3), 0.92).numpy())
            message = textwrap.fill("refused: " + row["refused"], width=int(ncol * 9))
            ax.text(0.01, 0.5, message, transform=ax.transAxes, ha="left", va="center",
                    fontsize=5.5, color="0.15")
        else:
            images, truth = row["images"][:ncol], row["truth"][:ncol]
            ax.imshow(tile(framed(images, truth), ncol), interpolation="nearest")
        ax.set_ylabel(row["label"], rotation=0, ha="right", va="center", fontsize=8)
    caption = "green frame: the sample holds (valid, and the expression true of its decoded " \
              "labels); red: it does not"
    fig.suptitle(caption if title is None else f"{title}\n{caption}", fontsize=9)
    return _save(fig, path)


def save_bindings_figure(rows: Sequence[tuple[object, torch.Tensor, BindingReport]],
                         path: str | Path, *, ncol: int = 4, title: str | None = None) -> Path:
    """Draw sampled scenes with their bindings as a PNG (module docstring): ``rows`` are
    ``(expression, images [N, 3, H, W], report)`` with the report of
    :func:`~conceptalg.evaluation.bindings.check_bindings` on those images; at most ``ncol``
    scenes per row.

    Example:
        >>> from conceptalg.data.scenes import ScenesDataset
        >>> from conceptalg.evaluation.bindings import check_bindings, scene_labels
        >>> from conceptalg.evaluation.decoder import decode_scenes
        >>> from conceptalg.expr import Concept
        >>> data = ScenesDataset(2, seed=0)
        >>> expr = Concept("at", args=tuple(data.centres[0, 0].tolist()))[Concept("red")]
        >>> report = check_bindings(expr, scene_labels(decode_scenes(data.images)))
        >>> import tempfile, os; folder = tempfile.mkdtemp()
        >>> save_bindings_figure([(expr, data.images, report)], os.path.join(folder, "b.png")).name
        'b.png'
    """
    from matplotlib.patches import Circle

    plt = _pyplot()
    nrow = max(1, len(rows))
    fig, axes = plt.subplots(nrow, ncol, figsize=(1.45 * ncol + 2.2, 1.95 * nrow + 0.5),
                             squeeze=False)
    for r, (expr, images, report) in enumerate(rows):
        for i in range(ncol):
            ax = axes[r, i]
            ax.set_xticks([])
            ax.set_yticks([])
            if i >= len(images):
                ax.set_axis_off()
                continue
            ax.imshow(images[i].detach().cpu().clamp(0, 1).permute(1, 2, 0).numpy(),
                      extent=(0, 1, 1, 0), interpolation="nearest")
            lines = []
            for j, check in enumerate(report.checks, 1):
                ok = bool(check.valid[i] & check.holds[i])
                colour = TRUE_RGB if ok else FALSE_RGB
                x, y = check.binding.place.args
                ax.add_patch(Circle((x, y), 0.1, fill=False, lw=1.2, ls="--", color=colour))
                ax.text(x, y, str(j), color=colour, fontsize=6, ha="center", va="center")
                lines.append(f"{j} {check.describe(i)} {'✓' if ok else '✗'}")
            ax.set_xlim(0, 1)
            ax.set_ylim(1, 0)
            if not bool(report.valid[i]):
                lines.append("invalid scene")
            ax.set_xlabel("\n".join(lines), fontsize=6, labelpad=2)
            for spine in ax.spines.values():
                spine.set_linewidth(2.5)
                spine.set_edgecolor(TRUE_RGB if bool(report.correct[i]) else FALSE_RGB)
        axes[r, 0].set_ylabel(textwrap.fill(str(expr), width=28), rotation=0, ha="right",
                              va="center", fontsize=7)
    caption = "circles: each binding's point and tolerance (0.1), green when it holds; under " \
              "each scene the object decoded there; frame green when the sample counts"
    fig.suptitle(caption if title is None else f"{title}\n{caption}", fontsize=8)
    return _save(fig, path)


def _save(fig, path) -> Path:
    """Lay ``fig`` out, write it to ``path`` and close it; returns the path."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)
    return path
