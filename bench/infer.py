"""Concept inference on real renders (issue 14): does each factor's head read its own factor on
(shape, colour) pairs it never saw in training?

For each model, ``conceptalg.infer`` labels fresh renders of every pair (the built-in
``shapes`` renderer, a seed no model trained on, no hold-out), and the accuracy per factor is
pooled over the seen and the held-out pairs of the model's training split, with standard
errors. A head that learnt "red ⇒ not circle" reads held-out shapes wrongly; a factor-local
head reads them as well as seen ones.

    python bench/infer.py runs/clf-views runs/clf-plain models/shapes [--n 1200] [--samples 1]
        [--method "diffusion classifier"] [--cli-runs 3]

``--method`` reads every model that way (default: each model's own, ``inference_method``).
``--cli-runs K`` also times the command a user runs, ``conceptalg infer --model M FILE.pt
--threads 1`` on 600 renders of held-out pairs (a fresh process each time: start-up, loading
and reading included), and prints the minimum and the median of K runs. One thread throughout.

Writes bench/results/infer.json and prints a table.
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
import conceptalg.inference  # noqa: E402
from conceptalg.evaluation.metrics import Proportion  # noqa: E402
from conceptalg.evaluation.protocol import load_arm  # noqa: E402
from conceptalg.training import builtin_data  # noqa: E402


def evaluate(path: str, n: int, samples: int, seed: int, method: str | None = None) -> dict:
    arm, info = load_arm(path)
    model, held = info.model, info.holdout or frozenset()
    test = builtin_data("shapes", n=n, seed=seed, holdout="none")
    names = {f: model.config.factors[f] for f in ("shape", "color", "size")}
    start = time.perf_counter()
    labels = conceptalg.infer(model, test.x, samples=samples, seed=seed, method=method)
    seconds = time.perf_counter() - start
    truth = {f: [names[f][i] for i in test.labels[f]] for f in names}
    is_held = [(s, c) in held for s, c in zip(truth["shape"], truth["color"])]
    row: dict = {"path": path, "arm": arm, "step": info.step, "seconds per image": seconds / n,
                 "method": method or conceptalg.inference.inference_method(model)}
    for split, want in (("seen", False), ("held out", True)):
        rows = [i for i, h in enumerate(is_held) if h == want]
        for f in (*names, "shape and color"):
            factors = ("shape", "color") if f == "shape and color" else (f,)
            hits = sum(all(labels[g][i] == truth[g][i] for g in factors) for i in rows)
            p = Proportion(hits, len(rows))
            row[f"{f}, {split}"] = {"accuracy": p.value, "stderr": p.stderr, "n": p.n}
    return row


def time_cli(path: str, runs: int, seed: int) -> dict:
    """Seconds of ``conceptalg infer`` on 600 renders of held-out pairs, one thread, ``runs``
    fresh processes: ``{"min": .., "median": .., "runs": [...]}``."""
    import statistics
    import subprocess
    import tempfile

    from conceptalg.data.shapes import ShapesDataset

    with tempfile.TemporaryDirectory() as tmp:
        images = Path(tmp) / "held-out.pt"
        torch.save(ShapesDataset(600, seed=seed, split="heldout").images, images)
        env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "conceptalg", "infer", "--model", path,
                            str(images), "--threads", "1", "--csv", str(Path(tmp) / "out.csv")],
                           check=True, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            times.append(time.perf_counter() - start)
    return {"min": min(times), "median": statistics.median(times), "runs": times}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--n", type=int, default=1200, help="renders per model")
    parser.add_argument("--samples", type=int, default=1,
                        help="noise draws per level (score-only diffusion models)")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--method", default=None,
                        help="read every model this way (conceptalg.inference.METHODS)")
    parser.add_argument("--cli-runs", type=int, default=0,
                        help="also time `conceptalg infer` on 600 held-out renders, K runs")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "infer.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = [evaluate(p, args.n, args.samples, args.seed, args.method) for p in args.models]
    for row in rows if args.cli_runs else ():
        row["cli seconds, 600 held-out renders"] = time_cli(row["path"], args.cli_runs,
                                                            args.seed)
    cols = [f"{f}, {s}" for s in ("seen", "held out")
            for f in ("shape", "color", "size", "shape and color")]
    print("| model | method | s / 600 images | " + " | ".join(cols) + " |")
    print("|---|---|---|" + "---|" * len(cols))
    for r in rows:
        cells = [f"{100 * r[c]['accuracy']:.1f} ± {100 * r[c]['stderr']:.1f}" for c in cols]
        print(f"| {r['path']} | {r['method']} | {600 * r['seconds per image']:.1f} | "
              + " | ".join(cells) + " |")
    for r in rows:
        cli = r.get("cli seconds, 600 held-out renders")
        if cli:
            print(f"conceptalg infer --model {r['path']} (600 held-out renders, one thread, "
                  f"{len(cli['runs'])} runs): min {cli['min']:.1f} s, median "
                  f"{cli['median']:.1f} s")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
