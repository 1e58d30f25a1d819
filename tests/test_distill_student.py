"""Stage 2 end to end: 01 -> 02 chain at tiny sizes, wrong teachers refused, the teacher stays frozen."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from common.distill import DistillConfig, distillation_terms, load_teacher, teacher_unroll
from common.learner import LossConfig, make_targets, unrolled_loss
from common.mcts import MCTSConfig
from common.networks import EfficientZeroNet, FeatureAdapter, NetConfig, minatar_student_config
from common.replay import ReplayBuffer, TrajectoryRecorder, gather_batch
from common.runs import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "2"}
TINY = ["--total-env-steps", "240", "--random-transitions", "80", "--train-updates", "6", "--extra-updates", "2",
        "--batch-size", "8", "--num-simulations", "2", "--segment-length", "20", "--channels", "8",
        "--lstm-hidden", "16", "--eval-interval", "0", "--final-eval-episodes", "2", "--eval-max-steps", "200",
        "--checkpoint-interval", "4", "--no-progress", "--threads", "1"]


def run(script, args, cwd_tmp):
    return subprocess.run([sys.executable, str(ROOT / script), "--run-dir", str(cwd_tmp), *args], cwd=ROOT,
                          env=ENV, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory):
    d = tmp_path_factory.mktemp("teacher")
    r = run("01_pretrain_teacher.py", ["--env-id", "MinAtar/Breakout-v1", *TINY], d)
    assert r.returncode == 0, r.stdout + r.stderr
    (run_dir,) = [p for p in d.iterdir() if p.is_dir()]
    return run_dir / "teacher.pt"


def test_chain_teacher_to_student(tiny_teacher, tmp_path):
    r = run("02_distill_student.py", ["--env-id", "MinAtar/Breakout-v1", "--teacher", str(tiny_teacher),
                                      "--teacher-eval-episodes", "2", *TINY], tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    ckpt = load_checkpoint(run_dir / "student.pt", "student")
    cfg = NetConfig.from_dict(ckpt["config"])
    assert cfg.block == "inverted_residual" and ckpt["counters"]["updates"] == 8
    EfficientZeroNet(cfg).load_state_dict(ckpt["model"])  # rebuilt from the checkpoint alone
    ev = json.loads((run_dir / "eval.json").read_text())
    assert ev["episodes"] == 2 and ev["teachers"] == [str(tiny_teacher)]
    assert "teacher evaluation (2 episodes)" in r.stdout and "frozen" in r.stdout


@pytest.mark.parametrize("case", ["missing", "not-a-teacher", "other-game", "no-adapters"])
def test_wrong_teacher_fails_with_a_readable_message(tiny_teacher, tmp_path, case):
    env_id, teacher, extra, message = "MinAtar/Breakout-v1", str(tiny_teacher), [], ""
    if case == "missing":
        teacher, message = str(tmp_path / "nope.pt"), "does not exist"
    elif case == "not-a-teacher":
        torch.save({"kind": "student"}, tmp_path / "student.pt")
        teacher, message = str(tmp_path / "student.pt"), "is not a teacher checkpoint"
    elif case == "other-game":
        env_id, message = "MinAtar/Asterix-v1", "was trained on MinAtar/Breakout-v1"
    else:  # the default student is wider than this 8-channel teacher: feature distillation needs adapters
        extra, message = ["--no-adapters"], "needs adapters"
    args = ["--env-id", env_id, "--teacher", teacher, *extra, *TINY]
    args[args.index("--channels") + 1] = "32"
    r = run("02_distill_student.py", args, tmp_path)
    assert r.returncode != 0 and message in r.stderr, r.stderr[-2000:]
    assert "Traceback" not in r.stderr


def test_teacher_stays_frozen_and_student_learns(tiny_teacher):
    teacher = load_teacher(str(tiny_teacher), (16, 10, 10), 3, "cpu")
    before = {k: v.clone() for k, v in teacher.state_dict().items()}  # parameters and BN buffers
    student = EfficientZeroNet(minatar_student_config((16, 10, 10), 3)).train()
    s_before = {k: v.clone() for k, v in student.state_dict().items()}
    adapter = FeatureAdapter(student.config, teacher.config)
    opt = torch.optim.SGD(list(student.parameters()) + list(adapter.parameters()), lr=0.05, momentum=0.9)
    rng = np.random.default_rng(0)
    rec = TrajectoryRecorder(segment_length=30, pad=10)
    frame = (rng.random((4, 10, 10)) < 0.1).astype(np.uint8) * 255
    rec.start(frame)
    buf = ReplayBuffer()
    for t in range(60):
        for seg in rec.add(t % 3, float(t % 7 == 0), 0.0, 0.0, np.full(3, 1 / 3),
                           (rng.random((4, 10, 10)) < 0.1).astype(np.uint8) * 255):
            buf.push(seg)
    for seg in rec.end():
        buf.push(seg)
    cfg = DistillConfig(1.0, 2.0, 1.0, 1.0, 1.0)
    for _ in range(5):
        ids, w = buf.sample(16, 0.4, rng)
        raw = gather_batch(buf, ids, 5, 5, 3, rng)
        batch, _ = make_targets(raw, w, student, MCTSConfig(num_simulations=2), LossConfig(augment=False), 0.5, rng,
                                "cpu")
        student.train()
        loss, _, _, obs0, steps = unrolled_loss(student, batch, LossConfig(augment=False), rng, return_steps=True)
        t_steps = teacher_unroll([teacher], obs0.detach(), batch.actions)
        kd = distillation_terms(steps, t_steps, batch.mask, cfg, adapter, student.config.support_size,
                                teacher.config.support_size)
        total = loss + sum(v.mean() for v in kd.values())
        opt.zero_grad()
        total.backward()
        opt.step()
    assert all(p.grad is None for p in teacher.parameters())
    after = teacher.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # bit-identical, buffers included
    changed = [k for k, v in student.state_dict().items() if not torch.equal(s_before[k], v)]
    assert len(changed) > len(s_before) // 2
