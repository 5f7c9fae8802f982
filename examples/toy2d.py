"""Exact composed densities next to MALA samples on the toy2d benchmark.

For AND, OR, NOT and one nested expression this draws the exact density (numpy, independent of
the compiler) above a 2-D histogram of MALA samples of ``conceptalg.compose(expr, library)``,
and prints a permutation MMD test of the samples against exact draws.

    python examples/toy2d.py --out toy2d.png
"""

from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import conceptalg  # noqa: E402
from conceptalg.data import toy2d  # noqa: E402
from conceptalg.evaluation.two_sample import mmd_test  # noqa: E402

EXPRESSIONS = {
    "AND": "ring & top",
    "OR": "ring | center",
    "NOT": "ring & ~top",
    "nested": "(left | top) & ~center",
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="toy2d.png", help="output PNG (default: toy2d.png)")
    parser.add_argument("--n", type=int, default=2000, help="chains = samples per expression")
    parser.add_argument("--steps", type=int, default=600, help="MALA steps (half are warm-up)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    library = toy2d.library()
    lo, hi = toy2d.BOUNDS
    fig, axes = plt.subplots(2, len(EXPRESSIONS), figsize=(3.2 * len(EXPRESSIONS), 6.6),
                             sharex=True, sharey=True)
    for col, (label, text) in enumerate(EXPRESSIONS.items()):
        grid = toy2d.exact_density_grid(text, resolution=200)
        axes[0, col].imshow(grid.density, origin="lower", extent=(lo, hi, lo, hi), cmap="magma")
        axes[0, col].set_title(f"{label}: {text}\nexact density", fontsize=9)

        energy = conceptalg.compose(text, library)
        samples = conceptalg.sample(energy, args.n, shape=(2,), sampler="mala", steps=args.steps,
                                    warmup=args.steps // 2, bounds=toy2d.BOUNDS, seed=args.seed)
        samples = samples.detach().cpu().numpy()
        test = mmd_test(samples, toy2d.exact_samples(text, args.n, seed=args.seed + 1))
        print(f"{text:28s} {test}")
        axes[1, col].hist2d(samples[:, 0], samples[:, 1], bins=40, range=[(lo, hi), (lo, hi)],
                            cmap="magma")
        axes[1, col].set_title(f"MALA, {args.n} chains × {args.steps} steps\n"
                               f"MMD p = {test.p_value:.2f}", fontsize=9)
    for ax in axes.flat:
        ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
