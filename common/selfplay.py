"""Acting: self-play on parallel training environments, and the evaluation protocol (docs/algorithm.md, 'Self-play
and acting' and 'Evaluation protocol').

Both step their environments in lockstep in this process and run one batched search over all of their current
observations per step; the environments are cheap next to the search, so no subprocesses are needed.
"""

from __future__ import annotations

import numpy as np
import torch

from common.envs import FrameStack, human_normalized_score, load_reference_scores, make_env
from common.networks import EfficientZeroNet
from common.replay import Segment, TrajectoryRecorder
from common.search import run_search
from common.tree import MCTSConfig, select_action


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
             chunk_size: int | None = None, autocast: bool = False, cuda_graph: bool = False
             ) -> tuple[list[Segment], list[dict], dict[str, float]]:
        """One step in every environment. `net=None`: uniformly random actions (the initial random transitions;
        their stored policy is uniform and their root value 0). `cuda_graph`: see `common.search.run_search`."""
        n, A = len(self.envs), self.num_actions
        if net is None:
            actions = rng.integers(0, A, size=n)
            values = np.zeros(n)
            policies = np.full((n, A), 1.0 / A)
            stats = {}
        else:
            net.eval()
            res = run_search(net, self.observations(), mcts, rng=rng, add_noise=True, chunk_size=chunk_size,
                             autocast=autocast, cuda_graph=cuda_graph)
            actions = select_action(res.visit_counts, temperature, rng)
            values, policies = res.root_value, res.policy
            entropy = -(policies * np.log(np.maximum(policies, 1e-12))).sum(1)
            stats = {"search/root_value": float(values.mean()), "search/visit_entropy": float(entropy.mean())}
        segments, episodes = [], []
        for i, (env, stack, rec) in enumerate(zip(self.envs, self.stacks, self.recorders)):
            frame, reward, terminated, truncated, info = env.step(int(actions[i]))
            segments += rec.add(actions[i], reward, values[i], policies[i], frame)
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
             progress=None, chunk_size: int | None = None, autocast: bool = False, obs_noise: float = 0.0,
             record_states: int = 0, **env_kwargs) -> dict:
    """The evaluation protocol: episodes with environment seeds first_seed..first_seed + n - 1 played in
    parallel, raw score, no life-loss cut, search without root noise, action = argmax of visits (ties broken by
    `rng`), at most `max_steps` agent steps (default 27,000). `progress`: optional tqdm bar advanced per finished
    episode. Returns {"scores": [...], "lengths": [...], "seeds": [...]}.

    obs_noise: robustness test, Gaussian noise of this standard deviation (in units of the [0, 1] input scale)
        added to what the network sees (the game itself is unchanged), clipped back to [0, 255].
    record_states: also return "states", this many network inputs (uint8) drawn uniformly from all the steps of
        all the episodes (reservoir sampling, so memory stays bounded on 27k-step Atari games): held-out states
        for teacher-student agreement (stages 2 and 3).
    env_kwargs: passed to `make_env`, e.g. sticky_action_prob=0.25."""
    rng = rng or np.random.default_rng(first_seed)
    noise_rng = np.random.default_rng(first_seed + 12345)  # noise draws independent of the tie-breaking rng
    record_rng = np.random.default_rng(first_seed + 54321)  # and so are the reservoir's draws
    states: list[np.ndarray] = []
    seen = 0
    envs = [make_env(env_id, mode="eval", seed=first_seed + i, max_episode_steps=max_steps, **env_kwargs)
            for i in range(num_episodes)]
    stacks = [FrameStack() for _ in envs]
    for env, stack in zip(envs, stacks):
        stack.reset(env.reset())
    scores, lengths = [None] * num_episodes, [None] * num_episodes
    alive = list(range(num_episodes))
    while alive:
        obs = np.stack([stacks[i].obs() for i in alive])
        if record_states:  # reservoir sampling (Algorithm R); copies, so no view keeps a whole batch alive
            for o in obs:
                seen += 1
                if len(states) < record_states:
                    states.append(o.copy())
                else:
                    j = int(record_rng.integers(seen))
                    if j < record_states:
                        states[j] = o.copy()
        if obs_noise > 0:
            noisy = obs.astype(np.float32) + noise_rng.normal(0.0, obs_noise * 255.0, obs.shape)
            obs = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
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
    out = {"scores": [float(s) for s in scores], "lengths": [int(n) for n in lengths],
           "seeds": list(range(first_seed, first_seed + num_episodes))}
    if record_states:
        out["states"] = np.stack(states) if states else np.zeros((0, *obs.shape[1:]), np.uint8)
    return out


def random_play(env_id: str, num_episodes: int = 32, first_seed: int = 0, max_steps: int | None = None,
                seed: int = 0, **env_kwargs) -> dict:
    """The evaluation protocol with uniformly random actions: the random baseline of games that have no published
    one (MinAtar, the toy game). Same environment seeds, raw score and step cap as `evaluate`; actions from
    np.random.default_rng(seed). Returns {"scores": [...], "lengths": [...], "seeds": [...]}."""
    rng = np.random.default_rng(seed)
    scores, lengths = [], []
    for i in range(num_episodes):
        env = make_env(env_id, mode="eval", seed=first_seed + i, max_episode_steps=max_steps, **env_kwargs)
        env.reset()
        while True:
            _, _, terminated, truncated, info = env.step(int(rng.integers(env.num_actions)))
            if terminated or truncated:
                scores.append(float(info["episode"]["r"]))
                lengths.append(int(info["episode"]["l"]))
                break
        env.close()
    return {"scores": scores, "lengths": lengths, "seeds": list(range(first_seed, first_seed + num_episodes))}


def eval_summary(result: dict, game: str, family: str) -> dict:
    """Mean, std (and HNS for a game of the Atari reference table) of `selfplay.evaluate`'s result."""
    scores = np.asarray(result["scores"])
    out = {**result, "mean": float(scores.mean()), "std": float(scores.std()), "episodes": len(scores)}
    table = load_reference_scores()
    if family == "atari" and game in table:
        out["hns"] = human_normalized_score(game, out["mean"], table)
    return out


def visit_temperature(update: int, train_updates: int) -> float:
    """Self-play action temperature (EfficientZero Atari): 1 for the first half of training, 0.5 to 75%, then
    0.25."""
    if update < 0.5 * train_updates:
        return 1.0
    if update < 0.75 * train_updates:
        return 0.5
    return 0.25
