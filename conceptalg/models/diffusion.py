"""Noise-conditioned concept energies trained by denoising score matching (docs/design.md §6).

A :class:`DiffusionModel` gives every concept ``c`` (and the base, "no concept") an energy
``E_c(x, σ)`` of the data law convolved with ``N(0, σ² I)`` — the public σ convention of
docs/design.md §0: variance exploding, in the data's own units. One network computes all of them,
conditioned on the concept (an embedding; parametric concepts add Fourier features of their
arguments) and on σ, both as per-channel scale and shift in every block (FiLM).

Inside, the network follows EDM (Karras et al. 2022; every number and formula of the recipe is
in :mod:`conceptalg.edm`). With ``μ`` the data mean, ``σ_d`` the
data's standard deviation, ``s² = σ² + σ_d²``::

    c_skip = σ_d² / s²,   c_out = σ σ_d / s,   c_in = 1 / s,   c_noise = ln(σ) / 4
    D(x; σ, c) = μ + c_skip (x − μ) + c_out F(c_in (x − μ); c_noise, c)

is the denoiser; the score is ``∇ log p_σ(x | c) = (D − x) / σ²`` (Tweedie). Two
parameterisations (``ModelConfig.parameterization``):

- ``score``: ``F`` is the network's output ``f_θ``. Cheapest to train; gives scores only, so
  an expression or sampler that needs energy *values* (OR, ``logic``, MALA/HMC/MH) refuses it.
- ``energy``: a scalar energy whose gradient has exactly the preconditioned form above,
  ``E(x; σ, c) = (1 − c_skip) ‖x − μ‖² / (2σ²) + (σ_d / σ) g(u),  u = c_in (x − μ)``,
  ``g(u) = −⟨f_θ(u), u⟩``; then ``−∇_x E = (D − x)/σ²`` with ``F = −∇_u g = f_θ + J_fᵀ u``.
  Training differentiates through ``∇_x E`` (about 3× the cost of a score step).

σ = 0 (the data level, ``sigma=None`` in :meth:`ComposedEnergy.forward`) is evaluated at the
smallest trained level ``σ_min``: the learned energy is not defined below it.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

from ..edm import coefficients, noise_input
from .model import BASE, ConfigHints, fourier_features
from .noisy_classifier import NoisyClassifiers

__all__ = ["DiffusionModel", "NoiseConditionedUNet", "NoiseConditionedMLP", "fourier_features",
           "edm_coefficients"]


#: EDM's ``(c_skip, c_out, c_in)`` (:func:`conceptalg.edm.coefficients`; the older name)
edm_coefficients = coefficients


#: noise-level embeddings: ``c_noise = ln(σ)/4`` through sinusoids of these angular frequencies
#: (``"wide"``: 100 → 0.1, the library's first choice; ``"positional"``: 1 → 10⁻⁴, the
#: transformer's positional encoding that EDM's and the prototype's nets use)
NOISE_EMBEDDINGS = {"wide": (100.0, 1e3), "positional": (1.0, 1e4)}


class _NoiseEmbedding(nn.Module):
    """``c_noise = ln(σ)/4`` → sinusoidal features → MLP: ``[B] -> [B, d]``."""

    def __init__(self, dim: int, kind: str = "wide") -> None:
        super().__init__()
        if kind not in NOISE_EMBEDDINGS:
            raise ValueError(f"noise_embedding must be one of {sorted(NOISE_EMBEDDINGS)}, "
                             f"got {kind!r}")
        top, span = NOISE_EMBEDDINGS[kind]
        half = dim // 2
        self.register_buffer("freqs", top * torch.exp(-math.log(span) * torch.arange(half) / half),
                             persistent=False)
        self.net = nn.Sequential(nn.Linear(2 * half, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, sigma: Tensor) -> Tensor:
        angles = noise_input(sigma)[:, None] * self.freqs                 # [B, d/2]
        return self.net(torch.cat([angles.cos(), angles.sin()], dim=1))   # [B, d]


def _groups(channels: int) -> int:
    return 8 if channels % 8 == 0 else 1


class _ResBlock(nn.Module):
    """GroupNorm–SiLU–conv twice, the embedding as per-channel scale and shift in between;
    ``zero_init`` starts the second convolution at zero (the block starts as its skip)."""

    def __init__(self, c_in: int, c_out: int, emb: int, zero_init: bool = True) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.GroupNorm(_groups(c_in), c_in), nn.GroupNorm(_groups(c_out),
                                                                                 c_out)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.film = nn.Linear(emb, 2 * c_out)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        if zero_init:
            nn.init.zeros_(self.conv2.weight)
            nn.init.zeros_(self.conv2.bias)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(nn.functional.silu(self.norm1(x)))                 # [B, C, H, W]
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)   # [B, C, 1, 1] each
        h = self.norm2(h) * (1 + scale) + shift
        return self.skip(x) + self.conv2(nn.functional.silu(h))


#: decoder layouts of :class:`NoiseConditionedUNet`
DECODERS = ("full", "light")


class NoiseConditionedUNet(nn.Module):
    """A small conv UNet ``u[B, C, H, W], emb[B, d] -> [B, C, H, W]`` (one residual block per
    resolution on the way down, a middle block, skip connections, nearest-neighbour up).

    ``decoder="full"``: the way down keeps the channels through each stride-2 convolution and
    lets the next block widen them; the way up has a block at every resolution, the lowest
    included, each reading the level above concatenated with the skip. ``decoder="light"``:
    each stride-2 convolution widens the channels; the way up narrows them with a 3×3
    convolution *at the lower resolution* before upsampling, and has a block only at the upper
    resolutions (fewer channels at full resolution: cheaper on a CPU).
    ``zero_init`` starts every block's second convolution at zero.

    Example:
        >>> net = NoiseConditionedUNet(3, channels=(8, 16), emb=16)
        >>> net(torch.zeros(2, 3, 16, 16), torch.zeros(2, 16)).shape
        torch.Size([2, 3, 16, 16])
        >>> light = NoiseConditionedUNet(3, channels=(8, 16), emb=16, decoder="light")
        >>> light(torch.zeros(2, 3, 16, 16), torch.zeros(2, 16)).shape
        torch.Size([2, 3, 16, 16])
    """

    def __init__(self, in_channels: int, channels: Sequence[int] = (16, 32, 64),
                 emb: int = 64, *, decoder: str = "full", zero_init: bool = True) -> None:
        super().__init__()
        if decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")
        channels = tuple(int(c) for c in channels)
        self.light = decoder == "light"
        self.stem = nn.Conv2d(in_channels, channels[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.pool = nn.ModuleList()
        for i, c in enumerate(channels):
            c_in = c if self.light or not i else channels[i - 1]
            self.down.append(_ResBlock(c_in, c, emb, zero_init))
            if i + 1 < len(channels):
                self.pool.append(nn.Conv2d(c, channels[i + 1] if self.light else c, 3, stride=2,
                                           padding=1))
        self.mid = _ResBlock(channels[-1], channels[-1], emb, zero_init)
        self.up = nn.ModuleList()
        self.narrow = nn.ModuleList()
        if self.light:  # a narrowing conv at each lower level, a block at each upper one
            for i in reversed(range(len(channels) - 1)):
                self.narrow.append(nn.Conv2d(channels[i + 1], channels[i], 3, padding=1))
                self.up.append(_ResBlock(2 * channels[i], channels[i], emb, zero_init))
        else:
            for i in reversed(range(len(channels))):
                above = channels[-1] if i == len(channels) - 1 else channels[i + 1]
                self.up.append(_ResBlock(above + channels[i], channels[i], emb, zero_init))
        self.out_norm = nn.GroupNorm(_groups(channels[0]), channels[0])
        self.out = nn.Conv2d(channels[0], in_channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, u: Tensor, emb: Tensor) -> Tensor:
        h = self.stem(u)
        skips = []
        for i, block in enumerate(self.down):
            if i:
                h = self.pool[i - 1](h)                                   # half resolution
            h = block(h, emb)
            skips.append(h)
        h = self.mid(h, emb)
        if self.light:
            skips.pop()  # the lowest level feeds the middle block only
        for j, block in enumerate(self.up):
            skip = skips.pop()
            if self.light:
                h = self.narrow[j](h)                                     # at the lower level
            if h.shape[-1] != skip.shape[-1]:
                h = nn.functional.interpolate(h, size=skip.shape[-2:], mode="nearest")
            h = block(torch.cat([h, skip], dim=1), emb)
        return self.out(nn.functional.silu(self.out_norm(h)))


class NoiseConditionedMLP(nn.Module):
    """An MLP ``u[B, D], emb[B, d] -> [B, D]`` with per-layer scale and shift from ``emb``.

    Example:
        >>> NoiseConditionedMLP(2, hidden=(32, 32), emb=16)(torch.zeros(4, 2),
        ...                                                 torch.zeros(4, 16)).shape
        torch.Size([4, 2])
    """

    def __init__(self, dim: int, hidden: Sequence[int] = (128, 128, 128), emb: int = 64) -> None:
        super().__init__()
        sizes = (dim,) + tuple(int(h) for h in hidden)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:]))
        self.films = nn.ModuleList(nn.Linear(emb, 2 * b) for b in sizes[1:])
        self.out = nn.Linear(sizes[-1], dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, u: Tensor, emb: Tensor) -> Tensor:
        h = u
        for layer, film in zip(self.layers, self.films):
            scale, shift = film(emb).chunk(2, dim=1)
            h = nn.functional.silu(layer(h) * (1 + scale) + shift)
        return self.out(h)


class DiffusionModel(ConfigHints, nn.Module):
    """Noise-conditioned concept energies ``E_c(x, σ)`` (or scores) from one network conditioned
    on the concept (FiLM heads); usable directly as a concept library (``compose`` accepts it).
    Built from a :class:`~conceptalg.models.ModelConfig` with ``objective="dsm"``; trained by
    :class:`conceptalg.training.DSMTrainer`. The classifier-guided kind (an unconditional
    network and noise-aware classifiers, ``heads="classifier"``) is
    :class:`~conceptalg.models.guided.GuidedDiffusionModel`.

    ``config.noise`` holds ``sigma_data`` (σ_d), ``mean`` (μ: a number, or one per coordinate of
    a vector), ``sigma_min`` and ``sigma_max``; ``config.backbone`` is ``"unet"`` (images,
    ``backbone_options["channels"]``) or ``"mlp"`` (vectors, ``backbone_options["hidden"]``).
    With ``config.classifiers`` the model also carries a noise-aware classifier per factor,
    each reading its view (:meth:`factor_log_probs`): what :func:`conceptalg.infer` reads in one
    pass per image.

    Example:
        >>> from conceptalg.models import ModelConfig
        >>> cfg = ModelConfig(sample_shape=(2,), factors={"side": ["left", "right"]},
        ...                   heads="film", objective="dsm", backbone="mlp", bounds=None,
        ...                   backbone_options={"hidden": (32, 32)})
        >>> model = DiffusionModel(cfg)
        >>> model.concept_energies(torch.zeros(4, 2), ["side=left", "__base__"],
        ...                        sigma=torch.full((4,), 0.5)).shape
        torch.Size([4, 2])
    """

    #: a classifier-guided model (:class:`~conceptalg.models.guided.GuidedDiffusionModel`)
    guided = False

    def __init__(self, config, view_modules: dict[str, nn.Module] | None = None) -> None:
        super().__init__()
        if (config.heads == "classifier") != self.guided:
            raise ValueError("a model with heads='classifier' is a GuidedDiffusionModel "
                             "(conceptalg.models.build_model picks the class from the config)"
                             if not self.guided else
                             f"a GuidedDiffusionModel needs heads='classifier', got "
                             f"{config.heads!r}")
        self.config = config
        self.base_name = BASE
        self.head_names = config.concept_names
        self.index = {name: i for i, name in enumerate(self.head_names)}
        d = config.embedding_dim
        shape = tuple(config.sample_shape)
        noise = config.noise
        self.sigma_data = float(noise["sigma_data"])
        self.sigma_min = float(noise["sigma_min"])
        self.sigma_max = float(noise["sigma_max"])
        mean = torch.as_tensor(noise["mean"], dtype=torch.float32)
        self.register_buffer("mean", mean.reshape(shape if mean.numel() > 1 else ()),
                             persistent=False)
        self.energy_form = config.parameterization == "energy"
        # the concept table's last row is the base (a guided model's only row)
        self._base_row = 0 if self.guided else len(self.head_names)
        self.embedding = nn.Embedding(self._base_row + 1, d)
        self.arg_nets = nn.ModuleDict({
            name: nn.Sequential(nn.Linear(k * 12, d), nn.SiLU(), nn.Linear(d, d))
            for name, k in config.parametric.items() if not self.guided})
        options = dict(config.backbone_options)
        self.noise_embedding = _NoiseEmbedding(d, options.get("noise_embedding", "wide"))
        if config.backbone == "unet":
            self.net = NoiseConditionedUNet(shape[0], options.get("channels", (16, 32, 64)), d,
                                            decoder=options.get("decoder", "full"),
                                            zero_init=options.get("zero_init", True))
        else:
            self.net = NoiseConditionedMLP(shape[0], options.get("hidden", (128, 128, 128)), d)
        if self.guided or config.classifiers:
            self.classifier_noise = _NoiseEmbedding(d, options.get("noise_embedding", "wide"))
            self.classifiers = NoisyClassifiers(shape, config.factors, config.views, dim=d,
                                                options=options.get("classifier"),
                                                view_modules=view_modules)

    @property
    def has_classifiers(self) -> bool:
        """Whether the model carries noise-aware factor classifiers (:meth:`factor_logits`)."""
        return hasattr(self, "classifiers")

    # --- the network -----------------------------------------------------------------------
    def _rows(self, heads: Sequence[str]) -> list[int]:
        out = []
        for name in heads:
            if name == self.base_name:
                out.append(self._base_row)
            elif name in self.index and not self.guided:
                out.append(self.index[name])
            else:
                raise KeyError(f"{type(self).__name__} has no head {name!r}; heads: "
                               f"{self.head_names}")
        return out

    def _condition(self, rows: Tensor, args: Tensor | None, sigma: Tensor) -> Tensor:
        """The embedding ``[B, d]`` of (concept row, arguments, σ) per sample. ``rows`` may be
        ``[B, K]``: several concepts at once (their embeddings summed; ``-1`` pads), the joint
        condition that complete conditioning trains (``DSMConfig.conditioning``)."""
        if rows.dim() == 2:
            if args is not None:
                raise ValueError("several concepts per sample take no arguments")
            used = (rows >= 0).to(self.embedding.weight.dtype)[..., None]  # [B, K, 1]
            e = (self.embedding(rows.clamp(min=0)) * used).sum(1)          # [B, d]
            return nn.functional.silu(e + self.noise_embedding(sigma))
        e = self.embedding(rows)                                          # [B, d]
        if args is not None:
            for name, net in self.arg_nets.items():
                mask = rows == self.index[name]
                e = torch.where(mask[:, None], e + net(fourier_features(args)), e)
        return nn.functional.silu(e + self.noise_embedding(sigma))

    def _sigma(self, sigma: Tensor | float | None, b: int, x: Tensor) -> Tensor:
        if sigma is None:
            sigma = 0.0
        s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
        s = s.expand(b) if s.dim() == 0 else s.reshape(b)
        return s.clamp(min=self.sigma_min)  # level 0 is evaluated at the smallest trained σ

    def denoise_for(self, x: Tensor, rows: Tensor, args: Tensor | None, sigma: Tensor, *,
                    create_graph: bool = False) -> Tensor:
        """``D(x; σ, c)`` ``[B, *shape]`` with one concept row per sample (``rows``; the base is
        ``len(head_names)``); the training loss regresses it on clean data. For the energy
        form it is ``x − σ² ∇E`` (differentiable w.r.t. θ when ``create_graph``)."""
        sigma = self._sigma(sigma, x.shape[0], x)
        if not self.energy_form:
            return self._denoise(x, rows, args, sigma)
        with torch.enable_grad():
            xg = x if x.requires_grad else x.detach().requires_grad_(True)
            energy = self._energy(xg, rows, args, sigma)
            (grad,) = torch.autograd.grad(energy.sum(), xg, create_graph=create_graph)
        return x - _view(sigma.square(), x) * grad

    def _denoise(self, x: Tensor, rows: Tensor, args: Tensor | None, sigma: Tensor) -> Tensor:
        c_skip, c_out, c_in = (_view(c, x) for c in edm_coefficients(sigma, self.sigma_data))
        y = x - self.mean
        f = self.net(c_in * y, self._condition(rows, args, sigma))
        return self.mean + c_skip * y + c_out * f

    def _energy(self, x: Tensor, rows: Tensor, args: Tensor | None, sigma: Tensor) -> Tensor:
        c_skip, _, c_in = edm_coefficients(sigma, self.sigma_data)
        y = x - self.mean
        u = _view(c_in, x) * y
        g = -(self.net(u, self._condition(rows, args, sigma)) * u).flatten(1).sum(1)   # [B]
        quadratic = (1 - c_skip) * y.square().flatten(1).sum(1) / (2 * sigma.square())
        return quadratic + (self.sigma_data / sigma) * g

    def _batched(self, x: Tensor, heads: Sequence[str], args, sigma):
        """Every requested head on every sample, as one ``[K·B]`` batch."""
        b, k = x.shape[0], len(heads)
        rows = torch.tensor(self._rows(heads), device=x.device).repeat_interleave(b)
        xs = x.repeat((k,) + (1,) * (x.dim() - 1))                        # [K·B, ...]
        a = None
        if args is not None and any(v is not None for v in args):
            n = next(v for v in args if v is not None).shape[1]
            a = torch.cat([x.new_zeros(b, n) if v is None else v.to(x.dtype).expand(b, n)
                           for v in args])                                # [K·B, n]
        return xs, rows, a, self._sigma(sigma, b, x).repeat(k)

    def base_parameters(self) -> list[nn.Parameter]:
        """The parameters of the denoiser (the network, its embeddings): everything but the
        classifiers."""
        skip = {id(p) for name in ("classifiers", "classifier_noise", "local_heads",
                                   "object_heads")
                if hasattr(self, name)
                for p in getattr(self, name).parameters()}
        return [p for p in self.parameters() if id(p) not in skip]

    # --- noise-aware factor classifiers ------------------------------------------------------
    def factor_logits(self, x: Tensor, factors: Sequence[str] | None = None, *,
                      sigma: Tensor | float | None = None) -> dict[str, Tensor]:
        """Logits ``{factor: [B, V]}`` of the noise-aware classifiers at levels ``sigma``
        (None: the data level, evaluated at ``σ_min``); models with classifiers only
        (``heads="classifier"``, or ``classifiers=True`` beside film heads)."""
        if not self.has_classifiers:
            raise RuntimeError("factor_logits needs a model with classifier heads "
                               "(heads='classifier', or classifiers beside its film heads: "
                               "conceptalg export --classifiers); this one conditions its "
                               "network on the concept only")
        factors = list(self.config.factors) if factors is None else list(factors)
        unknown = [f for f in factors if f not in self.config.factors]
        if unknown:
            raise ValueError(f"unknown factors {unknown}; the model's factors are "
                             f"{list(self.config.factors)}")
        u, s = self._classifier_input(x, sigma)
        return self.classifiers(u, s, factors, self.classifier_noise(s))

    def _classifier_input(self, x: Tensor, sigma) -> tuple[Tensor, Tensor]:
        """The classifiers' input ``c_in (x − μ)`` and the levels ``[B]``."""
        s = self._sigma(sigma, x.shape[0], x)
        _, _, c_in = edm_coefficients(s, self.sigma_data)
        return _view(c_in, x) * (x - self.mean), s

    def factor_log_probs(self, x: Tensor, factors: Sequence[str] | None = None, *,
                         sigma: Tensor | float | None = None) -> dict[str, Tensor]:
        """``{factor: log p(value | view_f(x), σ) [B, V]}`` (see :meth:`factor_logits`)."""
        return {f: torch.log_softmax(v, dim=1)
                for f, v in self.factor_logits(x, factors, sigma=sigma).items()}

    # --- the concept-library protocol -------------------------------------------------------
    def concept_energies(self, x: Tensor, heads: Sequence[str],
                         args: Sequence[Tensor | None] | None = None, *,
                         sigma: Tensor | float | None = None) -> Tensor:
        """Energies ``E_c(x, σ)`` ``[B, K]`` of ``heads`` (``BASE`` = the base) at levels
        ``sigma`` (``[B]``, a float, or None for the data level); energy form only."""
        if not self.energy_form:
            raise RuntimeError("this model was trained with parameterization='score' and gives "
                               "scores only (concept_scores); train with --parameterization "
                               "energy for energy values")
        xs, rows, a, s = self._batched(x, heads, args, sigma)
        return self._energy(xs, rows, a, s).reshape(len(heads), x.shape[0]).T

    def concept_energies_base(self, x: Tensor, sigma: Tensor | float | None = None) -> Tensor:
        """The base energy ``E_0(x, σ)`` ``[B]`` (energy form only)."""
        if not self.energy_form:
            raise RuntimeError("this model was trained with parameterization='score': its base "
                               "gives a score only; train with --parameterization energy")
        s = self._sigma(sigma, x.shape[0], x)
        rows = torch.full((x.shape[0],), self._base_row, device=x.device)
        return self._energy(x, rows, None, s)

    def concept_scores(self, x: Tensor, heads: Sequence[str],
                       args: Sequence[Tensor | None] | None = None, *,
                       sigma: Tensor | float | None = None) -> Tensor:
        """Scores ``∇_x log p_σ(x | c) = −∇_x E_c(x, σ)`` ``[B, K, *shape]``."""
        xs, rows, a, s = self._batched(x, heads, args, sigma)
        if self.energy_form:
            d = self.denoise_for(xs, rows, a, s)
        else:
            d = self._denoise(xs, rows, a, s)
        score = (d - xs) / _view(s.square(), xs)                          # [K·B, ...]
        b = x.shape[0]
        return score.reshape(len(heads), b, *x.shape[1:]).transpose(0, 1)

    def forward(self, x: Tensor, sigma: Tensor | float | None = None) -> Tensor:
        """The base energy ``E_0(x, σ)`` ``[B]`` (energy form)."""
        return self.concept_energies(x, [self.base_name], sigma=sigma)[:, 0]

    def as_concept_library(self):
        """A :class:`~conceptalg.library.ConceptLibrary` over the heads (σ-aware; kind
        ``"score"`` for the score form), carrying the sampling and composition defaults."""
        from ..library import ConceptLibrary

        cfg = self.config
        kind = "energy" if self.energy_form else "score"
        lib = ConceptLibrary()
        lib.add_model(self, {name: None for name in self.head_names},
                      kind="log_prob" if self.guided else kind,  # classifiers: log p(c|x)
                      parametric=list(cfg.parametric))
        lib.set_base(self, self.base_name, kind=kind)
        lib.sample_shape = cfg.sample_shape
        lib.bounds = cfg.bounds
        lib.sampler_defaults = dict(cfg.sampler_defaults)
        lib.data_mean = self.data_mean
        lib.sigma_data = self.sigma_data
        composition = dict(cfg.composition)
        lib.default_semantics = composition.get("semantics")
        lib.guidance_scale = composition.get("guidance_scale")
        return lib

    @property
    def data_mean(self) -> Tensor:
        """μ, the centre that samplers start from (``x0 = μ + σ_0 ξ``)."""
        return self.mean

    @property
    def init_samples(self) -> None:
        return None

    def extra_repr(self) -> str:
        cfg = self.config
        views = f", views={cfg.views}" if cfg.views else ""
        extra = ", classifiers=True" if cfg.classifiers else ""
        return (f"objective='dsm', heads={cfg.heads!r}{views}{extra}, "
                f"parameterization={cfg.parameterization!r}, "
                f"concepts={len(self.head_names)}, sample_shape={cfg.sample_shape}, "
                f"sigma=[{self.sigma_min:g}, {self.sigma_max:g}]")


def _view(v: Tensor, like: Tensor) -> Tensor:
    """``v[B]`` as ``[B, 1, ..., 1]`` against ``like``."""
    return v.reshape(v.shape[0], *([1] * (like.dim() - 1)))
