"""Stage 3 — evaluate teacher and student checkpoints: scores and deployment cost.

What this script will do (SPEC sections 2 and 9): play the Atari 100k evaluation protocol (32 episodes, seeds
0..31, 27,000-step cap, no search noise, argmax of visit counts) for every checkpoint given, report mean ± std
and human-normalised scores next to the published baselines and the seed paper's Table 1, measure parameters,
multiply-adds, CPU/GPU latency and an ONNX export, and write `results/.../summary.json` and `report.md`.

Status: evaluation lands with issue #6. The deployment-cost part already exists as `python -m common.profile`.
"""

from dataclasses import dataclass, field

import tyro


@dataclass
class Args:
    checkpoints: list[str] = field(default_factory=list)
    """teacher.pt / student.pt files to evaluate (each rebuilds its network from the checkpoint alone)"""
    episodes: int = 32
    """evaluation episodes per checkpoint (environment seeds 0..episodes-1)"""
    out_dir: str = "results"
    """where summary.json, report.md and the plots go"""


def main(args: Args) -> None:
    raise SystemExit("03_evaluate.py: evaluation is not implemented yet (issue #6); "
                     "for deployment cost run `python -m common.profile --num-actions 18`")


if __name__ == "__main__":
    main(tyro.cli(Args, description=__doc__))
