"""Bisection of the dsm recipe on ``shapes``: held-out (shape, colour) pairs, arm by arm.

Each *arm* is the library's dsm trainer (score parameterisation, streamed training-split
renders, batch 64) with some recipe choices changed (``ARMS``). An arm trains and, at each step
of ``--eval-at`` it reaches (and at its last step), samples every ``shape & color`` pair
(``--per-pair`` each, seed ``7000 + k`` for pair ``k``, guidance ``--guidance``; Heun over the
model's 18 levels) and scores them with the project's exact decoder
(:func:`conceptalg.evaluation.decoder.decode_shapes`): *strict* = one clean object with both
concepts right, *read* = the largest object reads as asked. Held-out pairs never reach
training (the stream renders the training split only).

    # one arm (one thread); each evaluation is a JSON line in OUT/ARM.jsonl
    .venv/bin/python bench/extrapolation.py train --arm library --steps 5000 --out runs/bisect
    # several arms side by side (one process each), then the table
    for a in library bounds; do .venv/bin/python bench/extrapolation.py train --arm $a \\
        --steps 5000 --out runs/bisect & done; wait
    .venv/bin/python bench/extrapolation.py table runs/bisect

``--seconds`` stops an arm after that much wall time (it evaluates its last step first), so a
fixed machine budget can be shared by many arms.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import conceptalg as ca  # noqa: E402
from conceptalg.data.shapes import COLORS, FACTORS, SHAPES, pairs  # noqa: E402
from conceptalg.evaluation.decoder import decode_shapes  # noqa: E402
from conceptalg.training.data import builtin_data  # noqa: E402
from conceptalg.training.dsm import DSMConfig, DSMTrainer  # noqa: E402

#: the library's image recipe before the bisection (every arm states all of its choices, so
#: an arm means the same whatever the library's defaults become)
LIBRARY = {"config": {"normalisation": "measured", "ema_schedule": "rampup"},
           "net": {"decoder": "full", "zero_init": True, "embedding_dim": 64,
                   "noise_embedding": "wide"}}
#: what the prototype of the dsm work did differently, all at once
PROTOTYPE = {"config": {"normalisation": "bounds", "ema_schedule": "warmup"},
             "net": {"decoder": "light", "zero_init": False, "embedding_dim": 128,
                     "noise_embedding": "positional"}}


def _arm(config=None, net=None, start=LIBRARY) -> dict:
    return {"config": {**start["config"], **(config or {})}, "net": {**start["net"], **(net or {})}}


ARMS: dict[str, dict] = {
    "library": _arm(),
    "bounds": _arm({"normalisation": "bounds"}),
    "bounds+warmup": _arm({"normalisation": "bounds", "ema_schedule": "warmup"}),
    "bounds+light": _arm({"normalisation": "bounds"}, {"decoder": "light"}),
    "bounds+no-zero-init": _arm({"normalisation": "bounds"}, {"zero_init": False}),
    "bounds+emb128": _arm({"normalisation": "bounds"}, {"embedding_dim": 128}),
    "prototype": _arm(start=PROTOTYPE),
    "prototype-measured": _arm({"normalisation": "measured"}, start=PROTOTYPE),
    "prototype-zero-init": _arm(net={"zero_init": True}, start=PROTOTYPE),
    # the library's image defaults since the bisection (training.dsm.IMAGE_NET, "bounds")
    "prototype-rampup": _arm({"ema_schedule": "rampup"}, start=PROTOTYPE),
    "prototype+complete": _arm({"conditioning": "complete"}, start=PROTOTYPE),
    "library+complete": _arm({"conditioning": "complete"}),
    "prototype+complete+coind": _arm({"conditioning": "complete", "independence_weight": 1.0},
                                     start=PROTOTYPE),
}


def score_pairs(model, per_pair: int, guidance: float, seed: int, device) -> dict:
    """Strict and read rates of every (shape, colour) pair, pooled over seen and held-out."""
    held = set(pairs("heldout"))  # the default holdout: what builtin_data("shapes") holds out
    rows = []
    for k, (s, c) in enumerate((s, c) for s in SHAPES for c in COLORS):
        energy = ca.compose(f"{s} & {c}", model, guidance_scale=guidance)
        x = ca.sample(energy, per_pair, seed=seed + k, device=device).float().cpu()
        d = decode_shapes(x)
        both = (d.labels["shape"] == FACTORS["shape"].index(s)) & \
            (d.labels["color"] == FACTORS["color"].index(c))
        rows.append({"pair": f"{s}+{c}", "held_out": (s, c) in held,
                     "strict": int((both & d.valid).sum()), "read": int(both.sum()),
                     "n": per_pair})
    out = {"pairs": rows}
    for name, flag in (("seen", False), ("held_out", True)):
        part = [r for r in rows if r["held_out"] == flag]
        n = sum(r["n"] for r in part)
        for key in ("strict", "read"):
            p = sum(r[key] for r in part) / n
            out[f"{name} {key}"] = p
            out[f"{name} {key} se"] = math.sqrt(p * (1 - p) / n)
        out[f"{name} n"] = n
    return out


def train(args) -> int:
    torch.set_num_threads(args.threads)
    arm = ARMS[args.arm]
    device = torch.device(args.device)
    data = builtin_data("shapes", n=args.n, seed=args.seed)
    config = DSMConfig(steps=args.steps, seed=args.seed, log_every=100,
                       **arm.get("config", {}))
    out = Path(args.out)
    if args.resume and (out / args.arm / "latest").exists():  # continue the arm's own run
        trainer = DSMTrainer.resume(out / args.arm, data, device=device, steps=args.steps)
    else:
        trainer = DSMTrainer(data, config=config, parameterization="score",
                             backbone_options=dict(arm.get("net", {})), device=device)
    out.mkdir(parents=True, exist_ok=True)
    log = out / f"{args.arm}.jsonl"
    milestones = sorted({int(s) for s in args.eval_at.split(",") if s} | {args.steps})
    start = time.perf_counter()
    cpu0 = time.process_time()
    for milestone in milestones:
        if milestone <= trainer.step:
            continue
        while trainer.step < milestone and time.perf_counter() - start < args.seconds:
            trainer.fit(min(100, milestone - trainer.step))
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu0
        result = score_pairs(trainer.model, args.per_pair, args.guidance, 7000, device)
        result.update(arm=args.arm, step=trainer.step, seconds=seconds, cpu_seconds=cpu,
                      device=str(device), guidance=args.guidance,
                      loss=trainer.history[-1]["loss"] if trainer.history else None)
        with open(log, "a") as f:
            f.write(json.dumps(result) + "\n")
        print(f"{args.arm:22s} step {trainer.step:6d} {seconds:7.0f}s  seen "
              f"{result['seen strict']:.1%}/{result['seen read']:.1%}  held-out "
              f"{result['held_out strict']:.1%}/{result['held_out read']:.1%}", flush=True)
        if args.save:
            trainer.save(out / args.arm, keep=1)
        if time.perf_counter() - start >= args.seconds:
            break
    return 0


def table(args) -> int:
    rows = []
    for path in sorted(Path(args.dir).glob("*.jsonl")):
        rows += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows.sort(key=lambda r: (r["step"], r["arm"]))
    print("| arm | step | held-out strict | held-out read | seen strict | seen read |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        cells = [f"{100 * r[k]:.1f} ± {100 * r[k + ' se']:.1f}" for k in
                 ("held_out strict", "held_out read", "seen strict", "seen read")]
        print(f"| {r['arm']} | {r['step']} | " + " | ".join(cells) + " |")
    if args.pairs:
        for r in rows:
            held = [p for p in r["pairs"] if p["held_out"]]
            print(r["arm"], r["step"], ", ".join(f"{p['pair']} {p['strict']}/{p['read']}/{p['n']}"
                                                  for p in held))
    return 0


def plot(args) -> int:
    """Held-out and seen strict / read against training CPU-minutes of one thread (steps ×
    ``--seconds-per-step``), one line per arm, from the JSON lines of the given folders."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rate = dict(item.split("=") for item in args.seconds_per_step.split(","))
    rows = []
    for folder in args.dirs:
        for path in sorted(Path(folder).glob("*.jsonl")):
            rows += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    arms = [a for a in args.arms.split(",") if a] if args.arms else sorted({r["arm"] for r in rows})
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, part in zip(axes, ("held_out", "seen")):
        for arm in arms:
            points = sorted((r["step"], r) for r in rows if r["arm"] == arm)
            if not points:
                continue
            per = float(rate.get(arm, rate.get("*", 0.25)))
            minutes = [step * per / 60 for step, _ in points]
            line, = ax.plot(minutes, [100 * r[f"{part} read"] for _, r in points], "o-",
                            label=f"{arm} (read)")
            ax.plot(minutes, [100 * r[f"{part} strict"] for _, r in points], "s--",
                    color=line.get_color(), alpha=0.7, label=f"{arm} (strict)")
        ax.set_title("held-out pairs" if part == "held_out" else "seen pairs")
        ax.set_xlabel("training CPU-minutes of one thread (steps × s/step)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("% of samples (decode_shapes)")
    axes[1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train one arm and score it at its milestones")
    t.add_argument("--arm", required=True, choices=sorted(ARMS))
    t.add_argument("--steps", type=int, default=7500)
    t.add_argument("--eval-at", default="2500,5000,7500")
    t.add_argument("--seconds", type=float, default=math.inf, help="wall-time budget")
    t.add_argument("--per-pair", type=int, default=16)
    t.add_argument("--guidance", type=float, default=5.0)
    t.add_argument("--n", type=int, default=None, help="a fixed set of n images (default: stream)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--device", default="cpu")
    t.add_argument("--save", action="store_true", help="checkpoint the arm at each evaluation")
    t.add_argument("--resume", action="store_true",
                   help="continue from the arm's checkpoint in --out when there is one")
    t.add_argument("--out", required=True)
    s = sub.add_parser("table", help="print the table of every arm in a folder")
    s.add_argument("dir")
    s.add_argument("--pairs", action="store_true", help="per held-out pair: strict/read/n")
    f = sub.add_parser("plot", help="the training curves of the arms in some folders")
    f.add_argument("dirs", nargs="+")
    f.add_argument("--arms", default="", help="comma-separated arms (default: all)")
    f.add_argument("--seconds-per-step", default="*=0.25", metavar="ARM=S,...",
                   help="CPU seconds per step of one thread, per arm (* for the rest)")
    f.add_argument("--out", default="docs/extrapolation-curve.png")
    args = parser.parse_args(argv)
    return {"train": train, "table": table, "plot": plot}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
