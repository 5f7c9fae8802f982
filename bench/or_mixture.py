"""An OR on a score-only model, sampled as a mixture: its time against an AND of the same size,
and its branch frequencies against the weights (one thread).

For each pair (an OR and the AND over the same concepts), ``sample(compose(expr, model), n)``
with the model's own defaults, timed ``--repeats`` times in rotation; the figure is the minimum
over repeats. An OR runs one sampler call per branch on that branch's chains (docs/design.md §0),
so its cost over the AND is the per-call overhead of the extra branches. For every OR the
branch counts of all repeats, pooled, are tested against the branch weights (Pearson χ²).

    .venv/bin/python bench/or_mixture.py [models/shapes] [--n 16] [--repeats 3]

Writes bench/results/or_mixture.json; bench/truth_table.py calls :func:`measure`.
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
from conceptalg.evaluation.truth_table import chi2_p  # noqa: E402
from conceptalg.sampling.mixture import is_mixture  # noqa: E402

PAIRS = [("red | blue", "red & blue"), ("(red | blue) & square", "red & blue & square"),
         ("circle & ~red | square", "circle & ~red & square")]


def measure(model_path: str, n: int = 16, repeats: int = 3) -> dict:
    """The timings and branch tests of :data:`PAIRS` on the model at ``model_path`` (module
    docstring), as the JSON this script writes; prints one line per pair."""
    torch.set_num_threads(1)
    model = conceptalg.load(model_path)
    names = [e for pair in PAIRS for e in pair]
    energies = {name: conceptalg.compose(name, model) for name in names}
    times: dict[str, list[float]] = {name: [] for name in names}
    counts: dict[str, list[int]] = {}
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            energy = energies[name]
            mixture = is_mixture(energy)
            start = time.perf_counter()
            out = conceptalg.sample(energy, n, seed=r, return_info=mixture)
            times[name].append(time.perf_counter() - start)
            if mixture:
                drawn = out[1]["branch counts"]
                counts[name] = [a + b for a, b in zip(counts.get(name, [0] * len(drawn)), drawn)]
    rows = []
    for union, conj in PAIRS:
        energy = energies[union]
        row = {"or": union, "and": conj, "or seconds": min(times[union]),
               "and seconds": min(times[conj])}
        row["ratio"] = row["or seconds"] / row["and seconds"]
        if union in counts:
            weights = list(energy.branch_weights)
            row.update(branches=[str(b.expr) for b in energy.branches], weights=weights,
                       counts=counts[union], p=chi2_p(counts[union], weights))
        rows.append(row)
        shares = "" if "counts" not in row else (
            "  branches " + ", ".join(f"{b} {c}/{sum(row['counts'])}" for b, c in
                                      zip(row["branches"], row["counts"]))
            + f"  χ² p = {row['p']:.3f}")
        print(f"{union:26} {row['or seconds']:6.2f} s   {conj:26} {row['and seconds']:6.2f} s"
              f"   ratio {row['ratio']:.2f}{shares}")
    return {"machine": platform.platform(), "torch": torch.__version__, "threads": 1,
            "model": model_path, "n": n, "repeats": repeats,
            "composition": model.config.composition, "pairs": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", default=str(ROOT / "models" / "shapes"))
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "or_mixture.json"))
    args = parser.parse_args(argv)
    result = measure(args.model, args.n, args.repeats)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
