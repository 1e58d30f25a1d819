"""Bad input as a hostile user gives it: one clear error per problem and exit code 2, never a traceback, and no run
directory left behind; generated command lines (hypothesis) for every script; runs never share a directory; a
finished run given to --resume changes nothing; unsafe or foreign checkpoints are refused in one line."""

import contextlib
import io
import runpy
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.runs import claim_run_dir
from tests.conftest import ROOT, TINY, run_script

# Values a hostile user types: zero, negative, small, not a number, not finite (no large ones: a run that is
# fine must stay quick).
INT_VALUES = ["-3", "-1", "0", "1", "2", "x", "1.5", ""]
FLOAT_VALUES = ["-1", "0", "0.5", "1", "2", "nan", "inf", "-inf", "x"]
TRAIN_INTS = ["num-simulations", "num-envs", "batch-size", "num-unroll-steps", "td-steps", "td-age-per-step",
              "segment-length", "replay-capacity", "total-env-steps", "random-transitions", "train-updates",
              "extra-updates", "target-update-interval", "lr-warmup", "lr-decay-steps", "checkpoint-interval",
              "eval-interval", "eval-episodes", "final-eval-episodes", "eval-max-steps", "channels", "lstm-hidden",
              "search-chunk-size", "threads", "seed"]  # --workers > 0 starts processes: tests/test_pipeline.py
TRAIN_FLOATS = ["lr", "lr-decay-rate", "momentum", "weight-decay", "max-grad-norm", "value-prefix-weight",
                "policy-weight", "value-weight", "consistency-weight", "priority-alpha", "priority-beta",
                "reanalyse-fraction"]
STUDENT_INTS = ["expand-ratio", "num-blocks", "proj-hidden", "proj-out", "pred-hidden"]
STUDENT_FLOATS = ["response-weight", "tau", "tau-end", "feature-latent-weight", "feature-lstm-weight",
                  "value-distill-weight", "kd-alpha"]
EVAL_INTS = ["episodes", "first-seed", "max-steps", "num-simulations", "search-chunk-size", "latency-repeats",
             "agreement-states", "robustness-episodes", "threads"]
EVAL_FLOATS = ["sticky-prob", "obs-noise"]


def flag_values(ints: list[str], floats: list[str]):
    """1-3 (flag, value) pairs of the given flags, each value bad or borderline."""
    pair = st.one_of(st.tuples(st.sampled_from(ints), st.sampled_from(INT_VALUES)),
                     st.tuples(st.sampled_from(floats), st.sampled_from(FLOAT_VALUES)))
    return st.lists(pair, min_size=1, max_size=3, unique_by=lambda p: p[0])


def run_in_process(script: str, argv: list[str]) -> tuple[int, str]:
    """Run a script's main block here (no interpreter start-up per example): (exit code, stdout + stderr). Any
    exception other than SystemExit propagates: that is a traceback the user would have seen."""
    out = io.StringIO()
    old_argv = sys.argv
    sys.argv = [str(ROOT / script), *argv]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            runpy.run_path(str(ROOT / script), run_name="__main__")
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if isinstance(e.code, str):
            out.write(e.code)
    finally:
        sys.argv = old_argv
    return code, out.getvalue()


def check_outcome(code: int, text: str, run_parent: Path) -> None:
    assert "Traceback" not in text, text
    if code != 0:
        lines = text.strip().splitlines()
        assert lines, "a failure without a message"
        assert not any(run_parent.iterdir()), f"a failed call left {list(run_parent.iterdir())}"
        # one line, or the list of bad flags: one line per problem
        assert len(lines) == 1 or (lines[0] == "bad arguments:" and all(ln.startswith("  --") for ln in lines[1:])), \
            text


def fresh(tmp: Path) -> Path:
    for p in sorted(tmp.rglob("*"), reverse=True):  # hypothesis reuses the folder: empty it between examples
        p.rmdir() if p.is_dir() else p.unlink()
    return tmp


FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
                derandomize=True)
# the tiny budget of the CI runs on the toy game, smaller still: a call that passes the checks trains for a moment
BASE = ["--env-id", "Toy/Catch-v0", *TINY[:-2], "--threads", "1"]


@FUZZ
@given(pairs=flag_values(TRAIN_INTS, TRAIN_FLOATS))
def test_generated_teacher_command_lines(tmp_path, pairs):
    runs = fresh(tmp_path)
    extra = [x for f, v in pairs for x in (f"--{f}", v)]
    check_outcome(*run_in_process("01_pretrain_teacher.py", [*BASE, "--run-dir", str(runs), *extra]), runs)


@FUZZ
@given(pairs=flag_values(TRAIN_INTS + STUDENT_INTS, TRAIN_FLOATS + STUDENT_FLOATS))
def test_generated_student_command_lines(tmp_path, tiny_teacher, pairs):
    runs = fresh(tmp_path)
    extra = [x for f, v in pairs for x in (f"--{f}", v)]
    argv = [*BASE, "--env-id", "MinAtar/Breakout-v1", "--teacher", str(tiny_teacher), "--teacher-eval-episodes", "2",
            "--run-dir", str(runs), *extra]
    check_outcome(*run_in_process("02_distill_student.py", argv), runs)


@FUZZ
@given(pairs=flag_values(EVAL_INTS, EVAL_FLOATS))
def test_generated_evaluate_command_lines(tmp_path, tiny_teacher, pairs):
    out = fresh(tmp_path)
    extra = [x for f, v in pairs for x in (f"--{f}", v)]
    argv = ["--checkpoints", str(tiny_teacher), "--episodes", "1", "--num-simulations", "2", "--max-steps", "50",
            "--latency-repeats", "2", "--no-cost", "--no-robustness", "--no-progress", "--threads", "1",
            "--out-dir", str(out), *extra]
    check_outcome(*run_in_process("03_evaluate.py", argv), out)


INSPECT_INTS = ["seed", "max-steps", "num-simulations", "unroll-steps", "unroll-every", "frames", "threads"]


@settings(FUZZ, max_examples=8)  # a call that passes the checks plays and draws for a few seconds
@given(pairs=flag_values(INSPECT_INTS, ["seed"]))
def test_generated_inspect_command_lines(tmp_path, tiny_teacher, pairs):
    out = fresh(tmp_path)
    extra = [x for f, v in pairs for x in (f"--{f}", v)]
    argv = ["--checkpoint", str(tiny_teacher), "--max-steps", "12", "--num-simulations", "2", "--unroll-steps", "2",
            "--no-progress", "--threads", "1", "--out-dir", str(out), *extra]
    check_outcome(*run_in_process("05_inspect.py", argv), out)


SWEEP_INTS = ["seeds", "max-concurrent", "max-failures", "students-at-once"]
SWEEP_FLOATS = ["cpus-per-trial", "gpus-per-trial", "report-seconds"]


@FUZZ
@given(pairs=flag_values(SWEEP_INTS, SWEEP_FLOATS), games=st.sampled_from([[], ["Catch"], ["Nope"], ["all"]]),
       variants=st.sampled_from([[], ["none"], ["nope"], ["x=--lr 0"], ["x=--nope 1"]]))
def test_generated_sweep_command_lines(tmp_path, pairs, games, variants):
    """--dry-run: every check of the sweep runs, Ray never starts."""
    out = fresh(tmp_path)
    extra = [x for f, v in pairs for x in (f"--{f}", v)]
    argv = ["--preset", "toy", "--dry-run", "--runs-dir", str(out / "runs"), "--results-dir", str(out / "results"),
            *(["--games", *games] if games else []), *(["--variants", *variants] if variants else []), *extra]
    check_outcome(*run_in_process("04_sweep.py", argv), out)


@pytest.mark.parametrize("script, flags, lines", [
    ("01_pretrain_teacher.py", ["--checkpoint-interval", "0", "--lr-decay-steps", "0", "--channels", "0"],
     ["--checkpoint-interval must be >= 1", "--lr-decay-steps must be >= 1", "--channels must be >= 1"]),
    ("01_pretrain_teacher.py", ["--env-id", "MinAtar/Nope-v1"], ["--env-id: unknown MinAtar game"]),
    ("02_distill_student.py", ["--student-block", "foo", "--expand-ratio", "0", "--tau", "nan", "--teacher", "x"],
     ["--student-block must be", "--expand-ratio must be >= 1", "--tau must be a finite number"]),
    ("02_distill_student.py", ["--feature-normalise", "--batch-size", "1", "--teacher", "x"],
     ["--feature-normalise standardises by the batch's statistics: it needs --batch-size >= 2"]),  # NaN otherwise
    ("03_evaluate.py", ["--checkpoints", "x", "--latency-repeats", "1", "--sticky-prob", "2"],
     ["--latency-repeats must be >= 2", "--sticky-prob must be in [0, 1]"]),  # 1: quartiles of one timing crashed
])
def test_every_problem_is_listed_with_exit_code_2(tmp_path, script, flags, lines):
    folder = ["--out-dir" if script == "03_evaluate.py" else "--run-dir", str(tmp_path)]
    code, text = run_in_process(script, [*folder, *flags])
    assert code == 2 and "Traceback" not in text
    for line in lines:
        assert line in text, text
    assert not any(tmp_path.iterdir())


def test_the_profile_command_lists_its_bad_flags():
    import subprocess

    r = subprocess.run([sys.executable, "-m", "common.profile", "--repeats", "1", "--num-simulations", "0"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "--repeats must be >= 2" in r.stderr and "--num-simulations must be >= 1" in r.stderr, r.stderr


def test_runs_started_in_the_same_second_never_share_a_directory(tmp_path):
    dirs = [claim_run_dir(tmp_path, "Toy/Catch-v0", "teacher", 1) for _ in range(5)]
    assert len(set(dirs)) == 5 and all(d.is_dir() for d in dirs)
    assert [int(d.name.rsplit("__", 1)[1]) for d in dirs] == sorted(int(d.name.rsplit("__", 1)[1]) for d in dirs)


def test_resuming_a_finished_run_changes_nothing(tiny_teacher):
    run_dir = tiny_teacher.parent
    before = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()}
    r = run_script("01_pretrain_teacher.py", ["--env-id", "MinAtar/Breakout-v1", *TINY, "--resume", str(run_dir)],
                   run_dir.parent)
    assert r.returncode == 0 and "is finished" in r.stdout, r.stdout + r.stderr
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("content", [b"\x80\x04\x95" + bytes(range(60)), b"not a checkpoint at all"])
def test_a_foreign_or_unsafe_checkpoint_is_refused_in_one_line(tmp_path, content):
    bad = tmp_path / "teacher.pt"
    bad.write_bytes(content)
    code, text = run_in_process("03_evaluate.py", ["--checkpoints", str(bad), "--out-dir", str(tmp_path / "out")])
    assert code != 0 and text.strip().count("\n") == 0, text
    assert "weights_only=False" not in text and "refused" in text


def test_a_failed_checkpoint_write_leaves_the_previous_one_and_no_temporary_file(tmp_path, monkeypatch):
    import torch

    from common.runs import atomic_torch_save

    path = tmp_path / "teacher.pt"
    atomic_torch_save({"kind": "teacher", "n": 1}, path)

    def disk_full(obj, f):
        Path(f).write_bytes(b"half a checkpoint")
        raise RuntimeError("[enforce fail at inline_container.cc:664] . PytorchStreamWriter failed writing file")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(SystemExit) as e:
        atomic_torch_save({"kind": "teacher", "n": 2}, path)
    assert f"cannot write {path}" in e.value.code and "untouched" in e.value.code and "\n" not in e.value.code
    assert [p.name for p in tmp_path.iterdir()] == ["teacher.pt"]
    assert torch.load(path, weights_only=True)["n"] == 1


def test_an_unwritable_run_folder_is_one_line(tmp_path, monkeypatch):
    def read_only(self, *a, **kw):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "mkdir", read_only)
    with pytest.raises(SystemExit) as e:
        claim_run_dir(tmp_path / "runs", "Toy/Catch-v0", "teacher", 1)
    assert "cannot create the run directory" in e.value.code and "Permission denied" in e.value.code


@pytest.mark.parametrize("damage", ["truncate", "empty"])
def test_a_damaged_replay_segment_names_the_file_on_resume(tiny_teacher, tmp_path, damage):
    import shutil

    run_dir = tmp_path / tiny_teacher.parent.name
    shutil.copytree(tiny_teacher.parent, run_dir)
    (run_dir / "eval.json").unlink()  # not finished: the resume reads the replay
    segment = sorted((run_dir / "replay").glob("*.npz"))[0]
    segment.write_bytes(segment.read_bytes()[: 40 if damage == "truncate" else 0])
    r = run_script("01_pretrain_teacher.py", ["--env-id", "MinAtar/Breakout-v1", *TINY, "--resume", str(run_dir)],
                   tmp_path)
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    assert f"replay segment {segment}" in r.stderr and "damaged" in r.stderr and r.stderr.strip().count("\n") == 0


def half_then_full(*args, **kwargs):
    """A write on a full disk: part of the file, then ENOSPC."""
    target = next(a for a in args if isinstance(a, (str, Path)) or hasattr(a, "write"))
    if hasattr(target, "write"):
        target.write(b"half")
    else:
        Path(target).open("wb").write(b"half")
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize("output", ["eval.json", "heldout_states.npy", "scores.png", "events"])
def test_a_full_disk_on_any_output_is_one_line_naming_it_and_keeps_the_previous_file(tmp_path, monkeypatch, output):
    import matplotlib.figure
    import matplotlib.pyplot as plt
    import numpy as np

    from common.report import save_figure
    from common.runs import Logger, atomic_np_save, atomic_write_text

    path = tmp_path / output
    if output == "events":  # TensorBoard appends to its event file: the failure surfaces on the next write
        logger = Logger(tmp_path, None, resume=True)
        monkeypatch.setattr(logger.writer, "add_scalar", lambda *a, **k: half_then_full(path))
        write, previous = (lambda: logger.scalars({"a": 1.0}, 1)), None
    else:
        write = {"eval.json": lambda: atomic_write_text(path, "{}"),
                 "heldout_states.npy": lambda: atomic_np_save(path, np.zeros(3)),
                 "scores.png": lambda: save_figure(plt.figure(), path)}[output]
        write()
        previous = path.read_bytes()
        monkeypatch.setattr(Path, "write_text", lambda self, *a, **k: half_then_full(self))
        monkeypatch.setattr(np, "save", half_then_full)
        monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda self, f, **k: half_then_full(f))
    with pytest.raises(SystemExit) as e:
        write()
    message = e.value.code
    assert message.startswith("cannot write ") and "No space left on device" in message and "\n" not in message
    assert str(tmp_path) in message
    assert not list(tmp_path.glob("*.tmp")), list(tmp_path.iterdir())
    if previous is not None:
        assert path.read_bytes() == previous and "untouched" in message


@pytest.mark.parametrize("error, one_line", [(OSError(28, "No space left on device", "runs/x/teacher.pt"), True),
                                             (OSError(30, "Read-only file system", "runs/x"), True),
                                             (OSError(2, "No such file or directory", "a bug"), False),
                                             (ValueError("a bug"), False)])
def test_the_machines_faults_are_one_line_and_bugs_keep_their_traceback(capsys, error, one_line):
    from common.args import one_line_errors

    try:
        raise error
    except Exception as e:  # noqa: BLE001
        one_line_errors(type(e), e, e.__traceback__)
    err = capsys.readouterr().err
    assert ("Traceback" not in err and err.strip().count("\n") == 0 and error.filename in err) if one_line \
        else "Traceback" in err


# a Ctrl-C raised by the first import after the script's own first line (for 01: once torch has loaded, the slow
# second of a start): the script's handler must already be in place
_CTRL_C_AT_IMPORT = """
import builtins, os, runpy, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)
real_import, at = builtins.__import__, sys.argv[1]
def importing(name, *args, **kwargs):
    if name == at:
        os.kill(os.getpid(), signal.SIGINT)
    return real_import(name, *args, **kwargs)
builtins.__import__ = importing
script = sys.argv[2]
sys.argv = sys.argv[2:]
runpy.run_path(script, run_name="__main__")
"""


@pytest.mark.parametrize("script", ["01_pretrain_teacher.py", "02_distill_student.py", "03_evaluate.py",
                                    "04_sweep.py", "05_inspect.py"])
def test_ctrl_c_while_a_script_starts_is_one_line(script):
    import subprocess

    r = subprocess.run([sys.executable, "-c", _CTRL_C_AT_IMPORT, "common.args", str(ROOT / script), "--help"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and r.stderr.strip() == "interrupted while starting; nothing was written", r.stderr


def test_ctrl_c_while_minatar_loads_is_not_swallowed():
    """MinAtar's module imports matplotlib inside a bare `except:`; a Ctrl-C landing there must still stop us."""
    import subprocess

    code = _CTRL_C_AT_IMPORT.split("script =")[0] + (
        "from common.envs import make_env\n"
        "try:\n    make_env('MinAtar/Breakout-v1')\nexcept KeyboardInterrupt:\n    sys.exit(3)\n")
    r = subprocess.run([sys.executable, "-c", code, "matplotlib"], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 3, r.stdout + r.stderr


def test_ctrl_c_is_one_line_that_says_how_to_continue(tmp_path):
    import signal
    import subprocess
    import time

    flags = ["--env-id", "Toy/Catch-v0", *TINY[:4], "--train-updates", "20000", *TINY[6:], "--run-dir", str(tmp_path)]
    # as from a terminal: a test suite started in the background (`cmd &` without job control) ignores SIGINT, and
    # a child would inherit that
    p = subprocess.Popen([sys.executable, str(ROOT / "01_pretrain_teacher.py"), *flags], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while not list(tmp_path.glob("*/teacher.pt")) and time.time() < deadline and p.poll() is None:
        time.sleep(0.1)
    assert p.poll() is None, "the run ended before its first checkpoint"
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode != 0 and "Traceback" not in err, err
    run_dir = next(tmp_path.glob("*__*"))
    assert err.strip() == (f"interrupted; continue from {run_dir / 'teacher.pt'} with the same flags plus "
                           f"--resume {run_dir}"), err
