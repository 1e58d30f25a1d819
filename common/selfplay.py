"""Acting: self-play on parallel training environments, and the evaluation protocol (SPEC sections 2 and 5).

Both step their environments in lockstep in this process and run one batched search over all of their current
observations per step; the environments are cheap next to the search, so no subprocesses are needed.
"""

from __future__ import annotations

import numpy as np
import torch

from common.envs import FrameStack, make_env
from common.mcts import MCTSConfig, select_action
from common.networks import EfficientZeroNet
from common.replay import Segment, TrajectoryRecorder
from common.search import run_search


class SelfPlay:
    """`num_envs` training environments (seeds seed, seed + 1, ...). `step()` plays one agent step in each and
    returns the segments completed by it and the games that ended (raw score and length)."""

    def __init__(self, env_id: str, num_envs: int, seed: int, segment_length: int = 400, pad: int = 10,
                 **env_kwargs):
        self.envs = [make_env(env_id, mode="train", seed=seed + i, **env_kwargs) for i in range(num_envs)]
        self.num_actions = self.envs[0].num_actions
        self.stacks = [FrameStack() for _ in self.envs]
        self.recorders = [TrajectoryRecorder(segment_length, pad) for _ in self.envs]
        for env, stack, rec in zip(self.envs, self.stacks, self.recorders):
            frame = env.reset()
            stack.reset(frame)
            rec.start(frame)

    def observations(self) -> np.ndarray:
        return np.stack([s.obs() for s in self.stacks])

    def step(self, net: EfficientZeroNet | None, mcts: MCTSConfig, temperature: float, rng: np.random.Generator,
             chunk_size: int | None = None, autocast: bool = False
             ) -> tuple[list[Segment], list[dict], dict[str, float]]:
        """One step in every environment. `net=None`: uniformly random actions (the initial random transitions;
        their stored policy is uniform and their root value 0)."""
        n, A = len(self.envs), self.num_actions
        if net is None:
            actions = rng.integers(0, A, size=n)
            values = np.zeros(n)
            policies = np.full((n, A), 1.0 / A)
            stats = {}
        else:
            res = run_search(net, self.observations(), mcts, rng=rng, add_noise=True, chunk_size=chunk_size,
                             autocast=autocast)
            actions = select_action(res.visit_counts, temperature, rng)
            values, policies = res.root_value, res.policy
            entropy = -(policies * np.log(np.maximum(policies, 1e-12))).sum(1)
            stats = {"search/root_value": float(values.mean()), "search/visit_entropy": float(entropy.mean())}
        segments, episodes = [], []
        for i, (env, stack, rec) in enumerate(zip(self.envs, self.stacks, self.recorders)):
            frame, reward, terminated, truncated, info = env.step(int(actions[i]))
            segments += rec.add(actions[i], reward, info["raw_reward"], values[i], policies[i], frame)
            stack.push(frame)
            if "episode" in info:
                episodes.append(info["episode"])
            if terminated or truncated:
                segments += rec.end()
                frame = env.reset()
                stack.reset(frame)
                rec.start(frame)
        return segments, episodes, stats

    def close(self):
        for env in self.envs:
            env.close()


@torch.no_grad()
def evaluate(net: EfficientZeroNet, env_id: str, num_episodes: int = 32, mcts: MCTSConfig = MCTSConfig(),
             first_seed: int = 0, max_steps: int | None = None, rng: np.random.Generator | None = None,
             progress=None, chunk_size: int | None = None, autocast: bool = False, **env_kwargs) -> dict:
    """The evaluation protocol: episodes with environment seeds first_seed..first_seed + n - 1 played in
    parallel, raw score, no life-loss cut, search without root noise, action = argmax of visits (ties broken by
    `rng`), at most `max_steps` agent steps (default 27,000). `progress`: optional tqdm bar advanced per finished
    episode. Returns {"scores": [...], "lengths": [...], "seeds": [...]}."""
    rng = rng or np.random.default_rng(first_seed)
    envs = [make_env(env_id, mode="eval", seed=first_seed + i, max_episode_steps=max_steps, **env_kwargs)
            for i in range(num_episodes)]
    stacks = [FrameStack() for _ in envs]
    for env, stack in zip(envs, stacks):
        stack.reset(env.reset())
    scores, lengths = [None] * num_episodes, [None] * num_episodes
    alive = list(range(num_episodes))
    while alive:
        obs = np.stack([stacks[i].obs() for i in alive])
        res = run_search(net, obs, mcts, rng=rng, add_noise=False, chunk_size=chunk_size, autocast=autocast)
        actions = select_action(res.visit_counts, 0.0, rng)
        still = []
        for j, i in enumerate(alive):
            frame, _, terminated, truncated, info = envs[i].step(int(actions[j]))
            stacks[i].push(frame)
            if terminated or truncated:
                scores[i], lengths[i] = info["episode"]["r"], info["episode"]["l"]
                if progress is not None:
                    progress.update(1)
            else:
                still.append(i)
        alive = still
    for env in envs:
        env.close()
    return {"scores": [float(s) for s in scores], "lengths": [int(n) for n in lengths],
            "seeds": list(range(first_seed, first_seed + num_episodes))}
