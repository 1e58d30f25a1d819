"""Tiny checkpoints written by the real scripts, shared by the stage-2 and stage-3 tests (made once per session)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from common.runs import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
# one thread per process: `make test` runs two test processes side by side (pytest-xdist), each starting scripts
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
torch.set_num_threads(1)


# The order in which `make test` (pytest-xdist, --dist loadfile --no-loadscope-reorder) hands files to its two
# processes. The learning test (one chain of 6-11 minutes, by the machine) first, so it starts at once; xdist then
# queues one more file behind it on the same process, the third here, so that one is fast. The other slow files
# follow, then the rest.
# Without --no-loadscope-reorder xdist sorts files by their number of tests and the one-test learning file runs last.
FIRST = ["test_learning.py", "test_pipeline.py", "test_scores.py", "test_sweep.py", "test_usage.py"]


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


TINY = ["--total-env-steps", "240", "--random-transitions", "80", "--train-updates", "6", "--extra-updates", "2",
        "--batch-size", "8", "--num-simulations", "2", "--segment-length", "20", "--channels", "8",
        "--lstm-hidden", "16", "--eval-interval", "0", "--final-eval-episodes", "2", "--eval-max-steps", "200",
        "--checkpoint-interval", "4", "--no-progress", "--threads", "1"]


def run_script(script: str, args: list[str], run_dir: Path, env: dict = ENV) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / script), "--run-dir", str(run_dir), *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)


FAKE_WANDB = """
import json, os
def init(**kw):  # what the script asks wandb for, written where the test reads it
    kw.pop("config")
    with open(os.environ["FAKE_WANDB_LOG"], "w") as f:
        json.dump(kw, f)
    return Run()
class Run:
    def finish(self):
        pass
"""


@pytest.fixture
def fake_wandb(tmp_path) -> tuple[dict, Path]:
    """(environment, log): scripts started with that environment import a stand-in `wandb` (not a dependency) that
    writes the arguments of `wandb.init` to the log, so a test can check what --track and --wandb-* asked for."""
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake" / "wandb.py").write_text(FAKE_WANDB)
    return {**ENV, "PYTHONPATH": str(tmp_path / "fake"), "FAKE_WANDB_LOG": str(tmp_path / "wandb.json")}, \
        tmp_path / "wandb.json"


def evaluate_script(args: list[str], out_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "03_evaluate.py"), "--out-dir", str(out_dir), *args],
                          cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)


def only_run_dir(parent: Path) -> Path:
    (run_dir,) = [p for p in parent.iterdir() if p.is_dir()]
    return run_dir


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory) -> Path:
    """teacher.pt of a few-update MinAtar Breakout run of 01 (8-channel network)."""
    d = tmp_path_factory.mktemp("teacher")
    r = run_script("01_pretrain_teacher.py", ["--env-id", "MinAtar/Breakout-v1", *TINY], d)
    assert r.returncode == 0, r.stdout + r.stderr
    return only_run_dir(d) / "teacher.pt"


@pytest.fixture(scope="session")
def tiny_student(tiny_teacher, tmp_path_factory) -> Path:
    """student.pt distilled by 02 from `tiny_teacher`."""
    d = tmp_path_factory.mktemp("student")
    r = run_script("02_distill_student.py", ["--env-id", "MinAtar/Breakout-v1", "--teacher", str(tiny_teacher),
                                             "--teacher-eval-episodes", "2", *TINY], d)
    assert r.returncode == 0, r.stdout + r.stderr
    return only_run_dir(d) / "student.pt"


def kill_after_checkpoint(script: str, args: list[str], run_parent: Path, kind: str, min_updates: int = 40) -> Path:
    """Start `script`, wait until its checkpoint has passed `min_updates` updates, then kill -9 it mid-run.
    Returns the checkpoint file that survived."""
    proc = subprocess.Popen([sys.executable, str(ROOT / script), "--run-dir", str(run_parent), *args], cwd=ROOT,
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ckpt_file, deadline = None, time.time() + 300
    try:
        while time.time() < deadline:
            time.sleep(1)
            dirs = [p for p in run_parent.iterdir() if p.is_dir()]
            if dirs and (dirs[0] / f"{kind}.pt").exists():
                ckpt_file = dirs[0] / f"{kind}.pt"
                if load_checkpoint(ckpt_file, kind)["counters"]["updates"] >= min_updates:
                    break
            assert proc.poll() is None, proc.stdout.read()
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert ckpt_file is not None, f"no {kind}.pt within 300 s"
    return ckpt_file
