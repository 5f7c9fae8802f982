"""The extrapolation matrix: every combination ``a & b`` of two factors' values, sampled and
scored, with the combinations held out of training marked.

Cross-product extrapolation is the headline use of composition: a model that saw red squares
and blue circles but never a red circle should still draw one from ``red & circle``. Each cell
``(a, b)`` holds ``n`` samples of ``factor_a=a & factor_b=b`` and their accuracy under the
protocol of :mod:`.metrics` (valid, both values read back), and its *read* rate (both values
read back from the largest object, clean or not: a looser figure that shows whether the
concepts composed when the objects are not yet clean); a cell is *held out* when its
(shape, colour) pair was withheld from the generator's training split.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from torch import Tensor

from ..expr import And, Concept
from .metrics import ExpressionScore, Proportion, proportion, score, truth
from .protocol import Generator

__all__ = ["MatrixCell", "ExtrapolationMatrix", "extrapolation_matrix", "is_held_out",
           "write_matrix_csv"]


@dataclass
class MatrixCell:
    """One combination: its values, whether training held it out, its score and samples.

    Example:
        >>> m.cells[("circle", "red")].held_out  # doctest: +SKIP
        True
    """

    row: str
    col: str
    held_out: bool
    score: ExpressionScore
    samples: Tensor | None = field(default=None, repr=False)
    read: Proportion | None = None


@dataclass
class ExtrapolationMatrix:
    """Cells of ``row_factor × col_factor`` in value order (``cells[(row, col)]``).

    Example:
        >>> m = extrapolation_matrix(generate, evaluator, factors, "shape", "color")  # doctest: +SKIP
        >>> print(m.pooled(held_out=False), m.pooled(held_out=True))  # doctest: +SKIP
        62.5 ± 2.0 % 31.2 ± 2.7 %
    """

    row_factor: str
    col_factor: str
    rows: list[str]
    cols: list[str]
    cells: dict[tuple[str, str], MatrixCell]

    def pooled(self, held_out: bool, *, read: bool = False) -> Proportion:
        """Accuracy (or, with ``read=True``, the read rate) pooled over the seen (``False``)
        or held-out (``True``) cells."""
        chosen = [c.read if read else c.score.accuracy for c in self.cells.values()
                  if c.held_out == held_out]
        chosen = [p for p in chosen if p is not None]
        return Proportion(sum(p.successes for p in chosen), sum(p.n for p in chosen))

    def as_rows(self) -> list[dict]:
        return [{self.row_factor: c.row, self.col_factor: c.col, "held_out": c.held_out,
                 "accuracy": c.score.accuracy.value, "stderr": c.score.accuracy.stderr,
                 "n": c.score.accuracy.n, "read": None if c.read is None else c.read.value}
                for c in self.cells.values()]


def is_held_out(factors: tuple[str, str], values: tuple[str, str], holdout) -> bool:
    """Whether a cell is a held-out (shape, colour) pair; only ``shape × color`` (either
    order) can be, since the hold-out is a set of such pairs.

    Example:
        >>> is_held_out(("color", "shape"), ("red", "circle"), {("circle", "red")})
        True
    """
    if not holdout:
        return False
    pair = dict(zip(factors, values))
    if set(pair) != {"shape", "color"}:
        return False
    return (pair["shape"], pair["color"]) in holdout


def extrapolation_matrix(generate: Generator, evaluator, factors: dict[str, Sequence[str]],
                         row_factor: str, col_factor: str, n: int = 16, *, holdout=None,
                         seed: int = 0, keep_samples: bool = True) -> ExtrapolationMatrix:
    """Sample and score ``row_factor=a & col_factor=b`` for every pair of values (``factors``
    maps each factor to its values, e.g. a model's ``config.factors``); cell ``k`` in row-major
    order uses seed ``seed + k``. ``holdout``: (shape, colour) pairs to mark.

    Example:
        >>> m = extrapolation_matrix(ModelSampler(model), DecoderEvaluator(), model.config.factors,
        ...                          "shape", "color", n=16)  # doctest: +SKIP
        >>> m.pooled(held_out=True)  # doctest: +SKIP
    """
    for f in (row_factor, col_factor):
        if f not in factors:
            raise ValueError(f"the model has no factor {f!r}; its factors are "
                             f"{', '.join(factors)}")
    if row_factor == col_factor:
        raise ValueError(f"choose two different factors, got {row_factor!r} twice")
    rows, cols = list(factors[row_factor]), list(factors[col_factor])
    cells = {}
    for k, (a, b) in enumerate((a, b) for a in rows for b in cols):
        expr = And(Concept(a, factor=row_factor), Concept(b, factor=col_factor))
        x = generate(expr, n, seed + k)
        labels = evaluator(x)
        cells[(a, b)] = MatrixCell(a, b, is_held_out((row_factor, col_factor), (a, b), holdout),
                                   score(expr, labels), x if keep_samples else None,
                                   proportion(truth(expr, labels)))
    return ExtrapolationMatrix(row_factor, col_factor, rows, cols, cells)


def write_matrix_csv(matrix: ExtrapolationMatrix, path: str | Path) -> Path:
    """One line per cell: row value, column value, held_out, accuracy, stderr, n, read.

    Example:
        >>> write_matrix_csv(m, "matrix.csv")  # doctest: +SKIP
        PosixPath('matrix.csv')
    """
    path = Path(path)
    rows = matrix.as_rows()
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[matrix.row_factor, matrix.col_factor, "held_out",
                                               "accuracy", "stderr", "n", "read"])
        writer.writeheader()
        writer.writerows(rows)
    return path
