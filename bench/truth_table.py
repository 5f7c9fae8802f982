"""The truth table of the shipped image models (issue 22): every sample checked against its
expression's truth by the exact decoder, each OR's branches against their weights, the setting
of guidance's negated terms measured on the NOT expressions, and an OR against an AND.

1. **The negation setting** (``--skip-sweep`` to skip): ``circle & ~red`` and ``~circle & large``
   on ``models/shapes`` — both involve only (shape, colour) pairs seen in training — sampled
   under each ``(negation_scale, negation_sigmas)`` of :data:`SWEEP` (``--sweep-n`` each, seeds
   ``--sweep-seed`` + k, apart from the table's). Chosen on the truth rate pooled over the two,
   by the one-standard-error rule: among the settings within one standard error of the best,
   the scale nearest 1 (the weights as written), then the most samples that hold, then the
   lower σ bound. Also reported, not used to choose: the *spread* of what the negation leaves
   open (the colour of ``circle & ~red`` over the five other colours, the shape of
   ``~circle & large`` over the other two; normalised entropy among the samples that hold,
   1 = uniform).
2. **The table**: each expression of :data:`SHAPES` (under the chosen setting, or the one given
   by ``--negation-scale`` / ``--negation-sigmas``) and of :data:`SCENES` (the scenes model's own
   defaults: ``logic``, exact), ``--n`` samples at seed ``--seed`` + k. A sample holds when it
   is valid (one clean object; a valid scene) and the expression is true of its decoded labels
   (:mod:`conceptalg.evaluation.truth_table`); strict truth rate with n and binomial standard
   error; for an OR sampled as a mixture, the branch counts against the weights (Pearson χ²) and
   each branch's own truth rate. An expression the compiler refuses is a row with its message.
   Expressions with a negation are also sampled as they are today (negation scale 1 at every
   level), at the same seeds.
3. **OR against AND** (``--skip-timing`` to skip): ``bench/or_mixture.py``'s :func:`measure`.

    .venv/bin/python bench/truth_table.py [--n 32] [--seed 0] [--skip-sweep] [--skip-timing]

Prints markdown tables; writes bench/results/truth_table.json and docs/truth-table.png.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import conceptalg  # noqa: E402
from conceptalg.evaluation.figures import save_truth_figure  # noqa: E402
from conceptalg.evaluation.metrics import Proportion, json_safe, normalised_entropy  # noqa: E402
from conceptalg.evaluation.truth_table import truth_row  # noqa: E402
from conceptalg.expr import Not, as_expr  # noqa: E402

SHAPES = ["red | blue", "circle & ~red", "~circle & large", "(red | blue) & square",
          "circle & ~red | square", "~(red | green) & triangle", "2 * red & square"]
SCENES = ["at(0.3, 0.3) & ~at(0.7, 0.7)", "at(0.3, 0.3) | at(0.7, 0.7)"]
#: the expressions the negation setting is chosen on (seen pairs only), each with the factor
#: and the value its negation excludes (the spread is over the factor's other values)
OPEN = {"circle & ~red": ("color", "red"), "~circle & large": ("shape", "circle")}
NOT_EXPRESSIONS = list(OPEN)
#: (negation_scale, negation_sigmas) measured; the first is today's (every level, scale 1)
SWEEP = [(1.0, None), (0.5, None), (0.25, None),
         (0.5, (1.0, None)), (1.0, (0.5, None)), (1.0, (1.0, None)), (1.0, (2.0, None)),
         (1.5, (0.5, None)), (1.5, (1.0, None)), (1.5, (2.0, None)),
         (2.0, (1.0, None)), (2.0, (2.0, None))]
TODAY = (1.0, None)


def setting_text(scale: float, sigmas) -> str:
    where = "every σ" if sigmas is None else (
        f"σ ≥ {sigmas[0]:g}" if sigmas[1] is None else f"{sigmas[0]:g} ≤ σ ≤ {sigmas[1]:g}")
    return f"scale {scale:g}, {where}"


def has_negation(text: str) -> bool:
    stack = [as_expr(text)]
    while stack:
        e = stack.pop()
        if isinstance(e, Not):
            return True
        stack.extend(e.children())
    return False


def md(text: str) -> str:
    """``text`` in backticks, its ``|`` escaped for a markdown table cell."""
    return "`" + text.replace("|", "\\|") + "`"


def cell(p: Proportion) -> str:
    return f"{100 * p.value:.1f} ± {100 * p.stderr:.1f} %"


def spread(row, factor: str, excluded: str) -> tuple[float, dict]:
    """The normalised entropy of ``factor`` over its values other than ``excluded`` among the
    samples of ``row`` that hold, and their counts."""
    names = list(row.labels.factors[factor])
    allowed = [i for i, v in enumerate(names) if v != excluded]
    values = row.labels.values[factor][row.truth].tolist()
    index = torch.tensor([allowed.index(v) for v in values if v in allowed], dtype=torch.long)
    counts = {names[i]: values.count(i) for i in allowed if values.count(i)}
    return normalised_entropy(index, len(allowed)), counts


def sweep(model, n: int, seed: int) -> tuple[list[dict], tuple]:
    """Every setting of :data:`SWEEP` on :data:`NOT_EXPRESSIONS`; returns the rows and the
    chosen ``(scale, sigmas)`` (module docstring)."""
    rows = []
    print(f"\n### The negation setting on {', '.join(NOT_EXPRESSIONS)} (n {n} each, seeds "
          f"{seed}+k)\n")
    print("| negation_scale | negation_sigmas | " + " | ".join(map(md, NOT_EXPRESSIONS))
          + " | pooled | " + " | ".join(f"spread of {OPEN[e][0]}" for e in NOT_EXPRESSIONS)
          + " |\n|---|---|" + "---|" * (2 * len(NOT_EXPRESSIONS) + 1), flush=True)
    for scale, sigmas in SWEEP:
        row = {"negation_scale": scale, "negation_sigmas": sigmas, "rates": {}}
        held = 0
        for k, expr in enumerate(NOT_EXPRESSIONS):
            r = truth_row(model, expr, n, seed + k, negation_scale=scale,
                          negation_sigmas=sigmas)
            h, counts = spread(r, *OPEN[expr])
            row["rates"][expr] = {"holds": r.rate.successes, "n": n, "truth": r.rate.value,
                                  "stderr": r.rate.stderr, "valid": float(r.valid.float().mean()),
                                  "spread": h, f"{OPEN[expr][0]} counts": counts}
            held += r.rate.successes
        row["pooled"] = {"holds": held, "n": n * len(NOT_EXPRESSIONS),
                         "truth": held / (n * len(NOT_EXPRESSIONS))}
        rows.append(row)
        rates = " | ".join(cell(Proportion(row["rates"][e]["holds"], n)) for e in NOT_EXPRESSIONS)
        bound = "every σ" if sigmas is None else f"({sigmas[0]:g}, {sigmas[1]})"
        spreads = " | ".join(f"{row['rates'][e]['spread'] + 0.0:.2f}" for e in NOT_EXPRESSIONS)
        print(f"| {scale:g} | {bound} | {rates} | "
              f"{cell(Proportion(held, n * len(NOT_EXPRESSIONS)))} | {spreads} |", flush=True)

    top = max(rows, key=lambda row: row["pooled"]["holds"])
    best = Proportion(top["pooled"]["holds"], top["pooled"]["n"])
    near = [row for row in rows if row["pooled"]["truth"] >= best.value - best.stderr]

    def key(row):
        lo = 0.0 if row["negation_sigmas"] is None else row["negation_sigmas"][0]
        return (-abs(math.log(row["negation_scale"])), row["pooled"]["holds"], -lo)

    chosen = max(near, key=key)
    print(f"\nbest pooled {best}; within one standard error: "
          + "; ".join(setting_text(r["negation_scale"], r["negation_sigmas"]) for r in near))
    return rows, (chosen["negation_scale"], chosen["negation_sigmas"])


def table(rows: list, today: dict) -> None:
    print("\n### The truth table\n")
    print("| model | expression | n | holds (truth ± SE) | valid | OR branches: count / "
          "expected | χ² p | today (scale 1, every σ) |\n|---|---|---|---|---|---|---|---|")
    for model, r in rows:
        if r.refused is not None:
            print(f"| {model} | {md(r.expr)} | – | refused: "
                  f"{r.refused.splitlines()[0][:160].replace('|', '/')}… "
                  f"| | | | |")
            continue
        branches = ", ".join(f"{md(b)} {c} / {w * r.n:.1f}" for b, w, c in
                             zip(r.branches, r.weights, r.counts)) or (
            "exact OR (no branches)" if "|" in r.expr else "")
        p = "" if r.p is None else f"{r.p:.2f}"
        old = today.get((model, r.expr))
        print(f"| {model} | {md(r.expr)} | {r.n} | {cell(r.rate)} | "
              f"{100 * float(r.valid.float().mean()):.0f} % | {branches} | {p} | "
              f"{cell(old.rate) if old is not None else ''} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default=str(ROOT / "models" / "shapes"))
    parser.add_argument("--scenes", default=str(ROOT / "models" / "scenes"),
                        help="the scenes model ('' to skip)")
    parser.add_argument("--n", type=int, default=32, help="samples per expression")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sweep-n", type=int, default=48)
    parser.add_argument("--sweep-seed", type=int, default=1000)
    parser.add_argument("--skip-sweep", action="store_true",
                        help="no sweep: the setting given below, else the model's defaults")
    parser.add_argument("--negation-scale", type=float, default=None)
    parser.add_argument("--negation-sigmas", default=None, metavar="LO,HI",
                        help="e.g. '1,' (σ ≥ 1) or '0.5,8'")
    parser.add_argument("--skip-timing", action="store_true")
    parser.add_argument("--timing-n", type=int, default=16)
    parser.add_argument("--timing-repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "truth_table.json"))
    parser.add_argument("--figure", default=str(ROOT / "docs" / "truth-table.png"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    start = time.perf_counter()
    shapes = conceptalg.load(args.shapes)
    result: dict = {"machine": platform.platform(), "torch": torch.__version__, "threads": 1,
                    "n": args.n, "seed": args.seed, "shapes model": args.shapes,
                    "shapes composition": shapes.config.composition}

    given_sigmas = None
    if args.negation_sigmas is not None:
        lo, _, hi = args.negation_sigmas.partition(",")
        given_sigmas = (float(lo), float(hi) if hi.strip() else None)
    if args.skip_sweep:
        chosen = (args.negation_scale, given_sigmas)
        how = "given" if chosen != (None, None) else "the model's defaults"
    else:
        rows, best = sweep(shapes, args.sweep_n, args.sweep_seed)
        result["negation sweep"] = {"expressions": NOT_EXPRESSIONS, "n": args.sweep_n,
                                    "seed": args.sweep_seed, "settings": rows}
        chosen = best if (args.negation_scale, given_sigmas) == (None, None) else (
            args.negation_scale, given_sigmas)
        how = "chosen by the sweep" if chosen == best else "given"
    result["negation default"] = {"negation_scale": chosen[0], "negation_sigmas": chosen[1],
                                  "how": how}
    setting = setting_text(1.0 if chosen[0] is None else chosen[0], chosen[1])
    print(f"\nnegation setting ({how}): "
          + (setting if chosen != (None, None) else "the model's defaults"), flush=True)

    rows, today = [], {}
    for k, expr in enumerate(SHAPES):
        r = truth_row(shapes, expr, args.n, args.seed + k, negation_scale=chosen[0],
                      negation_sigmas=chosen[1])
        rows.append(("shapes", r))
        if has_negation(expr) and r.refused is None and chosen != (None, None):
            today[("shapes", expr)] = truth_row(shapes, expr, args.n, args.seed + k,
                                                negation_scale=TODAY[0],
                                                negation_sigmas=TODAY[1])
        print(f"shapes  {expr:32} " + ("refused" if r.refused else cell(r.rate)), flush=True)
    if args.scenes:
        scenes = conceptalg.load(args.scenes)
        result["scenes model"] = args.scenes
        result["scenes composition"] = scenes.config.composition
        for k, expr in enumerate(SCENES):
            r = truth_row(scenes, expr, args.n, args.seed + 100 + k, data="scenes")
            rows.append(("scenes", r))
            print(f"scenes  {expr:32} " + ("refused" if r.refused else cell(r.rate)), flush=True)
    table(rows, today)
    result["table"] = [{"model": m, **r.as_dict()} for m, r in rows]
    result["today"] = [{"model": m, **r.as_dict()} for (m, _), r in today.items()]

    figure_rows = []
    for model, r in rows:
        label = f"{r.expr}   ({model})"
        if r.refused is not None:
            figure_rows.append({"label": f"{label}\nrefused", "refused": r.refused})
            continue
        note = f"holds {cell(r.rate)} (n {r.n})" + ("" if r.p is None else f", χ² p {r.p:.2f}")
        figure_rows.append({"label": f"{label}\n{note}", "images": r.samples, "truth": r.truth})
    figure = save_truth_figure(figure_rows, args.figure,
                               title="truth table of the shipped models (exact decoder; "
                                     f"shapes negations: {setting})")
    print(f"\nwrote {figure}")

    if not args.skip_timing:
        from or_mixture import measure

        print("\n### OR against AND of the same size (bench/or_mixture.py)\n")
        result["or vs and"] = measure(args.shapes, args.timing_n, args.timing_repeats)
    result["seconds"] = round(time.perf_counter() - start, 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(json_safe(result), indent=2) + "\n")
    print(f"wrote {out} ({result['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
