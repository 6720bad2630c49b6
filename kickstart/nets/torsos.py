"""Torsos: observation encoders, ``[N, *obs_shape] float -> [N, out_size]``.

Every torso takes already scaled float observations (the agent applies ``spec.obs_scale``) and
ends in a ReLU'd fully connected layer. Its width is ``cfg.hidden_size``, except for ``nature``,
whose width is fixed at the paper's 512 (see :class:`NatureTorso`). Each torso has an
``out_size`` attribute.

Which torso fits which observation (:func:`fitting_torsos` says it for a shape):

============== =================================================== ==========================
torso          paper                                               observations
============== =================================================== ==========================
nature         Mnih et al. 2015 (DQN)                              images, H, W >= 36
impala_shallow Espeholt et al. 2018 (IMPALA), "shallow"            images, H, W >= 20
impala_deep    Espeholt et al. 2018 (IMPALA), "deep", 15 conv      images, any H, W
minatar        Young & Tian 2019 (MinAtar)                         images, H, W >= 3
mlp            --                                                  any shape (flattened)
============== =================================================== ==========================

``auto`` picks ``mlp`` for non-image observations, ``minatar`` for images whose H and W are both
<= 16, ``nature`` for larger images; for the images that are larger than 16 on one side but too
small for ``nature`` it falls back to ``minatar`` (or ``impala_deep`` when a side is below 3).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from kickstart.errors import UserError

TORSO_NAMES = ("nature", "impala_shallow", "impala_deep", "minatar", "mlp")

NATURE_FC = 512
"""Width of the ``nature`` torso's FC layer: the DQN paper's (and TorchBeast's Atari net's) 512."""

# Smallest image side each conv torso accepts (the side at which its last conv still has an
# output of size >= 1): nature 8/4 -> 4/2 -> 3/1 needs 36; impala_shallow 8/4 -> 4/2 needs 20.
_MIN_SIDE = {"nature": 36, "impala_shallow": 20, "impala_deep": 1, "minatar": 3}
_NEEDS = {
    "nature": "images (C, H, W) with H, W >= 36",
    "impala_shallow": "images (C, H, W) with H, W >= 20",
    "impala_deep": "images (C, H, W)",
    "minatar": "images (C, H, W) with H, W >= 3",
    "mlp": "any observation (flattened)",
}


def _fits(name: str, obs_shape: tuple[int, ...]) -> bool:
    if name == "mlp":
        return len(obs_shape) >= 1
    return len(obs_shape) == 3 and min(obs_shape[1:]) >= _MIN_SIDE[name]


def fitting_torsos(obs_shape: Sequence[int]) -> list[str]:
    """Names of the torsos (``auto`` included) that accept observations of ``obs_shape``."""
    shape = tuple(obs_shape)
    names = [n for n in TORSO_NAMES if _fits(n, shape)]
    return (["auto"] + names) if names else []


def resolve_torso(name: str, obs_shape: Sequence[int]) -> str:
    """The concrete torso for config value ``name`` (resolving ``auto``); raises UserError if unfit."""
    shape = tuple(obs_shape)
    if name == "auto":
        if len(shape) != 3:
            name = "mlp"
        elif max(shape[1:]) > 16 and _fits("nature", shape):
            name = "nature"
        elif _fits("minatar", shape):
            name = "minatar"
        else:
            name = "impala_deep"
        if _fits(name, shape):
            return name
        raise UserError(f"net.torso='auto' found no torso for observations of shape {shape}; "
                        f"observations must be vectors or images (C, H, W)")
    if name not in TORSO_NAMES:
        raise UserError(f"net.torso={name!r} is not valid; choose one of: auto, {', '.join(TORSO_NAMES)}")
    if not _fits(name, shape):
        raise UserError(f"net.torso={name!r} needs {_NEEDS[name]} but observations have shape {shape}; "
                        f"torsos that fit: {', '.join(fitting_torsos(shape)) or 'none'}")
    return name


def torso_input(obs: torch.Tensor, obs_scale: float, torso: nn.Module) -> torch.Tensor:
    """``[T, B, *obs_shape]`` observations -> the scaled float ``[T * B, *obs_shape]`` a torso reads.

    When gradients flow on the CPU (the learner's update), an image torso whose
    ``channels_last_training`` is set gets its input channels-last, converted in the same pass as
    the cast to float: oneDNN's convolutions then skip a layout reorder of every activation, which
    made the Nature and shallow IMPALA torsos' forward+backward over a [20, 32] unroll 1.3-1.5x
    faster on one thread (AVX-512 and AVX2 alike). Small-batch inference (actors, teachers) stays
    NCHW, where channels-last measured 10-20% slower; so does the small MinAtar torso.
    """
    src = obs.reshape(obs.shape[0] * obs.shape[1], *obs.shape[2:])
    if (src.dim() == 4 and src.device.type == "cpu" and torso.channels_last_training
            and torch.is_grad_enabled()):
        x = src.to(torch.float32, memory_format=torch.channels_last)
    else:
        x = src.float()
    if obs_scale != 1.0:
        x = x.mul_(obs_scale) if x.data_ptr() != src.data_ptr() else x * obs_scale  # in place on a copy only
    return x


class _ConvFC(nn.Module):
    """A conv stack (ending in a ReLU), flattened, then a ReLU'd FC layer of ``out_size``.

    The ReLUs after convolutions and linear layers run in place: neither layer's backward needs its
    output, so this saves an activation-sized allocation per layer (tens of MB for an Atari batch)."""

    channels_last_training = True
    """Train on channels-last input on the CPU (see :func:`torso_input`)."""

    def __init__(self, convs: nn.Module, obs_shape: tuple[int, ...], out_size: int):
        super().__init__()
        self.convs = convs
        with torch.no_grad():
            n_flat = math.prod(self.convs(torch.zeros(1, *obs_shape)).shape[1:])
        self.fc = nn.Linear(n_flat, out_size)
        self.out_size = out_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu_(self.fc(self.convs(x).flatten(1)))


class NatureTorso(_ConvFC):
    """Mnih et al. 2015 (DQN): conv 32 8x8/4, conv 64 4x4/2, conv 64 3x3/1, FC 512, all ReLU.

    The FC width is always 512 (the paper's, and TorchBeast's Atari net's, so that throughput and
    capacity compare with them); ``cfg.hidden_size`` does not apply to this torso.
    """

    def __init__(self, obs_shape: tuple[int, ...]):
        c = obs_shape[0]
        convs = nn.Sequential(
            nn.Conv2d(c, 32, 8, stride=4), nn.ReLU(inplace=True),
            nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(inplace=True),
            nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(inplace=True),
        )
        super().__init__(convs, obs_shape, NATURE_FC)


class ImpalaShallowTorso(_ConvFC):
    """Espeholt et al. 2018 (IMPALA) shallow net: conv 16 8x8/4, conv 32 4x4/2, FC hidden, ReLU."""

    def __init__(self, obs_shape: tuple[int, ...], hidden_size: int):
        c = obs_shape[0]
        convs = nn.Sequential(
            nn.Conv2d(c, 16, 8, stride=4), nn.ReLU(inplace=True),
            nn.Conv2d(16, 32, 4, stride=2), nn.ReLU(inplace=True),
        )
        super().__init__(convs, obs_shape, hidden_size)


class _ResidualBlock(nn.Module):
    """relu -> conv 3x3 -> relu -> conv 3x3, plus the input."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv0 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv1(torch.relu_(self.conv0(torch.relu(x))))


class _ImpalaSection(nn.Sequential):
    """conv 3x3/1 -> max-pool 3x3/2 (padding 1) -> 2 residual blocks."""

    def __init__(self, in_channels: int, channels: int):
        super().__init__(
            nn.Conv2d(in_channels, channels, 3, padding=1),
            nn.MaxPool2d(3, stride=2, padding=1),
            _ResidualBlock(channels),
            _ResidualBlock(channels),
        )


class ImpalaDeepTorso(_ConvFC):
    """Espeholt et al. 2018 (IMPALA) deep net: 3 sections (16, 32, 32 channels), ReLU, FC hidden.

    15 conv layers in all; each section halves H and W (rounding up), so any image size fits.

    On CPU the input is made channels-last: PyTorch's NCHW max-pool is slow there, and on one
    thread this made the 84x84 torso 2.6x faster in inference and 1.6x in training (same results).
    """

    def __init__(self, obs_shape: tuple[int, ...], hidden_size: int, channels: Sequence[int] = (16, 32, 32)):
        layers: list[nn.Module] = []
        c = obs_shape[0]
        for ch in channels:
            layers.append(_ImpalaSection(c, ch))
            c = ch
        layers.append(nn.ReLU())
        super().__init__(nn.Sequential(*layers), obs_shape, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        return super().forward(x)


class MinAtarTorso(_ConvFC):
    """Young & Tian 2019 (MinAtar): conv 16 3x3/1 (no padding), FC hidden, ReLU.

    The paper used FC 128; here the width is ``cfg.hidden_size`` (256 by default).
    """

    channels_last_training = False   # one small conv: channels-last measured ~20% slower

    def __init__(self, obs_shape: tuple[int, ...], hidden_size: int):
        convs = nn.Sequential(nn.Conv2d(obs_shape[0], 16, 3, stride=1), nn.ReLU(inplace=True))
        super().__init__(convs, obs_shape, hidden_size)


class MLPTorso(nn.Module):
    """Flattened observation -> (Linear, ReLU) per ``mlp_sizes`` -> Linear hidden, ReLU."""

    channels_last_training = False

    def __init__(self, obs_shape: tuple[int, ...], mlp_sizes: Sequence[int], hidden_size: int):
        super().__init__()
        sizes = [math.prod(obs_shape), *mlp_sizes, hidden_size]
        layers: list[nn.Module] = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(n_in, n_out), nn.ReLU()]
        self.layers = nn.Sequential(*layers)
        self.out_size = hidden_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x.flatten(1))


def make_torso(name: str, obs_shape: Sequence[int], hidden_size: int = 256,
               mlp_sizes: Sequence[int] = (64, 64)) -> nn.Module:
    """Build torso ``name`` (``auto`` allowed) for ``obs_shape``; raises UserError if it does not fit."""
    shape = tuple(int(s) for s in obs_shape)
    name = resolve_torso(name, shape)
    if name == "nature":
        return NatureTorso(shape)
    if name == "impala_shallow":
        return ImpalaShallowTorso(shape, hidden_size)
    if name == "impala_deep":
        return ImpalaDeepTorso(shape, hidden_size)
    if name == "minatar":
        return MinAtarTorso(shape, hidden_size)
    return MLPTorso(shape, mlp_sizes, hidden_size)
