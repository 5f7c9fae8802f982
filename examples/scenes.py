"""Scenes: objects at requested points. Compose ``at(x1, y1) & … & at(xk, yk)`` over a scenes
model, sample, and draw each request (crosses at the points, the 0.1 tolerance as circles) above
its samples, marked by the exact scenes decoder (green: a valid scene with an object within 0.1
of every point).

    python examples/scenes.py                       # models/scenes, or a tiny model
    python examples/scenes.py --model runs/scenes-local --n 4

With no model directory (and no ``models/scenes``) it trains a tiny one for a minute first —
far too little to draw scenes: it shows the pipeline, not the method. Writes
``out/scenes.png``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REQUESTS = ["at(0.3, 0.3)", "at(0.3, 0.3) & at(0.7, 0.7)",
            "at(0.25, 0.7) & at(0.5, 0.3) & at(0.75, 0.7)"]


def tiny_model(out: Path, steps: int) -> Path:
    """A small denoising-score-matching scenes model, for when none is shipped."""
    from conceptalg.training import DSMTrainer, builtin_data, default_dsm_config

    data = builtin_data("scenes", n=1000)
    trainer = DSMTrainer(data, config=default_dsm_config(data.sample_shape, steps=steps,
                                                         batch_size=16),
                         parameterization="score", backbone_options={"channels": (8, 16)})
    print(f"no trained model: training a tiny one for {steps} steps into {out} ...")
    trainer.fit(progress=True)
    trainer.save(out)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="a model directory (default models/scenes)")
    parser.add_argument("--n", type=int, default=6, help="samples per request")
    parser.add_argument("--train-steps", type=int, default=100,
                        help="steps of the tiny model trained when there is none")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "out"), help="output folder")
    args = parser.parse_args(argv)

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    import conceptalg
    from conceptalg.evaluation.classifiers import ScenesEvaluator
    from conceptalg.evaluation.metrics import correct

    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = Path(args.model) if args.model else ROOT / "models" / "scenes"
    if args.model is None and not path.exists():
        path = tiny_model(out / "tiny-scenes", args.train_steps)
    model = conceptalg.load(path)
    evaluator = ScenesEvaluator()
    fig, axes = plt.subplots(len(REQUESTS), args.n + 1, squeeze=False,
                             figsize=(1.6 * (args.n + 1), 1.7 * len(REQUESTS)))
    for row, text in enumerate(REQUESTS):
        energy = conceptalg.compose(text, model)
        x = conceptalg.sample(energy, args.n, seed=args.seed + row).detach().cpu()
        hits = correct(conceptalg.parse(text), evaluator(x))                 # [n]
        points = [c.args for c in conceptalg.concepts(conceptalg.parse(text))]
        ax = axes[row, 0]
        ax.set_facecolor("black")
        for px, py in points:
            ax.plot(px, py, "w+", markersize=9)
            ax.add_patch(plt.Circle((px, py), 0.1, fill=False, color="w", lw=0.8))
        ax.set(xlim=(0, 1), ylim=(1, 0), xticks=[], yticks=[], aspect="equal")
        ax.set_title(f"k = {len(points)}", fontsize=8)
        for j in range(args.n):
            ax = axes[row, j + 1]
            ax.imshow(x[j].permute(1, 2, 0).clamp(0, 1).numpy(), extent=(0, 1, 1, 0))
            for px, py in points:
                ax.plot(px, py, "w+", markersize=5, alpha=0.6)
            good = bool(hits[j])
            for side in ax.spines.values():
                side.set_color("limegreen" if good else "red")
                side.set_linewidth(2)
            ax.set(xticks=[], yticks=[])
        print(f"{text}: {int(hits.sum())} of {args.n} correct")
    fig.suptitle(f"{path.name}: requested points (left) and samples "
                 f"(green: an object within 0.1 of every point)", fontsize=9)
    fig.tight_layout()
    png = out / "scenes.png"
    fig.savefig(png, dpi=110)
    print(f"wrote {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
