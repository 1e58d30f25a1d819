"""EfficientZero networks: the ResNet teacher and the MobileNetV2 (inverted-residual) student.

One class, `EfficientZeroNet`, builds both from a `NetConfig`; the config travels inside every checkpoint
(`config.to_dict()`), so any script rebuilds a model from the checkpoint alone.

Interface (all tensors batch-first):
    initial_inference(obs)                       -> InitialOutput(latent, policy_logits, value_logits)
    recurrent_inference(latent, lstm_state, a)   -> RecurrentOutput(latent, lstm_state, value_prefix_logits,
                                                                    policy_logits, value_logits)
    project(latent, with_grad)                   -> SimSiam projection (+ predictor head when with_grad)

Values and value prefixes are categorical over the support -S..S (601 atoms for S = 300); see
`scalar_to_support` / `support_to_scalar` for the transforms (docs/algorithm.md, 'Value support').
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

# ---------------------------------------------------------------------------------------------------------
# Scalar <-> categorical support (docs/algorithm.md, 'Value support')
# ---------------------------------------------------------------------------------------------------------
EPS = 0.001  # epsilon of the invertible value transform h(x) (Pohlen et al. 2018), as MuZero/EfficientZero


def value_transform(x: torch.Tensor) -> torch.Tensor:
    """h(x) = sign(x)(sqrt(|x| + 1) - 1) + eps x: squashes large returns so one support covers every game."""
    return torch.sign(x) * (torch.sqrt(torch.abs(x) + 1) - 1) + EPS * x


def inverse_value_transform(y: torch.Tensor) -> torch.Tensor:
    """Exact inverse of `value_transform`."""
    return torch.sign(y) * (((torch.sqrt(1 + 4 * EPS * (torch.abs(y) + 1 + EPS)) - 1) / (2 * EPS)) ** 2 - 1)


def scalar_to_support(x: torch.Tensor, support_size: int) -> torch.Tensor:
    """Two-hot encoding of h(x) on the integer support -S..S. Shape [...] -> [..., 2S + 1]."""
    y = value_transform(x.float()).clamp(-support_size, support_size)
    low = y.floor()
    p_high = y - low  # weight of the upper atom; the lower one gets the rest
    low_idx = (low + support_size).long()
    high_idx = (low_idx + 1).clamp(max=2 * support_size)  # at y = +S the upper atom has weight 0 anyway
    out = torch.zeros(*x.shape, 2 * support_size + 1, dtype=torch.float32, device=x.device)
    out.scatter_add_(-1, low_idx.unsqueeze(-1), (1 - p_high).unsqueeze(-1))
    out.scatter_add_(-1, high_idx.unsqueeze(-1), p_high.unsqueeze(-1))
    return out


def support_to_scalar(logits: torch.Tensor, support_size: int) -> torch.Tensor:
    """Expectation of softmax(logits) over the support, then h^-1. Shape [..., 2S + 1] -> [...]."""
    support = torch.arange(-support_size, support_size + 1, device=logits.device, dtype=torch.float32)
    y = (torch.softmax(logits.float(), dim=-1) * support).sum(-1)
    return inverse_value_transform(y)


# ---------------------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NetConfig:
    """Everything needed to rebuild a network. Stored in checkpoints as a plain dict."""

    obs_shape: tuple[int, int, int]
    """network input (stacked channels, height, width), e.g. (12, 96, 96) for 4 stacked RGB Atari frames"""
    num_actions: int
    block: str = "residual"
    """'residual' (teacher, EfficientZero) or 'inverted_residual' (student, MobileNetV2) in representation + dynamics"""
    channels: int = 64
    """channels of the hidden state (64 x 6 x 6 on Atari)"""
    downsample: bool = True
    """Atari: stride-2 stem + pooling, 96x96 -> 6x6. MinAtar: False (keeps 10x10)"""
    num_blocks: int = 1
    """blocks after the stem in representation, dynamics and prediction"""
    expand_ratio: int = 6
    """inverted-residual expansion ratio t (student only)"""
    reduced_channels: int = 16
    """channels of the 1x1 convs in front of the value, policy and value-prefix heads"""
    fc_hidden: int = 32
    """hidden width of the value / policy / value-prefix MLP heads"""
    lstm_hidden: int = 512
    """hidden size of the value-prefix LSTM"""
    proj_hidden: int = 1024
    """SimSiam projection hidden width"""
    proj_out: int = 1024
    """SimSiam projection output width"""
    pred_hidden: int = 512
    """SimSiam predictor-head hidden width (its output is proj_out)"""
    support_size: int = 300
    """categorical support -S..S for value and value prefix"""
    bn_momentum: float = 0.1
    norm: str = "batch"
    """normalisation in the acting networks (representation, dynamics, prediction): 'batch' (EfficientZero's
    BatchNorm) or 'layer' (per sample: GroupNorm with one group on feature maps, LayerNorm on vectors; the same
    parameters, no running statistics, so search in eval mode computes exactly what training did). The SimSiam
    projection, used in training only, keeps BatchNorm. See `norm_layer`."""
    state_norm: bool = False
    """min-max scale every hidden state to [0, 1] per sample after h and g (MuZero's scaling; EfficientZero's
    `state_norm` option): off on Atari as in EfficientZero's Atari config, on in the MinAtar configs. See
    `scale_state`."""

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["obs_shape"] = list(self.obs_shape)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "NetConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown network config fields {sorted(unknown)}; "
                             "was this checkpoint made by ez-distill?")
        d = dict(d)
        d["obs_shape"] = tuple(d["obs_shape"])
        return cls(**d)

    @property
    def latent_hw(self) -> tuple[int, int]:
        _, h, w = self.obs_shape
        if self.downsample:  # stride-2 conv, stride-2 block, two stride-2 poolings: /16 with ceil
            return math.ceil(h / 16), math.ceil(w / 16)
        return h, w


def teacher_config(obs_shape, num_actions: int, **overrides) -> NetConfig:
    """EfficientZero's Atari network (docs/algorithm.md, 'Teacher network'); on a 10x10 MinAtar input use
    `minatar_teacher_config`."""
    return NetConfig(obs_shape=tuple(obs_shape), num_actions=num_actions, block="residual", **overrides)


def student_config(obs_shape, num_actions: int, **overrides) -> NetConfig:
    """Default student (docs/algorithm.md, 'Student network'): inverted-residual blocks in representation and
    dynamics, the same 64x6x6 latent (so features distil without an adapter), an LSTM of 256 instead of 512 (the
    LSTM is 79% of the teacher's acting parameters) and a narrower SimSiam projection (896-896-768, predictor
    bottleneck 768/4 as in SimSiam) so that total parameters land at 59.9% of the teacher's (the seed paper's
    59.8%) and the acting part at 40%. Expansion ratio 2, not MobileNetV2's 6: on a 2-core CPU at batch 1 the
    student's 50-simulation decision took 72 / 80 / 126 / 130 ms with t = 1 / 2 / 4 / 6 against the teacher's
    96 ms (one run of `common.profile.profile_models`), so t >= 4 is slower than the ResNet it replaces."""
    kw = dict(block="inverted_residual", expand_ratio=2, lstm_hidden=256, proj_hidden=896, proj_out=768,
              pred_hidden=192)
    kw.update(overrides)
    return NetConfig(obs_shape=tuple(obs_shape), num_actions=num_actions, **kw)


# MinAtar (10x10xC, no downsampling): same design at the width of a CPU-sized run.
# Support 50 (h^-1(50) ~ 2,600) covers MinAtar's returns; 101 atoms instead of 601 keep the heads small.
# state_norm: without it a MinAtar Breakout teacher collapsed to one action and scored 0 (random: 0.43); its
# eval-mode value prefixes at unroll step 4 were 0.65 where train mode gave 0.08 (see `scale_state`). With it the
# same run scored 2.8 +- 1.9 after 1,000 updates.
MINATAR_TEACHER = dict(channels=32, downsample=False, reduced_channels=8, lstm_hidden=128, proj_hidden=256,
                       proj_out=256, pred_hidden=64, support_size=50, state_norm=True)
MINATAR_STUDENT = dict(channels=32, downsample=False, reduced_channels=8, lstm_hidden=48, proj_hidden=192,
                       proj_out=192, pred_hidden=48, support_size=50, expand_ratio=2, state_norm=True)


def minatar_teacher_config(obs_shape, num_actions: int, **overrides) -> NetConfig:
    return teacher_config(obs_shape, num_actions, **{**MINATAR_TEACHER, **overrides})


def minatar_student_config(obs_shape, num_actions: int, **overrides) -> NetConfig:
    return student_config(obs_shape, num_actions, **{**MINATAR_STUDENT, **overrides})


def default_config(role: str, family: str, obs_shape, num_actions: int, **overrides) -> NetConfig:
    """The default network of a role ('teacher' / 'student') for an environment family ('atari' / 'minatar')."""
    makers = {("teacher", "atari"): teacher_config, ("student", "atari"): student_config,
              ("teacher", "minatar"): minatar_teacher_config, ("student", "minatar"): minatar_student_config,
              # the toy environment of the learning tests has MinAtar-like planes. It keeps state_norm off: with it
              # a student trained without distillation learns Catch so well that it follows the teacher's play on
              # held-out states about as often as a distilled one (0.59 vs 0.65 in one CI run), which removes the
              # contrast the distillation test measures; without it, the tests' calibration holds.
              ("teacher", "toy"): functools.partial(minatar_teacher_config, state_norm=False),
              ("student", "toy"): functools.partial(minatar_student_config, state_norm=False)}
    if (role, family) not in makers:
        raise ValueError(f"no default network for role {role!r} and family {family!r}")
    return makers[role, family](obs_shape, num_actions, **overrides)


# ---------------------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------------------
def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def norm_layer(kind: str, n: int, momentum: float = 0.1, image: bool = True) -> nn.Module:
    """The normalisation after a conv (`image`) or a Linear / LSTM output, as NetConfig.norm says.

    Why 'layer' exists: in eval mode (search, acting) BatchNorm uses running statistics averaged over all the
    calls of an update, that is over the initial inference and the 5 unroll depths, while training normalised
    each depth by its own batch statistics. The depths differ (the LSTM starts every unroll from zeros), so the
    search sees another function than the one trained: on MinAtar Breakout a teacher predicted a first-step reward
    of 0.16 in eval mode where train mode gave 1.01 (real reward 1). Per-sample normalisation has no such gap.
    Why 'batch' stays the default: it is the paper's network, and in one calibration run per game (results/minatar
    README) 'layer' scored 5.75 against 4.88 on Breakout but learned a worse reward model (value-prefix loss 0.88
    against 0.59) and did not rescue Asterix."""
    if kind == "batch":
        return nn.BatchNorm2d(n, momentum=momentum) if image else nn.BatchNorm1d(n, momentum=momentum)
    if kind == "layer":  # per-channel / per-unit affine, as BatchNorm: the parameter count is unchanged
        return SampleNorm2d(n) if image else nn.LayerNorm(n)
    raise ValueError(f"unknown norm {kind!r}; use 'batch' or 'layer'")


class SampleNorm2d(nn.Module):
    """Normalise each sample over (C, H, W), then a per-channel affine: nn.GroupNorm(1, C), written out because
    GroupNorm's batch-size check does not trace to ONNX with a dynamic batch."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        var = (x - mean).pow(2).mean(dim=(1, 2, 3), keepdim=True)
        return (x - mean) * torch.rsqrt(var + self.eps) * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class ResidualBlock(nn.Module):
    """conv-BN-ReLU-conv-BN + skip, ReLU. A strided / widening block takes a 3x3 strided conv as its skip."""

    def __init__(self, cin: int, cout: int, stride: int = 1, momentum: float = 0.1, norm: str = "batch"):
        super().__init__()
        self.conv1 = conv3x3(cin, cout, stride)
        self.bn1 = norm_layer(norm, cout, momentum)
        self.conv2 = conv3x3(cout, cout)
        self.bn2 = norm_layer(norm, cout, momentum)
        self.skip = conv3x3(cin, cout, stride) if (stride != 1 or cin != cout) else None

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.skip is None else self.skip(x)))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand (t) + BN + ReLU6 -> 3x3 depthwise + BN + ReLU6 -> 1x1 linear projection + BN,
    identity skip when the shape is kept. No activation after the sum (the 'linear bottleneck')."""

    def __init__(self, cin: int, cout: int, stride: int = 1, expand_ratio: int = 6, momentum: float = 0.1,
                 norm: str = "batch"):
        super().__init__()
        hidden = cin * expand_ratio
        layers: list[nn.Module] = []
        if expand_ratio != 1:  # as MobileNetV2: with t = 1 the expansion would be an identity-sized 1x1 conv
            layers += [nn.Conv2d(cin, hidden, 1, bias=False), norm_layer(norm, hidden, momentum), nn.ReLU6()]
        layers += [
            nn.Conv2d(hidden, hidden, 3, stride=stride, padding=1, groups=hidden, bias=False),
            norm_layer(norm, hidden, momentum),
            nn.ReLU6(),
            nn.Conv2d(hidden, cout, 1, bias=False),
            norm_layer(norm, cout, momentum),
        ]
        self.body = nn.Sequential(*layers)
        self.use_skip = stride == 1 and cin == cout

    def forward(self, x):
        out = self.body(x)
        return x + out if self.use_skip else out


def make_block(cfg: NetConfig, cin: int, cout: int, stride: int = 1) -> nn.Module:
    if cfg.block == "residual":
        return ResidualBlock(cin, cout, stride, cfg.bn_momentum, cfg.norm)
    if cfg.block == "inverted_residual":
        return InvertedResidual(cin, cout, stride, cfg.expand_ratio, cfg.bn_momentum, cfg.norm)
    raise ValueError(f"unknown block type {cfg.block!r}; use 'residual' or 'inverted_residual'")


def mlp(sizes: list[int], momentum: float = 0.1, zero_last: bool = True, norm: str = "batch") -> nn.Sequential:
    """[Linear-norm-ReLU]* then Linear. The last Linear is zero-initialised so every head starts at a uniform
    policy / zero value (EfficientZero's init_zero)."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 2):
        layers += [nn.Linear(sizes[i], sizes[i + 1]), norm_layer(norm, sizes[i + 1], momentum, image=False), nn.ReLU()]
    last = nn.Linear(sizes[-2], sizes[-1])
    if zero_last:
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
    return nn.Sequential(*layers, last)


# ---------------------------------------------------------------------------------------------------------
# The three functions of MuZero: representation h, dynamics g, prediction f
# ---------------------------------------------------------------------------------------------------------
class Representation(nn.Module):
    def __init__(self, cfg: NetConfig):
        super().__init__()
        cin, c = cfg.obs_shape[0], cfg.channels
        m = cfg.bn_momentum
        if cfg.downsample:
            # 96 -> 48 (stem) -> 24 (strided block) -> 12 (pool) -> 6 (pool)
            self.body = nn.Sequential(
                nn.Conv2d(cin, c // 2, 3, stride=2, padding=1, bias=False),
                norm_layer(cfg.norm, c // 2, m),
                nn.ReLU(),
                make_block(cfg, c // 2, c // 2),
                make_block(cfg, c // 2, c, stride=2),
                make_block(cfg, c, c),
                nn.AvgPool2d(3, stride=2, padding=1),
                make_block(cfg, c, c),
                nn.AvgPool2d(3, stride=2, padding=1),
                *[make_block(cfg, c, c) for _ in range(cfg.num_blocks)],
            )
        else:
            self.body = nn.Sequential(
                conv3x3(cin, c), norm_layer(cfg.norm, c, m), nn.ReLU(),
                *[make_block(cfg, c, c) for _ in range(cfg.num_blocks)],
            )

    def forward(self, obs):
        return self.body(obs)


class Dynamics(nn.Module):
    """g(s, a): next latent and the value prefix predicted by an LSTM that runs along the unroll."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        c, m = cfg.channels, cfg.bn_momentum
        h, w = cfg.latent_hw
        self.conv = conv3x3(c + 1, c)  # +1: the action plane
        self.bn = norm_layer(cfg.norm, c, m)
        self.blocks = nn.Sequential(*[make_block(cfg, c, c) for _ in range(cfg.num_blocks)])
        self.conv1x1 = nn.Conv2d(c, cfg.reduced_channels, 1)
        self.bn_reduced = norm_layer(cfg.norm, cfg.reduced_channels, m)
        self.lstm = nn.LSTMCell(cfg.reduced_channels * h * w, cfg.lstm_hidden)
        self.bn_value_prefix = norm_layer(cfg.norm, cfg.lstm_hidden, m, image=False)
        self.fc = mlp([cfg.lstm_hidden, cfg.fc_hidden, 2 * cfg.support_size + 1], m, norm=cfg.norm)

    def forward(self, x, lstm_state):
        state = x[:, :-1]
        x = F.relu(self.bn(self.conv(x)) + state)
        next_latent = self.blocks(x)
        y = F.relu(self.bn_reduced(self.conv1x1(next_latent))).flatten(1)
        h, c = self.lstm(y, lstm_state)
        value_prefix_logits = self.fc(F.relu(self.bn_value_prefix(h)))
        return next_latent, (h, c), value_prefix_logits


class Prediction(nn.Module):
    """f(s): policy logits and value logits. Keeps the ResNet design in the student too (docs/algorithm.md,
    'Student network')."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        c, m = cfg.channels, cfg.bn_momentum
        h, w = cfg.latent_hw
        flat = cfg.reduced_channels * h * w
        self.blocks = nn.Sequential(*[ResidualBlock(c, c, momentum=m, norm=cfg.norm) for _ in range(cfg.num_blocks)])
        self.conv_value = nn.Conv2d(c, cfg.reduced_channels, 1)
        self.bn_value = norm_layer(cfg.norm, cfg.reduced_channels, m)
        self.fc_value = mlp([flat, cfg.fc_hidden, 2 * cfg.support_size + 1], m, norm=cfg.norm)
        self.conv_policy = nn.Conv2d(c, cfg.reduced_channels, 1)
        self.bn_policy = norm_layer(cfg.norm, cfg.reduced_channels, m)
        self.fc_policy = mlp([flat, cfg.fc_hidden, cfg.num_actions], m, norm=cfg.norm)

    def forward(self, latent):
        x = self.blocks(latent)
        value = self.fc_value(F.relu(self.bn_value(self.conv_value(x))).flatten(1))
        policy = self.fc_policy(F.relu(self.bn_policy(self.conv_policy(x))).flatten(1))
        return policy, value


def amp_context(device, enabled: bool, cache: bool = True):
    """Mixed precision where it is on: float16 autocast on CUDA (`--amp`), nothing on the CPU. `cache=False` for the
    search's captured step: autocast's cache of cast weights must not outlive a CUDA graph capture (PyTorch docs)."""
    if enabled and torch.device(device).type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16, cache_enabled=cache)
    return contextlib.nullcontext()


def _halve_gradient(x: torch.Tensor) -> torch.Tensor:
    # MuZero: the gradient through each unrolled latent is halved. As EfficientZero, the hook halves the whole
    # gradient arriving at the latent (from its own heads and from the next step).
    if x.requires_grad:
        x.register_hook(lambda g: g * 0.5)
    return x


def scale_state(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Per-sample min-max scaling of a hidden state [B, C, h, w] to [0, 1] (MuZero appendix G). Without it the
    dynamics' residual additions make latents grow along the unroll (mean x3.4 by step 5 on MinAtar Breakout), so
    the shared prediction BatchNorm's running statistics, averaged over unroll depths, no longer match the
    per-call batch statistics it trained with, and eval-mode values and value prefixes drift far from train-mode
    ones (see docs/differences.md, 'The batch-norm trap at small scale')."""
    flat = x.flatten(1)
    lo = flat.min(1, keepdim=True).values
    scale = (flat.max(1, keepdim=True).values - lo).clamp_min(eps)
    return ((flat - lo) / scale).view_as(x)


class InitialOutput(NamedTuple):
    latent: torch.Tensor  # [B, C, h, w]
    policy_logits: torch.Tensor  # [B, A]
    value_logits: torch.Tensor  # [B, 2S+1]


class RecurrentOutput(NamedTuple):
    latent: torch.Tensor  # [B, C, h, w]
    lstm_state: tuple[torch.Tensor, torch.Tensor]  # (h, c), each [B, lstm_hidden]
    value_prefix_logits: torch.Tensor  # [B, 2S+1]
    policy_logits: torch.Tensor  # [B, A]
    value_logits: torch.Tensor  # [B, 2S+1]


# The value-prefix LSTM starts again from zeros every 5 unroll steps (EfficientZero's horizon): the unroll below, the
# search (`MCTSConfig.value_prefix_horizon`) and the value-prefix targets (`targets.value_prefix_targets`) agree on it.
VALUE_PREFIX_HORIZON = 5


@dataclass
class Unroll:
    """What a network predicts along K actions from one observation: latents, policy and value logits at k = 0..K;
    value-prefix logits and the LSTM state (h, c) after each step k = 1..K."""

    latents: list[torch.Tensor]
    policy_logits: list[torch.Tensor]
    value_logits: list[torch.Tensor]
    value_prefix_logits: list[torch.Tensor]
    hidden: list[torch.Tensor]
    cell: list[torch.Tensor]


class EfficientZeroNet(nn.Module):
    """Teacher (cfg.block == 'residual') or student (cfg.block == 'inverted_residual')."""

    ACTING_MODULES = ("representation", "dynamics", "prediction")  # what a deployed agent runs

    def __init__(self, cfg: NetConfig):
        super().__init__()
        self.config = cfg
        self.representation = Representation(cfg)
        self.dynamics = Dynamics(cfg)
        self.prediction = Prediction(cfg)
        # SimSiam consistency (training only): projection of a latent, and a predictor head on the online branch
        h, w = cfg.latent_hw
        flat = cfg.channels * h * w
        ph, po = cfg.proj_hidden, cfg.proj_out
        self.projection = nn.Sequential(
            nn.Linear(flat, ph), nn.BatchNorm1d(ph), nn.ReLU(),
            nn.Linear(ph, ph), nn.BatchNorm1d(ph), nn.ReLU(),
            nn.Linear(ph, po), nn.BatchNorm1d(po),
        )
        self.projection_head = nn.Sequential(
            nn.Linear(po, cfg.pred_hidden), nn.BatchNorm1d(cfg.pred_hidden), nn.ReLU(),
            nn.Linear(cfg.pred_hidden, po),
        )

    # -- inference --------------------------------------------------------------------------------------------
    @staticmethod
    def prepare_obs(obs: torch.Tensor) -> torch.Tensor:
        """uint8 frames (Atari pixels, MinAtar 0/255 planes) -> float in [0, 1]; floats pass through."""
        return obs.float().div_(255.0) if obs.dtype == torch.uint8 else obs

    def initial_inference(self, obs: torch.Tensor) -> InitialOutput:
        latent = self.representation(self.prepare_obs(obs))
        if self.config.state_norm:
            latent = scale_state(latent)
        policy, value = self.prediction(latent)
        return InitialOutput(latent, policy, value)

    def initial_lstm_state(self, batch: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.zeros(batch, self.config.lstm_hidden, device=device)
        return z, z.clone()

    def recurrent_inference(self, latent, lstm_state, action: torch.Tensor) -> RecurrentOutput:
        # The action enters as one constant plane a/|A| (EfficientZero's Atari encoding, not a one-hot).
        b, _, h, w = latent.shape
        plane = (action.to(latent.dtype) / self.config.num_actions).view(b, 1, 1, 1).expand(b, 1, h, w)
        next_latent, lstm_state, value_prefix = self.dynamics(torch.cat([latent, plane], dim=1), lstm_state)
        if self.config.state_norm:
            next_latent = scale_state(next_latent)
        policy, value = self.prediction(next_latent)
        return RecurrentOutput(next_latent, lstm_state, value_prefix, policy, value)

    def unroll(self, obs: torch.Tensor, actions: torch.Tensor, halve_gradient: bool = False) -> Unroll:
        """h, then g along the actions [B, K] taken, with the LSTM restarted every VALUE_PREFIX_HORIZON steps: the
        learner's loss (stage 1 and the student), the frozen teacher's targets (stage 2) and the inspection view all
        unroll here. `halve_gradient`: the gradient into each next latent is halved (MuZero; training only)."""
        init = self.initial_inference(obs)
        u = Unroll([init.latent], [init.policy_logits], [init.value_logits], [], [], [])
        latent, state = init.latent, self.initial_lstm_state(obs.shape[0], obs.device)
        for k in range(1, actions.shape[1] + 1):
            step = self.recurrent_inference(latent, state, actions[:, k - 1])
            for field, x in zip(("latents", "policy_logits", "value_logits", "value_prefix_logits", "hidden", "cell"),
                                (step.latent, step.policy_logits, step.value_logits, step.value_prefix_logits,
                                 *step.lstm_state)):
                getattr(u, field).append(x)
            latent = _halve_gradient(step.latent) if halve_gradient else step.latent
            state = step.lstm_state
            if k % VALUE_PREFIX_HORIZON == 0:
                state = self.initial_lstm_state(obs.shape[0], obs.device)
        return u

    def project(self, latent: torch.Tensor, with_grad: bool = True) -> torch.Tensor:
        """SimSiam: online branch (with_grad) = predictor(projection(s)); target branch = stopgrad(projection(s))."""
        proj = self.projection(latent.flatten(1))
        return self.projection_head(proj) if with_grad else proj.detach()

    def forward(self, obs):  # for tools that want a plain forward (e.g. summaries): the initial inference
        return self.initial_inference(obs)

    # -- bookkeeping ------------------------------------------------------------------------------------------
    def acting_modules(self) -> list[nn.Module]:
        return [getattr(self, n) for n in self.ACTING_MODULES]


class FeatureAdapter(nn.Module):
    """FitNets-style regressors mapping student features to the teacher's sizes for feature distillation:
    1x1 conv for the latent, Linear for the LSTM hidden and cell states. Identity where sizes already match.
    Trained with the student, never deployed, and not counted in the student's parameters. `always`: learnable
    regressors even where sizes match (FitNets), so that the student's own features are not pulled onto the
    teacher's directly."""

    def __init__(self, student: NetConfig, teacher: NetConfig, always: bool = False):
        super().__init__()
        if student.latent_hw != teacher.latent_hw:
            raise ValueError(f"student latent {student.latent_hw} and teacher latent {teacher.latent_hw} differ in "
                             "spatial size; a 1x1 adapter cannot align them")
        same_c = student.channels == teacher.channels and not always
        same_h = student.lstm_hidden == teacher.lstm_hidden and not always
        self.latent = nn.Identity() if same_c else nn.Conv2d(student.channels, teacher.channels, 1)
        self.hidden = nn.Identity() if same_h else nn.Linear(student.lstm_hidden, teacher.lstm_hidden)
        self.cell = nn.Identity() if same_h else nn.Linear(student.lstm_hidden, teacher.lstm_hidden)

    def forward(self, latent, lstm_state):
        h, c = lstm_state
        return self.latent(latent), (self.hidden(h), self.cell(c))


def online_and_target(cfg: NetConfig, device) -> tuple[EfficientZeroNet, EfficientZeroNet]:
    """The trained network and its target copy: the same weights at the start, always in eval mode, refreshed from
    the trained one every --target-update-interval updates (it makes the reanalysed targets)."""
    net = EfficientZeroNet(cfg).to(device)
    target_net = EfficientZeroNet(cfg).to(device)
    target_net.load_state_dict(net.state_dict())
    return net, target_net.eval()


def count_params(module: nn.Module | list[nn.Module]) -> int:
    mods = module if isinstance(module, list) else [module]
    return sum(p.numel() for m in mods for p in m.parameters())


def count_acting_params(net: EfficientZeroNet) -> int:
    return count_params(net.acting_modules())
