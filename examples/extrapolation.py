"""Cross-product extrapolation on ``shapes``: sample every (shape, colour) combination, score it
with the exact decoder, and draw the matrix with the held-out pairs outlined.

    python examples/extrapolation.py                       # models/shapes, or a tiny model
    python examples/extrapolation.py --model runs/shapes-linear --n 16

With no model directory (and no ``models/shapes``) it trains a tiny linear-head model for a
minute first — far too little to draw clean shapes, so its matrix is mostly empty: it shows the
pipeline, not the method. Writes ``out/extrapolation.png`` and ``out/extrapolation.csv``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def tiny_model(out: Path, steps: int):
    """Train a small linear-head model on the ``shapes`` training split (hold-out default)."""
    from conceptalg.training import Trainer, builtin_data, default_train_config

    data = builtin_data("shapes", n=2000)
    trainer = Trainer(data, backbone_options={"width": 8},
                      config=default_train_config(data.sample_shape, steps=steps,
                                                  batch_size=32))
    print(f"no trained model: training a tiny one for {steps} steps into {out} ...")
    trainer.fit(progress=True)
    trainer.save(out)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="a model directory (default models/shapes)")
    parser.add_argument("--n", type=int, default=16, help="samples per combination")
    parser.add_argument("--steps", type=int, default=None, help="sampler steps")
    parser.add_argument("--train-steps", type=int, default=200,
                        help="steps of the tiny model trained when there is none")
    parser.add_argument("--out", default=str(ROOT / "out"), help="output folder")
    args = parser.parse_args()

    from conceptalg.evaluation.classifiers import DecoderEvaluator
    from conceptalg.evaluation.extrapolation import extrapolation_matrix, write_matrix_csv
    from conceptalg.evaluation.figures import save_extrapolation_figure
    from conceptalg.evaluation.protocol import ModelSampler, model_info

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = Path(args.model) if args.model else ROOT / "models" / "shapes"
    if args.model is None and not path.exists():
        path = tiny_model(out / "tiny-shapes", args.train_steps)
    info = model_info(path)
    print(f"model: {info.describe()}")
    matrix = extrapolation_matrix(ModelSampler(info.model, steps=args.steps), DecoderEvaluator(),
                                  info.model.config.factors, "shape", "color", args.n,
                                  holdout=info.holdout)
    for (shape, color), cell in matrix.cells.items():
        mark = "  (held out)" if cell.held_out else ""
        print(f"{shape:>9} & {color:<8} {cell.score.accuracy}  read {cell.read}{mark}")
    print(f"seen: {matrix.pooled(False)}; held out: {matrix.pooled(True)}")
    print(f"read (both values, clean or not): seen {matrix.pooled(False, read=True)}; "
          f"held out {matrix.pooled(True, read=True)}")
    shown = info.path.relative_to(ROOT) if info.path.is_relative_to(ROOT) else info.path
    png = save_extrapolation_figure(matrix, out / "extrapolation.png", title=str(shown))
    csv = write_matrix_csv(matrix, out / "extrapolation.csv")
    print(f"wrote {png} and {csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
