"""The teacher learns: a fixed-seed run of 01_pretrain_teacher.py on Toy/Catch-v0 must beat uniform-random play by a
wide, statistically safe margin (CI budget: a few minutes on 2 CPU cores).

Why Catch and not MinAtar Breakout: at the budget CI allows (~2k agent steps, ~1.5k updates of batch 32) the
MinAtar teacher does not yet move off random play (0.6 +- 0.5 after 1.5k updates vs 0.43 for random, measured while
building this test), so the issue's fallback applies: a tiny deterministic game run through exactly the same
code path (make_env, self-play, replay, reanalysis, loss, evaluation)."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from common.envs import make_env
from common.presets import stage_flags

ROOT = Path(__file__).resolve().parents[1]

# The learning run is `make demo`'s stage 1: the `toy` preset (common/presets.py), without the periodic
# evaluations (they draw from the training RNG, and the test does not need them).
LEARNING_FLAGS = [*stage_flags("toy", "teacher"), "--seed", "1", "--eval-interval", "0", "--checkpoint-interval", "500",
                  "--no-progress"]


def random_scores(n: int) -> np.ndarray:
    """Uniform-random play under the same evaluation protocol (seeds 0..n-1)."""
    rng = np.random.default_rng(0)
    out = []
    for seed in range(n):
        env = make_env("Toy/Catch-v0", mode="eval", seed=seed)
        env.reset()
        while True:
            _, _, terminated, truncated, info = env.step(int(rng.integers(env.num_actions)))
            if terminated or truncated:
                out.append(info["episode"]["r"])
                break
    return np.asarray(out)


def welch_t(a: np.ndarray, b: np.ndarray) -> float:
    return (a.mean() - b.mean()) / math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))


def run_script(script: str, run_dir: Path, flags: list[str]) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    # 2 threads, though `make test` runs another test process beside this one: the thresholds below were set on
    # 2-thread runs, and the outcome depends on floating-point details (at 1 thread, seed 1 gives a teacher of 0.12
    # whose distilled and RL-only students differ by only 0.03 in raw-policy agreement)
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    r = subprocess.run([sys.executable, str(ROOT / script), "--run-dir", str(run_dir), *flags], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    (out,) = [p for p in run_dir.iterdir() if p.is_dir()]
    return out


def test_the_teacher_learns_then_distillation_raises_agreement_with_it(tmp_path):
    """One test, not two: the teacher is the students' input, and one test keeps the whole chain in one test
    process whatever pytest-xdist's distribution mode (a module fixture would be trained once per process)."""
    teacher = run_script("01_pretrain_teacher.py", tmp_path / "teacher", LEARNING_FLAGS)
    check_teacher_beats_random_play(teacher)
    check_distillation_raises_agreement_with_the_teacher(teacher, tmp_path)


def check_teacher_beats_random_play(run_dir: Path) -> None:
    trained = np.asarray(json.loads((run_dir / "eval.json").read_text())["scores"])
    rand = random_scores(len(trained))
    print(f"trained {trained.mean():.2f} +- {trained.std():.2f} vs random {rand.mean():.2f} +- {rand.std():.2f}, "
          f"Welch t = {welch_t(trained, rand):.1f}")
    # Random play catches ~21% of balls (mean ~ -0.6). Demand a gap of 0.3 (15 percentage points more catches)
    # and a Welch t above 3 (one-sided p < 0.002 on 128 + 128 episodes). At this budget the outcome depends on the
    # seed and on floating-point details: seeds 1 / 2 with 1 thread gave 0.86 / 0.53, seed 1 with 2 threads -0.03
    # (gap 0.50, t = 4.3), so the thresholds sit below the worst run seen rather than at the typical one.
    assert trained.mean() - rand.mean() >= 0.3
    assert welch_t(trained, rand) > 3.0


# Stage 2 from the CI teacher, the `toy` preset's student at half its budget: 1,000 agent steps (500 random) and 500
# updates, the same for a distilled student (default weights, the teacher's search as the response target) and for a
# student without distillation. Measured on
# 288 states drawn from the teacher's evaluation episodes (never trained on), from the same start:
#   raw-policy argmax agreement with the teacher's raw policy: distilled 0.16 -> 0.51, without distillation -> 0.15;
#   student's raw-policy argmax vs the action the teacher's search plays: 0.42 -> 0.61, without -> 0.51
# (AMD EPYC, AVX-512). On an earlier CI machine the second measure gave 0.54 -> 0.66 against 0.23 without. On an
# AVX2-only EPYC (other kernels, so another teacher) the first gave 0.36 -> 0.65 against 0.48 without (a margin of
# 0.17, about 4 standard errors on 288 states), the second 0.54 -> 0.77 against 0.23. A student that learns Catch by
# itself also comes to play what the teacher's search plays, so that measure separates the two by 0.10-0.54
# depending on floating-point details; the teacher's own (nearly flat: max probability ~0.4) raw-policy choices are
# a fingerprint only distillation copies, so the 0.15 margin is asked of that one.
DISTILL_FLAGS = [*stage_flags("toy", "student"), "--seed", "1", "--total-env-steps", "1000", "--random-transitions",
                 "500", "--train-updates", "500", "--eval-interval", "0", "--final-eval-episodes", "8", "--no-progress"]
NO_KD = ["--response-weight", "0", "--feature-latent-weight", "0", "--feature-lstm-weight", "0"]


def check_distillation_raises_agreement_with_the_teacher(catch_teacher: Path, tmp_path: Path) -> None:
    keys = {"policy": "distill/heldout_policy_agreement", "play": "distill/heldout_policy_vs_search"}
    start, final = {}, {}
    for name, extra in {"distilled": [], "no-kd": NO_KD}.items():
        run_dir = run_script("02_distill_student.py", tmp_path / name,
                             DISTILL_FLAGS + extra + ["--teacher", str(catch_teacher / "teacher.pt")])
        ev = json.loads((run_dir / "eval.json").read_text())
        start[name] = {k: ev["heldout_agreement_start"][v] for k, v in keys.items()}
        final[name] = {k: ev["heldout_agreement_final"][v] for k, v in keys.items()}
        print(f"{name}: agreement with the teacher's raw policy {start[name]['policy']:.3f} -> "
              f"{final[name]['policy']:.3f}, with its search's play {start[name]['play']:.3f} -> "
              f"{final[name]['play']:.3f}")
    kd, no_kd = final["distilled"], final["no-kd"]
    # distillation, not learning the game by itself, makes the student choose as its teacher does ...
    assert kd["policy"] - no_kd["policy"] >= 0.15
    # ... and brings its play closer to the teacher's search than learning alone does
    assert kd["play"] - start["distilled"]["play"] >= 0.05
    assert kd["play"] > no_kd["play"]
