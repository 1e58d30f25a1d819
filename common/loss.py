"""EfficientZero's loss (docs/algorithm.md, 'Augmentation' and 'Unrolled loss'): the batch of `common/targets.py`,
augmented, unrolled K steps and scored against its targets.

    loss, terms, value0 = unrolled_loss(net, batch, ...)       # 1 x prefix + 1 x policy + 0.25 x value + 2 x SimSiam
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from common.networks import EfficientZeroNet, amp_context, scalar_to_support, support_to_scalar
from common.targets import Targets


@dataclass(frozen=True)
class LossConfig:
    num_unroll_steps: int = 5  # K
    value_prefix_weight: float = 1.0
    policy_weight: float = 1.0
    value_weight: float = 0.25  # MuZero Reanalyse's down-weighting of the value loss
    consistency_weight: float = 2.0  # EfficientZero's SimSiam term
    augment: bool = True  # random shift + intensity on the learner's inputs (SPR); off on MinAtar's 10x10 boards
    shift_pad: int = 4


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
    amp = amp_context(device, autocast)

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
