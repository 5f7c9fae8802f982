"""The bookkeeping of a :class:`~conceptalg.models.ConceptModel` with factor views (docs/design.md §6).

Heads of factor ``f`` read the trunk of its view ``config.view_of(f)`` (built by
:func:`~conceptalg.models.views.build_view_trunk`); the identity view is the model's own
trunk, which the base head always reads. A batched call runs each trunk it needs once: the
requested heads are grouped by view (:func:`group_by_view`), each group's outputs computed
from its trunk, and the columns put back in the requested order (:func:`ungroup`).

Example:
    >>> groups = group_by_view(["colour-blind", "identity", "colour-blind"])
    >>> groups
    {'colour-blind': [0, 2], 'identity': [1]}
    >>> ungroup([torch.tensor([[0.0, 2.0]]), torch.tensor([[1.0]])], groups)
    tensor([[0., 1., 2.]])
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

from .config import ModelConfig
from .views import build_view_trunk, view_name

__all__ = ["build_view_trunks", "group_by_view", "trunk_key", "ungroup"]


def trunk_key(view: str) -> str:
    """The key of a view's modules in a ``ModuleDict`` (which refuses dots; a view recorded as
    ``module:pkg.mod.Class`` has no other colon, so the mapping is one-to-one).

    Example:
        >>> trunk_key("module:my.views.MeanPool")
        'module:my:views:MeanPool'
    """
    return view.replace(".", ":")


def build_view_trunks(config: "ModelConfig",
                      view_modules: Mapping[str, nn.Module] | None = None) -> dict[str, nn.Module]:
    """``{view: trunk}`` for each distinct non-identity view of ``config``, in the order the
    factors name them. ``view_modules`` (``{factor: module}``) gives the instances of user
    views; a user view without one is rebuilt from its import path. Raises
    :class:`ValueError` when a module does not match the config's view of its factor, or two
    factors give different instances of one class (a view is recorded by its class)."""
    instances: dict[str, nn.Module] = {}
    for factor, module in dict(view_modules or {}).items():
        name = view_name(module)
        if config.view_of(factor) != name:
            raise ValueError(f"view_modules[{factor!r}] is {name!r}, but the model config's "
                             f"view of {factor!r} is {config.view_of(factor)!r}")
        if instances.setdefault(name, module) is not module:
            raise ValueError(f"factors with the view {name!r} give different instances of it; "
                             f"a view is recorded by its class, so pass one instance for all")
    return {view: build_view_trunk(instances.get(view, view), config.sample_shape,
                                   **config.backbone_options)
            for view in dict.fromkeys(config.views.values())}


def group_by_view(views: Sequence[str]) -> dict[str, list[int]]:
    """Positions of ``views`` grouped by view, in order of first appearance."""
    groups: dict[str, list[int]] = {}
    for k, view in enumerate(views):
        groups.setdefault(view, []).append(k)
    return groups


def ungroup(parts: Sequence[torch.Tensor], groups: Mapping[str, Sequence[int]]) -> torch.Tensor:
    """Columns computed per group (``parts[g]`` is ``[B, len(group g)]``) back in the order of
    the positions: ``[B, K]``."""
    if len(parts) == 1:
        return parts[0]
    positions = [k for ks in groups.values() for k in ks]
    inverse = sorted(range(len(positions)), key=positions.__getitem__)
    return torch.cat(list(parts), dim=1)[:, inverse]  # [B, K]
