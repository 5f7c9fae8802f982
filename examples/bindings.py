"""Bindings: objects with properties at places. Compose ``at(x, y)[red & circle] & …`` over the
shipped scenes model, sample, and draw each scene with its bindings (a circle of radius 0.1 at
each point, green where the binding holds) and, under it, what the exact scenes decoder reads of
the object at each point, ✓ or ✗ (docs/design.md §4, §8).

    python examples/bindings.py                   # models/scenes
    python examples/bindings.py --model runs/scenes-bind --n 4 --out out

The requests mix pairs the model saw in training with one it never saw (a red circle: no
training scene holds one) and a negated property. Writes ``out/bindings.png``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: (request, what it shows)
REQUESTS = [
    ("at(0.3, 0.3)[red & square] & at(0.7, 0.7)[blue & circle]", "two seen pairs"),
    ("at(0.3, 0.7)[red & circle]", "a held-out pair: no training scene has a red circle"),
    ("at(0.25, 0.3)[green & triangle] & at(0.7, 0.3)[yellow & square] & at(0.5, 0.75)[~red]",
     "three objects, one of them 'not red'"),
]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(ROOT / "models" / "scenes"))
    parser.add_argument("--n", type=int, default=4, help="samples per request")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "out"), help="output folder")
    args = parser.parse_args(argv)

    import torch

    import conceptalg
    from conceptalg.evaluation.bindings import check_bindings, scene_labels
    from conceptalg.evaluation.decoder import decode_scenes
    from conceptalg.evaluation.figures import save_bindings_figure

    torch.set_num_threads(1)
    model = conceptalg.load(args.model)
    rows = []
    for k, (text, what) in enumerate(REQUESTS):
        expr = conceptalg.parse(text)
        x = conceptalg.sample(conceptalg.compose(expr, model), args.n, seed=args.seed + k)
        report = check_bindings(expr, scene_labels(decode_scenes(x)))
        hits = int(report.correct.sum())
        print(f"{text}\n    {what}: {hits} of {args.n} scenes hold every binding")
        rows.append((expr, x, report))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = save_bindings_figure(rows, out / "bindings.png", ncol=args.n,
                                title=f"bindings sampled from {Path(args.model).name}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
