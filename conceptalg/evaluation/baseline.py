"""The joint-code baseline: one network conditioned on the concatenated shape and colour codes.

The compositional-EBM paper measures cross-product extrapolation against "a conditional model
trained on the joint code". Here that model is a FiLM-conditioned EBM whose condition is
``MLP([one_hot(shape), one_hot(colour)])``: one trunk pass, one energy for the pair, never a
sum of per-concept energies. It is trained with the same contrastive-divergence trainer on the
same training split (a factor ``pair`` whose values are ``"red_circle"``, …, labelled only on
the seen pairs), and it *can* be asked for a held-out pair, by feeding the code of that pair —
whether the code network generalises to unseen combinations is what the benchmark measures.
It conditions on pairs only: single concepts, sizes, OR and NOT have no meaning for it.

Saved with :func:`save_joint` as ``joint.safetensors`` plus ``joint.json`` (its
:class:`~conceptalg.models.model.ModelConfig`): a benchmark artefact, not a checkpoint that
``conceptalg.load`` reads.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor, nn

from ..data.shapes import COLORS, DEFAULT_HOLDOUT, SHAPES, ShapesDataset
from ..expr import And, Concept, Expr
from ..models.model import ConceptModel, ModelConfig
from ..training.data import ConceptData

__all__ = ["PAIR", "pair_name", "JointCodeModel", "joint_data", "joint_model",
           "JointSampler", "save_joint", "load_joint"]

PAIR = "pair"
PAIR_NAMES = [f"{c}_{s}" for s in SHAPES for c in COLORS]


def pair_name(shape: str, color: str) -> str:
    """The joint code's value for a (shape, colour) pair.

    Example:
        >>> pair_name("circle", "red")
        'red_circle'
    """
    return f"{color}_{shape}"


def _codes() -> Tensor:
    """``[18 + 1, 3 + 6 + 1]``: one-hot shape ⊕ one-hot colour ⊕ a base flag, base last."""
    rows = []
    for s in SHAPES:
        for c in COLORS:
            code = torch.zeros(len(SHAPES) + len(COLORS) + 1)
            code[SHAPES.index(s)] = 1
            code[len(SHAPES) + COLORS.index(c)] = 1
            rows.append(code)
    base = torch.zeros(len(SHAPES) + len(COLORS) + 1)
    base[-1] = 1
    return torch.stack(rows + [base])


class _CodeEmbedding(nn.Module):
    """Stands in for the FiLM model's embedding table: row ``k`` is ``MLP(codes[k])``."""

    def __init__(self, codes: Tensor, dim: int) -> None:
        super().__init__()
        self.register_buffer("codes", codes)
        self.net = nn.Sequential(nn.Linear(codes.shape[1], dim), nn.SiLU(), nn.Linear(dim, dim))

    @property
    def weight(self) -> Tensor:
        return self.net(self.codes)                                            # [R, d]

    def forward(self, rows: Tensor) -> Tensor:
        return self.weight[rows]


class JointCodeModel(ConceptModel):
    """A FiLM :class:`ConceptModel` over the factor ``pair`` whose embedding of each pair is an
    MLP of its concatenated one-hot shape and colour codes (module docstring).

    Example:
        >>> model = joint_model(backbone_options={"width": 8})
        >>> model.concept_energies(torch.zeros(2, 3, 32, 32), ["pair=red_circle"]).shape
        torch.Size([2, 1])
    """

    def __init__(self, config: ModelConfig) -> None:
        if config.factors != {PAIR: PAIR_NAMES} or config.heads != "film":
            raise ValueError(f"a JointCodeModel has FiLM heads over the factor {PAIR!r} with "
                             f"values {PAIR_NAMES}")
        super().__init__(config)
        self.embedding = _CodeEmbedding(_codes(), config.embedding_dim)


def joint_model(backbone_options: dict | None = None, seed: int = 0,
                init_bank: int = 0) -> JointCodeModel:
    """A fresh joint-code model for 32×32 ``shapes`` images (initial weights from ``seed``);
    ``init_bank`` rows of start images, as a trained concept model keeps (the trainer fills
    them), so that the baseline's chains start where the other arms' do.

    Example:
        >>> joint_model({"width": 8}).head_names[:2]
        ['pair=red_circle', 'pair=green_circle']
    """
    config = ModelConfig(sample_shape=(3, 32, 32), factors={PAIR: PAIR_NAMES}, heads="film",
                         backbone="conv", backbone_options=dict(backbone_options or {}),
                         bounds=(0.0, 1.0), init_bank=init_bank)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return JointCodeModel(config)


def joint_data(n: int = 20_000, seed: int = 0, holdout=DEFAULT_HOLDOUT) -> ConceptData:
    """The ``shapes`` training split (the same images as ``builtin_data("shapes")``) labelled by
    the pair: one factor ``pair`` over all 18 pair names, only seen pairs occurring.

    Example:
        >>> data = joint_data(100)
        >>> len(data.factors["pair"]), len(data.labels["pair"].unique())
        (18, 12)
    """
    ds = ShapesDataset(n, seed=seed, split="train", holdout=holdout)
    index = ds.labels["shape"] * len(COLORS) + ds.labels["color"]              # [N]
    return ConceptData(ds.images, {PAIR: list(PAIR_NAMES)}, {PAIR: index.long()},
                       name="shapes-joint")


def _pair_of(expr: Expr) -> tuple[str, str]:
    terms = expr.terms if isinstance(expr, And) else (expr,)
    found: dict[str, str] = {}
    for t in terms:
        if not isinstance(t, Concept) or t.args is not None:
            break
        factor = t.factor or ("shape" if t.name in SHAPES else
                              "color" if t.name in COLORS else None)
        if factor not in ("shape", "color") or factor in found:
            break
        found[factor] = t.name
    else:
        if len(found) == 2:
            return found["shape"], found["color"]
    raise ValueError(f"the joint-code baseline conditions on one (shape, colour) pair, like "
                     f"`circle & red`; it cannot express {str(expr)!r}")


class JointSampler:
    """A generator ``(expr, n, seed) -> samples`` for :class:`JointCodeModel`: ``circle & red``
    becomes the single head ``pair=red_circle``. Other keywords go to :func:`conceptalg.sample`.

    Example:
        >>> x = JointSampler(joint_model({"width": 4}), steps=2)("circle & red", 2)
        >>> x.shape
        torch.Size([2, 3, 32, 32])
    """

    def __init__(self, model: JointCodeModel, **options) -> None:
        self.model, self.options = model, options

    def __call__(self, expr: Expr | str, n: int, seed: int = 0) -> Tensor:
        from .. import compose, sample
        from ..syntax import parse

        shape, color = _pair_of(parse(expr) if isinstance(expr, str) else expr)
        energy = compose(Concept(pair_name(shape, color), factor=PAIR), self.model)
        return sample(energy, n, seed=seed, **self.options).detach().cpu()


def save_joint(model: JointCodeModel, directory: str | Path) -> Path:
    """Write ``joint.safetensors`` and ``joint.json`` into ``directory``.

    Example:
        >>> save_joint(model, "runs/joint")  # doctest: +SKIP
        PosixPath('runs/joint')
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
              str(directory / "joint.safetensors"))
    (directory / "joint.json").write_text(json.dumps(model.config.to_dict(), indent=2))
    return directory


def load_joint(directory: str | Path, device=None) -> JointCodeModel:
    """Read a model written by :func:`save_joint` (safetensors and JSON; nothing unpickled).

    Example:
        >>> model = load_joint("runs/joint")  # doctest: +SKIP
    """
    from safetensors.torch import load_file

    directory = Path(directory)
    config = ModelConfig.from_dict(json.loads((directory / "joint.json").read_text()))
    model = JointCodeModel(config)
    model.load_state_dict(load_file(str(directory / "joint.safetensors")))
    return model.to(device or "cpu").eval()
