"""Does a trained network predict the rewards of its own replay, and does search (eval mode) see what training saw?

Draws states uniformly from a run's replay, unrolls the network along the 5 actions actually taken, and compares
the predicted reward of each step (the difference of consecutive value prefixes) with the reward the learner
stored. BatchNorm networks are checked in eval mode (what the search uses) and, with --train-mode, with batch
statistics (what training used); a 'layer' network gives the same numbers both ways.

    python results/minatar/reward_check.py runs/minatar/<run> [--states 2048] [--train-mode]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for `common`
from common.networks import EfficientZeroNet, NetConfig, support_to_scalar  # noqa: E402
from common.replay import Segment  # noqa: E402
from common.runs import load_checkpoint  # noqa: E402

K = 5  # unroll steps, as in training

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--states", type=int, default=2048)
    parser.add_argument("--train-mode", action="store_true", help="BatchNorm on batch statistics")
    args = parser.parse_args()
    torch.set_num_threads(1)

    kind = "student" if (args.run / "student.pt").exists() else "teacher"
    ckpt = load_checkpoint(args.run / f"{kind}.pt", kind)
    net = EfficientZeroNet(NetConfig.from_dict(ckpt["config"]))
    net.load_state_dict(ckpt["model"])
    net.train(args.train_mode)
    S = net.config.support_size

    segments = [Segment.load(p) for p in sorted((args.run / "replay").glob("*.npz"))]
    rng = np.random.default_rng(0)
    obs, actions, rewards = [], [], []
    while len(obs) < args.states:
        seg = segments[rng.integers(len(segments))]
        if seg.num_stored < K:
            continue
        t = int(rng.integers(0, seg.num_stored - K + 1))
        obs.append(seg.stack(t))
        actions.append(seg.actions[t:t + K])
        rewards.append(seg.rewards[t:t + K])
    obs, actions, rewards = torch.from_numpy(np.stack(obs)), torch.from_numpy(np.stack(actions)), np.stack(rewards)

    with torch.no_grad():
        out = net.initial_inference(obs)
        latent, state, prefix, predicted = out.latent, net.initial_lstm_state(len(obs)), 0.0, []
        for k in range(K):
            step = net.recurrent_inference(latent, state, actions[:, k])
            latent, state = step.latent, step.lstm_state
            value_prefix = support_to_scalar(step.value_prefix_logits, S).numpy()
            predicted.append(value_prefix - prefix)
            prefix = value_prefix
    predicted = np.stack(predicted, 1)

    mode = "train mode (batch statistics)" if args.train_mode else "eval mode (as in search)"
    print(f"{args.run.name}: {len(obs)} replay states, {mode}, {rewards.mean():.3f} reward per step")
    for k in range(K):
        hit, miss = rewards[:, k] > 0.5, rewards[:, k] < 0.5
        print(f"  step {k + 1}: predicted reward {predicted[hit, k].mean():.3f} where the real one is 1 "
              f"(n={hit.sum()}), {predicted[miss, k].mean():.3f} where it is 0; "
              f"correlation {np.corrcoef(predicted[:, k], rewards[:, k])[0, 1]:.3f}")
