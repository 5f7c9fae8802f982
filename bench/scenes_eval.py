"""Scenes composition (docs/design.md §8, issue 16): ``at(x1, y1) & … & at(xk, yk)`` for k = 1, 2, 3.

The guidance scale is chosen on positions taken from the model's own **training** scenes
(k = 2, the built-in data's seed 0), then every k is scored on positions from fresh scenes
(other seeds; feasible by construction): a sample counts when it is a valid scene of 1–4 clean
objects with an object within 0.1 of every requested point (the exact scenes decoder).

    python bench/scenes_eval.py runs/scenes/ckpt-012000 [--device cuda] [--queries 80 --per-query 2]

Writes bench/results/scenes.json (and prints a table).
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
sys.path.insert(0, str(ROOT / "bench"))

from composition import cell, pooled, scene_queries  # noqa: E402

from conceptalg.data.scenes import ScenesDataset  # noqa: E402
from conceptalg.evaluation.classifiers import ScenesEvaluator  # noqa: E402
from conceptalg.evaluation.metrics import proportion, score, truth  # noqa: E402
from conceptalg.evaluation.protocol import ModelSampler, load_arm  # noqa: E402
from conceptalg.expr import And, Concept  # noqa: E402


def training_queries(k: int, count: int) -> list:
    """Queries from the training scenes themselves (``builtin_data("scenes")`` uses seed 0)."""
    data = ScenesDataset(8 * count, seed=0, min_objects=k)
    out = []
    for i in range(len(data)):
        if len(out) == count:
            break
        terms = [Concept("at", args=tuple(round(float(v), 3) for v in data.centres[i, j]))
                 for j in range(k)]
        out.append(terms[0] if k == 1 else And(*terms))
    return out


def run(generate, queries, evaluator, loose, per_query: int, seed: int) -> dict:
    hits, valid, read = [], [], []
    for j, expr in enumerate(queries):
        x = generate(expr, per_query, seed + j)
        s = score(expr, evaluator(x))
        hits.append(s.accuracy)
        valid.append(s.valid)
        read.append(proportion(truth(expr, loose(x))))
    return {**cell(pooled(hits)), "valid": pooled(valid).value, "read": cell(pooled(read))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("--device", default=None)
    parser.add_argument("--queries", type=int, default=80, help="queries per k")
    parser.add_argument("--per-query", type=int, default=2, help="samples per query")
    parser.add_argument("--choose-queries", type=int, default=24)
    parser.add_argument("--guidance-scales", default="1,2,3,5")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "scenes.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    arm, info = load_arm(args.model, device=args.device)
    evaluator, loose = ScenesEvaluator(), ScenesEvaluator(clean_only=False)
    start = time.perf_counter()
    scales = [float(w) for w in args.guidance_scales.split(",")]
    chosen_by = {}
    for w in scales:
        generate = ModelSampler(info.model, guidance_scale=w, device=args.device)
        chosen_by[w] = run(generate, training_queries(2, args.choose_queries), evaluator, loose,
                           args.per_query, args.seed)
        print(f"guidance {w:g} on training positions (k=2): "
              f"{100 * chosen_by[w]['accuracy']:.1f} %", flush=True)
    w = max(scales, key=lambda s: (chosen_by[s]["accuracy"], -s))
    generate = ModelSampler(info.model, guidance_scale=w, device=args.device)
    result = {"model": args.model, "arm": arm, "step": info.step, "guidance scale": w,
              "chosen on training positions (k=2)": {str(s): v for s, v in chosen_by.items()}}
    for k in (1, 2, 3):
        result[f"k={k}"] = run(generate, scene_queries(k, args.queries, args.seed + 1000 * k),
                               evaluator, loose, args.per_query, args.seed + 1000 * k)
        r = result[f"k={k}"]
        print(f"k={k}: {100 * r['accuracy']:.1f} ± {100 * r['stderr']:.1f} % (n {r['n']}), "
              f"read {100 * r['read']['accuracy']:.1f} %, valid {100 * r['valid']:.1f} %",
              flush=True)
    result["seconds"] = round(time.perf_counter() - start, 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
