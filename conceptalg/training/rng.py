"""The states of every random number generator a training run draws from, as tensors.

Torch's global CPU (and CUDA) RNG, Python's ``random``, numpy's global RNG and an optional
``torch.Generator`` are captured as plain tensors (uint8 for torch, int64/float64 for the
Mersenne Twisters) that checkpoints store in safetensors: an exact resume needs them, and
nothing is pickled.
"""

from __future__ import annotations

import random

import torch

from ..errors import CheckpointError

__all__ = ["rng_state_tensors", "restore_rng_state"]


def rng_state_tensors(generator: torch.Generator | None = None, *,
                      prefix: str = "rng.") -> dict[str, torch.Tensor]:
    """The states of torch's global CPU (and CUDA) RNG, Python's ``random``, numpy's global
    RNG and ``generator`` as tensors (uint8 for torch, int64/float64 for the Mersenne
    Twisters), ready to pass in ``save_checkpoint(tensors=...)``; no pickling involved.

    Example:
        >>> state = rng_state_tensors()
        >>> a = torch.rand(3)
        >>> restore_rng_state(state)
        >>> torch.equal(torch.rand(3), a)
        True
    """
    version, words, gauss = random.getstate()
    out = {
        f"{prefix}torch": torch.get_rng_state(),
        f"{prefix}python": torch.tensor([version, *words], dtype=torch.int64),
        f"{prefix}python_gauss": torch.tensor([gauss is not None, gauss or 0.0],
                                              dtype=torch.float64),
    }
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            out[f"{prefix}cuda.{i}"] = state
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is a dependency
        np = None
    if np is not None:
        kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
        out[f"{prefix}numpy"] = torch.from_numpy(keys.astype(np.int64))
        out[f"{prefix}numpy_pos"] = torch.tensor([pos, has_gauss], dtype=torch.int64)
        out[f"{prefix}numpy_gauss"] = torch.tensor([cached], dtype=torch.float64)
    if generator is not None:
        out[f"{prefix}generator"] = generator.get_state()
    return {k: v.clone() for k, v in out.items()}


def restore_rng_state(tensors: dict[str, torch.Tensor], generator: torch.Generator | None = None,
                      *, prefix: str = "rng.") -> None:
    """Restore what :func:`rng_state_tensors` captured (other keys in ``tensors`` are ignored,
    so a checkpoint's whole ``tensors`` dict can be passed). CUDA states are restored for the
    devices present in both; on a machine without CUDA they are skipped.

    Example:
        >>> from conceptalg.training.checkpoint import load_checkpoint
        >>> restore_rng_state(load_checkpoint("runs/toy").tensors)  # doctest: +SKIP
    """
    def get(name: str) -> torch.Tensor:
        try:
            return tensors[prefix + name].cpu()
        except KeyError:
            raise CheckpointError(f"no {prefix + name!r} tensor among the given tensors; they were "
                                  f"not made by rng_state_tensors(prefix={prefix!r})") from None

    torch.set_rng_state(get("torch").to(torch.uint8))
    python, gauss = get("python").tolist(), get("python_gauss").tolist()
    random.setstate((python[0], tuple(python[1:]), gauss[1] if gauss[0] else None))
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            if f"{prefix}cuda.{i}" in tensors:
                torch.cuda.set_rng_state(tensors[f"{prefix}cuda.{i}"].cpu(), i)
    if f"{prefix}numpy" in tensors:
        import numpy as np

        pos, has_gauss = get("numpy_pos").tolist()
        np.random.set_state(("MT19937", get("numpy").numpy().astype(np.uint32), pos, has_gauss,
                             float(get("numpy_gauss")[0])))
    if generator is not None:
        generator.set_state(get("generator").to(torch.uint8))
