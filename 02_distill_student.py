"""Stage 2 — distil a compressed student (MobileNetV2 inverted-residual blocks) from a frozen teacher.

What this script will do (SPEC sections 4 and 8): load `--teacher runs/<run>/teacher.pt` (its network config is
inside), freeze it, and train the student with its own EfficientZero loss on its own self-play data plus
response-based distillation (the teacher's policy, temperature tau) and feature-based distillation (hidden states
and the value-prefix LSTM's hidden and cell states), then write `runs/<run_name>/student.pt`.

Status: distillation lands with issue #5. Today the script resolves the game, builds the default student and
prints its size next to the teacher architecture it will be distilled from.
"""

from dataclasses import dataclass

import tyro

from common.envs import make_env
from common.networks import EfficientZeroNet, count_acting_params, count_params, default_config


@dataclass
class Args:
    teacher: str | None = None
    """path of the teacher checkpoint written by 01_pretrain_teacher.py (required once stage 2 lands)"""
    env_id: str = "Breakout"
    """game: an Atari name (`Breakout`, `ALE/Breakout-v5`) or `MinAtar/<Game>-v1`"""
    seed: int = 1
    """seed of the run"""
    exp_name: str = "student"
    """name of this experiment, part of the run name"""


def main(args: Args) -> None:
    env = make_env(args.env_id, mode="train", seed=args.seed)
    t = EfficientZeroNet(default_config("teacher", env.family, env.obs_shape, env.num_actions))
    s = EfficientZeroNet(default_config("student", env.family, env.obs_shape, env.num_actions))
    print(f"game {env.game} ({env.family}), {env.num_actions} actions")
    print(f"student: {count_params(s):,} parameters ({count_params(s) / count_params(t):.1%} of the default teacher), "
          f"acting part {count_acting_params(s):,} ({count_acting_params(s) / count_acting_params(t):.1%})")
    raise SystemExit("02_distill_student.py: distillation is not implemented yet (issue #5)")


if __name__ == "__main__":
    main(tyro.cli(Args, description=__doc__))
