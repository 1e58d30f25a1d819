"""Stage 1 end to end: smoke run on a real Atari game, resume after SIGKILL, bad input."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from common.networks import EfficientZeroNet, NetConfig
from common.runs import load_checkpoint
from tests.conftest import ENV, ROOT, kill_after_checkpoint

SCRIPT = str(ROOT / "01_pretrain_teacher.py")

TINY_ATARI = ["--env-id", "Pong", "--total-env-steps", "160", "--random-transitions", "80", "--train-updates", "4",
              "--extra-updates", "2", "--batch-size", "8", "--num-simulations", "2", "--segment-length", "20",
              "--channels", "16", "--lstm-hidden", "32", "--final-eval-episodes", "2", "--eval-max-steps", "30",
              "--eval-interval", "3", "--eval-episodes", "1", "--checkpoint-interval", "2", "--no-progress"]

MINATAR = ["--env-id", "MinAtar/Breakout-v1", "--random-transitions", "100", "--batch-size", "16",
           "--num-simulations", "2", "--segment-length", "30", "--channels", "8", "--lstm-hidden", "16",
           "--final-eval-episodes", "0", "--eval-interval", "0", "--no-progress", "--threads", "1"]


def run(args, tmp_path, **kw):
    return subprocess.run([sys.executable, SCRIPT, "--run-dir", str(tmp_path), *args], cwd=ROOT,
                          env=kw.pop("env", ENV), capture_output=True, text=True, timeout=kw.pop("timeout", 600), **kw)


def only_run_dir(tmp_path) -> Path:
    (d,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    return d


def test_smoke_atari_writes_loadable_checkpoint_and_eval(tmp_path):
    r = run(TINY_ATARI, tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    d = only_run_dir(tmp_path)
    ckpt = load_checkpoint(d / "teacher.pt", "teacher")  # weights_only=True
    assert ckpt["counters"]["updates"] == 6 and ckpt["counters"]["env_steps"] >= 160
    net = EfficientZeroNet(NetConfig.from_dict(ckpt["config"]))
    net.load_state_dict(ckpt["model"])  # the network is rebuilt from the checkpoint alone
    assert net.config.obs_shape == (12, 96, 96) and net.config.channels == 16
    ev = json.loads((d / "eval.json").read_text())
    assert ev["episodes"] == 2 and len(ev["scores"]) == 2 and ev["seeds"] == [0, 1] and "hns" in ev
    assert ev["updates"] == 6
    assert list(d.glob("events.out.tfevents.*"))
    assert "final evaluation (2 episodes)" in r.stdout
    assert not re.search(r"\d+/\d+ \[", r.stderr), r.stderr  # --no-progress: no bar


def test_flags_reach_the_run_and_a_resume_must_give_the_same_ones(tmp_path, fake_wandb):
    """Flags that the main block hands on: --momentum and --weight-decay to SGD, the learning-rate flags to every
    update, --priority-alpha to the replay, --num-envs to self-play, --track/--wandb-* to wandb (a stand-in module
    here: wandb is not a dependency), --progress to the progress bar. Then a resume with another flag is refused."""
    env, wandb_log = fake_wandb
    flags = MINATAR + ["--total-env-steps", "301", "--train-updates", "2", "--extra-updates", "0", "--momentum", "0.5",
                       "--weight-decay", "0.003", "--lr", "0.4", "--lr-warmup", "0", "--lr-decay-steps", "1",
                       "--lr-decay-rate", "0.5", "--priority-alpha", "0.3", "--num-envs", "3", "--track",
                       "--wandb-project-name", "proj", "--wandb-entity", "team", "--progress"]
    r = run(flags, tmp_path / "runs", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"\| 2/2 \[", r.stderr), r.stderr  # the progress bar, at its end
    d = only_run_dir(tmp_path / "runs")
    ckpt = load_checkpoint(d / "teacher.pt", "teacher")
    (group,) = ckpt["optimizer"]["param_groups"]
    assert (group["momentum"], group["weight_decay"]) == (0.5, 0.003)
    assert group["lr"] == pytest.approx(0.4 * 0.5)  # the rate of the last update, update 1
    assert ckpt["replay"]["alpha"] == 0.3
    assert ckpt["counters"]["env_steps"] % 3 == 0 and ckpt["counters"]["env_steps"] >= 301  # 3 steps at a time
    tracked = json.loads(wandb_log.read_text())
    assert (tracked["project"], tracked["entity"], tracked["name"]) == ("proj", "team", d.name)

    r = run(flags + ["--batch-size", "32", "--resume", str(d)], tmp_path / "runs", env=env)
    assert r.returncode != 0 and "--batch-size: run has 16, you gave 32" in r.stderr


def test_resume_after_sigkill_continues_counters_and_replay(tmp_path):
    args = MINATAR + ["--total-env-steps", "1500", "--train-updates", "200", "--extra-updates", "0",
                      "--checkpoint-interval", "20"]
    ckpt_file = kill_after_checkpoint("01_pretrain_teacher.py", args, tmp_path, "teacher")
    before = load_checkpoint(ckpt_file, "teacher")
    stored = len(before["replay"]["priorities"])
    assert 0 < before["counters"]["updates"] < 200

    r = run(args + ["--resume", str(ckpt_file.parent)], tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    m = re.search(r"resumed .*: ([\d,]+) updates, ([\d,]+) env steps, replay ([\d,]+) transitions", r.stdout)
    assert m, r.stdout
    assert int(m.group(1).replace(",", "")) == before["counters"]["updates"]
    assert int(m.group(3).replace(",", "")) == stored  # the replay the checkpoint described, nothing lost
    after = load_checkpoint(ckpt_file, "teacher")
    assert after["counters"]["updates"] == 200 and after["counters"]["resumes"] == 1
    assert after["counters"]["env_steps"] >= before["counters"]["env_steps"]
    assert after["replay"]["total_pushed"] >= before["replay"]["total_pushed"]
    # every segment the final index names is on disk, and nothing else is
    names = {f"{i:010d}.npz" for i in after["replay"]["first_ids"]}
    assert names == {p.name for p in (ckpt_file.parent / "replay").glob("*.npz")}


@pytest.mark.parametrize("flags, message", [
    (["--env-id", "NotAGame"], "unknown game"),
    (["--num-simulations", "0"], "--num-simulations must be >= 1"),
    (["--batch-size", "5000", "--total-env-steps", "1000"], "larger than the buffer can serve"),
    (["--reanalyse-fraction", "1.5"], "--reanalyse-fraction must be in [0, 1]"),
])
def test_bad_flags_fail_fast(tmp_path, flags, message):
    r = run(MINATAR + flags, tmp_path, timeout=60)
    assert r.returncode != 0 and message in r.stderr + r.stdout
    assert not any(tmp_path.iterdir())  # nothing created for a run that cannot start


def test_nan_loss_stops_with_the_term_named(tmp_path):
    r = run(MINATAR + ["--total-env-steps", "400", "--train-updates", "50", "--extra-updates", "0",
                       "--lr", "1e30", "--lr-warmup", "1", "--max-grad-norm", "1e30", "--checkpoint-interval", "1000"],
            tmp_path)
    assert r.returncode != 0
    assert "non-finite loss at update" in r.stderr and "No checkpoint was written yet" in r.stderr
    assert not (only_run_dir(tmp_path) / "teacher.pt").exists()  # no checkpoint of a broken network


def test_checkpoint_loader_rejects_foreign_files(tmp_path):
    torch.save({"kind": "student"}, tmp_path / "s.pt")
    with pytest.raises(SystemExit, match="is not a teacher checkpoint"):
        load_checkpoint(tmp_path / "s.pt", "teacher")
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    with pytest.raises(SystemExit, match="is not an ez-distill checkpoint"):
        load_checkpoint(tmp_path / "junk.pt", "teacher")
