"""The hostile-user table: ~100 trials of what a new user does wrong, each judged good or bad, on the toy game.

    sudo python results/hostile/run.py            # about 15 minutes on one core; writes results/hostile/trials.json
    python results/hostile/run.py --only kill     # one category

A trial is good when the scripts behave as a user needs: a bad input ends with one clear line (or the list of bad
flags) and a non-zero exit, never a traceback, and leaves no run directory; a killed, interrupted or failed run
keeps its last good checkpoint whole and `--resume` finishes it with the budget it was given; a checkpoint that is not
ours is refused without being unpickled; a finished run is not touched again. The disk-full and read-only trials
mount small tmpfs file systems, so they need root (they are reported as skipped otherwise).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
GAME = ["--env-id", "Toy/Catch-v0"]
# a run of a few seconds: random play, 3 checkpoints, a final evaluation
TINY = ["--total-env-steps", "240", "--random-transitions", "80", "--train-updates", "6", "--extra-updates", "2",
        "--batch-size", "8", "--num-simulations", "2", "--segment-length", "20", "--channels", "8",
        "--lstm-hidden", "16", "--eval-interval", "0", "--final-eval-episodes", "2", "--eval-max-steps", "200",
        "--checkpoint-interval", "4", "--no-progress", "--threads", "1"]
# a run long enough (~10-20 s) that a kill at a random moment lands in collection, learning, checkpoints or evaluation
LONGER = [*TINY[:4], "--train-updates", "150", "--extra-updates", "50", *TINY[8:]]
LONGER_UPDATES = 200
STUDENT = ["--response-weight", "1", "--feature-latent-weight", "0.1", "--teacher-eval-episodes", "2"]


def run(script: str, args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([PY, str(ROOT / script), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "MPLBACKEND": "Agg"})


def one_line(p: subprocess.CompletedProcess) -> str:
    """'' when p failed the way a user needs (non-zero, no traceback, one line or the list of bad flags);
    otherwise what is wrong."""
    text = (p.stdout + p.stderr)
    if "Traceback" in text:
        return "traceback: " + text.strip().splitlines()[-1][:160]
    if p.returncode == 0:
        return "exit code 0"
    # progress bars (tqdm draws them on stderr) are not messages
    err = [ln for ln in p.stderr.strip().splitlines() if ln.strip(" \x1b[A") and "%|" not in ln]
    if not err:
        return "no message on stderr"
    if err[0].endswith(":") and all(ln.startswith("  --") for ln in err[1:]):  # a list of bad flags
        return ""
    return "" if len(err) == 1 else f"{len(err)} lines on stderr: {err[-1][:120]}"


def runs_in(parent: Path) -> list[Path]:
    return sorted(p for p in Path(parent).glob("*__*") if p.is_dir()) if Path(parent).exists() else []


def finished_ok(run_dir: Path, kind: str, updates: int) -> str:
    """'' when the run in run_dir reached `updates` updates and wrote its final evaluation."""
    import torch
    if not (run_dir / "eval.json").exists():
        return "no eval.json"
    ckpt = torch.load(run_dir / f"{kind}.pt", weights_only=True)
    if ckpt["counters"]["updates"] != updates:
        return f"{ckpt['counters']['updates']} updates instead of {updates}"
    leftovers = list(run_dir.rglob("*.tmp"))
    return f"left {leftovers}" if leftovers else ""


def resume_until_done(run_dir: Path, script: str, args: list[str], kind: str, updates: int) -> str:
    p = run(script, [*args, "--resume", str(run_dir)])
    if p.returncode != 0:
        return f"resume failed: {(p.stdout + p.stderr).strip().splitlines()[-1][:160]}"
    return finished_ok(run_dir, kind, updates)


class Trials:
    def __init__(self, work: Path):
        self.work, self.rows = work, []

    def record(self, category: str, name: str, problem: str) -> None:
        self.rows.append({"category": category, "trial": name, "good": not problem, "problem": problem})
        print(f"{'good' if not problem else 'BAD '} {category:<22} {name:<48} {problem}", flush=True)

    def fresh(self, name: str) -> Path:
        d = Path(tempfile.mkdtemp(prefix=name.replace("/", "_")[:40] + "-", dir=self.work))
        return d


# ----------------------------------------------------------------------------------------------------------------
# the categories
# ----------------------------------------------------------------------------------------------------------------
BAD_FLAGS = [  # (script, flags): the list, then wrong types and missing pieces
    ("01", ["--checkpoint-interval", "0"]), ("01", ["--target-update-interval", "0"]),
    ("01", ["--lr-decay-steps", "0"]), ("01", ["--channels", "0"]), ("01", ["--lstm-hidden", "-4"]),
    ("01", ["--td-age-per-step", "0"]), ("01", ["--eval-max-steps", "0"]), ("01", ["--random-transitions", "-10"]),
    ("01", ["--search-chunk-size", "0"]), ("02", ["--expand-ratio", "0"]), ("02", ["--proj-hidden", "0"]),
    ("02", ["--student-block", "foo"]), ("02", ["--num-blocks", "0"]), ("03", ["--latency-repeats", "0"]),
    ("03", ["--agreement-states", "0"]), ("03", ["--max-steps", "0"]), ("03", ["--sticky-prob", "2"]),
    ("03", ["--robustness-episodes", "0"]),
    ("01", ["--seed", "x"]), ("01", ["--lr", "nan"]), ("01", ["--batch-size", "1.5"]), ("01", ["--foo", "1"]),
    ("01", ["--lr", "-1", "--batch-size", "0", "--num-simulations", "0"]), ("02", []),
]
SCRIPTS = {"01": "01_pretrain_teacher.py", "02": "02_distill_student.py", "03": "03_evaluate.py"}


def bad_flags(t: Trials, teacher: Path) -> None:
    for script, flags in BAD_FLAGS:
        d = t.fresh("flags")
        if script == "03":
            args = ["--checkpoints", str(teacher), "--out-dir", str(d / "report"), *flags]
        else:
            args = [*GAME, *TINY, "--run-dir", str(d), *flags]
            if script == "02" and flags:
                args += ["--teacher", str(teacher)]
        p = run(SCRIPTS[script], args)
        problem = one_line(p) or ("" if p.returncode == 2 else f"exit code {p.returncode}, not 2")
        left = runs_in(d) + ([d / "report"] if (d / "report").exists() else [])
        t.record("bad flags", f"{script} {' '.join(flags) or '(no --teacher)'}", problem or (f"left {left}" if left
                                                                                          else ""))


def unknown_games(t: Trials, teacher: Path) -> None:
    for script in ("01", "02"):
        for game in ("Nope", "MinAtar/Nope-v1"):
            d = t.fresh("game")
            extra = ["--teacher", str(teacher)] if script == "02" else []
            p = run(SCRIPTS[script], ["--env-id", game, *TINY, "--run-dir", str(d), *extra])
            problem = one_line(p) or (f"left {runs_in(d)}" if runs_in(d) else "")
            t.record("unknown game", f"{script} --env-id {game}", problem)


def same_second(t: Trials, teacher: Path) -> None:
    for script, reps in (("01", 3), ("02", 2)):
        for rep in range(reps):
            d = t.fresh("same")
            extra = ["--teacher", str(teacher), *STUDENT] if script == "02" else []
            args = [*GAME, *TINY, "--run-dir", str(d), *extra]
            procs = [subprocess.Popen([PY, str(ROOT / SCRIPTS[script]), *args], cwd=ROOT, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True) for _ in range(2)]
            outs = [p.communicate(timeout=300) for p in procs]
            kind = "teacher" if script == "01" else "student"
            dirs = runs_in(d)
            problem = ("; ".join(f"exit {p.returncode}: {o[1].strip()[-120:]}" for p, o in zip(procs, outs)
                                 if p.returncode) or ("" if len(dirs) == 2 else f"{len(dirs)} run directories")
                       or "; ".join(filter(None, (finished_ok(r, kind, 8) for r in dirs)))
                       or ("" if all(len(list(r.glob("events.out.tfevents.*"))) == 1 for r in dirs)
                           else "a run directory holds two runs' event files"))
            t.record("same-second runs", f"two {script} runs at once, #{rep + 1}", problem)


def kill_at_random(t: Trials, category: str, n: int, clean_seconds: float, sig: int = signal.SIGKILL, kills: int = 1,
                   at_checkpoint_write: bool = False, seed: int = 0, window: tuple | None = None) -> None:
    rnd = random.Random(seed)
    for i in range(n):
        for _attempt in range(5):  # a draw that lands after the run ended is no trial: draw again
            problem = kill_trial(t.fresh("kill"), clean_seconds, sig, kills, at_checkpoint_write, rnd, window)
            if not problem.startswith("void"):
                break
        t.record(category, f"#{i + 1}" + (" (during a checkpoint write)" if at_checkpoint_write else ""), problem)


def kill_trial(d: Path, clean_seconds: float, sig: int, kills: int, at_checkpoint_write: bool,
               rnd: random.Random, window: tuple | None = None) -> str:
    """Signal a run `kills` times (resuming in between), then finish it: '' when it behaved. `window`: the
    seconds after the start to draw the signal's moment from (default: anywhere inside the run)."""
    args = [*GAME, *LONGER, "--run-dir", str(d)]
    for k in range(kills):
        with_ckpt = [r for r in runs_in(d) if (r / "teacher.pt").exists()]
        cmd = [PY, str(ROOT / SCRIPTS["01"]), *args, *(["--resume", str(with_ckpt[0])] if with_ckpt else [])]
        p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as a terminal's
        if at_checkpoint_write:  # wait for the temporary checkpoint to appear, kill while it is written
            t_end = time.time() + 60
            while p.poll() is None and time.time() < t_end and not list(d.glob("*/teacher.pt.tmp")):
                time.sleep(0.0005)
        elif window:
            time.sleep(rnd.uniform(*window))
        else:  # a moment while it runs (`clean_seconds`: how long a run of LONGER takes undisturbed)
            time.sleep(rnd.uniform(0.5, 0.9 * clean_seconds / (k + 1)))  # a resumed run has less left
        if p.poll() is not None:  # it ended first: no trial at all
            p.communicate()
            return f"void: the run ended before the signal (exit {p.returncode})"
        p.send_signal(sig)
        out, err = p.communicate(timeout=120)
        if sig == signal.SIGINT:  # the run must stop, in one line that says how to continue
            problem = one_line(subprocess.CompletedProcess(cmd, p.returncode, out, err))
            if problem == "exit code 0":
                return "the run went on after Ctrl-C"
            if problem or "interrupted" not in err:
                return problem or f"Ctrl-C message: {err.strip()[-120:]}"
    # a run killed before its first checkpoint leaves a directory without one (kill -9 cannot be cleaned up
    # after); the next start is then a new run, and at most one directory may hold a checkpoint
    dirs = [r for r in runs_in(d) if (r / "teacher.pt").exists()]
    if len(dirs) > 1:
        return f"{len(dirs)} run directories with a checkpoint"
    if dirs:
        return resume_until_done(dirs[0], SCRIPTS["01"], args, "teacher", LONGER_UPDATES)
    p = run(SCRIPTS["01"], args)  # killed before the first checkpoint: nothing to resume, a new run must work
    return "" if p.returncode == 0 else one_line(p) or f"exit {p.returncode}"


def nan_losses(t: Trials, teacher: Path) -> None:
    for script, lr in (("01", "1e30"), ("01", "1e20"), ("02", "1e30"), ("02", "1e20")):
        d = t.fresh("nan")
        extra = ["--teacher", str(teacher), *STUDENT] if script == "02" else []
        p = run(SCRIPTS[script], [*GAME, *TINY, "--run-dir", str(d), "--lr", lr, "--lr-warmup", "0", *extra])
        problem = one_line(p)
        kind = "teacher" if script == "01" else "student"
        for r in runs_in(d):
            if (r / f"{kind}.pt").exists():
                import torch
                torch.load(r / f"{kind}.pt", weights_only=True)  # the last good checkpoint loads
        if p.returncode != 0 and "non-finite" not in p.stderr:
            problem = problem or f"not the NaN message: {p.stderr.strip()[-120:]}"
        t.record("NaN loss", f"{script} --lr {lr}", problem if p.returncode else "trained on (loss stayed finite)")


def refused_checkpoints(t: Trials, teacher: Path, student: Path, other_game_teacher: Path) -> None:
    marker = t.work / "pwned"

    class RunsCode:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    bad = t.work / "bad"
    bad.mkdir(exist_ok=True)
    (bad / "random.pt").write_bytes(os.urandom(4096))
    (bad / "pickle.pt").write_bytes(pickle.dumps({"kind": "teacher", "x": RunsCode()}))
    import torch
    torch.save({"kind": "teacher", "x": RunsCode()}, bad / "torch_pickle.pt")
    (bad / "a_directory.pt").mkdir(exist_ok=True)
    (bad / "notes.json").write_text("{}")
    cases = [("02 --teacher random bytes", "02", bad / "random.pt"), ("02 --teacher a pickle", "02", bad / "pickle.pt"),
             ("02 --teacher torch.save of code", "02", bad / "torch_pickle.pt"),
             ("02 --teacher a directory", "02", bad / "a_directory.pt"), ("02 --teacher a JSON file", "02",
                                                                         bad / "notes.json"),
             ("02 --teacher missing", "02", bad / "missing.pt"), ("02 --teacher a student", "02", student),
             ("02 --teacher of another game", "02", other_game_teacher),
             ("03 --checkpoints a pickle", "03", bad / "torch_pickle.pt"),
             ("03 --checkpoints random bytes", "03", bad / "random.pt")]
    for name, script, path in cases:
        d = t.fresh("ckpt")
        if script == "02":
            p = run(SCRIPTS["02"], [*GAME, *TINY, "--run-dir", str(d), "--teacher", str(path)])
        else:
            p = run(SCRIPTS["03"], ["--checkpoints", str(path), "--out-dir", str(d / "report")])
        problem = (one_line(p) or ("the pickle ran code" if marker.exists() else "")
                   or ("suggests weights_only=False" if "weights_only=False" in p.stderr else "")
                   or (f"left {runs_in(d)}" if runs_in(d) else ""))
        t.record("refused checkpoint", name, problem)
    # a resume whose teacher.pt was replaced by a pickle
    d = t.fresh("ckpt")
    p = run(SCRIPTS["01"], [*GAME, *TINY, "--run-dir", str(d)])
    run_dir = runs_in(d)[0]
    shutil.copy(bad / "torch_pickle.pt", run_dir / "teacher.pt")
    p = run(SCRIPTS["01"], [*GAME, *TINY, "--run-dir", str(d), "--resume", str(run_dir)])
    t.record("refused checkpoint", "01 --resume of a run whose teacher.pt is a pickle",
             one_line(p) or ("the pickle ran code" if marker.exists() else ""))


def damaged_segments(t: Trials) -> None:
    damages = {"truncated .npz": lambda f: f.write_bytes(f.read_bytes()[:len(f.read_bytes()) // 2]),
               "empty .npz": lambda f: f.write_bytes(b""),
               "random .npz": lambda f: f.write_bytes(os.urandom(1822)),
               "truncated .frames.npy": lambda f: (lambda g: g.write_bytes(g.read_bytes()[:100]))(
                   f.with_name(f.name.replace(".npz", ".frames.npy"))),
               "missing .npz": lambda f: f.unlink()}
    for name, damage in damages.items():
        d = t.fresh("segment")
        args = [*GAME, *TINY, "--run-dir", str(d), "--train-updates", "4", "--extra-updates", "0"]
        run(SCRIPTS["01"], args)  # 4 updates: a checkpoint at 4, the run's budget raised below to continue it
        run_dir = runs_in(d)[0]
        seg = sorted((run_dir / "replay").glob("*.npz"))[1]
        damage(seg)
        before = (run_dir / "teacher.pt").read_bytes()
        (run_dir / "eval.json").unlink()
        p = run(SCRIPTS["01"], [*args, "--resume", str(run_dir)])
        problem = (one_line(p) or ("" if seg.name in p.stderr else f"does not name the file: {p.stderr.strip()}")
                   or ("" if (run_dir / "teacher.pt").read_bytes() == before else "the checkpoint changed"))
        t.record("damaged replay segment", name, problem)


def finished_resume(t: Trials, teacher_run: Path, student_run: Path, teacher: Path) -> None:
    for script, run_dir, extra in (("01", teacher_run, []), ("02", student_run, ["--teacher", str(teacher),
                                                                                  *STUDENT])):
        before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in run_dir.iterdir() if p.is_file()}
        p = run(SCRIPTS[script], [*GAME, *TINY, "--run-dir", str(run_dir.parent), *extra, "--resume", str(run_dir)])
        after = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in run_dir.iterdir() if p.is_file()}
        problem = (f"exit {p.returncode}" if p.returncode else "") or ("" if "nothing to do" in p.stdout else
                                                                       "does not say it is finished") \
            or ("" if before == after else "files changed")
        t.record("finished run resumed", f"{script} --resume of a finished run", problem)


def other_resumes(t: Trials, teacher_run: Path) -> None:
    d = t.fresh("resume")
    cases = [("01 --resume of a missing folder", [*GAME, *TINY, "--resume", str(d / "nope")]),
             ("01 --resume of a folder without checkpoint", [*GAME, *TINY, "--resume", str(d)]),
             ("01 --resume with another --batch-size", [*GAME, *TINY[:8], "--batch-size", "16", *TINY[10:],
                                                        "--resume", str(teacher_run)]),
             ("01 --resume with another game", ["--env-id", "MinAtar/Breakout-v1", *TINY, "--resume",
                                                str(teacher_run)])]
    for name, args in cases:
        t.record("resume mistakes", name, one_line(run(SCRIPTS["01"], args)))
    for name, args in [("03 --merge of a missing summary", ["--merge", str(d / "nope" / "summary.json"),
                                                            "--out-dir", str(d / "m")]),
                       ("03 --checkpoints missing", ["--checkpoints", str(d / "nope.pt"), "--out-dir",
                                                     str(d / "m")])]:
        p = run(SCRIPTS["03"], args)
        t.record("resume mistakes", name, one_line(p) or ("left the report folder" if (d / "m").exists() else ""))


class Tmpfs:
    """A small tmpfs at `path` (root only): `size` in bytes; `ro` read-only."""

    def __init__(self, path: Path, size: int, ro: bool = False):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},{'ro' if ro else 'rw'}", "tmpfs",
                        str(self.path)], check=True)

    def resize(self, size: int) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(self.path)], check=True)

    def remount(self, ro: bool) -> None:
        subprocess.run(["mount", "-o", f"remount,{'ro' if ro else 'rw'}", str(self.path)], check=True)

    def close(self) -> None:
        subprocess.run(["umount", str(self.path)], check=True)


def disk_full(t: Trials, teacher: Path) -> None:
    # the run directory of a TINY teacher: replay segments (~3 KB each), event file, a 4 MB checkpoint written beside
    # the previous one, eval.json: sizes that run out at each of those moments
    for size_kb in (16, 96, 2048, 6144, 7680, 8200):
        d = t.fresh("full")
        fs = Tmpfs(d / "disk", size_kb * 1024)
        try:
            args = [*GAME, *TINY, "--run-dir", str(fs.path)]
            p = run(SCRIPTS["01"], args)
            problem = one_line(p) if p.returncode else "ran to the end (the disk was large enough)"
            if not problem and "/" not in p.stderr:
                problem = f"does not name the path: {p.stderr.strip()}"
            dirs = runs_in(fs.path)
            if not problem and dirs and list(dirs[0].rglob("*.tmp")):
                problem = f"left {list(dirs[0].rglob('*.tmp'))}"
            fs.resize(64 * 1024 * 1024)  # space freed: the run goes on from its last checkpoint, or starts again
            if not problem:
                if dirs and (dirs[0] / "teacher.pt").exists():
                    problem = resume_until_done(dirs[0], SCRIPTS["01"], args, "teacher", 8)
                else:
                    problem = "" if run(SCRIPTS["01"], args).returncode == 0 else "a new run failed"
            t.record("disk full", f"01 on a {size_kb} KB disk: {p.stderr.strip()[:60]}", problem)
        finally:
            fs.close()
    for size_kb in (64, 4200):
        d = t.fresh("full")
        fs = Tmpfs(d / "disk", size_kb * 1024)
        try:
            p = run(SCRIPTS["02"], [*GAME, *TINY, "--run-dir", str(fs.path), "--teacher", str(teacher), *STUDENT])
            problem = one_line(p) if p.returncode else "ran to the end (the disk was large enough)"
            dirs = runs_in(fs.path)
            if not problem and dirs and list(dirs[0].rglob("*.tmp")):
                problem = f"left {list(dirs[0].rglob('*.tmp'))}"
            t.record("disk full", f"02 on a {size_kb} KB disk: {p.stderr.strip()[:60]}", problem)
        finally:
            fs.close()
    for size_kb in (8, 40):
        d = t.fresh("full")
        fs = Tmpfs(d / "disk", size_kb * 1024)
        try:
            p = run(SCRIPTS["03"], ["--checkpoints", str(teacher), "--episodes", "2", "--num-simulations", "2",
                                    "--out-dir", str(fs.path / "report"), "--latency-repeats", "3",
                                    "--threads", "1"])
            problem = one_line(p) if p.returncode else "ran to the end (the disk was large enough)"
            left = list(fs.path.rglob("*.tmp"))
            t.record("disk full", f"03 report on a {size_kb} KB disk: {p.stderr.strip()[:60]}",
                     problem or (f"left {left}" if left else ""))
        finally:
            fs.close()


def read_only(t: Trials, teacher: Path, teacher_run: Path) -> None:
    d = t.fresh("ro")
    fs = Tmpfs(d / "disk", 64 * 1024 * 1024)
    try:
        copy = fs.path / teacher_run.name
        shutil.copytree(teacher_run, copy)
        (copy / "eval.json").unlink()  # not finished: a resume would write
        fs.remount(ro=True)
        cases = [("01", [*GAME, *TINY, "--run-dir", str(fs.path / "runs")]),
                 ("02", [*GAME, *TINY, "--run-dir", str(fs.path / "runs"), "--teacher", str(teacher)]),
                 ("03", ["--checkpoints", str(teacher), "--out-dir", str(fs.path / "report"), "--episodes", "2"]),
                 ("01 --resume", [*GAME, *TINY, "--train-updates", "12", "--resume", str(copy)])]
        for name, args in cases:
            t.record("read-only disk", name, one_line(run(SCRIPTS[name[:2]], args)))
    finally:
        fs.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", default=None, help="categories to run (substring match)")
    ap.add_argument("--json-out", default=str(Path(__file__).with_name("trials.json")))
    opts = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hostile-"))
    t = Trials(work)
    t0 = time.time()
    # the checkpoints the trials start from: a finished toy teacher and student, and a MinAtar Breakout teacher
    base = work / "base"
    assert run(SCRIPTS["01"], [*GAME, *TINY, "--run-dir", str(base)]).returncode == 0
    teacher_run = runs_in(base)[0]
    teacher = teacher_run / "teacher.pt"
    assert run(SCRIPTS["02"], [*GAME, *TINY, "--run-dir", str(base / "s"), "--teacher", str(teacher),
                               *STUDENT]).returncode == 0
    student_run = runs_in(base / "s")[0]
    assert run(SCRIPTS["01"], ["--env-id", "MinAtar/Breakout-v1", *TINY, "--run-dir", str(base / "b")]
               ).returncode == 0
    other = runs_in(base / "b")[0] / "teacher.pt"
    t1 = time.time()  # how long an undisturbed run of LONGER takes: the kills land inside it
    assert run(SCRIPTS["01"], [*GAME, *LONGER, "--run-dir", str(base / "clean")]).returncode == 0
    clean = time.time() - t1
    print(f"an undisturbed run of the kill trials takes {clean:.1f} s", flush=True)
    root = os.geteuid() == 0
    categories = {
        "bad flags": lambda: bad_flags(t, teacher),
        "unknown game": lambda: unknown_games(t, teacher),
        "same-second runs": lambda: same_second(t, teacher),
        "kill -9": lambda: kill_at_random(t, "kill -9", 16, clean),
        "kill -9 checkpoint": lambda: kill_at_random(t, "kill -9", 6, clean, at_checkpoint_write=True),
        "ctrl-c": lambda: kill_at_random(t, "Ctrl-C", 3, clean, sig=signal.SIGINT, seed=1),
        # while Python loads torch, MinAtar and the game (from 0.1 s: before that the interpreter itself is starting)
        "ctrl-c starting": lambda: kill_at_random(t, "Ctrl-C while starting", 6, clean, sig=signal.SIGINT, seed=3,
                                                  window=(0.1, 3.0)),
        "double kill": lambda: kill_at_random(t, "double kill -9", 3, clean, kills=2, seed=2),
        "nan": lambda: nan_losses(t, teacher),
        "refused checkpoint": lambda: refused_checkpoints(t, teacher, student_run / "student.pt", other),
        "damaged segment": lambda: damaged_segments(t),
        "finished": lambda: finished_resume(t, teacher_run, student_run, teacher),
        "resume mistakes": lambda: other_resumes(t, teacher_run),
        "disk full": (lambda: disk_full(t, teacher)) if root else None,
        "read-only": (lambda: read_only(t, teacher, teacher_run)) if root else None,
    }
    for name, go in categories.items():
        if opts.only and not any(o in name for o in opts.only):
            continue
        if go is None:
            print(f"skipped {name}: needs root to mount a small tmpfs")
            continue
        go()
    shutil.rmtree(work, ignore_errors=True)
    table = {}
    for r in t.rows:
        c = table.setdefault(r["category"], {"trials": 0, "good": 0, "bad": 0})
        c["trials"] += 1
        c["good" if r["good"] else "bad"] += 1
    total = {k: sum(c[k] for c in table.values()) for k in ("trials", "good", "bad")}
    print(f"\n{'category':<24}{'trials':>7}{'good':>6}{'bad':>5}")
    for name, c in {**table, "all": total}.items():
        print(f"{name:<24}{c['trials']:>7}{c['good']:>6}{c['bad']:>5}")
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    Path(opts.json_out).write_text(json.dumps({"commit": git.strip(), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                             time.gmtime()),
                                               "wall_seconds": round(time.time() - t0), "table": table,
                                               "total": total, "trials": t.rows}, indent=2))


if __name__ == "__main__":
    main()
