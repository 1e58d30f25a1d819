"""04_sweep.py: bad input refused before Ray starts; a toy table on a local Ray instance that survives a killed
trial (retried, resumed from its checkpoint) and a killed sweep (restarted, nothing finished is redone)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from common.presets import SMOKE
from common.runs import load_checkpoint
from tests.conftest import ENV, ROOT


def sweep(args: list[str], **kw):
    return subprocess.run([sys.executable, str(ROOT / "04_sweep.py"), *args], cwd=ROOT, env=ENV, capture_output=True,
                          text=True, timeout=600, **kw)


@pytest.mark.parametrize("args, message", [
    (["--preset", "nope"], "unknown preset 'nope'"),
    (["--preset", "minatar", "--games", "Pong"], "unknown MinAtar game"),
    (["--preset", "toy", "--teacher-flags=--batch-size 0"], "01_pretrain_teacher.py refuses the flags of cell "
                                                            "Catch-1 (teacher): --batch-size must be >= 1"),
    (["--preset", "toy", "--variants", "none", "x=--no-such-flag"], "02_distill_student.py refuses the flags"),
])
def test_bad_input_is_one_line_before_anything_starts(tmp_path, args, message):
    r = sweep([*args, "--runs-dir", str(tmp_path / "runs"), "--results-dir", str(tmp_path / "results")])
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path / "results").exists()


def test_dry_run_prints_every_cells_commands_and_starts_nothing(tmp_path):
    r = sweep(["--preset", "toy", "--seeds", "1", "2", "--variants", "none", "response", "--runs-dir",
               str(tmp_path / "runs"), "--results-dir", str(tmp_path / "results"), "--dry-run"])
    assert r.returncode == 0, r.stdout + r.stderr
    cells = r.stdout.split("\n# cell ")[1:]
    assert [c.splitlines()[0] for c in cells] == ["Catch-1", "Catch-2"]
    for seed, cell in zip((1, 2), cells):
        commands = [ln.split()[:2] for ln in cell.splitlines()[1:] if ln]
        assert commands == [["python", "01_pretrain_teacher.py"], ["python", "02_distill_student.py"],
                            ["python", "02_distill_student.py"], ["python", "03_evaluate.py"]], cell
        assert f"--seed {seed} --exp-name teacher" in cell and "--exp-name student-response" in cell
    assert "Ray:" not in r.stdout and not (tmp_path / "runs").exists() and not (tmp_path / "results").exists()


def load_sweep():
    """04_sweep.py as a module (its name starts with a digit, so it cannot be imported by name)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("sweep_under_test", ROOT / "04_sweep.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("flags, expected", [
    ([], (None, {"cpu": 2, "gpu": 0}, None, 3)),  # the defaults: a local Ray, as many cells as fit, 3 retries
    (["--address", "auto", "--cpus-per-trial", "4", "--gpus-per-trial", "0.5", "--max-concurrent", "3",
      "--max-failures", "0"], ("auto", {"cpu": 4, "gpu": 0.5}, 3, 0)),
])
def test_ray_settings_follow_the_flags(flags, expected):
    """What the main block hands ray.init, tune.with_resources, TuneConfig and FailureConfig (checked here without
    starting Ray, which costs 10 s; the toy table below runs them)."""
    import tyro

    mod = load_sweep()
    got = mod.ray_settings(tyro.cli(mod.Args, args=flags))
    assert (got["init"]["address"], got["resources"], got["max_concurrent_trials"], got["max_failures"]) == expected


def stage_pids(script: str, marker: str) -> list[int]:
    """pids of the processes running `script` whose command line holds `marker` (this test's folder)."""
    pids = []
    for p in Path("/proc").iterdir():
        try:
            cmd = (p / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(c.endswith(script.encode()) for c in cmd) and any(marker.encode() in c for c in cmd):
            pids.append(int(p.name))
    return pids


def wait_for(condition, what: str, proc: subprocess.Popen | None = None, timeout: float = 240):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if value := condition():
            return value
        assert proc is None or proc.poll() is None, f"the sweep ended before {what}: {proc.stdout.read()}"
        time.sleep(0.2)
    raise AssertionError(f"no {what} within {timeout} s")


def test_toy_table_survives_a_killed_trial_and_a_killed_sweep(tmp_path):
    runs, results = tmp_path / "runs", tmp_path / "results"
    # 60 updates with a checkpoint every 10: the teacher of seed 1 lives long enough to be killed mid-run
    cmd = [sys.executable, str(ROOT / "04_sweep.py"), "--preset", "toy", "--seeds", "1", "2", "--cpus-per-trial", "1",
           "--runs-dir", str(runs), "--results-dir", str(results), "--variants", "response",
           f"--train-flags={SMOKE['train']}", f"--student-flags={SMOKE['student']}",
           f"--evaluate-flags={SMOKE['evaluate']}", "--teacher-flags=--train-updates 60", "--report-seconds", "5"]
    teacher_dir = lambda seed: next(runs.glob(f"toy/Toy-Catch-v0__teacher__{seed}__*"), None)  # noqa: E731
    proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        # 1. kill -9 the teacher of seed 1 once it has a checkpoint: Ray retries the cell, which resumes it
        ckpt = wait_for(lambda: teacher_dir(1) and (teacher_dir(1) / "teacher.pt").exists()
                        and teacher_dir(1) / "teacher.pt", "teacher checkpoint", proc)
        pids = wait_for(lambda: stage_pids("01_pretrain_teacher.py", f"{runs}/toy"), "teacher process", proc)
        for pid in pids:
            if f"--seed\0{1}\0".encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGKILL)
        killed_at = load_checkpoint(ckpt, "teacher")["counters"]["updates"]
        # 2. kill -9 the whole sweep once one student has finished
        wait_for(lambda: next(runs.glob("toy/*student*/eval.json"), None), "finished student", proc)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    first_output = proc.stdout.read()
    assert "cell Catch-1 failed (teacher); retrying" in first_output, first_output
    # no stage of the killed sweep outlives it
    wait_for(lambda: not any(stage_pids(s, str(tmp_path)) for s in ("01_pretrain_teacher.py",
                                                                     "02_distill_student.py", "03_evaluate.py")),
             "end of the killed sweep's stages", timeout=30)
    finished = {p: p.stat().st_mtime_ns for p in runs.glob("toy/*/eval.json")}

    # 3. the same command again finishes what is left and merges one report
    r = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "sweep toy: 2 cells finished" in r.stdout
    for p, mtime in finished.items():  # finished runs are skipped, not redone
        assert p.stat().st_mtime_ns == mtime, p
    # one finished run per stage and seed: none trained twice (a run killed before its first checkpoint starts
    # again in a new directory, which the old one's leftovers cannot be mistaken for)
    run_dirs = sorted(p.parent.name.rsplit("__", 1)[0] for p in runs.glob("toy/Toy-Catch-v0__*/eval.json"))
    assert run_dirs == sorted(f"Toy-Catch-v0__{exp}__{s}" for exp in ("teacher", "student-response")
                              for s in (1, 2)), run_dirs
    teacher = load_checkpoint(teacher_dir(1) / "teacher.pt", "teacher")["counters"]
    assert teacher["updates"] == 60 and teacher["resumes"] == 1
    record = json.loads((results / "toy" / "logs" / "Catch-1.trial.json").read_text())
    states = [[s["state"] for s in a["stages"]] for a in record["attempts"]]
    assert states[1][0] == "resume", states  # the retried cell continued its teacher from the checkpoint
    assert all(a["host"] and a["commit"] for a in record["attempts"])
    summary = json.loads((results / "toy" / "summary.json").read_text())
    assert len(summary["models"]) == 4
    # the retry continued with the counters of the checkpoint the kill left
    assert f"resumed {teacher_dir(1)}: {killed_at:,} updates" in (results / "toy/logs/Catch-teacher-1.log").read_text()


FAKE_STAGE = '''
import json, sys, time
from pathlib import Path
argv = sys.argv[1:]
flag = lambda name: argv[argv.index(name) + 1] if name in argv else None
start = time.time()
time.sleep(1.0)
if "--out-dir" in argv:  # stage 3: a summary over the checkpoints it was given
    out = Path(flag("--out-dir"), flag("--name"))
    out.mkdir(parents=True)
    ckpts = argv[argv.index("--checkpoints") + 1:]
    (out / "summary.json").write_text(json.dumps({"models": [{"checkpoint": c} for c in ckpts]}))
else:  # stage 1 or 2: a finished run directory
    kind = "teacher" if flag("--exp-name") == "teacher" else "student"
    run = Path(flag("--run-dir"), f"{flag('--env-id').replace('/', '-')}__{flag('--exp-name')}__{flag('--seed')}__1")
    run.mkdir(parents=True)
    (run / f"{kind}.pt").write_text("")
    (run / "eval.json").write_text(json.dumps({"threads": flag("--threads"), "teacher": flag("--teacher"),
                                               "start": start, "end": time.time()}))
'''


@pytest.mark.parametrize("at_once", [1, 2])
def test_a_cells_students_run_side_by_side_after_its_teacher(tmp_path, at_once):
    """--students-at-once 2: each student gets half the cell's threads, starts only once the teacher has finished,
    and runs while another does (1: one after the other, with all the threads); stage 3 gets every checkpoint; only
    the trial's own thread reports to Ray."""
    import threading
    from types import SimpleNamespace

    mod = load_sweep()
    fake = tmp_path / "fake_stage.py"
    fake.write_text(FAKE_STAGE)
    args = SimpleNamespace(name="t", runs_dir=str(tmp_path / "runs"), results_dir=str(tmp_path / "results"),
                           cpus_per_trial=2, students_at_once=at_once, seeds=[7], train_flags="", teacher_flags="",
                           student_flags="", evaluate_flags="")
    preset = mod.PRESETS["toy"]
    (cell,) = mod.plan_cells(args, preset, ["Catch"], {v: mod.VARIANTS[v] for v in ("none", "response", "both")})
    for st in cell["stages"]:
        st["script"] = str(fake)
    cell["root"] = str(tmp_path)
    reporters = set()
    mod.run_cell(cell, lambda status: reporters.add(threading.get_ident()))
    assert reporters == {threading.get_ident()}

    runs = {p.parent.name.split("__")[1]: json.loads(p.read_text()) for p in tmp_path.glob("runs/t/*/eval.json")}
    assert sorted(runs) == ["student-both", "student-none", "student-response", "teacher"]
    students = [runs[s] for s in runs if s != "teacher"]
    assert runs["teacher"]["threads"] == "2" and all(s["threads"] == str(2 // at_once) for s in students)
    assert all(s["start"] >= runs["teacher"]["end"] and s["teacher"].endswith("teacher.pt") for s in students)
    first, second, third = sorted(students, key=lambda s: s["start"])
    if at_once == 2:
        assert second["start"] < first["end"]  # two at once
        assert third["start"] >= min(first["end"], second["end"])  # never three
    else:
        assert second["start"] >= first["end"] and third["start"] >= second["end"]
    summary = json.loads((tmp_path / "results/t/cells/Catch-7/summary.json").read_text())
    assert len(summary["models"]) == 4
    record = json.loads((tmp_path / "results/t/logs/Catch-7.trial.json").read_text())
    assert [s["returncode"] for s in record["attempts"][0]["stages"]] == [0] * 5
