"""Stage 1 — train the EfficientZero teacher (ResNet) on Atari 100k, or on MinAtar at CPU scale.

What this script will do (SPEC sections 5-7): self-play with a batched MCTS on parallel environments, store game
segments in a prioritized replay, reanalyse targets with the target network (off-policy-corrected n-step values,
value-prefix targets, fresh search policies), and train representation, dynamics (value-prefix LSTM) and
prediction with the SimSiam consistency loss, then write `runs/<run_name>/teacher.pt`.

Status: the training loop lands with issue #4. Today the script resolves the game, builds the teacher from its
config and prints what it would train, so flags and names can already be checked.
"""

from dataclasses import dataclass

import tyro

from common.envs import make_env
from common.networks import EfficientZeroNet, count_acting_params, count_params, default_config


@dataclass
class Args:
    env_id: str = "Breakout"
    """game: an Atari name (`Breakout`, `ALE/Breakout-v5`, `BreakoutNoFrameskip-v4`) or `MinAtar/<Game>-v1`"""
    seed: int = 1
    """seed of the run (environments, network init, search)"""
    exp_name: str = "teacher"
    """name of this experiment, part of the run name `<env>__<exp_name>__<seed>__<time>`"""


def main(args: Args) -> None:
    env = make_env(args.env_id, mode="train", seed=args.seed)
    net = EfficientZeroNet(default_config("teacher", env.family, env.obs_shape, env.num_actions))
    print(f"game {env.game} ({env.family}), {env.num_actions} actions, network input {env.obs_shape}")
    print(f"teacher: {count_params(net):,} parameters, {count_acting_params(net):,} in the acting part")
    raise SystemExit("01_pretrain_teacher.py: the training loop is not implemented yet (issue #4)")


if __name__ == "__main__":
    main(tyro.cli(Args, description=__doc__))
