"""Train the joint-code baseline (:mod:`conceptalg.evaluation.baseline`) on its own, for long
runs: the same CD trainer and image recipe as ``conceptalg train --data shapes``, one network
conditioned on the concatenated shape and colour codes, with a snapshot every
``--snapshot-every`` steps (``OUT/step-NNNNNN/``, each readable by ``bench/composition.py
--models`` and ``bench/training.py --curve``).

    python bench/train_joint.py --out runs/arm-joint --steps 20000 --snapshot-every 500

The baseline is a benchmark artefact, not a conceptalg checkpoint: there is no exact resume
(``--resume`` starts a new trainer from the newest snapshot's weights, with fresh replay
buffers and optimiser state). SIGTERM or Ctrl-C writes a last snapshot and exits 130.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from conceptalg.evaluation.baseline import (joint_data, joint_model, load_joint,  # noqa: E402
                                            save_joint)
from conceptalg.training import Trainer, default_train_config  # noqa: E402


def newest_snapshot(out: Path) -> Path | None:
    snaps = sorted(out.glob("step-*"))
    return snaps[-1] if snaps else None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="run directory")
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--snapshot-every", type=int, default=500)
    parser.add_argument("--n", type=int, default=20_000, help="training images")
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--resume", action="store_true",
                        help="start from the newest snapshot's weights (not an exact resume)")
    args = parser.parse_args(argv)

    data = joint_data(args.n, seed=args.seed)
    start = 0
    snapshot = newest_snapshot(args.out) if args.resume else None
    if snapshot is not None:
        model = load_joint(snapshot, args.device).train()
        start = int(snapshot.name.split("-")[1])
        print(f"starting from {snapshot} (weights only)", file=sys.stderr)
    else:
        model = joint_model({"width": args.width}, seed=args.seed, init_bank=256)
    config = default_train_config(data.sample_shape, steps=args.steps - start, seed=args.seed,
                                  log_every=math.gcd(50, args.snapshot_every))
    trainer = Trainer(data, model=model, config=config, device=args.device)
    args.out.mkdir(parents=True, exist_ok=True)

    def snap(tr, metrics) -> None:
        step = start + tr.step
        with (args.out / "metrics.csv").open("a") as f:
            f.write(f"{step},{metrics['seconds']:.1f},{metrics['E+']:.5g},{metrics['E-']:.5g}\n")
        if tr.step % args.snapshot_every == 0:
            tr._refresh_init_bank()
            save_joint(tr.model, args.out / f"step-{step:06d}")

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        trainer.fit(progress=False, callback=snap)
    except KeyboardInterrupt:
        trainer._refresh_init_bank()
        save_joint(trainer.model, args.out / f"step-{start + trainer.step:06d}")
        print(f"interrupted at step {start + trainer.step}: saved", file=sys.stderr)
        return 130
    save_joint(trainer.model, args.out / f"step-{start + trainer.step:06d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
