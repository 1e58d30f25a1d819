"""Stage 2 end to end: 01 -> 02 chain at tiny sizes, wrong teachers refused, the teacher stays frozen."""

import dataclasses
import importlib.util
import json
import re
import sys

import numpy as np
import pytest
import torch

from common.distill import DistillConfig, distillation_terms, load_teacher, teacher_unroll
from common.loss import LossConfig, unrolled_loss
from common.networks import EfficientZeroNet, FeatureAdapter, NetConfig, minatar_student_config
from common.replay import ReplayBuffer, TrajectoryRecorder
from common.runs import load_checkpoint
from common.targets import gather_batch, make_targets
from common.tree import MCTSConfig
from tests.conftest import ROOT, TINY, kill_after_checkpoint, run_script


def run(script, args, cwd_tmp):
    return run_script(script, args, cwd_tmp)


def test_chain_teacher_to_student(tiny_student, tiny_teacher):
    run_dir = tiny_student.parent
    ckpt = load_checkpoint(run_dir / "student.pt", "student")
    cfg = NetConfig.from_dict(ckpt["config"])
    assert cfg.block == "inverted_residual" and ckpt["counters"]["updates"] == 8
    EfficientZeroNet(cfg).load_state_dict(ckpt["model"])  # rebuilt from the checkpoint alone
    ev = json.loads((run_dir / "eval.json").read_text())
    assert ev["episodes"] == 2 and ev["teachers"] == [str(tiny_teacher)]
    assert set(ev["heldout_agreement_final"]) == set(ev["heldout_agreement_start"]) == {
        "distill/heldout_policy_agreement", "distill/heldout_policy_vs_search", "distill/heldout_js_divergence",
        "distill/heldout_value_mae"}


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
        for seg in rec.add(t % 3, float(t % 7 == 0), 0.0, np.full(3, 1 / 3),
                           (rng.random((4, 10, 10)) < 0.1).astype(np.uint8) * 255):
            buf.push(seg)
    for seg in rec.end():
        buf.push(seg)
    cfg = DistillConfig(1.0, 2.0, 1.0, 1.0, 1.0)
    for _ in range(5):
        ids, w = buf.sample(16, 0.4, rng)
        raw = gather_batch(buf, ids, 5, 5, 3, rng)
        batch, _ = make_targets(raw, w, student, MCTSConfig(num_simulations=2), 0.5, rng,
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


def test_student_resume_after_sigkill(tiny_teacher, tmp_path):
    """kill -9 mid-run, then --resume: counters, adapters, teacher return and replay continue from the checkpoint."""
    args = ["--env-id", "MinAtar/Breakout-v1", "--teacher", str(tiny_teacher), "--teacher-eval-episodes", "1",
            *TINY]
    for flag, value in {"--total-env-steps": "1500", "--train-updates": "200", "--extra-updates": "0",
                        "--checkpoint-interval": "20", "--final-eval-episodes": "0"}.items():
        args[args.index(flag) + 1] = value
    ckpt_file = kill_after_checkpoint("02_distill_student.py", args, tmp_path, "student")
    before = load_checkpoint(ckpt_file, "student")
    assert 0 < before["counters"]["updates"] < 200

    r = run("02_distill_student.py", args + ["--resume", str(ckpt_file.parent)], tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    m = re.search(r"resumed .*: ([\d,]+) updates, ([\d,]+) env steps, replay ([\d,]+) transitions", r.stdout)
    assert m and int(m.group(1).replace(",", "")) == before["counters"]["updates"], r.stdout
    assert int(m.group(3).replace(",", "")) == len(before["replay"]["priorities"])
    assert "teacher evaluation" not in r.stdout  # its return came back from the checkpoint, not re-measured
    after = load_checkpoint(ckpt_file, "student")
    assert after["counters"]["updates"] == 200 and after["counters"]["resumes"] == 1
    assert after["teacher_return"] == before["teacher_return"]
    assert set(after["adapter"]) == set(before["adapter"])
    assert not all(torch.equal(before["model"][k], after["model"][k]) for k in before["model"])


def test_fitnets_and_normalised_features_train_and_an_older_run_resumes(tiny_teacher, tmp_path):
    """--fitnets learns regressors between features of the same width (the tiny student is built at the teacher's
    widths, so without it the adapters are identities), --feature-normalise runs the standardised MSE; and a run
    saved before these flags existed resumes (a flag it does not know was at its default)."""
    flags = ["--env-id", "MinAtar/Breakout-v1", "--teacher", str(tiny_teacher), "--teacher-eval-episodes", "0",
             *TINY, "--fitnets", "--feature-normalise"]
    r = run("02_distill_student.py", flags, tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not re.search(r"\d+/\d+ \[", r.stderr), r.stderr  # --no-progress: no bar
    run_dir = next(tmp_path.glob("*__*"))
    ckpt = load_checkpoint(run_dir / "student.pt", "student")
    assert {"latent.weight", "hidden.weight", "cell.weight"} <= set(ckpt["adapter"])
    assert ckpt["args"]["fitnets"] and ckpt["args"]["feature_normalise"]
    # the same run as if written before the flags existed: resuming with their defaults is not "other flags"
    from common.args import check_resume_args
    spec = importlib.util.spec_from_file_location("stage2", ROOT / "02_distill_student.py")
    stage2 = importlib.util.module_from_spec(spec)
    sys.modules["stage2"] = stage2
    spec.loader.exec_module(stage2)
    older = {k: v for k, v in ckpt["args"].items() if k not in ("fitnets", "feature_normalise")}
    check_resume_args(older, dataclasses.replace(stage2.Args(**ckpt["args"]), fitnets=False, feature_normalise=False),
                      run_dir)
    with pytest.raises(SystemExit):  # ... but a flag the run knows still has to match
        check_resume_args(ckpt["args"], dataclasses.replace(stage2.Args(**ckpt["args"]), fitnets=False), run_dir)


def test_teacher_buffer_residual_student_and_flags_the_main_block_hands_on(tiny_teacher, tmp_path, fake_wandb):
    """--data teacher-buffer fills the replay with the teacher's play before the student's own budget (and skips
    the random phase); --student-block residual builds the student from the teacher's block type, and the width
    flags (--num-blocks, --proj-hidden, --proj-out, --pred-hidden) size it; --momentum, --weight-decay,
    --priority-alpha, --track/--wandb-* and --progress reach the optimizer, the replay, wandb (a stand-in module)
    and the progress bar."""
    env, wandb_log = fake_wandb
    r = run_script("02_distill_student.py", [
        "--env-id", "MinAtar/Breakout-v1", "--teacher", str(tiny_teacher), "--teacher-eval-episodes", "0", *TINY,
        "--data", "teacher-buffer", "--teacher-buffer-steps", "40", "--student-block", "residual",
        "--num-blocks", "2", "--proj-hidden", "24", "--proj-out", "12", "--pred-hidden", "20",
        "--momentum", "0.5", "--weight-decay", "0.003", "--priority-alpha", "0.3",
        "--track", "--wandb-project-name", "proj", "--wandb-entity", "team", "--progress"], tmp_path / "runs", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"\| 8/8 \[", r.stderr), r.stderr  # the progress bar, at its end
    assert "filling the replay with 40 agent steps of the teacher's play" in r.stdout
    run_dir = next((tmp_path / "runs").glob("*__*"))
    ckpt = load_checkpoint(run_dir / "student.pt", "student")
    c = ckpt["counters"]
    assert c["teacher_env_steps"] == 40 and c["env_steps"] == 240  # the teacher's steps come on top
    cfg = NetConfig.from_dict(ckpt["config"])
    assert (cfg.block, cfg.num_blocks, cfg.proj_hidden, cfg.proj_out, cfg.pred_hidden) == ("residual", 2, 24, 12, 20)
    net = EfficientZeroNet(cfg)
    net.load_state_dict(ckpt["model"])  # the weights have the shapes the flags ask for
    assert sum(type(m).__name__ == "ResidualBlock" for m in net.representation.modules()) == 2
    assert not any(type(m).__name__ == "InvertedResidual" for m in net.modules())
    assert [m.out_features for m in net.projection if isinstance(m, torch.nn.Linear)] == [24, 24, 12]
    assert net.projection_head[0].out_features == 20
    (group,) = ckpt["optimizer"]["param_groups"]
    assert (group["momentum"], group["weight_decay"], ckpt["replay"]["alpha"]) == (0.5, 0.003, 0.3)
    tracked = json.loads(wandb_log.read_text())
    assert (tracked["project"], tracked["entity"], tracked["name"]) == ("proj", "team", run_dir.name)
