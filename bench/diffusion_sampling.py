"""Sampling time of a diffusion-trained model with its own defaults (one thread).

For each expression, ``sample(compose(expr, model), n)`` with nothing else — the model's sampler
(Heun reverse diffusion), levels, semantics and guidance scale — timed ``--repeats`` times in
rotation with the other expressions; the figure is the minimum over repeats. The A/A line times
the first expression again under another name: the spread between it and the first row is the
measurement's noise floor on this machine.

    .venv/bin/python bench/diffusion_sampling.py [models/shapes] [--n 16] [--repeats 3]

Writes bench/results/diffusion_sampling.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import conceptalg  # noqa: E402

EXPRESSIONS = ["red & circle", "circle & ~red", "large & triangle & blue"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", default=str(ROOT / "models" / "shapes"))
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" /
                                             "diffusion_sampling.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model = conceptalg.load(args.model)
    names = EXPRESSIONS + [f"{EXPRESSIONS[0]} (A/A)"]
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(args.repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            energy = conceptalg.compose(name.removesuffix(" (A/A)"), model)
            start = time.perf_counter()
            conceptalg.sample(energy, args.n, seed=r)
            times[name].append(time.perf_counter() - start)
    best = {name: min(t) for name, t in times.items()}
    defaults = model.config.sampler_defaults
    result = {"machine": platform.platform(), "torch": torch.__version__, "threads": 1,
              "model": args.model, "n": args.n, "repeats": args.repeats,
              "sampler": defaults.get("sampler"), "levels": len(defaults.get("sigmas", [])),
              "composition": model.config.composition, "seconds (min)": best,
              "A/A": best[names[-1]] / best[names[0]]}
    for name in names:
        print(f"{name:28} {best[name]:.2f} s for {args.n} images")
    print(f"A/A ratio {result['A/A']:.3f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
