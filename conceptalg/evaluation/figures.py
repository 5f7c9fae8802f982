"""Figures of evaluation results: the extrapolation matrix.

One cell of sample thumbnails per combination, rows and columns labelled by the two factors'
values, the cell's accuracy (± its standard error) and read rate written in the cell, and the
combinations held out of training outlined in red.
"""

from __future__ import annotations

import math
from pathlib import Path

from ..plots import _pyplot, tile
from .extrapolation import ExtrapolationMatrix

__all__ = ["save_extrapolation_figure"]

HELD_OUT_COLOUR = "#e8112d"


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
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)
    return path
