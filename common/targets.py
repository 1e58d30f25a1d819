"""Training targets (docs/algorithm.md, 'n-step value targets and off-policy correction' and 'Reanalysis'): what a
sampled batch is gathered into, and what the target network's reanalysis makes of it.

    raw = gather_batch(replay, ids, ...)                       # frames, actions, rewards, masks, n per sample
    arrays = reanalyse(raw, weights, target_net, ...)          # n-step values, value prefixes, fresh search policies
    batch = to_device(arrays, device)                          # the learner's batch (stacks built on the device)
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from common.envs import DISCOUNT, FRAME_STACK
from common.networks import VALUE_PREFIX_HORIZON, EfficientZeroNet, amp_context, support_to_scalar
from common.replay import ReplayBuffer
from common.search import run_search
from common.tree import MCTSConfig


def td_steps_for_age(age: np.ndarray, td_steps: int = 5, age_per_step: int = 30_000) -> np.ndarray:
    """Off-policy correction (EfficientZero): the n of the n-step value target shrinks by one for every
    `age_per_step` transitions stored since the sample was, never below 1."""
    return np.clip(td_steps - np.asarray(age) // age_per_step, 1, td_steps).astype(np.int64)


# ---------------------------------------------------------------------------------------------------------
# The raw material of one training batch
# ---------------------------------------------------------------------------------------------------------
@dataclass
class RawBatch:
    """Everything targets are made from, gathered from the segments. K = unroll steps, n = td steps (per sample).

    Positions k = 0..K refer to observation t + k of the sampled transition t. Frames are gathered once per sample
    as a window of the times t-3 .. t+K+n_max (W = K + n_max + 4 frames, far fewer bytes than the 2 x (K+1) stacks
    of 4 frames they make); the stack at time t + j is window frames j..j+3, and `obs_base` / `bootstrap_base` say
    which j each position uses. `stacks()` builds them (numpy or torch, so on the device that needs them)."""

    ids: np.ndarray  # [B] global ids (for priority updates)
    frames: np.ndarray  # uint8 [B, W, C, H, W]: frames of times t-3..t+K+n_max (clamped to the stored ones)
    obs_base: np.ndarray  # int64 [B, K+1]: window index of the stack at t+k (inputs and consistency targets)
    actions: np.ndarray  # int64 [B, K]: a_t..a_{t+K-1}, uniformly random past the trajectory's end
    mask: np.ndarray  # float32 [B, K+1]: 1 where unroll step k follows a real transition (mask[:, 0] = 1)
    rewards: np.ndarray  # float32 [B, K + n_max]: r_t.., zero past the stored data
    td_steps: np.ndarray  # int64 [B]: n after the off-policy correction
    bootstrap_base: np.ndarray  # int64 [B, K+1]: window index of the stack at t+k+n
    bootstrap_mask: np.ndarray  # bool [B, K+1]: position k bootstraps from v(o_{t+k+n})
    inside: np.ndarray  # bool [B, K+1]: observation t+k has a transition after it (value and policy targets exist)
    stored_policy: np.ndarray  # float32 [B, K+1, A]: self-play visit distribution at t+k (zeros where invalid)

    @property
    def obs(self) -> np.ndarray:
        """uint8 [B, K+1, 4C, H, W]: the stacks at t..t+K (past a trajectory's end: the last one)."""
        return stacks(self.frames, self.obs_base)

    @property
    def bootstrap_obs(self) -> np.ndarray:
        """uint8 [B, K+1, 4C, H, W]: the stacks at t+k+n (meaningful where bootstrap_mask)."""
        return stacks(self.frames, self.bootstrap_base)


def stacks(frames, base, select=None):
    """Network inputs from frame windows: frames [B, W, C, H, W], base [B, P] -> [B, P, 4C, H, W], the stack of
    position p being frames[b, base[b, p] : base[b, p] + 4] on the channel axis, oldest first. With `select`
    (bool [B, P]) only the selected positions, [M, 4C, H, W]. numpy arrays or torch tensors (on any device)."""
    B, _, C, H, W = frames.shape
    if isinstance(frames, np.ndarray):
        base = np.asarray(base)
        b = np.broadcast_to(np.arange(B)[:, None], base.shape)
        offsets = np.arange(FRAME_STACK)
    else:
        import torch  # this module stays torch-free for numpy users; tensors come from callers that have it

        base = torch.as_tensor(base, device=frames.device)
        b = torch.arange(B, device=frames.device)[:, None].expand(base.shape)
        offsets = torch.arange(FRAME_STACK, device=frames.device)
        select = None if select is None else torch.as_tensor(select, device=frames.device)
    if select is not None:
        b, base = b[select], base[select]
    out = frames[b[..., None], base[..., None] + offsets]  # [..., 4, C, H, W]
    return out.reshape(*base.shape, FRAME_STACK * C, H, W)


def gather_batch(buffer: ReplayBuffer, ids: np.ndarray, num_unroll_steps: int, td_steps: int, num_actions: int,
                 rng: np.random.Generator, age_per_step: int = 30_000) -> RawBatch:
    K, B = num_unroll_steps, len(ids)
    seg_idx, pos = buffer.locate(ids)
    n = td_steps_for_age(buffer.total_pushed - np.asarray(ids), td_steps, age_per_step)
    k = np.arange(K + 1)
    seg0 = buffer.segments[seg_idx[0]]
    window = np.arange(-(FRAME_STACK - 1), K + td_steps + 1)  # times t-3 .. t+K+n_max, relative to t
    frames = np.empty((B, len(window), *seg0.frames.shape[1:]), np.uint8)
    obs_base = np.empty((B, K + 1), np.int64)
    bootstrap_base = np.empty((B, K + 1), np.int64)
    actions = rng.integers(0, num_actions, size=(B, K))
    rewards = np.zeros((B, K + td_steps), np.float32)
    stored_policy = np.zeros((B, K + 1, num_actions), np.float32)
    mask = np.zeros((B, K + 1), np.float32)
    inside = np.zeros((B, K + 1), bool)
    bootstrap_mask = np.zeros((B, K + 1), bool)
    for b in range(B):
        seg, t = buffer.segments[seg_idx[b]], int(pos[b])
        L = seg.num_stored
        left = L - t  # transitions stored from t on (t < T <= L, so left >= 1)
        times = t + k
        # Before the first stored frame: repeat it (trajectory start); past the last (time L): repeat that one.
        frames[b] = seg.frames[np.clip(t + window + seg.history, 0, seg.history + L)]
        obs_base[b] = np.minimum(k, left)  # past L the stack is never used (masked): repeat the last, at time L
        m = min(K, left)
        actions[b, :m] = seg.actions[t:t + m]
        mask[b] = k <= left  # step k exists iff transition t+k-1 does: k - 1 < left
        r = min(K + td_steps, left)
        rewards[b, :r] = seg.rewards[t:t + r]
        p = min(K + 1, left)
        stored_policy[b, :p] = seg.policies[t:t + p]
        # Value at t+k: zero at and past the end of an ended trajectory. A non-ended segment always holds
        # K + n_max transitions of padding, so t + k + n <= L there.
        open_end = not seg.ended
        inside[b] = open_end | (times < L)
        bootstrap_mask[b] = inside[b] & (open_end | (times + n[b] < L))
        bootstrap_base[b] = np.minimum(k + n[b], left)
    return RawBatch(np.asarray(ids), frames, obs_base, actions.astype(np.int64), mask, rewards, n, bootstrap_base,
                    bootstrap_mask, inside, stored_policy)


def value_targets(rewards: np.ndarray, td_steps: np.ndarray, bootstrap_values: np.ndarray,
                  bootstrap_mask: np.ndarray, inside: np.ndarray, discount: float) -> np.ndarray:
    """z_{t+k} = sum_{i<n} gamma^i r_{t+k+i} + gamma^n v(o_{t+k+n}) [if bootstrapped], 0 where not valid.

    rewards [B, K + n_max] (zero past the data, so sums stop at the trajectory's end); td_steps [B];
    bootstrap_values, bootstrap_mask, inside [B, K+1]. Returns float32 [B, K+1]."""
    B, K1 = inside.shape
    n_max = rewards.shape[1] - (K1 - 1)
    i = np.arange(n_max)
    # discount^i for i < n (per sample), 0 beyond: one weight row per sample
    w = np.where(i[None, :] < td_steps[:, None], discount ** i[None, :], 0.0)  # [B, n_max]
    windows = np.stack([rewards[:, k:k + n_max] for k in range(K1)], axis=1)  # [B, K+1, n_max]
    z = (windows * w[:, None, :]).sum(-1)
    z = z + np.where(bootstrap_mask, discount ** td_steps[:, None] * bootstrap_values, 0.0)
    return np.where(inside, z, 0.0).astype(np.float32)


def value_prefix_targets(rewards: np.ndarray, num_unroll_steps: int, horizon: int = VALUE_PREFIX_HORIZON) -> np.ndarray:
    """Target of the value prefix after unroll step k = 1..K: the undiscounted sum of rewards r_{t+j} over the
    steps j of the current LSTM horizon, which restarts every `horizon` steps (j from horizon * ((k-1) // horizon)
    to k - 1). Rewards past the data are zero, so the prefix holds its value there. Returns [B, K]."""
    out = np.zeros((rewards.shape[0], num_unroll_steps), np.float32)
    acc = np.zeros(rewards.shape[0], np.float32)
    for j in range(num_unroll_steps):
        if j % horizon == 0:
            acc = np.zeros_like(acc)
        acc = acc + rewards[:, j]
        out[:, j] = acc
    return out


# ---------------------------------------------------------------------------------------------------------
# Reanalysis with the target network
# ---------------------------------------------------------------------------------------------------------
@dataclass
class TargetArrays:
    """A reanalysed batch on the host, in numpy: what `reanalyse` returns and a reanalysis worker hands over.
    Positions k = 0..K as in `RawBatch`; the inputs stay a window of frames (see `stacks`)."""

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


@torch.no_grad()
def initial_values(net: EfficientZeroNet, obs, chunk_size: int | None = None, autocast: bool = False) -> np.ndarray:
    """Scalar value of the initial inference for uint8 stacks [M, 4C, H, W] (numpy or torch; eval-mode BN)."""
    device = next(net.parameters()).device
    net.eval()
    out = []
    size = chunk_size or max(1, len(obs))
    amp = amp_context(device, autocast)
    for i in range(0, len(obs), size):
        with amp:
            logits = net.initial_inference(torch.as_tensor(obs[i:i + size]).to(device)).value_logits
        out.append(support_to_scalar(logits, net.config.support_size).cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def reanalyse(raw: RawBatch, weights: np.ndarray, target_net: EfficientZeroNet, mcts: MCTSConfig,
              reanalyse_fraction: float, rng: np.random.Generator,
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
    value = value_targets(raw.rewards, raw.td_steps, boot, raw.bootstrap_mask, raw.inside, DISCOUNT)
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
                 reanalyse_fraction: float, rng: np.random.Generator, device,
                 chunk_size: int | None = None, autocast: bool = False) -> tuple[Targets, dict]:
    """`reanalyse` then `to_device`: the training batch in one call."""
    arrays, stats = reanalyse(raw, weights, target_net, mcts, reanalyse_fraction, rng, chunk_size, autocast)
    return to_device(arrays, device), stats
