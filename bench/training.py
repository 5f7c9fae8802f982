"""Training throughput of each concept-head kind on ``shapes``, and accuracy against training time.

**Throughput.** One :class:`~conceptalg.training.Trainer` per arm (``linear``, ``film``,
``classifier``, ``classifier`` with colour-blind shape and size heads, ``joint``, plus a second
``linear`` trainer for the A/A ratio), the image defaults (batch 64, 20 Langevin steps, width
32), one thread; and one :class:`~conceptalg.training.DSMTrainer` per parameterisation
(``dsm-score``, ``dsm-energy``: denoising score matching, batch 64, no chain). The ``joint`` arm is the joint-code baseline (one FiLM network conditioned on the pair's code,
:mod:`conceptalg.evaluation.baseline`). After two warm-up iterations, every repeat runs
``--iters`` iterations of each arm in a rotated order; an arm's figure is the median over
repeats. Reported: iterations/s, training images/s (batch × it/s), Langevin image-steps/s, and
each arm's time per iteration relative to ``linear`` beside the A/A ratio (``linear`` against
itself: the measurement's noise floor).

**Accuracy against time.** ``--curve DIR ...`` scores snapshots of training runs (run
checkpoints ``ckpt-NNNNNN``, models made by ``conceptalg export``, or the joint baseline's
``step-NNNNNN`` from ``bench/train_joint.py``): for each, samples of every ``shape & color``
pair with one sampler setting, labelled by the exact decoder; a sample counts only when it is
one clean object of the asked pair (docs/design.md §8), and is *read* as the pair when the decoder's
reading of its largest object is the pair, clean or not. Seen and held-out pairs are pooled
separately (with standard errors). Training time per snapshot is its step divided by the
measured iterations/s of its arm, so curves of different arms share one axis. Writes a PNG
next to the JSON.

    .venv/bin/python bench/training.py [--repeats 5] [--iters 3]
    .venv/bin/python bench/training.py --skip-throughput --curve runs/arm-*/ckpt-* \
        runs/arm-joint/step-* [--per-pair 12 --sample-steps 200]

Writes bench/results/training.json (and training-curve.png with --curve).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from conceptalg.data.shapes import COLORS, SHAPES  # noqa: E402
from conceptalg.evaluation.baseline import JointSampler, joint_data, joint_model  # noqa: E402
from conceptalg.evaluation.classifiers import DecoderEvaluator  # noqa: E402
from conceptalg.evaluation.metrics import Proportion, proportion, score, truth  # noqa: E402
from conceptalg.evaluation.protocol import ModelSampler, load_arm  # noqa: E402
from conceptalg.expr import And, Concept  # noqa: E402
from conceptalg.training import (DSMTrainer, Trainer, builtin_data,  # noqa: E402
                                 default_dsm_config, default_train_config)

RESULTS = ROOT / "bench" / "results"
#: arm -> how its trainer is built (``joint``: the joint-code baseline)
ARMS = {"linear": {"heads": "linear"}, "film": {"heads": "film"},
        "classifier": {"heads": "classifier"},
        "classifier + views(shape=colour-blind, size=colour-blind)": {
            "heads": "classifier", "views": {"shape": "colour-blind", "size": "colour-blind"}},
        "joint": None, "dsm-score": "score", "dsm-energy": "energy"}


def _trainer(arm: str, data, joint, config, width: int, seed: int):
    if ARMS[arm] is None:
        return Trainer(joint, model=joint_model({"width": width}, seed=seed), config=config)
    if isinstance(ARMS[arm], str):  # denoising score matching, the image recipe
        return DSMTrainer(data, config=default_dsm_config(data.sample_shape, seed=seed),
                          parameterization=ARMS[arm])
    return Trainer(data, config=config, backbone_options={"width": width}, **ARMS[arm])


def throughput(repeats: int, iters: int, width: int, seed: int) -> dict:
    data = builtin_data("shapes", n=2000, seed=seed)
    joint = joint_data(2000, seed=seed)
    config = default_train_config(data.sample_shape, seed=seed)
    trainers = {name: _trainer(name.removesuffix(" (A/A)"), data, joint, config, width, seed)
                for name in (*ARMS, "linear (A/A)")}
    for trainer in trainers.values():  # warm-up: allocator, first buffer draws
        for _ in range(2):
            trainer.train_step()
    times: dict[str, list[float]] = {name: [] for name in trainers}
    names = list(trainers)
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            start = time.perf_counter()
            for _ in range(iters):
                trainers[name].train_step()
            times[name].append((time.perf_counter() - start) / iters)
        print(f"repeat {r + 1}/{repeats}: " + ", ".join(f"{n} {times[n][-1]:.2f} s/it"
                                                       for n in names), flush=True)
    per_it = {name: statistics.median(t) for name, t in times.items()}
    batch, chain = config.batch_size, config.langevin_steps
    rows = {}
    for name in ARMS:
        dsm = isinstance(ARMS[name], str)  # no chain: image-steps are not a measure of it
        rows[name] = {"s/it": per_it[name], "it/s": 1 / per_it[name],
                      "images/s": batch / per_it[name],
                      "image-steps/s": None if dsm else batch * chain / per_it[name],
                      "time vs linear": per_it[name] / per_it["linear"]}
    return {"rows": rows, "A/A": per_it["linear (A/A)"] / per_it["linear"],
            "batch_size": batch, "langevin_steps": chain, "width": width,
            "repeats": repeats, "iters": iters, "threads": torch.get_num_threads()}


def pair_expr(shape: str, color: str):
    return And(Concept(shape, factor="shape"), Concept(color, factor="color"))


def curve(paths: list[str], per_pair: int, seed: int, rates: dict[str, float],
          sample_steps: int | None, step_scale: float,
          guidance_scales: list[float] | None = None, device: str | None = None) -> list[dict]:
    """Score each snapshot on every pair with one sampler setting for all: the snapshot's own
    step size times ``step_scale`` and ``sample_steps`` steps (``None``: its own defaults).
    Snapshots trained by denoising score matching sample with their own reverse-diffusion
    defaults; their guidance scale is chosen per snapshot among ``guidance_scales`` on **seen**
    pairs only (the highest strict accuracy), and the held-out pairs are scored at that scale;
    they also report the fraction of clean unconditional samples (the base alone)."""
    evaluator = DecoderEvaluator()
    points = []
    for path in paths:
        arm, step, model, held, hours = snapshot(path, device)
        dsm = model.config.objective == "dsm"
        options = {}
        if not dsm:
            options["step_size"] = step_scale * model.sampler_defaults["step_size"]
            if sample_steps is not None:
                options["steps"] = sample_steps
        pairs = [(s, c) for s in SHAPES for c in COLORS]
        start = time.perf_counter()
        scales = (guidance_scales or [None]) if dsm else [None]
        tried = {}
        for w in scales:
            generate = JointSampler(model, **options) if arm == "joint" else \
                ModelSampler(model, guidance_scale=w, device=device, **options)
            tried[w] = _score_pairs(generate, evaluator, pairs, held, per_pair, seed, "seen")
        chosen = max(scales, key=lambda w: (_pool(tried[w]["seen"])["accuracy"], -(w or 0)))
        generate = JointSampler(model, **options) if arm == "joint" else \
            ModelSampler(model, guidance_scale=chosen, device=device, **options)
        parts = {**tried[chosen], **_score_pairs(generate, evaluator, pairs, held, per_pair,
                                                 seed, "held out")}
        if hours is None and arm in rates:
            hours = step / rates[arm] / 3600
        point = {"path": str(path), "arm": arm, "step": step, "training hours": hours,
                 **{k: _pool(v) for k, v in parts.items()},
                 "sampler": options or dict(model.sampler_defaults, sigmas="(the model's)")}
        if dsm:
            point["guidance scale"] = chosen
            point["seen by scale"] = {str(w): _pool(tried[w]["seen"]) for w in scales}
            point["clean unconditional"] = _pool([clean_unconditional(model, 4 * per_pair, seed,
                                                                      device)])
        point["eval seconds"] = round(time.perf_counter() - start, 1)
        print(f"{arm} step {step}: " + ", ".join(
            f"{k} {100 * point[k]['accuracy']:.1f} ± {100 * point[k]['stderr']:.1f} %"
            for k in ("seen", "held out", "read seen", "read held out", "clean unconditional")
            if k in point) + (f" (guidance {chosen:g})" if dsm else ""), flush=True)
        points.append(point)
    return sorted(points, key=lambda p: (p["arm"], p["step"]))


def _score_pairs(generate, evaluator, pairs, held, per_pair: int, seed: int,
                 split: str) -> dict:
    """Strict and read proportions of one split's pairs (lists of per-pair proportions)."""
    parts: dict = {split: [], f"read {split}": []}
    for k, (s, c) in enumerate(pairs):
        if ((s, c) in held) != (split == "held out"):
            continue
        labels = evaluator(generate(pair_expr(s, c), per_pair, seed + k))
        parts[split].append(score(pair_expr(s, c), labels).accuracy)
        parts[f"read {split}"].append(proportion(truth(pair_expr(s, c), labels)))
    return parts


def clean_unconditional(model, n: int, seed: int, device=None) -> Proportion:
    """The fraction of ``n`` unconditional samples (the base alone, the model's own sampler
    defaults) that the decoder reads as one clean object."""
    from conceptalg import sample
    from conceptalg.evaluation.decoder import decode_shapes

    x = sample(_Base(model), n, seed=seed, device=device)
    valid = decode_shapes(x.detach().cpu()).valid
    return Proportion(int(valid.sum()), n)


class _Base:
    """The base head of a diffusion model as a σ-aware, score-only energy for ``sample``."""

    score_only = True

    def __init__(self, model) -> None:
        self.model = model
        for hint in ("sample_shape", "bounds", "sampler_defaults", "data_mean", "sigma_data"):
            setattr(self, hint, getattr(model, hint))

    def __call__(self, x, sigma=None):
        raise NotImplementedError("score only")

    def score(self, x, sigma=None):
        from conceptalg.models import BASE
        return self.model.concept_scores(x, [BASE], sigma=sigma)[:, 0]


def snapshot(path, device=None) -> tuple[str, int, object, frozenset, float | None]:
    """(arm, step, model, held-out pairs, CPU hours of training or None) of a snapshot: an
    exported model, a run's checkpoint (``ckpt-NNNNNN``) or a joint-baseline snapshot
    (``step-NNNNNN`` of bench/train_joint.py). The hours are the run's own record of process
    CPU time (denoising-score-matching runs log it), else ``None``."""
    arm, info = load_arm(path, device=device)
    if info.step is None:
        raise SystemExit(f"{path}: a joint-baseline snapshot for the curve must be named "
                         f"step-NNNNNN (its training step)")
    history = info.metadata.get("history") or []
    cpu = [h["cpu seconds"] for h in history if "cpu seconds" in h and h["step"] <= info.step]
    hours = cpu[-1] / 3600 if cpu else None
    config = info.model.config
    if config.objective == "dsm" and config.heads == "classifier" and "classifier" not in arm:
        arm += " classifier" + (" + views" if config.views else "")
        if (info.metadata.get("train_config") or {}).get("guidance_weight", 1.0) == 0:
            arm += " (cross-entropy only)"
    return arm, info.step, info.model, info.holdout or frozenset(), hours


def _pool(parts: list[Proportion]) -> dict:
    p = Proportion(sum(q.successes for q in parts), sum(q.n for q in parts))
    return {"accuracy": p.value, "stderr": p.stderr, "n": p.n}


def plot_curve(points: list[dict], out: Path) -> None:
    """Two panels (seen pairs, held-out pairs): one colour per arm, solid the protocol's
    accuracy, dotted the looser read rate; the x axis is training hours on one CPU thread."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    arms = sorted({p["arm"] for p in points})
    colours = dict(zip(arms, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    all_hours = [p["training hours"] or p["step"] for p in points]
    for ax, split in zip(axes, ("seen", "held out")):
        for arm in arms:
            mine = [p for p in points if p["arm"] == arm]
            hours = [p["training hours"] if p["training hours"] is not None else p["step"]
                     for p in mine]
            for key, style in ((split, "-o"), (f"read {split}", ":s")):
                ax.errorbar(hours, [100 * p[key]["accuracy"] for p in mine],
                            yerr=[100 * p[key]["stderr"] for p in mine], fmt=style,
                            capsize=3, color=colours[arm], ms=4,
                            label=f"{arm}, {'accuracy' if key == split else 'read'}")
        ax.axhline(90, color="grey", lw=0.8, ls=":")
        ax.set_title(f"{split} (shape, colour) pairs", fontsize=9)
        ax.set_xscale("log")  # short runs of several arms beside one long run
        ticks = [t for t in (0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50)
                 if min(all_hours) / 2 <= t <= max(all_hours) * 2]
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("hours of training on one CPU thread (log scale)", fontsize=9)
    axes[0].set_ylabel("% of `shape & color` samples (exact decoder)")
    axes[0].set_ylim(-2, 102)
    axes[1].legend(fontsize=7, ncol=2)
    fig.suptitle("shapes: `shape & color` samples during training (solid: one clean object "
                 "of the pair; dotted: read as the pair)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def best_on_seen(points: list[dict]) -> dict[str, dict]:
    """Per arm, the snapshot with the highest read rate on seen pairs (ties: the earlier)."""
    best: dict[str, dict] = {}
    for p in sorted(points, key=lambda q: q["step"]):
        if p["arm"] not in best or \
                p["read seen"]["accuracy"] > best[p["arm"]]["read seen"]["accuracy"]:
            best[p["arm"]] = p
    return best


def markdown(result: dict) -> str:
    lines = []
    tp = result.get("throughput")
    if tp:
        lines += [f"Training throughput on `shapes` (batch {tp['batch_size']}, "
                  f"{tp['langevin_steps']} Langevin steps, width {tp['width']}, "
                  f"{tp['threads']} thread, median of {tp['repeats']} × {tp['iters']} "
                  f"iterations; A/A ratio {tp['A/A']:.2f})", "",
                  "| heads | it/s | images/s | image-steps/s | time per it vs linear |",
                  "|---|---|---|---|---|"]
        for arm, row in tp["rows"].items():
            chain = "–" if row["image-steps/s"] is None else f"{row['image-steps/s']:.0f}"
            lines.append(f"| {arm} | {row['it/s']:.2f} | {row['images/s']:.0f} | "
                         f"{chain} | {row['time vs linear']:.2f} |")
    if result.get("curve"):
        lines += ["", "Accuracy: one clean object of the asked pair; read: the decoder's reading "
                      "of the largest object is the asked pair, clean or not.", "",
                  "| arm | step | training hours | seen | held out | read seen | read held out "
                  "| guidance | clean unconditional |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for p in result["curve"]:
            hours = "" if p["training hours"] is None else f"{p['training hours']:.2f}"
            cells = [f"{100 * p[k]['accuracy']:.1f} ± {100 * p[k]['stderr']:.1f}" if k in p
                     else "" for k in ("seen", "held out", "read seen", "read held out")]
            cells.append(f"{p['guidance scale']:g}" if p.get("guidance scale") else "")
            clean = p.get("clean unconditional")
            cells.append(f"{100 * clean['accuracy']:.1f} ± {100 * clean['stderr']:.1f}"
                         if clean else "")
            lines.append(f"| {p['arm']} | {p['step']} | {hours} | " + " | ".join(cells) + " |")
        first = result["curve"][0]
        lines.append(f"\n(n per cell: seen {first['seen']['n']}, held out "
                     f"{first['held out']['n']}; sampler: {first['sampler']})")
        lines += ["", "Each arm's snapshot chosen on **seen** pairs only (highest read rate; "
                      "held-out pairs play no part in the choice):", "",
                  "| arm | step | read seen | read held out | held out |", "|---|---|---|---|---|"]
        for arm, p in best_on_seen(result["curve"]).items():
            lines.append(f"| {arm} | {p['step']} | " + " | ".join(
                f"{100 * p[k]['accuracy']:.1f} ± {100 * p[k]['stderr']:.1f}"
                for k in ("read seen", "read held out", "held out")) + " |")
    return "\n".join(lines)


def merge(paths: list[str], out: Path) -> int:
    """One result from several: the first file's throughput, every file's curve points."""
    parts = [json.loads(Path(p).read_text()) for p in paths]
    result = {**parts[0], "curve": sorted((q for part in parts for q in part.get("curve", [])),
                                          key=lambda q: (q["arm"], q["step"])),
              "merged from": paths}
    if not result["throughput"]:
        result["throughput"] = next((part["throughput"] for part in parts
                                     if part.get("throughput")), None)
    plot_curve(result["curve"], out.with_name(out.stem + "-curve.png"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(result) + "\n")
    print(markdown(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--iters", type=int, default=3, help="iterations per arm and repeat")
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-throughput", action="store_true",
                        help="reuse the throughput in the existing training.json")
    parser.add_argument("--curve", nargs="*", default=[], metavar="DIR",
                        help="exported snapshots of a run to score (accuracy against time)")
    parser.add_argument("--per-pair", type=int, default=32, help="samples per (shape, color)")
    parser.add_argument("--sample-steps", type=int, default=None,
                        help="curve: sampler steps for every snapshot (default: its own)")
    parser.add_argument("--step-scale", type=float, default=1.0,
                        help="curve: multiply each snapshot's step size (default 1)")
    parser.add_argument("--guidance-scales", default="1,2,3,5",
                        help="curve, dsm snapshots: guidance scales to choose from on seen "
                             "pairs (comma-separated)")
    parser.add_argument("--merge", nargs="*", default=[], metavar="JSON",
                        help="join the curves of earlier runs of this script (e.g. one process "
                             "per arm) into --out, with the figure; nothing is sampled")
    parser.add_argument("--device", default=None, help="curve: sample on this device (cuda)")
    parser.add_argument("--out", default=str(RESULTS / "training.json"))
    args = parser.parse_args(argv)
    if args.merge:
        return merge(args.merge, Path(args.out))
    torch.set_num_threads(1)
    out = Path(args.out)
    result: dict = {"machine": platform.platform(), "torch": torch.__version__}
    if args.skip_throughput:  # reuse a measured one when there is one
        result["throughput"] = json.loads(out.read_text())["throughput"] if out.exists() \
            else None
    else:
        result["throughput"] = throughput(args.repeats, args.iters, args.width, args.seed)
    if args.curve:
        rates = {arm: row["it/s"] for arm, row in
                 (result["throughput"] or {"rows": {}})["rows"].items()}
        result["curve"] = curve(sorted(args.curve, key=lambda p: int(str(p).split("-")[-1])
                                       if str(p).split("-")[-1].isdigit() else 0),
                                args.per_pair, args.seed, rates, args.sample_steps,
                                args.step_scale,
                                [float(w) for w in args.guidance_scales.split(",")],
                                args.device)
        plot_curve(result["curve"], out.with_name("training-curve.png"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(result) + "\n")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
