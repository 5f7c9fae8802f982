"""Durable checkpoints: what a checkpoint directory holds, and saving and loading it safely.

On disk (the run directory, its ``latest`` pointer and atomic writes: :mod:`.rundir`)::

    run_dir/
      latest                  {"checkpoint": "ckpt-000200", "step": 200}
      ckpt-000200/
        config.json           format and version, step, model config, the trainer's metadata,
                              the optimiser's non-tensor state, package versions, and the
                              SHA-256 and size of every other file (plus its own SHA-256)
        model.safetensors     the model's state dict
        optimizer.safetensors the optimiser's tensors (when an optimiser was given)
        state.safetensors     the trainer's extra tensors: replay buffers, RNG states
                              (:mod:`.rng`), EMA, ...

Safety: only safetensors and JSON are read; nothing is ever unpickled. Every file is checked
against the SHA-256 that config.json records, and config.json against the SHA-256 of its own
canonical form, so a missing, truncated or altered file raises :class:`CheckpointError` naming it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as _st_load
from safetensors.torch import save as _st_save

from .. import __version__
from ..errors import CheckpointError
from ..models.build import build_model
from ..models.model import ConceptModel, ModelConfig
from .rng import restore_rng_state, rng_state_tensors
from .rundir import (CONFIG_FILE, MODEL_FILE, OPTIMIZER_FILE, STATE_FILE, earlier_hint,
                     fsync_directory, latest_checkpoint, list_checkpoints, prune,
                     remove_leftovers, resolve_checkpoint, write_directory, write_latest)

__all__ = ["Checkpoint", "save_checkpoint", "load_checkpoint", "load", "list_checkpoints",
           "latest_checkpoint", "rng_state_tensors", "restore_rng_state", "FORMAT", "VERSION"]

FORMAT = "conceptalg-checkpoint"
VERSION = 1


# --- saving -------------------------------------------------------------------------------

def save_checkpoint(run_dir: str | os.PathLike, step: int, *, model: ConceptModel,
                    optimizer: torch.optim.Optimizer | None = None,
                    tensors: dict[str, torch.Tensor] | None = None,
                    metadata: dict[str, Any] | None = None, keep: int | None = None) -> Path:
    """Write ``run_dir/ckpt-<step>/`` durably, point ``run_dir/latest`` at it, return its path.

    ``tensors`` are extra tensors to keep (replay buffers, :func:`rng_state_tensors`, EMA
    weights); ``metadata`` is the trainer's JSON-able dict (concepts, data spec, training
    arguments, metrics; tuples come back as lists). ``keep`` deletes the oldest checkpoints
    beyond that many, never the one ``latest`` names. Saving a step that already exists
    replaces it; ``latest`` always names the checkpoint written last.

    Example:
        >>> path = save_checkpoint("runs/toy", 200, model=model, optimizer=opt,
        ...                        tensors={"buffer": buffer, **rng_state_tensors()},
        ...                        metadata={"lr": 1e-4}, keep=3)  # doctest: +SKIP
        >>> path.name  # doctest: +SKIP
        'ckpt-000200'
    """
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step must be an int >= 0, got {step!r}")
    if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 1):
        raise ValueError(f"keep must be None or an int >= 1, got {keep!r}")
    model = _unwrap(model)
    if not isinstance(getattr(model, "config", None), ModelConfig):
        raise TypeError(f"model must be a ConceptModel (with a ModelConfig), got "
                        f"{type(model).__name__}")
    files = {MODEL_FILE: _st_save(_own_tensors(model.state_dict(), "model state dict"))}
    optimizer_entry = None
    if optimizer is not None:
        flat: dict[str, torch.Tensor] = {}
        optimizer_entry = {"type": _qualname(optimizer),
                           "state_dict": _encode(optimizer.state_dict(), "", flat)}
        files[OPTIMIZER_FILE] = _st_save(flat)
    if tensors:
        files[STATE_FILE] = _st_save(_own_tensors(tensors, "tensors"))
    manifest = {
        "format": FORMAT, "version": VERSION, "step": step,
        "conceptalg_version": __version__, "torch_version": torch.__version__,
        "model_config": _json_copy(model.config.to_dict(), "model.config"),
        "metadata": _json_copy(metadata or {}, "metadata"),
        "optimizer": optimizer_entry,
        "files": {name: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
                  for name, data in files.items()},
    }
    manifest["config_sha256"] = _canonical_sha256(manifest)
    files[CONFIG_FILE] = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    remove_leftovers(run_dir)
    name, pid = f"ckpt-{step:06d}", os.getpid()
    final = run_dir / name
    temp = write_directory(run_dir / f".tmp-{name}-{pid}", files)
    if not final.exists():
        os.rename(temp, final)
        fsync_directory(run_dir)
    else:
        # ``latest`` may name the copy being replaced: point it at the complete temporary copy
        # while the step's name changes hands, so no moment leaves it naming a missing one.
        write_latest(run_dir, temp.name, step)
        old = run_dir / f".old-{name}-{pid}"
        os.rename(final, old)
        os.rename(write_directory(run_dir / f".tmp-copy-{name}-{pid}", files), final)
        fsync_directory(run_dir)
    write_latest(run_dir, name, step)
    if keep is not None:
        prune(run_dir, keep)
    remove_leftovers(run_dir)
    return final


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module under DDP / DataParallel / ``torch.compile`` wrappers."""
    while True:
        if isinstance(model, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def _qualname(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _own(t: torch.Tensor) -> torch.Tensor:
    # safetensors refuses tensors that share storage and needs contiguous ones: give every
    # tensor its own contiguous CPU copy.
    return t.detach().to("cpu", memory_format=torch.contiguous_format, copy=True)


def _own_tensors(tensors: dict, what: str) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in tensors.items():
        if not isinstance(key, str) or not key or key == "__metadata__":
            raise ValueError(f"{what}: tensor names must be non-empty strings other than "
                             f"'__metadata__', got {key!r}")
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{what}[{key!r}] must be a tensor, got {type(value).__name__}")
        out[key] = _own(value)
    return out


def _json_copy(obj: Any, what: str) -> Any:
    try:
        return json.loads(json.dumps(obj))
    except (TypeError, ValueError) as e:
        raise TypeError(f"{what} must be JSON-serialisable (dicts with string keys, lists, "
                        f"numbers, strings, booleans, None): {e}") from None


def _canonical_sha256(manifest: dict) -> str:
    text = json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _encode(obj: Any, path: str, flat: dict[str, torch.Tensor]) -> Any:
    """A JSON form of a state dict: tensors moved to ``flat`` and replaced by
    ``{"$tensor": key}``; tuples and dicts with non-string keys tagged so they come back as
    they were (``Optimizer.state_dict`` keys its state by parameter index)."""
    if isinstance(obj, torch.Tensor):
        key = path
        while key in flat:
            key += "'"
        flat[key] = _own(obj)
        return {"$tensor": key}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, tuple):
        return {"$tuple": [_encode(v, f"{path}.{i}", flat) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, f"{path}.{i}", flat) for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        prefix = f"{path}." if path else ""
        if all(isinstance(k, str) and not k.startswith("$") for k in obj):
            return {k: _encode(v, prefix + k, flat) for k, v in obj.items()}
        return {"$items": [[_encode(k, "", {}), _encode(v, f"{prefix}{k}", flat)]
                           for k, v in obj.items()]}
    raise TypeError(f"cannot save optimiser state entry {path or '<root>'!r} of type "
                    f"{type(obj).__name__}: only tensors, numbers, strings, None, lists, "
                    f"tuples and dicts are stored")


def _decode(obj: Any, flat: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, flat) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if set(obj) == {"$tensor"}:
        return flat[obj["$tensor"]]  # a KeyError is reported by the caller
    if set(obj) == {"$tuple"}:
        return tuple(_decode(v, flat) for v in obj["$tuple"])
    if set(obj) == {"$items"}:
        return {_decode(k, flat): _decode(v, flat) for k, v in obj["$items"]}
    return {k: _decode(v, flat) for k, v in obj.items()}



# --- loading -------------------------------------------------------------------------------

@dataclass
class Checkpoint:
    """A loaded checkpoint: the rebuilt model (weights loaded, eval mode), its config, the
    trainer's metadata and extra tensors; :meth:`load_optimizer_state` restores an optimiser.

    Example:
        >>> ckpt = load_checkpoint("runs/toy")  # doctest: +SKIP
        >>> model = ckpt.model.train()  # doctest: +SKIP
        >>> opt = torch.optim.Adam(model.parameters(), betas=(0.0, 0.999))  # doctest: +SKIP
        >>> ckpt.load_optimizer_state(opt)  # doctest: +SKIP
        >>> restore_rng_state(ckpt.tensors)  # doctest: +SKIP
    """

    path: Path
    step: int
    model: ConceptModel = field(repr=False)
    model_config: ModelConfig = field(repr=False)
    metadata: dict[str, Any] = field(repr=False)
    tensors: dict[str, torch.Tensor] = field(repr=False)
    _manifest: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def has_optimizer_state(self) -> bool:
        return self._manifest.get("optimizer") is not None

    def load_optimizer_state(self, optimizer: torch.optim.Optimizer) -> None:
        """Restore ``optimizer`` (created over ``self.model.parameters()`` with the same
        parameter groups as when saving) to its saved state, bitwise."""
        entry = self._manifest.get("optimizer")
        file = self.path / OPTIMIZER_FILE
        if entry is None:
            raise CheckpointError(f"{file}: this checkpoint holds no optimiser state (it was "
                                  f"saved without optimizer=); start a fresh optimiser or "
                                  f"resume from a checkpoint that has one")
        if entry.get("type") != _qualname(optimizer):
            raise CheckpointError(f"{file}: holds the state of a {entry.get('type')}, not of a "
                                  f"{_qualname(optimizer)}; create the same optimiser class")
        flat = _read_tensors(file, self._manifest["files"].get(OPTIMIZER_FILE), self.path)
        try:
            state = _decode(entry["state_dict"], flat)
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{file}: lacks the tensor {e} that {CONFIG_FILE} refers to. "
                                  f"{earlier_hint(self.path)}") from None
        try:
            optimizer.load_state_dict(state)
        except (ValueError, KeyError, TypeError, RuntimeError) as e:
            raise CheckpointError(f"{file}: does not fit this optimiser ({e}); create it over "
                                  f"model.parameters() with the parameter groups used when "
                                  f"saving") from None


def load_checkpoint(path: str | os.PathLike, *,
                    map_location: str | torch.device = "cpu") -> Checkpoint:
    """Load a checkpoint directory, or the one a run directory's ``latest`` names, after
    checking every file's SHA-256; raises :class:`CheckpointError` naming any bad file.

    Example:
        >>> ckpt = load_checkpoint("runs/toy")  # doctest: +SKIP
        >>> ckpt.step, ckpt.metadata["lr"]  # doctest: +SKIP
        (200, 0.0001)
    """
    directory = resolve_checkpoint(path)
    manifest = _read_manifest(directory)
    _verify_files(directory, manifest)
    config, model = _build_model(directory, manifest, map_location)
    tensors = {}
    if STATE_FILE in manifest["files"]:
        tensors = {k: v.to(map_location) for k, v in
                   _read_tensors(directory / STATE_FILE, None, directory).items()}
    return Checkpoint(path=directory, step=manifest["step"], model=model, model_config=config,
                      metadata=manifest["metadata"], tensors=tensors, _manifest=manifest)


def load(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> ConceptModel:
    """Load a trained :class:`ConceptModel` (eval mode) from a run directory (following its
    ``latest`` pointer) or a checkpoint directory. Every file is verified by SHA-256; a run
    directory without ``latest`` is an error that names its newest checkpoint.

    Example:
        >>> import conceptalg
        >>> model = conceptalg.load("runs/toy")  # doctest: +SKIP
        >>> energy = conceptalg.compose("left & ~right", model)  # doctest: +SKIP
    """
    directory = resolve_checkpoint(path)
    manifest = _read_manifest(directory)
    _verify_files(directory, manifest)
    return _build_model(directory, manifest, map_location)[1]


def _read_manifest(directory: Path) -> dict[str, Any]:
    file = directory / CONFIG_FILE
    try:
        manifest = json.loads(file.read_bytes())
    except FileNotFoundError:
        raise CheckpointError(f"{file}: missing, so {directory} is not a complete checkpoint. "
                              f"{earlier_hint(directory)}") from None
    except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError, nesting
        raise CheckpointError(f"{file}: not valid JSON ({type(e).__name__}: {e}); the file is "
                              f"truncated or corrupted. {earlier_hint(directory)}") from None
    except OSError as e:  # a folder of that name, no permission to read it
        raise CheckpointError(f"{file}: cannot be read ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise CheckpointError(f"{file}: not a conceptalg checkpoint config (format {found!r}, "
                              f"expected {FORMAT!r})")
    version = manifest.get("version")
    if isinstance(version, bool) or version != VERSION:
        raise CheckpointError(f"{file}: checkpoint format version {version!r} is not supported; "
                              f"conceptalg {__version__} reads version {VERSION} only. Load it "
                              f"with the conceptalg version that wrote it "
                              f"({manifest.get('conceptalg_version', 'unknown')})")
    recorded = manifest.pop("config_sha256", None)
    if recorded != _canonical_sha256(manifest):
        raise CheckpointError(f"{file}: SHA-256 mismatch: the file was altered or corrupted "
                              f"after it was written. {earlier_hint(directory)}")
    expected = {"step": int, "model_config": dict, "metadata": dict, "files": dict}
    for key, kind in expected.items():
        if not isinstance(manifest.get(key), kind) or isinstance(manifest.get(key), bool):
            raise CheckpointError(f"{file}: malformed: {key!r} should be a {kind.__name__}")
    for name, entry in manifest["files"].items():
        if "/" in name or "\\" in name or name in ("", ".", "..", CONFIG_FILE) \
                or not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str) \
                or not isinstance(entry.get("size"), int):
            raise CheckpointError(f"{file}: malformed file entry {name!r}: {entry!r}")
    if MODEL_FILE not in manifest["files"]:
        raise CheckpointError(f"{file}: lists no {MODEL_FILE}; the checkpoint has no weights")
    if manifest.get("optimizer") is not None and OPTIMIZER_FILE not in manifest["files"]:
        raise CheckpointError(f"{file}: malformed: optimiser state without {OPTIMIZER_FILE}")
    return manifest


def _verify_file(file: Path, entry: dict, directory: Path) -> None:
    if not file.is_file():
        raise CheckpointError(f"{file}: missing ({CONFIG_FILE} lists it). "
                              f"{earlier_hint(directory)}")
    size = file.stat().st_size
    if size != entry["size"]:
        raise CheckpointError(f"{file}: {size} bytes, expected {entry['size']}: the file is "
                              f"truncated or altered. {earlier_hint(directory)}")
    digest = hashlib.sha256()
    try:
        with open(file, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    except OSError as e:
        raise CheckpointError(f"{file}: cannot be read ({e})") from None
    if digest.hexdigest() != entry["sha256"]:
        raise CheckpointError(f"{file}: SHA-256 mismatch: the file was altered or corrupted "
                              f"after it was written. {earlier_hint(directory)}")


def _verify_files(directory: Path, manifest: dict) -> None:
    for name, entry in manifest["files"].items():
        _verify_file(directory / name, entry, directory)


def _read_tensors(file: Path, entry: dict | None, directory: Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file to CPU (re-verifying it first when ``entry`` is given)."""
    if entry is not None:
        _verify_file(file, entry, directory)
    try:
        return _st_load(file.read_bytes())
    except OSError as e:
        raise CheckpointError(f"{file}: cannot be read ({e})") from None
    except Exception as e:  # the parser's own errors: a damaged header or data section
        raise CheckpointError(f"{file}: not a readable safetensors file ({type(e).__name__}: "
                              f"{e}). {earlier_hint(directory)}") from None


def _build_model(directory: Path, manifest: dict,
                 map_location: str | torch.device) -> tuple[ModelConfig, ConceptModel]:
    try:
        config = ModelConfig.from_dict(manifest["model_config"])
        model = build_model(config)
    except Exception as e:  # untrusted input: any failure to rebuild is the file's fault
        raise CheckpointError(
            f"{directory / CONFIG_FILE}: its model_config does not rebuild a ConceptModel "
            f"({type(e).__name__}: {e}); it was written by an incompatible conceptalg "
            f"(this is {__version__}, it says {manifest.get('conceptalg_version')}) or "
            f"edited by hand") from None
    file = directory / MODEL_FILE
    weights = _read_tensors(file, None, directory)
    wanted = model.state_dict()
    problems = [f"missing {k}" for k in wanted if k not in weights]
    problems += [f"unexpected {k}" for k in weights if k not in wanted]
    problems += [f"{k} has shape {list(weights[k].shape)}, the config needs "
                 f"{list(wanted[k].shape)}"
                 for k in wanted if k in weights and weights[k].shape != wanted[k].shape]
    if problems:
        shown = "; ".join(problems[:5]) + ("; ..." if len(problems) > 5 else "")
        raise CheckpointError(f"{file}: the weights do not match the model config in "
                              f"{CONFIG_FILE}: {shown}. The two files come from different "
                              f"models; {earlier_hint(directory).lower()}")
    model.load_state_dict(weights)
    return config, model.to(map_location).eval()
