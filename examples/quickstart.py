"""The main job: the whole product on one page, in a few minutes on 2 CPU cores.

1. Parse and explain concept expressions.
2. Train one noise-conditioned energy per toy2d concept by denoising score matching (under a
   minute; no chain in the training loop).
3. Compose AND / OR / NOT / nested expressions over the trained energies at the data level,
   sample them with MALA, and compare with the exact composition of the true concepts (an MMD
   two-sample test, MMD² and p printed). An OR mixes its disjuncts by their partition
   functions, which a trained energy does not know: ``calibrate`` estimates them from data.
4. Load the shipped image model (``models/shapes``), sample shapes expressions — including
   (shape, colour) pairs never seen in training, an OR (a score-only model samples it as a
   mixture: a disjunct per chain) and a negation that counts only at the coarse noise levels
   (``negation_sigmas``) — and label the samples with the exact decoder.
5. Load the shipped scenes model (``models/scenes``): objects at requested points
   (``at(x, y)``) and objects with properties at points (bindings, ``at(x, y)[red & circle]``,
   a held-out pair among them), labelled by the exact scenes decoder.

Writes ``quickstart.png`` (and ``quickstart-shapes.png``, ``quickstart-scenes.png``) into
``--out`` (default ``out/``).

    python examples/quickstart.py
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import conceptalg
from conceptalg.data import toy2d
from conceptalg.evaluation.two_sample import mmd_test

ROOT = Path(__file__).resolve().parents[1]
EXPRESSIONS = ["ring & top", "ring | center", "ring & ~top", "(left | top) & ~center"]
#: the toy2d recipe: denoising score matching of energies (noise levels for 2-D densities)
TOY_STEPS = 4500
TOY_CONFIG = dict(log_every=250)
SHAPES_EXPRESSIONS = ["red & square", "blue & circle", "red & circle", "green & square",
                      "red | blue", "circle & ~red", "large & triangle"]
#: guidance's negated terms as measured on the NOT expressions of seen pairs
#: (bench/truth_table.py); passed to compose until models/shapes records them in its
#: composition defaults (then the model's own values are used)
NEGATION = {"negation_scale": 1.5, "negation_sigmas": (2.0, None)}
#: objects at points, then objects with properties at points (bindings); a red circle is a
#: (shape, colour) pair that no training scene holds
SCENES_EXPRESSIONS = ["at(0.3, 0.3) & at(0.7, 0.65)",
                      "at(0.3, 0.3)[red & square] & at(0.7, 0.7)[blue & circle]",
                      "at(0.3, 0.7)[red & circle]",
                      "at(0.25, 0.3)[green & triangle] & at(0.7, 0.3)[yellow] & "
                      "at(0.5, 0.75)[~red]"]


def section(title: str) -> None:
    print(f"\n== {title} " + "=" * max(0, 70 - len(title)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out", help="output folder (default: out/)")
    parser.add_argument("--steps", type=int, default=TOY_STEPS, help="toy2d training iterations")
    parser.add_argument("--chains", type=int, default=2000, help="samples per expression")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    start = time.perf_counter()

    section("1. the language")
    for text in ["smiling & ~male | glasses", "2*~red & circle", "at(0.3, 0.7) & at(0.8, 0.2)"]:
        expr = conceptalg.parse(text)
        print(f"{text!r:34} -> {expr!s:30} {expr!r}"[:150])
    print(conceptalg.compose("(left | top) & ~center", toy2d.library()).explain())

    section("2. train one noise-conditioned energy per toy2d concept (denoising score matching)")
    from conceptalg.training import DSMTrainer, builtin_data, default_dsm_config

    data = builtin_data("toy2d", n=16_000)
    trainer = DSMTrainer(data, config=default_dsm_config((2,), steps=args.steps, **TOY_CONFIG))
    trainer.fit(progress=True)
    model = trainer.model
    last = trainer.history[-1]
    print(f"{len(model.head_names)} concepts and the base trained in {last['seconds']:.0f} s "
          f"({args.steps} steps); final denoising loss {last['loss']:.3f}")

    section("3. compose the learned energies at the data level and sample (MALA)")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lo, hi = toy2d.BOUNDS
    fig, axes = plt.subplots(2, len(EXPRESSIONS), figsize=(3.1 * len(EXPRESSIONS), 6.4),
                             sharex=True, sharey=True)
    print(f"{'expression':26} two-sample test of learned-head samples vs exact draws")
    for col, text in enumerate(EXPRESSIONS):
        grid = toy2d.exact_density_grid(text, resolution=200)
        axes[0, col].imshow(grid.density, origin="lower", extent=(lo, hi, lo, hi), cmap="magma")
        axes[0, col].set_title(f"{text}\nexact (true concepts)", fontsize=9)
        energy = conceptalg.compose(text, model)   # the model's default semantics: product
        if "|" in text:  # equal shares for the disjuncts, as the exact composition has
            weights = energy.calibrate(data.x[:8000])
            energy = conceptalg.compose(text, model, or_log_weights=weights)
        x = conceptalg.sample(energy, args.chains, seed=0)  # MALA at σ_min, in the box
        test = mmd_test(x.double(), torch.as_tensor(toy2d.exact_samples(text, args.chains,
                                                                         seed=1)))
        print(f"{text:26} MMD² = {test.statistic:.4f} (null 95 %: {test.threshold:.4f}), "
              f"p = {test.p_value:.3f}")
        x = x.numpy()
        axes[1, col].hist2d(x[:, 0], x[:, 1], bins=50, range=[(lo, hi), (lo, hi)], cmap="magma")
        axes[1, col].set_title(f"learned heads, MALA\nMMD² = {test.statistic:.3f}", fontsize=9)
    for ax in axes.flat:
        ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(out / "quickstart.png", dpi=110)
    plt.close(fig)
    print(f"wrote {out / 'quickstart.png'}")

    shipped = ROOT / "models" / "shapes"
    if (shipped / "latest").exists():
        shapes_part(shipped, out)
    else:
        print("\n(no shipped model in models/shapes: skipping the image part)")
    scenes = ROOT / "models" / "scenes"
    if (scenes / "latest").exists():
        scenes_part(scenes, out)
    print(f"\ndone in {time.perf_counter() - start:.0f} s")


def shapes_part(shipped: Path, out: Path, n: int = 32) -> None:
    """Sample shapes expressions from the shipped model and label them with the exact decoder:
    *correct* = one clean rendered object and the expression holds (docs/design.md §8); *read* = the
    decoder's reading of the largest object satisfies the expression, clean or not."""
    from conceptalg.evaluation.classifiers import DecoderEvaluator
    from conceptalg.evaluation.metrics import proportion, score, truth
    from conceptalg.evaluation.protocol import model_info
    from conceptalg.plots import save_expression_grid
    from conceptalg.sampling.mixture import is_mixture

    section("4. the shipped shapes model: compose learned concepts, including unseen pairs")
    info = model_info(shipped)
    print(f"{shipped} (step {info.step}); (shape, colour) pairs never seen in training: "
          + ", ".join(f"{s} {c}" for s, c in sorted(info.holdout or ())))
    evaluate = DecoderEvaluator()
    composition = info.model.config.composition
    negation = {k: v for k, v in NEGATION.items() if k not in composition}
    rows, notes = {}, {}
    for k, text in enumerate(SHAPES_EXPRESSIONS):
        energy = conceptalg.compose(text, info.model, **negation)
        mixture = is_mixture(energy)  # an OR of a score-only model: a disjunct per chain
        x = conceptalg.sample(energy, n, seed=k, return_info=mixture)
        x, drawn = x if mixture else (x, None)
        labels = evaluate(x)
        exact, read = score(text, labels).accuracy, proportion(truth(text, labels))
        unseen = " (unseen pair)" if _held_out(text, info.holdout) else ""
        rows[text] = x
        notes[text] = f"correct {100 * exact.value:.0f} %, read {100 * read.value:.0f} %{unseen}"
        if drawn is not None:
            notes[text] += "\nbranches " + ", ".join(
                f"{b} {c}" for b, c in zip(drawn["branches"], drawn["branch counts"]))
        elif "~" in text and energy.negation_sigmas is not None:
            notes[text] += (f"\nnegation x{energy.negation_scale:g} at σ ≥ "
                            f"{energy.negation_sigmas[0]:g}")
        print(f"{text:22} {notes[text]}  (n = {n}, exact decoder)".replace("\n", "; "))
    path = save_expression_grid(rows, out / "quickstart-shapes.png", notes=notes,
                                title=f"samples of the shipped model ({shipped.name}, step "
                                      f"{info.step})")
    print(f"wrote {path}")


def scenes_part(shipped: Path, out: Path, n: int = 16) -> None:
    """Objects at requested points from the shipped scenes model; *correct* = a valid scene of
    clean objects with an object within 0.1 of every point, of which every binding's properties
    hold (docs/design.md §8)."""
    from conceptalg.evaluation.classifiers import ScenesEvaluator
    from conceptalg.evaluation.metrics import score
    from conceptalg.plots import save_expression_grid

    section("5. the shipped scenes model: objects (with properties) at requested points")
    model = conceptalg.load(shipped)
    evaluate = ScenesEvaluator()
    rows, notes = {}, {}
    for k, text in enumerate(SCENES_EXPRESSIONS):
        x = conceptalg.sample(conceptalg.compose(text, model), n, seed=k)
        rows[text] = x
        notes[text] = f"correct {100 * score(text, evaluate(x)).accuracy.value:.0f} %"
        print(f"{text:46} {notes[text]}  (n = {n}, exact scenes decoder)")
    path = save_expression_grid(rows, out / "quickstart-scenes.png", notes=notes,
                                title=f"samples of the shipped scenes model ({shipped.name})")
    print(f"wrote {path}")


def _held_out(text: str, holdout) -> bool:
    """Whether the expression asks for a held-out pair (among its positive AND terms)."""
    from conceptalg.expr import And, Concept

    expr = conceptalg.parse(text)
    terms = expr.terms if isinstance(expr, And) else (expr,)
    names = {t.name for t in terms if isinstance(t, Concept)}
    return any({s, c} <= names for s, c in holdout or ())


if __name__ == "__main__":
    main()
