"""The teacher learns: a fixed-seed run of 01_pretrain_teacher.py on Toy/Catch-v0 must beat uniform-random play by a
wide, statistically safe margin (CI budget: a few minutes on 2 CPU cores).

Why Catch and not MinAtar Breakout: at the budget CI allows (~2k agent steps, ~1.5k updates of batch 32) the
MinAtar teacher does not yet move off random play (0.6 +- 0.5 after 1.5k updates vs 0.43 for random, measured while
building this test), so the issue's fallback applies: a tiny deterministic game run through exactly the same
code path (make_env, self-play, replay, reanalysis, loss, evaluation)."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np

from common.envs import make_env
from common.presets import stage_flags
from tests.conftest import ENV, ROOT

# The learning run is `make demo`'s stage 1 (the `toy` preset of common/presets.py) at seed 2, without the periodic
# evaluations (they draw from the training RNG, and the test does not need them).
LEARNING_FLAGS = [*stage_flags("toy", "teacher"), "--seed", "2", "--eval-interval", "0", "--checkpoint-interval", "500",
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
    # ENV: 1 thread, as every test's scripts. The outcome depends on the thread count (floating-point order), so the
    # thresholds below are set on 1-thread runs, with seed 2 (see the measurements there).
    r = subprocess.run([sys.executable, str(ROOT / script), "--run-dir", str(run_dir), *flags], cwd=ROOT, env=ENV,
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
    # seed and on floating-point details. At 1 thread on an AVX2-only EPYC, seed 2 gave 0.53 (t = 10.0) and seed 3
    # 0.31 (t = 7.5); on an AVX-512 one, seed 2 gave 0.53 too. Seed 1 is the fragile one: 0.86 on one machine,
    # 0.12 on another, -0.03 at 2 threads. The thresholds sit below the worst run seen, not at the typical one.
    assert trained.mean() - rand.mean() >= 0.3
    assert welch_t(trained, rand) > 3.0


# Stage 2 from the CI teacher, the `toy` preset's student at half its budget: 1,000 agent steps (500 random) and 500
# updates, the same for a distilled student (default weights, the teacher's search as the response target) and for a
# student without distillation. Measured at 1 thread on 288 states drawn from the teacher's evaluation episodes
# (never trained on), distilled / without distillation:
#   raw-policy argmax agreement with the teacher's raw policy: seed 2 0.71 / 0.38, seed 3 0.83 / 0.49;
#   student's raw-policy argmax vs the action the teacher's search plays: seed 2 0.29 -> 0.67 / 0.39,
#   seed 3 0.33 -> 0.64 / 0.31
# (AVX2-only AMD EPYC). Earlier 2-thread runs of seed 1 gave margins of 0.17-0.36 on the first measure and
# 0.10-0.54 on the second, depending on the machine. A student that learns Catch by itself also comes to play what
# the teacher's search plays, so the second measure separates the two less reliably; the teacher's own (nearly
# flat: max probability ~0.4) raw-policy choices are a fingerprint only distillation copies, so the 0.15 margin is
# asked of that one.
DISTILL_FLAGS = [*stage_flags("toy", "student"), "--seed", "2", "--total-env-steps", "1000", "--random-transitions",
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
