"""Composition benchmark (docs/design.md §8): accuracy of composed concepts under the composable-diffusion
protocol, on seen and held-out combinations, for every head kind and a joint-code baseline.

    python bench/composition.py --quick                  # CPU smoke budget (a few minutes)
    python bench/composition.py --device cuda            # full budgets (a GPU)
    python bench/composition.py --models runs/a runs/b   # evaluate trained models, no training

Writes bench/results/composition.json, composition.md and composition.png (a bar chart).

**shapes.** Arms: ``linear``, ``film`` and ``classifier`` concept heads (one model each, trained
by the same CD trainer on the training split, which withholds six (shape, colour) pairs), and
the ``joint`` baseline: one FiLM network conditioned on the concatenated one-hot shape and
colour codes (:mod:`conceptalg.evaluation.baseline`), trained the same way; it is asked for a
held-out pair by feeding that pair's code. Expressions: 1 component (each of the 11 concepts),
2 components (``shape=s & color=c``, 12 seen and 6 held-out pairs), 3 components (``… &
size=z``, 24 seen and 12 held-out triples), and AND/OR/NOT expressions. A sample is correct when
the exact decoder reads one clean object and the whole expression holds. The joint baseline
conditions on pairs only, so it has no 1-, 3-component or logic figures ("n/a").

**scenes.** A FiLM model of ``at(x, y)``; queries ``at(x1, y1) & … & at(xk, yk)`` for k = 1, 2,
3 take their positions from real generated scenes (so they are feasible); a sample is correct
when it is a valid scene of 1–4 clean objects with an object within 0.1 of every point.

Every figure is a pooled proportion with its standard error ``sqrt(p(1 − p)/n)`` and its ``n``.
``--quick`` budgets are far too small for an image EBM to learn anything; its accuracies are
near zero and only show that the pipeline runs end to end.
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

from conceptalg.data.scenes import ScenesDataset  # noqa: E402
from conceptalg.data.shapes import COLORS, DEFAULT_HOLDOUT, FACTORS, SHAPES, SIZES  # noqa: E402
from conceptalg.evaluation.baseline import (JointCodeModel, JointSampler, joint_data,  # noqa: E402
                                            joint_model, save_joint)
from conceptalg.evaluation.classifiers import (DecoderEvaluator, ScenesEvaluator,  # noqa: E402
                                               train_factor_classifiers)
from conceptalg.evaluation.metrics import (Proportion, json_safe, proportion, score,  # noqa: E402
                                          truth)
from conceptalg.evaluation.protocol import ModelSampler, load_arm  # noqa: E402
from conceptalg import parse  # noqa: E402
from conceptalg.expr import And, Concept  # noqa: E402
from conceptalg.training import (Trainer, TrainingDiverged, builtin_data,  # noqa: E402
                                 default_train_config)

RESULTS = ROOT / "bench" / "results"
HEAD_KINDS = ("linear", "film", "classifier")
LOGIC = ("circle & ~red", "red | blue", "(red | blue) & ~square", "large & ~circle",
         "triangle & ~(green | cyan)")

#: budgets per mode; command-line options override single entries
BUDGETS = {
    "quick": dict(train_n=1000, steps=60, width=8, batch_size=32, per_expr=6,
                  scene_queries=3, scene_n=6, scene_steps=60, classifier_steps=200,
                  classifier_n=3000),
    "full": dict(train_n=20_000, steps=10_000, width=32, batch_size=64, per_expr=64,
                 scene_queries=50, scene_n=20, scene_steps=10_000, classifier_steps=600,
                 classifier_n=6000),
}


def pair(shape: str, color: str, size: str | None = None):
    terms = [Concept(shape, factor="shape"), Concept(color, factor="color")]
    if size is not None:
        terms.append(Concept(size, factor="size"))
    return And(*terms)


def shapes_tasks(holdout) -> dict[str, list[tuple[object, bool]]]:
    """Expression groups: (expression, held out) pairs."""
    return {
        "1": [(Concept(v, factor=f), False) for f, vs in FACTORS.items() for v in vs],
        "2": [(pair(s, c), (s, c) in holdout) for s in SHAPES for c in COLORS],
        "3": [(pair(s, c, z), (s, c) in holdout) for s in SHAPES for c in COLORS for z in SIZES],
        "logic": [(e, False) for e in LOGIC],
    }


def pooled(parts: list[Proportion]) -> Proportion:
    return Proportion(sum(p.successes for p in parts), sum(p.n for p in parts))


def cell(p: Proportion | None) -> dict | None:
    if p is None or p.n == 0:
        return None
    return {"accuracy": p.value, "stderr": p.stderr, "n": p.n}


# --- training -----------------------------------------------------------------------------

def train_arm(kind: str, budget: dict, seed: int, device: str, save_dir: Path | None):
    """Train one arm; returns (model, training record)."""
    options = {"width": budget["width"]}
    config_kw = dict(steps=budget["steps"], batch_size=budget["batch_size"], seed=seed,
                     log_every=max(1, min(50, budget["steps"])))
    if kind == "joint":
        data = joint_data(budget["train_n"], seed=seed)
        model = joint_model(options, seed=seed)
        trainer = Trainer(data, model=model, device=device,
                          config=default_train_config(data.sample_shape, **config_kw))
    elif kind == "scenes":
        data = builtin_data("scenes", n=budget["train_n"], seed=seed)
        trainer = Trainer(data, heads="film", backbone_options=options, device=device,
                          config=default_train_config(data.sample_shape,
                                                      **{**config_kw,
                                                         "steps": budget["scene_steps"]}))
    else:
        data = builtin_data("shapes", n=budget["train_n"], seed=seed)
        trainer = Trainer(data, heads=kind, backbone_options=options, device=device,
                          config=default_train_config(data.sample_shape, **config_kw))
    start = time.perf_counter()
    record = {"steps": trainer.config.steps, "train samples": len(data), "width": options["width"]}
    try:
        trainer.fit()
    except TrainingDiverged as e:
        record["diverged"] = str(e).splitlines()[0]
    record["seconds"] = round(time.perf_counter() - start, 1)
    if trainer.history:
        last = trainer.history[-1]
        record.update({k: last[k] for k in ("E+", "E-") if k in last})
    model = trainer.model.eval()
    if save_dir is not None:
        if kind == "joint":
            save_joint(model, save_dir / kind)
        else:
            trainer.save(save_dir / kind)
    return model, record


def loaded_arm(path: str, device: str):
    """(arm name, data, model, training record) of a saved model (:func:`load_arm`)."""
    name, info = load_arm(path, device=device)
    if info.step is None:
        return name, info.data, info.model, None
    seconds = (info.metadata.get("history") or [{}])[-1].get("seconds")
    record = {"steps": info.step,
              **({"seconds": round(seconds)} if seconds is not None else {})}
    return name, info.data, info.model, record


# --- evaluation ---------------------------------------------------------------------------

def generator(model, device: str, sample_steps: int | None):
    options = {} if sample_steps is None else {"steps": sample_steps}
    if isinstance(model, JointCodeModel):
        return JointSampler(model, device=device, **options)
    return ModelSampler(model, device=device, **options)


def evaluate_shapes(model, evaluator, tasks, per_expr: int, seed: int, device: str,
                    sample_steps: int | None) -> dict:
    generate = generator(model, device, sample_steps)
    joint = isinstance(model, JointCodeModel)
    out: dict = {}
    k = 0
    for group, items in tasks.items():
        if joint and group != "2":
            out[group] = None  # the joint code conditions on (shape, colour) pairs only
            continue
        seen, held, logic = [], [], {}
        read_seen, read_held = [], []
        for expr, held_out in items:
            labels = evaluator(generate(expr, per_expr, seed + k))
            s, read = score(expr, labels), proportion(truth(expr, labels))
            k += 1
            (held if held_out else seen).append(s.accuracy)
            (read_held if held_out else read_seen).append(read)
            if group == "logic":
                logic[s.expr] = {**cell(s.accuracy), "valid": s.valid.value,
                                 "read": read.value, "or proportions": s.mixture}
        out[group] = logic if group == "logic" else \
            {"seen": cell(pooled(seen)), "held out": cell(pooled(held)),
             "read seen": cell(pooled(read_seen)), "read held out": cell(pooled(read_held))}
    return out


def scene_queries(k: int, count: int, seed: int) -> list:
    """``count`` queries of ``k`` positions, each from one real scene with at least k objects."""
    data = ScenesDataset(8 * count, seed=seed, min_objects=k)
    queries = []
    for i in range(len(data)):
        if len(queries) == count:
            break
        points = [tuple(round(float(v), 3) for v in data.centres[i, j]) for j in range(k)]
        terms = [Concept("at", args=p) for p in points]
        queries.append(terms[0] if k == 1 else And(*terms))
    return queries


def evaluate_scenes(model, budget: dict, seed: int, device: str,
                    sample_steps: int | None) -> dict:
    generate, evaluator = generator(model, device, sample_steps), ScenesEvaluator()
    loose = ScenesEvaluator(clean_only=False)
    out = {"evaluator real accuracy": evaluator.real_accuracy()}
    for k in (1, 2, 3):
        hits, valid, read = [], [], []
        for j, expr in enumerate(scene_queries(k, budget["scene_queries"], seed + 1000 * k)):
            x = generate(expr, budget["scene_n"], seed + 1000 * k + j)
            s = score(expr, evaluator(x))
            hits.append(s.accuracy)
            valid.append(s.valid)
            read.append(proportion(truth(expr, loose(x))))
        out[f"k={k}"] = {**cell(pooled(hits)), "valid": pooled(valid).value,
                         "read": cell(pooled(read))}
    return out


def evaluator_check(budget: dict, seed: int, device: str) -> dict:
    """Why evaluators train on every pair: the same classifier trained on the generators'
    training split reads held-out pairs wrongly."""
    out = {}
    for split in ("all", "train"):
        net = train_factor_classifiers(steps=budget["classifier_steps"],
                                       n=budget["classifier_n"], seed=seed, split=split,
                                       device=device)
        out[f"trained on split {split!r}"] = net.report
    return out


# --- report -------------------------------------------------------------------------------

def fmt(c: dict | None) -> str:
    if c is None:
        return "n/a"
    return f"{100 * c['accuracy']:.1f} ± {100 * c['stderr']:.1f}"


def markdown(payload: dict) -> str:
    lines = [f"# Composition benchmark ({payload['mode']})", "",
             f"Accuracy in % ± standard error; a sample is correct when the exact decoder reads "
             f"one clean object (a valid scene) and the whole expression holds; the *read* "
             f"rows count a sample when the decoder's reading of its largest object satisfies "
             f"the expression, clean or not (a looser figure, not the protocol's). "
             f"{payload['budget']['per_expr']} samples per expression.", ""]
    shapes = payload.get("shapes", {})
    if shapes:
        lines += ["## shapes: seen vs held-out (shape, colour) pairs", "",
                  "| arm | 1 component | 2 seen | 2 held out | 3 seen | 3 held out | training |",
                  "|---|---|---|---|---|---|---|"]
        for arm, r in shapes.items():
            two, three = r["2"] or {}, r["3"] or {}
            one = r["1"] or {}
            t = r.get("training", {})
            train = (f"{t.get('steps', '?')} steps, {t.get('seconds', '?')} s"
                     + (" (diverged)" if "diverged" in t else "")) if t else "loaded"
            lines.append(f"| {arm} | {fmt(one.get('seen'))} | {fmt(two.get('seen'))} | "
                         f"{fmt(two.get('held out'))} | {fmt(three.get('seen'))} | "
                         f"{fmt(three.get('held out'))} | {train} |")
            if any(g.get("read seen") for g in (one, two, three)):
                lines.append(f"| {arm}, read | {fmt(one.get('read seen'))} | "
                             f"{fmt(two.get('read seen'))} | {fmt(two.get('read held out'))} | "
                             f"{fmt(three.get('read seen'))} | "
                             f"{fmt(three.get('read held out'))} | |")
        n2 = next((r["2"]["seen"]["n"] for r in shapes.values() if r["2"]), None)
        lines += ["", f"(n: 1 component {11 * payload['budget']['per_expr']}, 2 seen {n2}, "
                      f"2 held out {n2 // 2 if n2 else None}, 3 seen / held out twice those.) "
                      f"The joint baseline conditions one network on the concatenated shape "
                      f"and colour codes, so it answers pairs only.", "",
                  "## shapes: AND / OR / NOT", "",
                  "| expression | " + " | ".join(shapes) + " |",
                  "|---|" + "---|" * len(shapes)]
        for e in LOGIC:
            e = str(parse(e))
            row = []
            for r in shapes.values():
                c = (r["logic"] or {}).get(e)
                row.append("n/a" if r["logic"] is None else
                           fmt(c) + (f" (read {100 * c['read']:.0f})" if c else ""))
            shown = e.replace("|", "\\|")  # a bare | would end the table cell
            lines.append(f"| `{shown}` | " + " | ".join(row) + " |")
    scenes = payload.get("scenes")
    if scenes:
        lines += ["", "## scenes: at(x1, y1) & … & at(xk, yk)", "",
                  "| k | accuracy | valid % | read | n |", "|---|---|---|---|---|"]
        for k in (1, 2, 3):
            c = scenes[f"k={k}"]
            lines.append(f"| {k} | {fmt(c)} | {100 * c['valid']:.1f} | {fmt(c.get('read'))} | "
                         f"{c['n']} |")
        lines += ["", "(read: an object within 0.1 of every point among all the objects the "
                      "decoder finds, clean or not, in any scene — looser than the protocol)"]
    check = payload.get("evaluator check")
    if check:
        lines += ["", "## evaluators on real held-out images", "",
                  f"Decoder: {100 * payload['evaluator']['decoder']['all']:.1f} % of real "
                  f"images read exactly.", "",
                  "| per-factor classifier trained on | all factors, all pairs | shape, "
                  "held-out pairs |", "|---|---|---|"]
        for name, rep in check.items():
            lines.append(f"| {name} | {100 * rep['all pairs']['all']:.1f} | "
                         f"{100 * rep['held-out pairs']['shape']:.1f} |")
        lines += ["", "A classifier trained on the generators' training split learns shape "
                      "entangled with colour (each colour is seen with two shapes only), so "
                      "evaluators are trained on real images of every pair."]
    lines += ["", f"Settings: {json.dumps(payload['settings'])}", ""]
    return "\n".join(lines)


def plot(payload: dict, path: Path) -> None:
    """Bars with standard errors: per arm, `shape & color` accuracy (solid) and read rate
    (hatched) on seen and held-out pairs; scenes accuracy and read rate for k = 1, 2, 3."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shapes, scenes = payload.get("shapes") or {}, payload.get("scenes")
    ratios = {"width_ratios": [2, 1]} if scenes else None
    fig, axes = plt.subplots(1, 2 if scenes else 1, figsize=(11 if scenes else 7, 3.8),
                             squeeze=False, gridspec_kw=ratios)
    ax = axes[0][0]
    bars = [("seen", "seen, accuracy", ""), ("held out", "held out, accuracy", ""),
            ("read seen", "seen, read", "//"), ("read held out", "held out, read", "//")]
    colours = ["tab:blue", "tab:red", "tab:blue", "tab:red"]
    width = 0.8 / len(bars)
    for j, ((key, label, hatch), colour) in enumerate(zip(bars, colours)):
        cells = [(r["2"] or {}).get(key) or {} for r in shapes.values()]
        ax.bar([i + (j - 1.5) * width for i in range(len(shapes))],
               [100 * c.get("accuracy", 0) for c in cells], width,
               yerr=[100 * c.get("stderr", 0) for c in cells], capsize=2, label=label,
               color=colour if not hatch else "white", edgecolor=colour, hatch=hatch)
    ax.set_xticks(range(len(shapes)), [a.replace(" + ", "\n+ ") for a in shapes], fontsize=8)
    ax.axhline(90, color="grey", lw=0.8, ls=":")
    ax.set_ylim(0, 100)
    ax.set_ylabel("% of samples (exact decoder)")
    ax.set_title("shapes: `shape & color`, seen vs held-out pairs", fontsize=9)
    ax.legend(fontsize=7)
    if scenes:
        ax = axes[0][1]
        ks = (1, 2, 3)
        for j, (key, hatch) in enumerate((("accuracy", ""), ("read", "//"))):
            cells = [scenes[f"k={k}"] if key == "accuracy" else scenes[f"k={k}"].get("read") or {}
                     for k in ks]
            ax.bar([k + (j - 0.5) * 0.35 for k in ks], [100 * c.get("accuracy", 0) for c in cells],
                   0.35, yerr=[100 * c.get("stderr", 0) for c in cells], capsize=2,
                   label=key, color="tab:green" if not hatch else "white",
                   edgecolor="tab:green", hatch=hatch)
        ax.set_xticks(ks, [f"k = {k}" for k in ks])
        ax.set_ylim(0, 100)
        ax.set_title("scenes: at(x1, y1) & … & at(xk, yk)", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny CPU budgets (smoke run)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", nargs="+", default=None, metavar="DIR",
                        help="evaluate these trained models instead of training")
    parser.add_argument("--arms", default="linear,film,classifier,joint,scenes",
                        help="arms to train (comma-separated)")
    parser.add_argument("--steps", type=int, default=None, help="training steps per arm")
    parser.add_argument("--train-n", type=int, default=None, help="training images")
    parser.add_argument("--width", type=int, default=None, help="conv trunk width")
    parser.add_argument("--per-expr", type=int, default=None, help="samples per expression")
    parser.add_argument("--scene-queries", type=int, default=None)
    parser.add_argument("--sample-steps", type=int, default=None,
                        help="sampler steps (default: each model's own)")
    parser.add_argument("--no-check", action="store_true",
                        help="skip the evaluator-classifier check")
    parser.add_argument("--save-models", default=None, metavar="DIR")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    parser.add_argument("--out-dir", default=str(RESULTS))
    args = parser.parse_args(argv)
    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    mode = "quick" if args.quick else "full"
    budget = dict(BUDGETS[mode])
    for key in ("steps", "train_n", "width", "per_expr", "scene_queries"):
        if getattr(args, key) is not None:
            budget[key] = getattr(args, key)
    if args.steps is not None:
        budget["scene_steps"] = args.steps
    save_dir = Path(args.save_models) if args.save_models else None
    started = time.perf_counter()

    models: dict[str, tuple[str, object, dict | None]] = {}
    if args.models:
        for path in args.models:
            name, data, model, record = loaded_arm(path, args.device)
            while name in models:
                name += "'"
            models[name] = (data, model, record)
            print(f"loaded {path} as {name}", flush=True)
    else:
        for kind in [a.strip() for a in args.arms.split(",") if a.strip()]:
            print(f"training {kind} ...", flush=True)
            model, record = train_arm(kind, budget, args.seed, args.device, save_dir)
            models[kind] = ("scenes" if kind == "scenes" else "shapes", model, record)
            print(f"  {record}", flush=True)

    order = {name: i for i, name in enumerate(
        (*HEAD_KINDS, "classifier + views(shape=colour-blind, size=colour-blind)", "joint",
         "scenes"))}
    models = dict(sorted(models.items(), key=lambda kv: order.get(kv[0].rstrip("'"), 99)))
    payload: dict = {"mode": f"{mode}, given models" if args.models else mode, "budget": budget,
                     "settings": {"device": args.device, "seed": args.seed,
                                  "sample steps": args.sample_steps or "model default",
                                  "threads": torch.get_num_threads(),
                                  "torch": torch.__version__,
                                  "python": platform.python_version()},
                     "evaluator": {"decoder": DecoderEvaluator(seed=args.seed).real_accuracy()}}
    tasks = shapes_tasks(DEFAULT_HOLDOUT)
    shapes = {}
    for name, (data, model, record) in models.items():
        if data != "shapes":
            continue
        print(f"evaluating {name} on shapes ...", flush=True)
        result = evaluate_shapes(model, DecoderEvaluator(), tasks, budget["per_expr"],
                                 args.seed, args.device, args.sample_steps)
        shapes[name] = {"training": record, **result}
    payload["shapes"] = shapes
    for name, (data, model, record) in models.items():
        if data == "scenes":
            print(f"evaluating {name} on scenes ...", flush=True)
            payload["scenes"] = {"training": record,
                                 **evaluate_scenes(model, budget, args.seed, args.device,
                                                   args.sample_steps)}
            break
    if not args.no_check:
        print("evaluator check (classifiers on all pairs vs the training split) ...", flush=True)
        payload["evaluator check"] = evaluator_check(budget, args.seed, args.device)
    payload["seconds"] = round(time.perf_counter() - started, 1)

    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(payload)
    (out / "composition.json").write_text(json.dumps(json_safe(payload), indent=2))
    (out / "composition.md").write_text(text)
    if payload["shapes"] or payload.get("scenes"):
        plot(payload, out / "composition.png")
    print(text)
    print(f"wrote {out / 'composition.json'}, {out / 'composition.md'} and .png "
          f"({payload['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
