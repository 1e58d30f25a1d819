"""What does feature distillation do to a student? A look inside the four students of one cell.

On states drawn uniformly from the teacher's replay, for the teacher and each student (eval mode, as the search
sees them), at the root (k = 0):

- latent MSE to the teacher: the mean squared difference of the hidden states (on MinAtar student and teacher both
  have 32 latent channels, so the feature term compares them directly, without an adapter);
- latent spread: the std over states of each latent unit, averaged over units (how much the state varies);
- policy spread: the std over states of the raw policy's probabilities, averaged over actions;
- modal action: the share of states on which the raw policy's argmax is its most frequent argmax (1 = the raw
  policy plays one action whatever the state);
- argmax agreement with the teacher's raw policy.

    python results/minatar/feature_check.py --teacher runs/minatar/<teacher run> --students runs/minatar/<run> ...
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for `common`
from common.networks import EfficientZeroNet, NetConfig  # noqa: E402
from common.replay import Segment  # noqa: E402
from common.runs import load_checkpoint  # noqa: E402


def load(run: Path) -> tuple[str, EfficientZeroNet]:
    kind = "student" if (run / "student.pt").exists() else "teacher"
    ckpt = load_checkpoint(run / f"{kind}.pt", kind)
    net = EfficientZeroNet(NetConfig.from_dict(ckpt["config"]))
    net.load_state_dict(ckpt["model"])
    return ckpt["args"]["exp_name"], net.eval()


def replay_states(run: Path, n: int, seed: int = 0) -> torch.Tensor:
    segments = [Segment.load(p) for p in sorted((run / "replay").glob("*.npz"))]
    rng = np.random.default_rng(seed)
    obs = []
    while len(obs) < n:
        seg = segments[rng.integers(len(segments))]
        if seg.num_stored:
            obs.append(seg.stack(int(rng.integers(seg.num_stored))))
    return torch.from_numpy(np.stack(obs))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", type=Path, required=True)
    parser.add_argument("--students", type=Path, nargs="+", required=True)
    parser.add_argument("--states", type=int, default=2048)
    args = parser.parse_args()
    torch.set_num_threads(1)

    obs = replay_states(args.teacher, args.states)
    print(f"{args.states} states of {args.teacher}'s replay")
    print(f"{'network':18s} {'latent MSE':>10s} {'latent spread':>13s} {'policy spread':>13s} {'modal action':>12s} "
          f"{'agree':>6s}")
    with torch.no_grad():
        _, teacher = load(args.teacher)
        t_out = teacher.initial_inference(obs)
        t_latent, t_act = t_out.latent.flatten(1), t_out.policy_logits.argmax(-1)
        for run in [args.teacher, *args.students]:
            name, net = load(run)
            out = net.initial_inference(obs)
            latent = out.latent.flatten(1)
            probs = torch.softmax(out.policy_logits.float(), -1)
            act = probs.argmax(-1)
            modal = torch.bincount(act, minlength=probs.shape[1]).max().item() / len(act)
            mse = ((latent - t_latent) ** 2).mean().item() if latent.shape == t_latent.shape else float("nan")
            print(f"{name:18s} {mse:10.4f} {latent.std(0).mean().item():13.4f} {probs.std(0).mean().item():13.4f} "
                  f"{modal:12.2f} {(act == t_act).float().mean().item():6.2f}")
