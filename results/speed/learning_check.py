"""Does a teacher trained with --workers learn as well as one trained by the synchronous loop?

    python results/speed/learning_check.py --run-dir runs/learning_check --json-out results/speed/learning_check.json

Trains the CI learning test's teacher (`tests/test_learning.py`: Toy/Catch-v0, 2,000 agent steps, 2,000 updates
of batch 32, 128 final evaluation episodes) for every seed, once with --workers 0 (torch's default threads) and
once with --workers 1 (one thread per process), one run at a time; runs already in --run-dir (a finished
`eval.json`) are not run again. 2 x 8 runs take about 35 minutes on 2 CPU cores. Writes the final evaluation means
per seed, their mean and sample std per mode, the paired differences (workers - sync) with a 95% t interval, and
the wall-clock times of the runs it made.
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import tyro

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests.test_learning import LEARNING_FLAGS  # noqa: E402  (the flags of the CI learning run)

MODES = {"sync": [], "workers": ["--workers", "1", "--threads", "1"]}  # sync: torch's default threads (2 here)
T975 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26, 10: 2.23}


@dataclass
class Args:
    run_dir: str = "runs/learning_check"
    seeds: list[int] = field(default_factory=lambda: list(range(1, 9)))
    json_out: str = "results/speed/learning_check.json"


def flags_for(seed: int) -> list[str]:
    flags = list(LEARNING_FLAGS)
    flags[flags.index("--seed") + 1] = str(seed)
    return flags


def finished(run_dir: Path, mode: str, seed: int) -> Path | None:
    done = sorted(run_dir.glob(f"Toy-Catch-v0__{mode}__{seed}__*/eval.json"))
    return done[-1] if done else None


def main(args: Args) -> dict:
    run_dir = Path(args.run_dir)
    walls: dict[str, dict[int, float]] = {m: {} for m in MODES}
    for seed in args.seeds:
        for mode, extra in MODES.items():
            if finished(run_dir, mode, seed):
                continue
            t0 = time.time()
            r = subprocess.run([sys.executable, str(ROOT / "01_pretrain_teacher.py"), *flags_for(seed), *extra,
                                "--exp-name", mode, "--run-dir", str(run_dir)], cwd=ROOT, capture_output=True,
                               text=True)
            if r.returncode != 0:
                raise SystemExit(f"{mode} seed {seed} failed:\n{r.stdout}{r.stderr}")
            walls[mode][seed] = time.time() - t0
            print(f"{mode} seed {seed}: {r.stdout.strip().splitlines()[-1]} ({walls[mode][seed]:.0f} s)")
    scores = {m: {s: json.loads(finished(run_dir, m, s).read_text())["mean"] for s in args.seeds} for m in MODES}
    diffs = [scores["workers"][s] - scores["sync"][s] for s in args.seeds]
    n = len(diffs)
    half = T975.get(n - 1, 1.96) * statistics.stdev(diffs) / math.sqrt(n) if n > 1 else float("nan")
    out = {"flags": LEARNING_FLAGS, "modes": MODES, "scores": scores,
           "mean": {m: statistics.mean(v.values()) for m, v in scores.items()},
           "std": {m: statistics.stdev(v.values()) if n > 1 else 0.0 for m, v in scores.items()},
           "paired_difference_workers_minus_sync": {"mean": statistics.mean(diffs), "ci95": [
               statistics.mean(diffs) - half, statistics.mean(diffs) + half], "per_seed": diffs},
           "wall_seconds_of_runs_made_now": walls}
    d = out["paired_difference_workers_minus_sync"]
    print(f"sync {out['mean']['sync']:.3f} +- {out['std']['sync']:.3f}, workers {out['mean']['workers']:.3f} +- "
          f"{out['std']['workers']:.3f} over {n} seeds; workers - sync {d['mean']:+.3f} "
          f"(95% CI {d['ci95'][0]:+.3f} .. {d['ci95'][1]:+.3f})")
    Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json_out).write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main(tyro.cli(Args, description=__doc__))
