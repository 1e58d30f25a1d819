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
# updates, the same for a distilled student (the teacher's search as the response target, response weight 4) and for
# a student without distillation. What is measured: on 288 states of the teacher's evaluation episodes (never trained
# on), how often the argmax of the student's raw policy is the action the teacher's search plays there, the very
# thing the response term trains. At 1 thread, distilled (from its start) / without distillation:
#
#   machine                  teacher (its score)   student seed   distilled            no distillation
#   AVX-512 AMD EPYC         seed 2 (0.95)         2              0.43 -> 0.64         0.36
#                            seed 3 (0.47)         2              0.32 -> 0.63         0.37
#                            seed 1 (0.12)         2              0.42 -> 0.55         0.25
#                            seed 3 (0.47)         3              0.33 -> 0.51         0.35
#                            seed 1 (0.12)         3              0.43 -> 0.63         0.26
#
# Why weight 4 and not the default 1: at 500 updates the student's own policy loss (its near-uniform search visits,
# summed over the 6 unrolled steps) outweighs a weight-1 response term on some machines. With weight 1 the AVX2-only
# EPYC of earlier sessions gave 0.29 -> 0.67 / 0.39 at seed 2, but this AVX-512 one gave 0.43 -> 0.42 / 0.36, and the
# test failed there. Why not the raw-policy agreement this test used to ask for: the student is never trained on the
# teacher's raw policy here, and that policy is nearly flat (max probability ~0.4), so its argmax agreement swung
# either way (seed 3 teacher, student seed 3: 0.68 distilled, 0.68 without).
DISTILL_FLAGS = [*stage_flags("toy", "student"), "--seed", "2", "--total-env-steps", "1000", "--random-transitions",
                 "500", "--train-updates", "500", "--eval-interval", "0", "--final-eval-episodes", "8", "--no-progress"]
KD = ["--response-weight", "4"]
NO_KD = ["--response-weight", "0", "--feature-latent-weight", "0", "--feature-lstm-weight", "0"]


def check_distillation_raises_agreement_with_the_teacher(catch_teacher: Path, tmp_path: Path) -> None:
    key = "distill/heldout_policy_vs_search"
    start, final = {}, {}
    for name, extra in {"distilled": KD, "no-kd": NO_KD}.items():
        run_dir = run_script("02_distill_student.py", tmp_path / name,
                             DISTILL_FLAGS + extra + ["--teacher", str(catch_teacher / "teacher.pt")])
        ev = json.loads((run_dir / "eval.json").read_text())
        start[name], final[name] = ev["heldout_agreement_start"][key], ev["heldout_agreement_final"][key]
        print(f"{name}: the student's raw policy plays the teacher's search action on {start[name]:.3f} -> "
              f"{final[name]:.3f} of the held-out states")
    # distillation brings the student's choices towards the teacher's search (the smallest rise above: 0.12) ...
    assert final["distilled"] - start["distilled"] >= 0.05
    # ... by more than learning the game alone does in the same budget (the smallest margin above: 0.16)
    assert final["distilled"] - final["no-kd"] >= 0.1
