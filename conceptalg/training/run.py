"""One training lifecycle for every objective: joining a process group, the loop with its
progress and logs, and checkpoints that gather every rank's state (docs/design.md §6).

A :class:`TrainingRun` owns what the objectives share — ``fit`` (progress, the log every
``config.log_every`` steps, wall and CPU seconds across resumes, the callback), ``save`` (each
rank's own state gathered to rank 0, which writes; the others wait at a barrier) and the
rank of this process. An objective (contrastive divergence, :class:`~.cd.Trainer`; denoising
score matching, :class:`~.dsm.DSMTrainer`) owns a batch, a loss with its logged parts
(``train_step``), its state tensors and its metadata:

- ``train_step() -> dict``: one iteration, its metrics as floats (including ``"step"``);
- ``rank_state() -> dict[str, Tensor]``: what differs between ranks (generators, replay
  buffers), saved for rank 0 under its own names and for rank ``r`` under ``rank.<r>.``;
- ``shared_state() -> dict[str, Tensor]``: tensors every rank holds alike, beyond the model and
  the optimiser (online weights beside an average, say);
- ``metadata() -> dict``: the JSON a checkpoint records;
- ``averaged_logs``: whether a log line holds the means since the last one (else the step's).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor

from .. import distributed as _dist

__all__ = ["TrainingRun"]


class TrainingRun:
    """The lifecycle of a training run (module docstring); subclasses are the objectives.

    Example:
        >>> from conceptalg.training import DSMTrainer, Trainer
        >>> issubclass(DSMTrainer, TrainingRun) and issubclass(Trainer, TrainingRun)
        True
    """

    #: the run's name in progress output
    progress_name = "training"
    #: log lines hold the means since the last one (True) or the logged step's metrics
    averaged_logs = False
    dist: _dist.Distributed | None
    device: torch.device
    step: int
    history: list[dict[str, float]]

    # --- the process group -------------------------------------------------------------------
    def _join(self, distributed: bool | None, device) -> None:
        """Set ``dist`` and ``device``: ``None`` joins an initialised process group, if any;
        ``False`` trains alone regardless; ``True`` requires one."""
        self.dist = None if distributed is False else _dist.current(device)
        if distributed and self.dist is None:
            raise ValueError("distributed=True needs an initialised process group: start the "
                             "processes with torchrun and call "
                             "conceptalg.training.distributed.from_environment() first")
        self.device = self.dist.device if self.dist else torch.device(device or "cpu")

    @property
    def rank(self) -> int:
        """This process's rank (0 when training alone)."""
        return self.dist.rank if self.dist else 0

    @property
    def world_size(self) -> int:
        """The number of processes training together (1 when training alone)."""
        return self.dist.world_size if self.dist else 1

    @property
    def is_main(self) -> bool:
        """Whether this process logs and writes files (rank 0)."""
        return self.rank == 0

    # --- the objective's part ----------------------------------------------------------------
    def train_step(self) -> dict[str, float]:  # pragma: no cover - every objective has one
        raise NotImplementedError

    def rank_state(self) -> dict[str, Tensor]:  # pragma: no cover
        raise NotImplementedError

    def shared_state(self) -> dict[str, Tensor]:
        return {}

    def metadata(self) -> dict[str, Any]:  # pragma: no cover
        raise NotImplementedError

    def _postfix(self, metrics: dict[str, float]) -> dict[str, str]:
        return {"loss": f"{metrics['loss']:.3g}"}

    def _before_save(self) -> None:
        """Bring derived state up to date before a checkpoint (the objective's hook)."""

    def _after_fit(self) -> None:
        """After ``fit``'s last step (the objective's hook)."""

    # --- the loop ----------------------------------------------------------------------------
    def fit(self, steps: int | None = None, *, progress: bool = False,
            callback: Callable[[Any, dict], None] | None = None) -> list[dict]:
        """Run ``steps`` iterations (default: up to ``config.steps``); returns the history of
        logged metrics, each with ``seconds`` and ``cpu seconds`` of training since the run
        began (across resumes). In a multi-process run every rank calls ``fit`` and
        ``callback`` (rank 0 alone shows progress; a callback that saves must save on every
        rank, see :meth:`save`). The objective raises its own divergence error."""
        cfg = self.config  # type: ignore[attr-defined]
        total = cfg.steps - self.step if steps is None else int(steps)
        bar = None
        if progress and self.is_main:
            from ..progress import progress_bar
            bar = progress_bar(total, self.progress_name)  # plain lines when not on a terminal
        last = self.history[-1] if self.history else {}
        start = time.perf_counter() - last.get("seconds", 0.0)
        cpu_start = time.process_time() - last.get("cpu seconds", 0.0)
        sums: dict[str, float] = {}
        count = 0
        try:
            for _ in range(total):
                metrics = self.train_step()
                if self.averaged_logs:
                    count += 1
                    for key in metrics.keys() - {"step", "grad norm"}:
                        sums[key] = sums.get(key, 0.0) + metrics[key]
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    if self.averaged_logs:  # the means since the last log
                        metrics.update({k: v / count for k, v in sums.items()})
                        sums.clear()
                        count = 0
                    metrics["seconds"] = time.perf_counter() - start
                    metrics["cpu seconds"] = time.process_time() - cpu_start
                    self.history.append(metrics)
                    if callback is not None:
                        callback(self, metrics)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(self._postfix(metrics), refresh=False)
        finally:
            if bar is not None:
                bar.close()
        self._after_fit()
        return self.history

    # --- checkpoints -------------------------------------------------------------------------
    def save(self, run_dir, *, keep: int | None = 3):
        """Write a checkpoint of everything an exact resume needs (the model, the optimiser,
        every rank's state and every RNG state); returns its directory. In a multi-process run
        every rank must call it: the ranks' states are gathered to rank 0 (rank 0's under the
        single-process names, rank ``r``'s under ``rank.<r>.``), rank 0 writes, the others
        wait at a barrier."""
        from .checkpoint import rng_state_tensors, save_checkpoint

        self._before_save()
        ranks: list[dict[str, Tensor]] | None = [self.rank_state()]
        if self.dist is not None:
            with _dist.guard(self.dist, f"gathering every rank's state for the checkpoint of "
                                        f"step {self.step}"):
                ranks = _dist.gather_to_main(ranks[0], self.dist)
        path = Path(run_dir) / f"ckpt-{self.step:06d}"
        if ranks is not None:
            tensors = {**self.shared_state(), **ranks[0], **rng_state_tensors()}
            for r, state in enumerate(ranks[1:], start=1):
                tensors.update({f"rank.{r}.{k}": v for k, v in state.items()})
            path = save_checkpoint(run_dir, self.step, model=self.model,  # type: ignore
                                   optimizer=self.optimizer,  # type: ignore[attr-defined]
                                   tensors=tensors, metadata=self.metadata(), keep=keep)
        if self.dist is not None:
            with _dist.guard(self.dist, f"waiting for rank 0 to write the checkpoint of step "
                                        f"{self.step}"):
                _dist.dist.barrier()
        return path

    @staticmethod
    def saved_ranks(tensors: dict[str, Tensor], saved_world: int) -> list[dict[str, Tensor]]:
        """Each saved rank's own state (see :meth:`save`), indexed by rank."""
        ranks = [{k: v for k, v in tensors.items() if not k.startswith(("rank.", "rng."))}]
        for r in range(1, saved_world):
            prefix = f"rank.{r}."
            ranks.append({k[len(prefix):]: v for k, v in tensors.items()
                          if k.startswith(prefix)})
        return ranks
