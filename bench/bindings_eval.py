"""Bindings (docs/design.md §8): ``at(p1)[s1 & c1] & … & at(pk)[sk & ck]``, k = 1, 2, 3.

Each query takes its points from one real scene with at least k objects: binding j gets object
j's centre and its (shape, colour) pair, so every query can be satisfied. Two families:
**seen** (scenes of the training split: every pair was seen in training) and **held out**
(scenes of all pairs in which at least one of the k objects is a pair the model's training
held out). A sample counts when the exact decoder reads a valid scene of 1–4 clean objects and
every binding holds of the object nearest its point, within 0.1
(:mod:`conceptalg.evaluation.bindings`); the ``at()``-only queries of the seen family's
positions are scored too, and the sampling time of 16 bound scenes is measured.

``--guidance-scales a,b,c`` chooses the scale on queries from the training data's own
positions and pairs (``ScenesDataset(seed=0, split="train")``, the scenes ``builtin_data``
trains on: seen pairs only), then scores the test queries (other seeds) at the chosen scale.

    python bench/bindings_eval.py models/scenes [--device cuda] [--queries 40 --per-query 4]
        [--guidance-scales 1,2,3] [--figure bench/results/bindings.png]

Writes bench/results/bindings.json (and prints a table).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from composition import cell, fmt, pair, pooled  # noqa: E402

from conceptalg.data.scenes import ScenesDataset  # noqa: E402
from conceptalg.data.shapes import COLORS, DEFAULT_HOLDOUT, SHAPES  # noqa: E402
from conceptalg.evaluation.bindings import check_bindings  # noqa: E402
from conceptalg.evaluation.classifiers import ScenesEvaluator  # noqa: E402
from conceptalg.evaluation.metrics import json_safe, proportion, truth  # noqa: E402
from conceptalg.evaluation.protocol import ModelSampler, load_arm  # noqa: E402
from conceptalg.expr import And, Concept  # noqa: E402

FAMILIES = ("seen", "held out")
KS = (1, 2, 3)


@dataclass(frozen=True)
class Query:
    """k bindings: ``points[j]`` gets the (shape, colour) ``pairs[j]``; ``held`` marks the
    bindings whose pair the model's training held out."""

    points: tuple[tuple[float, float], ...]
    pairs: tuple[tuple[str, str], ...]
    held: tuple[bool, ...]

    @property
    def expr(self):
        """``at(p1)[shape=s1 & color=c1] & …``."""
        terms = [Concept("at", args=p)[pair(*sc)] for p, sc in zip(self.points, self.pairs)]
        return terms[0] if len(terms) == 1 else And(*terms)

    @property
    def places(self):
        """The same points without properties: ``at(p1) & …``."""
        terms = [Concept("at", args=p) for p in self.points]
        return terms[0] if len(terms) == 1 else And(*terms)


def binding_queries(k: int, count: int, seed: int, family: str, holdout, *,
                    min_objects: int | None = None) -> list[Query]:
    """Up to ``count`` queries of ``k`` bindings, each from the first ``k`` objects of one real
    scene: ``family`` ``"seen"`` draws training-split scenes (no held-out pair), ``"held out"``
    scenes of all pairs with at least one held-out pair among the k (none when nothing is held
    out). ``min_objects`` (default ``k``) is the scenes' own minimum; 1 keeps the training
    data's layout, and scenes with fewer than ``k`` objects are skipped."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    if family == "held out" and not holdout:
        return []
    data = ScenesDataset(8 * count, seed=seed, split="train" if family == "seen" else "all",
                         holdout=holdout, min_objects=k if min_objects is None else min_objects)
    out = []
    for i in range(len(data)):
        if len(out) == count:
            break
        if int(data.counts[i]) < k:
            continue
        pairs = tuple((SHAPES[data.shapes[i, j]], COLORS[data.colors[i, j]]) for j in range(k))
        held = tuple(p in holdout for p in pairs)
        if any(held) != (family == "held out"):
            continue
        points = tuple(tuple(round(float(v), 3) for v in data.centres[i, j]) for j in range(k))
        out.append(Query(points, pairs, held))
    return out


def score_queries(generate, queries: list[Query], evaluator, loose, per_query: int, seed: int,
                  *, places: bool = False, keep: int = 0) -> tuple[dict | None, list]:
    """Strict accuracy of ``queries`` (``places``: their ``at()``-only forms) on ``per_query``
    samples each (seed ``seed + j`` for the j-th), with the valid fraction, the looser *read*
    figure (every object found counts, clean or not), per-binding accuracy of seen and held-out
    pairs, and how often each binding failed and why. Returns ``(result, kept)``: ``kept``
    holds ``(expr, samples, report)`` of the first ``keep`` queries, for the figure."""
    if not queries:
        return None, []
    hits, valid, read, kept = [], [], [], []
    by_pair = {False: [], True: []}
    failures: Counter = Counter()
    for j, q in enumerate(queries):
        expr = q.places if places else q.expr
        x = generate(expr, per_query, seed + j)
        labels = evaluator(x)
        report = check_bindings(expr, labels)
        hits.append(proportion(report.correct))
        valid.append(proportion(labels.valid))
        read.append(proportion(truth(expr, loose(x))))
        failures.update(report.failures())
        for check, held in zip(report.checks, q.held):
            by_pair[held].append(proportion(check.valid & check.holds))
        if j < keep:
            kept.append((expr, x, report))
    result = {**cell(pooled(hits)), "valid": pooled(valid).value, "read": cell(pooled(read))}
    if not places:
        result["bindings of seen pairs"] = cell(pooled(by_pair[False]))
        result["bindings of held-out pairs"] = cell(pooled(by_pair[True]))
        result["binding failures"] = dict(sorted(failures.items()))
        result["bindings checked"] = sum(p.n for p in by_pair[False] + by_pair[True])
    return result, kept


def choose_scale(model, scales: list[float], queries: list[Query], per_query: int, seed: int,
                 device, evaluator, loose, **options) -> tuple[float, dict]:
    """The guidance scale of best strict accuracy on ``queries`` (ties: the smaller scale)."""
    scored = {}
    for w in scales:
        generate = ModelSampler(model, guidance_scale=w, device=device, **options)
        scored[w], _ = score_queries(generate, queries, evaluator, loose, per_query, seed)
        print(f"guidance {w:g} on training positions, seen pairs: "
              f"{fmt(scored[w])} %", flush=True)
    best = max(scales, key=lambda w: (scored[w]["accuracy"], -w))
    return best, {str(w): r for w, r in scored.items()}


def table(result: dict) -> str:
    """The printed table: strict accuracy % ± standard error (n) per k."""
    header = ["k", "seen pairs", "held-out pairs", "at() only", "valid (seen)"]
    rows = [header]
    for k in KS:
        r = result[f"k={k}"]
        cells = [r["seen"], r["held out"], r["at() only"]]
        rows.append([str(k)] + [f"{fmt(c)} (n {c['n']})" if c else "n/a" for c in cells]
                    + [f"{100 * r['seen']['valid']:.1f}" if r["seen"] else "n/a"])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a scenes model whose concepts include at and the "
                                      "shape and colour names")
    parser.add_argument("--device", default=None)
    parser.add_argument("--queries", type=int, default=40, help="queries per k and family")
    parser.add_argument("--per-query", type=int, default=4, help="samples per query")
    parser.add_argument("--choose-queries", type=int, default=8,
                        help="training-position queries per k for choosing the scale")
    parser.add_argument("--guidance-scales", default=None, metavar="A,B,C",
                        help="choose the guidance scale among these (default: the model's)")
    parser.add_argument("--semantics", default=None, help="default: the model's own")
    parser.add_argument("--steps", type=int, default=None, help="sampler steps (the model's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--figure", default=None, metavar="PNG",
                        help="also draw bound samples with their decoded labels")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "bindings.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    started = time.perf_counter()
    arm, info = load_arm(args.model, device=args.device)
    holdout = DEFAULT_HOLDOUT if info.holdout is None else info.holdout
    options = {k: v for k, v in (("semantics", args.semantics), ("steps", args.steps))
               if v is not None}
    evaluator, loose = ScenesEvaluator(), ScenesEvaluator(clean_only=False)
    result: dict = {"model": args.model, "arm": arm, "step": info.step,
                    "holdout": sorted(map(list, holdout)),
                    "holdout recorded": info.holdout is not None,
                    "settings": {"queries": args.queries, "per query": args.per_query,
                                 "seed": args.seed, "device": args.device, **options}}
    scale = None
    if args.guidance_scales:
        scales = [float(w) for w in args.guidance_scales.split(",")]
        training = [q for k in KS for q in binding_queries(k, args.choose_queries, 0, "seen",
                                                           holdout, min_objects=1)]
        scale, result["chosen on training positions, seen pairs"] = choose_scale(
            info.model, scales, training, args.per_query, args.seed, args.device, evaluator,
            loose, **options)
    result["guidance scale"] = scale if scale is not None else "model default"
    generate = ModelSampler(info.model, guidance_scale=scale, device=args.device, **options)
    figure_rows = []
    for k in KS:
        out = {}
        for f, family in enumerate(FAMILIES):
            base = args.seed + 1000 * k + 300 * f  # never seed 0: the training scenes
            queries = binding_queries(k, args.queries, base, family, holdout)
            out[family], kept = score_queries(generate, queries, evaluator, loose,
                                              args.per_query, base, keep=1)
            figure_rows += kept
            if family == "seen":
                out["at() only"], _ = score_queries(generate, queries, evaluator, loose,
                                                    args.per_query, base + 600, places=True)
        result[f"k={k}"] = out
        print(f"k={k}: seen {fmt(out['seen'])}, held out {fmt(out['held out'])}, at() only "
              f"{fmt(out['at() only'])}", flush=True)
    timed = binding_queries(2, 1, args.seed + 99, "seen", holdout)[0].expr
    start = time.perf_counter()
    generate(timed, 16, args.seed)
    result["seconds for 16 bound scenes (k=2)"] = round(time.perf_counter() - start, 2)
    result["seconds"] = round(time.perf_counter() - started, 1)
    print(table(result))
    print(f"sampling 16 bound scenes (k = 2): {result['seconds for 16 bound scenes (k=2)']} s; "
          f"guidance scale {result['guidance scale']}")
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(json_safe(result), indent=2) + "\n")
    print(f"wrote {out_path}")
    if args.figure:
        from conceptalg.evaluation.figures import save_bindings_figure

        save_bindings_figure(figure_rows, args.figure, ncol=min(args.per_query, 8))
        print(f"wrote {args.figure}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
