"""EfficientZero's learner: reanalysed targets, augmentation, the unrolled loss, the schedules (docs/algorithm.md,
'Reanalysis' to 'Optimiser and learning rate').

    raw = gather_batch(replay, ids, ...)                       # common/replay.py: frames, rewards, masks
    arrays = reanalyse(raw, weights, target_net, ...)          # n-step values, value prefixes, fresh search policies
    targets = to_device(arrays, device)                        # the learner's batch (stacks built on the device)
    loss, terms, value0 = unrolled_loss(net, targets, ...)     # 1 x prefix + 1 x policy + 0.25 x value + 2 x SimSiam
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from common.mcts import MCTSConfig
from common.networks import EfficientZeroNet, scalar_to_support, support_to_scalar
from common.envs import FRAME_STACK
from common.replay import RawBatch, stacks, value_prefix_targets, value_targets
from common.search import run_search


@dataclass(frozen=True)
class LossConfig:
    num_unroll_steps: int = 5  # K
    value_prefix_weight: float = 1.0
    policy_weight: float = 1.0
    value_weight: float = 0.25  # MuZero Reanalyse's down-weighting of the value loss
    consistency_weight: float = 2.0  # EfficientZero's SimSiam term
    augment: bool = True  # random shift + intensity on the learner's inputs (SPR); off on MinAtar's 10x10 boards
    shift_pad: int = 4


@dataclass
class TargetArrays:
    """A reanalysed batch on the host, in numpy: what `reanalyse` returns and a reanalysis worker hands over.
    Positions k = 0..K as in `RawBatch`; the inputs stay a window of frames (see `common.replay.stacks`)."""

    frames: np.ndarray  # uint8 [B, K+4, C, H, W]: frames of times t-3..t+K
    obs_base: np.ndarray  # int64 [B, K+1]: window index of the stack at t+k
    actions: np.ndarray  # int64 [B, K]
    mask: np.ndarray  # float32 [B, K+1]
    value: np.ndarray  # float32 [B, K+1]: n-step value targets z
    value_prefix: np.ndarray  # float32 [B, K]: targets of the prefix after unroll step k = 1..K
    policy: np.ndarray  # float32 [B, K+1, A]
    weights: np.ndarray  # float32 [B]: PER importance weights
    inside: np.ndarray  # bool [B, K+1]: observation t+k is inside its trajectory (has value and policy targets)


@dataclass
class Targets:
    """A training batch on the learner's device (`to_device` of `TargetArrays`). Positions k = 0..K."""

    obs: torch.Tensor  # uint8 [B, K+1, 4C, H, W]: the stacks at t..t+K
    actions: torch.Tensor  # int64 [B, K]
    mask: torch.Tensor  # float [B, K+1]
    value: torch.Tensor  # float [B, K+1]
    value_prefix: torch.Tensor  # float [B, K]
    policy: torch.Tensor  # float [B, K+1, A]
    weights: torch.Tensor  # float [B]
    inside: torch.Tensor  # bool [B, K+1]


# ---------------------------------------------------------------------------------------------------------
# Targets (reanalysis with the target network)
# ---------------------------------------------------------------------------------------------------------
@torch.no_grad()
def initial_values(net: EfficientZeroNet, obs, chunk_size: int | None = None, autocast: bool = False) -> np.ndarray:
    """Scalar value of the initial inference for uint8 stacks [M, 4C, H, W] (numpy or torch; eval-mode BN)."""
    device = next(net.parameters()).device
    net.eval()
    out = []
    size = chunk_size or max(1, len(obs))
    amp = _autocast(device, autocast)
    for i in range(0, len(obs), size):
        with amp:
            logits = net.initial_inference(torch.as_tensor(obs[i:i + size]).to(device)).value_logits
        out.append(support_to_scalar(logits, net.config.support_size).cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def reanalyse(raw: RawBatch, weights: np.ndarray, target_net: EfficientZeroNet, mcts: MCTSConfig,
              loss_cfg: LossConfig, reanalyse_fraction: float, rng: np.random.Generator,
              chunk_size: int | None = None, autocast: bool = False, cuda_graph: bool = False,
              timing: dict | None = None) -> tuple[TargetArrays, dict]:
    """Value targets bootstrapped from the target network, value-prefix targets, and policy targets from a fresh
    search with the target network (root noise on) for `reanalyse_fraction` of the samples, at all K+1 positions
    in one batched search; the stored self-play visit distribution for the rest; zeros past the trajectory end.
    The frame windows go to the target network's device once; the stacks it needs are built there.
    timing: if given, adds seconds to "bootstrap", "search_net" and "search_tree"."""
    B, K1 = raw.inside.shape
    device = next(target_net.parameters()).device
    frames = torch.as_tensor(raw.frames).to(device)
    t0 = time.perf_counter()
    boot = np.zeros((B, K1), np.float32)
    if raw.bootstrap_mask.any():
        boot[raw.bootstrap_mask] = initial_values(target_net, stacks(frames, raw.bootstrap_base, raw.bootstrap_mask),
                                                  chunk_size, autocast)
    if timing is not None:
        timing["bootstrap"] = timing.get("bootstrap", 0.0) + time.perf_counter() - t0
    value = value_targets(raw.rewards, raw.td_steps, boot, raw.bootstrap_mask, raw.inside, mcts.discount)
    value_prefix = value_prefix_targets(raw.rewards, K1 - 1)
    policy = raw.stored_policy.copy()
    fresh = (rng.random(B) < reanalyse_fraction)[:, None] & raw.inside
    stats = {"reanalyse/roots": int(fresh.sum())}
    if fresh.any():
        # pad_to: one captured search step serves every batch, whatever its number of fresh roots
        res = run_search(target_net, stacks(frames, raw.obs_base, fresh), mcts, rng=rng, add_noise=True,
                         chunk_size=chunk_size, autocast=autocast, cuda_graph=cuda_graph, pad_to=B * K1,
                         timing=timing)
        policy[fresh] = res.policy
        stats["reanalyse/root_value"] = float(res.root_value.mean())
    stats["reanalyse/value_target"] = float(value[:, 0].mean())
    stats["reanalyse/td_steps"] = float(raw.td_steps.mean())
    return TargetArrays(raw.frames[:, :K1 + FRAME_STACK - 1], raw.obs_base, raw.actions, raw.mask, value,
                        value_prefix, policy, np.asarray(weights, np.float32), raw.inside), stats


def to_device(t: TargetArrays, device) -> Targets:
    """The learner's batch: every array copied to `device` (never a view of `t`, which a worker may reuse), the
    input stacks built there from the frame windows."""

    def dev(x, dtype=torch.float32):  # one copy, straight to the device (copy=True: a new tensor on the CPU too)
        return torch.from_numpy(np.ascontiguousarray(x)).to(device, dtype, copy=True)

    frames = dev(t.frames, torch.uint8)
    return Targets(stacks(frames, t.obs_base), dev(t.actions, torch.int64), dev(t.mask), dev(t.value),
                   dev(t.value_prefix), dev(t.policy), dev(t.weights), dev(t.inside, torch.bool))


def make_targets(raw: RawBatch, weights: np.ndarray, target_net: EfficientZeroNet, mcts: MCTSConfig,
                 loss_cfg: LossConfig, reanalyse_fraction: float, rng: np.random.Generator, device,
                 chunk_size: int | None = None, autocast: bool = False) -> tuple[Targets, dict]:
    """`reanalyse` then `to_device`: the training batch in one call."""
    arrays, stats = reanalyse(raw, weights, target_net, mcts, loss_cfg, reanalyse_fraction, rng, chunk_size,
                              autocast)
    return to_device(arrays, device), stats


# ---------------------------------------------------------------------------------------------------------
# Augmentation (SPR): replicate-pad then random crop, and random intensity; one draw per sample
# ---------------------------------------------------------------------------------------------------------
def augment(x: torch.Tensor, pad: int, rng: np.random.Generator) -> torch.Tensor:
    """x: float [B, C, H, W] in [0, 1] (C may hold several stacked observations: they share the shift).
    Random translation by up to `pad` pixels (replicate padding, as a crop of the padded image) and intensity
    x * (1 + 0.05 clip(N(0, 1), -2, 2))."""
    B, C, H, W = x.shape
    if pad > 0:
        xp = F.pad(x, (pad, pad, pad, pad), mode="replicate")
        dy = torch.as_tensor(rng.integers(0, 2 * pad + 1, B), device=x.device)
        dx = torch.as_tensor(rng.integers(0, 2 * pad + 1, B), device=x.device)
        rows = (dy[:, None] + torch.arange(H, device=x.device))[:, None, :, None]  # [B, 1, H, 1]
        cols = (dx[:, None] + torch.arange(W, device=x.device))[:, None, None, :]  # [B, 1, 1, W]
        b = torch.arange(B, device=x.device)[:, None, None, None]
        c = torch.arange(C, device=x.device)[None, :, None, None]
        x = xp[b, c, rows, cols]
    noise = np.clip(rng.standard_normal(B), -2.0, 2.0)
    scale = torch.as_tensor(1.0 + 0.05 * noise, dtype=x.dtype, device=x.device).view(B, 1, 1, 1)
    return x * scale


# ---------------------------------------------------------------------------------------------------------
# The unrolled loss
# ---------------------------------------------------------------------------------------------------------
def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return -(target * F.log_softmax(logits.float(), dim=-1)).sum(-1)


def _autocast(device, enabled: bool):
    device = torch.device(device)
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def unrolled_loss(net: EfficientZeroNet, batch: Targets, cfg: LossConfig, rng: np.random.Generator,
                  autocast: bool = False, return_steps: bool = False):
    """Returns (loss, per-term means, predicted root value v_0 [B]) and, with return_steps, also
    (the augmented float input [B, C, H, W], the `Unroll` of the per-step outputs) for distillation.

    loss = mean_b w_b * [1 x sum_{k=1..K} CE(prefix) + 1 x sum_{k=0..K} CE(policy) + 0.25 x sum_{k=0..K} CE(value)
    + 2 x sum_{k=1..K} -cos(pred(proj(s_k)), sg(proj(h(o_{t+k}))))], with terms at k >= 1 masked past the end.
    The caller scales the gradient by 1/K (docs/algorithm.md, 'Unrolled loss')."""
    K, S = cfg.num_unroll_steps, net.config.support_size
    B = batch.obs.shape[0]
    device = batch.obs.device
    amp = _autocast(device, autocast)

    def inputs(x):  # uint8 [B, n*4C, H, W] -> float, augmented with one draw per sample
        x = x.float().div_(255.0)
        return augment(x, cfg.shift_pad, rng) if cfg.augment else x

    value_support = scalar_to_support(batch.value, S)  # [B, K+1, 2S+1]
    prefix_support = scalar_to_support(batch.value_prefix, S)  # [B, K, 2S+1]
    obs0 = inputs(batch.obs[:, 0])
    # Consistency targets: the K later observations, augmented independently of the input (shared shift across
    # the K stacks of a sample), encoded without gradient by the same (online) network.
    _, _, C, H, W = batch.obs.shape
    later = inputs(batch.obs[:, 1:].reshape(B, K * C, H, W)).view(B * K, C, H, W)
    with torch.no_grad(), amp:
        target_proj = net.project(net.representation(later), with_grad=False).float().view(B, K, -1)

    with amp:
        steps = net.unroll(obs0, batch.actions, halve_gradient=True)
        projs = [net.project(latent, with_grad=True) for latent in steps.latents[1:]]
    value0 = support_to_scalar(steps.value_logits[0].detach(), S)
    value_loss = soft_cross_entropy(steps.value_logits[0], value_support[:, 0])
    policy_loss = soft_cross_entropy(steps.policy_logits[0], batch.policy[:, 0])
    prefix_loss = torch.zeros(B, device=device)
    consistency_loss = torch.zeros(B, device=device)
    for k in range(1, K + 1):
        m = batch.mask[:, k]
        prefix_loss = prefix_loss + soft_cross_entropy(steps.value_prefix_logits[k - 1], prefix_support[:, k - 1]) * m
        policy_loss = policy_loss + soft_cross_entropy(steps.policy_logits[k], batch.policy[:, k]) * m
        value_loss = value_loss + soft_cross_entropy(steps.value_logits[k], value_support[:, k]) * m
        consistency_loss = consistency_loss - F.cosine_similarity(projs[k - 1].float(), target_proj[:, k - 1],
                                                                  dim=-1) * m

    per_sample = (cfg.value_prefix_weight * prefix_loss + cfg.policy_weight * policy_loss
                  + cfg.value_weight * value_loss + cfg.consistency_weight * consistency_loss)
    loss = (batch.weights * per_sample).mean()
    terms = {"value_prefix": prefix_loss.mean(), "policy": policy_loss.mean(), "value": value_loss.mean(),
             "consistency": consistency_loss.mean(), "total": loss}
    if return_steps:
        return loss, terms, value0, obs0, steps
    return loss, terms, value0


# ---------------------------------------------------------------------------------------------------------
# Schedules
# ---------------------------------------------------------------------------------------------------------
def learning_rate(update: int, lr: float = 0.2, warmup: int = 1000, decay_steps: int = 100_000,
                  decay_rate: float = 0.1) -> float:
    """Linear warm-up to `lr` over `warmup` updates, then x decay_rate every `decay_steps` updates."""
    if update < warmup:
        return lr * (update + 1) / warmup
    return lr * decay_rate ** (update // decay_steps)


def visit_temperature(update: int, train_updates: int) -> float:
    """Self-play action temperature (EfficientZero Atari): 1 for the first half of training, 0.5 to 75%, then
    0.25."""
    if update < 0.5 * train_updates:
        return 1.0
    if update < 0.75 * train_updates:
        return 0.5
    return 0.25
