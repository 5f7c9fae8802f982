"""The run directory on disk: checkpoint names, the ``latest`` pointer, atomic writes.

::

    run_dir/
      latest                  {"checkpoint": "ckpt-000200", "step": 200}
      ckpt-000100/
      ckpt-000200/            config.json, model.safetensors, optimizer.safetensors,
                              state.safetensors (:mod:`.checkpoint` writes and reads them)

Durability: a checkpoint is written as ``.tmp-ckpt-000200-<pid>``, every file and the directory
fsync'd, then renamed into place; only then is ``latest`` replaced (a temporary file, fsync,
``os.replace``). So a ``kill -9`` at any moment leaves ``latest`` absent or naming a complete
checkpoint. The next save removes what a dead writer left behind (:func:`remove_leftovers`).
One writer per run directory.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from ..errors import CheckpointError

__all__ = ["list_checkpoints", "latest_checkpoint", "resolve_checkpoint", "write_directory",
           "write_latest", "fsync_directory", "remove_leftovers", "prune", "earlier_hint",
           "LATEST", "CONFIG_FILE", "MODEL_FILE", "OPTIMIZER_FILE", "STATE_FILE"]

LATEST = "latest"
CONFIG_FILE = "config.json"
MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "state.safetensors"

_CHECKPOINT_NAME = re.compile(r"ckpt-(\d+)$")
_LEFTOVER_NAME = re.compile(r"\.(?:tmp|old)-.*-(\d+)$")  # ends with the writer's pid


# --- writing atomically ---------------------------------------------------------------------

def write_directory(path: Path, files: dict[str, bytes]) -> Path:
    """Create ``path`` (replacing a leftover of the same name) holding ``files``, every file
    and the directory fsync'd; returns ``path``."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir()
    for name, data in files.items():
        write_file(path / name, data)
    fsync_directory(path)
    return path


def write_file(path: Path, data: bytes) -> None:
    """Write a new file and fsync it (``x`` mode: never over an existing file)."""
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def fsync_directory(path: Path) -> None:
    """Make renames and new entries in ``path`` durable (a no-op on Windows)."""
    if os.name == "nt":  # Windows cannot open a directory to fsync it
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_latest(run_dir: Path, name: str, step: int) -> None:
    """Point ``run_dir/latest`` at ``name`` atomically (temporary file, fsync, replace)."""
    temp = run_dir / f".tmp-latest-{os.getpid()}"
    temp.unlink(missing_ok=True)
    write_file(temp, (json.dumps({"checkpoint": name, "step": step}) + "\n").encode())
    os.replace(temp, run_dir / LATEST)
    fsync_directory(run_dir)


def _latest_name(run_dir: Path) -> str | None:
    """The directory ``latest`` names, or None when it is absent or unreadable."""
    try:
        return _parse_latest(run_dir / LATEST)
    except (OSError, CheckpointError):
        return None


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # our own leftovers: a save of this process that failed part-way
    if os.name == "nt":  # os.kill would terminate it; keep the leftover
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_leftovers(run_dir: Path) -> None:
    """Remove temporary files and directories of dead writers, except what ``latest`` names."""
    protected = _latest_name(run_dir)
    for entry in run_dir.iterdir():
        match = _LEFTOVER_NAME.match(entry.name)
        if match is None or entry.name == protected or _process_alive(int(match[1])):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def prune(run_dir: Path, keep: int) -> None:
    """Delete the oldest checkpoints beyond ``keep``, never the one ``latest`` names."""
    protected = _latest_name(run_dir)
    checkpoints = list_checkpoints(run_dir)
    doomed = [p for p in checkpoints if p.name != protected]  # oldest step first
    for path in doomed[:max(0, len(checkpoints) - keep)]:
        # Rename first so a kill mid-delete never leaves a half-deleted ckpt-* directory.
        old = run_dir / f".old-{path.name}-{os.getpid()}"
        os.rename(path, old)
        shutil.rmtree(old, ignore_errors=True)


# --- finding checkpoints -----------------------------------------------------------------

def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """The ``ckpt-<step>`` directories of a run directory, oldest step first.

    Example:
        >>> [p.name for p in list_checkpoints("runs/toy")]  # doctest: +SKIP
        ['ckpt-000100', 'ckpt-000200']
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [(int(m[1]), p) for p in run_dir.iterdir()
             if (m := _CHECKPOINT_NAME.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The checkpoint directory ``run_dir/latest`` names, or None if there is no ``latest``
    yet (a fresh run); raises :class:`CheckpointError` if it names a missing directory.

    Example:
        >>> resume = latest_checkpoint("runs/toy")  # doctest: +SKIP
    """
    run_dir = Path(run_dir)
    if not (run_dir / LATEST).exists():
        return None
    return _follow_latest(run_dir)


def _parse_latest(pointer: Path) -> str:
    try:
        data = json.loads(pointer.read_text(encoding="utf-8"))
        name = data["checkpoint"]
    except FileNotFoundError:
        raise
    except (ValueError, KeyError, TypeError, RecursionError, OSError) as e:
        raise CheckpointError(
            f"{pointer}: not a valid 'latest' pointer ({type(e).__name__}: {e}); it should hold "
            f'{{"checkpoint": "ckpt-NNNNNN"}}. Rewrite it, or load a checkpoint directory '
            f"directly") from None
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name \
            or "\\" in name:
        raise CheckpointError(f"{pointer}: names {name!r}, which is not a directory name in the "
                              f"run directory. Rewrite it, or load a checkpoint directory directly")
    return name


def _follow_latest(run_dir: Path) -> Path:
    pointer = run_dir / LATEST
    target = run_dir / _parse_latest(pointer)
    if not target.is_dir():
        raise CheckpointError(f"{pointer}: names {target.name}, but {target} is missing. "
                              f"{earlier_hint(run_dir)}")
    return target


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint directory from a checkpoint directory or a run directory (following its
    ``latest``); raises :class:`CheckpointError` saying what the path is and what to pass."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint or run directory; check the path (a run "
                              f"directory holds 'latest' and ckpt-NNNNNN/ directories)")
    if not path.is_dir():
        raise CheckpointError(f"{path}: is a file; pass the run directory or a checkpoint "
                              f"directory (ckpt-NNNNNN/), not a file inside it")
    if (path / LATEST).exists():
        return _follow_latest(path)
    checkpoints = list_checkpoints(path)
    if checkpoints:
        # Without the pointer we cannot tell which checkpoint the run meant to publish, so we
        # refuse rather than guess; the newest one is named so the user can choose it.
        raise CheckpointError(
            f"{path / LATEST}: missing; the run directory holds {len(checkpoints)} "
            f"checkpoint(s) but no 'latest' pointer (it was deleted, or the first save was "
            f"interrupted before publishing it). Load one explicitly, e.g. "
            f"conceptalg.load({str(checkpoints[-1])!r})")
    if (path / CONFIG_FILE).exists() or _CHECKPOINT_NAME.match(path.name) \
            or any(path.glob("*.safetensors")):
        return path  # a checkpoint directory (a missing config.json is reported by the reader)
    raise CheckpointError(f"{path / LATEST}: missing; {path} is neither a run directory (no "
                          f"'latest', no ckpt-NNNNNN/) nor a checkpoint (no {CONFIG_FILE}). "
                          f"Train first, or pass the directory training wrote to")


def earlier_hint(checkpoint_or_run: Path) -> str:
    """What to do about a damaged checkpoint: the run's other checkpoints, or a re-run."""
    run_dir = checkpoint_or_run if (checkpoint_or_run / LATEST).exists() \
        else checkpoint_or_run.parent
    others = [p.name for p in list_checkpoints(run_dir) if p != checkpoint_or_run]
    if others:
        return (f"Load another checkpoint of this run ({', '.join(others[-3:])}), or re-run "
                f"training with --resume from an earlier checkpoint")
    return "Restore the file from a backup, or re-run training to recreate the checkpoint"

