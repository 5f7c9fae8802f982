"""Choose a trained shapes model's sampling defaults on *seen* pairs only.

Short-run EBMs are trained with 20-step chains continued across iterations through replay
buffers, so one sampling call needs longer chains (and sometimes larger moves) than one
training iteration. This sweep scores a grid of chain lengths and step-size multipliers (the
per-coordinate gradient clip is kept, so the largest move per step grows with the multiplier)
on the 12 seen (shape, colour) pairs of the model's training split — never on held-out pairs,
which stay untouched for the evaluation — and prints the accuracy by the exact decoder (one
clean object of the asked pair) and the looser *read* figure (the decoder's reading of the
largest object is the asked pair). The best setting by accuracy, then read, then fewer steps,
is printed as ``conceptalg export --set`` options.

    .venv/bin/python bench/sampler_sweep.py runs/shapes [--per-pair 8] [--steps 40,100,200,400]
        [--scales 1,2,5,10]

Writes bench/results/sampler_sweep.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import conceptalg  # noqa: E402
from conceptalg.data.shapes import COLORS, SHAPES  # noqa: E402
from conceptalg.evaluation.classifiers import DecoderEvaluator  # noqa: E402
from conceptalg.evaluation.metrics import proportion, score, truth  # noqa: E402
from conceptalg.evaluation.protocol import model_info  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="run directory or exported model of a shapes model")
    parser.add_argument("--per-pair", type=int, default=8)
    parser.add_argument("--steps", default="40,100,200,400")
    parser.add_argument("--scales", default="1,2,5,10", help="step-size multipliers")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "sampler_sweep.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    info = model_info(args.model)
    defaults = info.model.sampler_defaults
    h = float(defaults["step_size"])
    seen = [(s, c) for s in SHAPES for c in COLORS if (s, c) not in (info.holdout or ())]
    evaluate = DecoderEvaluator()
    rows = []
    print(f"{args.model} (step {info.step}): {len(seen)} seen pairs × {args.per_pair} samples; "
          f"trained step size {h:.3g}, defaults {defaults}", flush=True)
    for steps in (int(v) for v in args.steps.split(",")):
        for scale in (float(v) for v in args.scales.split(",")):
            hits, reads, start = [], [], time.perf_counter()
            for k, (s, c) in enumerate(seen):
                text = f"shape={s} & color={c}"
                x = conceptalg.sample(conceptalg.compose(text, info.model), args.per_pair,
                                      steps=steps, step_size=scale * h, seed=args.seed + k)
                labels = evaluate(x)
                hits.append(score(text, labels).accuracy)
                reads.append(proportion(truth(text, labels)))
            n = sum(p.n for p in hits)
            row = {"steps": steps, "scale": scale, "step_size": scale * h,
                   "accuracy": sum(p.successes for p in hits) / n,
                   "read": sum(p.successes for p in reads) / n, "n": n,
                   "seconds": round(time.perf_counter() - start, 1)}
            rows.append(row)
            print(f"steps {steps:4d}  step size ×{scale:<4g} accuracy {100 * row['accuracy']:5.1f} % "
                  f" read {100 * row['read']:5.1f} %  (n = {n}, {row['seconds']} s)", flush=True)
    best = max(rows, key=lambda r: (r["accuracy"], r["read"], -r["steps"]))
    print(f"best on seen pairs: --set steps={best['steps']} --set step_size={best['step_size']:.6g}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"model": str(args.model), "step": info.step, "rows": rows,
                               "best": best, "defaults": defaults}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
