"""Stage 4: a whole results table as one command — every (game, seed) cell a Ray Tune trial.

    python 04_sweep.py --preset minatar                          # results/minatar/: 3 games x 2 seeds, this box
    python 04_sweep.py --preset atari100k --games Breakout Pong --seeds 1 2 3 --cpus-per-trial 8 --gpus-per-trial 1
    python 04_sweep.py --preset atari100k --games all --address auto   # on a running Ray cluster (`ray start`)
    python 04_sweep.py --preset toy --dry-run                    # print every cell's commands, start nothing

A cell is one trial that runs, one after another, stage 1 (the teacher), stage 2 once per student variant (the
teacher's run is its `--teacher`) and stage 3 over the teacher and its students together; when every trial has
ended, `03_evaluate.py --merge` writes one report over all cells, `<results-dir>/<name>/report.md`. Each stage is a
subprocess of the trial running the stage's script with the preset's flags (`common/presets.py`), then the sweep's
own: stage 3 only runs on finished runs, exactly as by hand.

Faults. A trial is idempotent: a run whose directory holds `eval.json` is finished and skipped, one with a
checkpoint is continued with `--resume`, a cell whose `summary.json` covers its checkpoints is not evaluated again.
So a trial that fails (a stage exits non-zero or is killed, the node dies) is retried by Ray (`--max-failures`)
and continues from its runs' last checkpoints, and a sweep that is killed is finished by running the same command
again. Every stage's output goes to `<results-dir>/<name>/logs/<Game>-<stage>-<seed>.log`; each cell's commands,
commit, host and wall-clock times to `<results-dir>/<name>/logs/<Game>-<seed>.trial.json`.

On a cluster, every node needs the repository at the same path (the Docker image's /app) and `--runs-dir` and
`--results-dir` on storage all nodes share: a retried trial may land on another node and resumes from there.
"""

import common.interrupts  # noqa: F401  (first: a Ctrl-C while the imports load ends in one line)
import ctypes
import json
import logging
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import tyro

from common.args import one_line, parse_args
from common.envs import resolve_env_id
from common.presets import PRESETS, VARIANTS, Preset, expand_games

ROOT = Path(__file__).resolve().parent
SCRIPTS = {"teacher": "01_pretrain_teacher.py", "student": "02_distill_student.py", "evaluate": "03_evaluate.py"}


@dataclass
class Args:
    preset: str = "minatar"
    """flags of every stage and the default games, seeds and students: toy, minatar, atari-cpu, atari100k"""
    games: list[str] = field(default_factory=list)
    """games of the table (default: the preset's); `all`, and for Atari `paper` (the seed paper's 14 games)"""
    seeds: list[int] = field(default_factory=list)
    """seeds of the table (default: the preset's)"""
    variants: list[str] | None = None
    """students of every cell: none, response, feature, both (the paper's terms switched on), or NAME=FLAGS for
    any other student, e.g. 'wide=--channels 48'; no value: teachers only (default: the preset's)"""
    name: str | None = None
    """the table's name: runs go to <runs-dir>/<name>/, reports to <results-dir>/<name>/ (default: the preset)"""
    runs_dir: str = "runs"
    """parent of the table's run directories"""
    results_dir: str = "results"
    """parent of the table's reports and logs"""
    train_flags: str = ""
    """more flags for stages 1 and 2, after the preset's (write --train-flags='--lr 0.1 ...' with the =)"""
    teacher_flags: str = ""
    """more flags for stage 1 only"""
    student_flags: str = ""
    """more flags for stage 2 only"""
    evaluate_flags: str = ""
    """more flags for stage 3 only"""
    cpus_per_trial: float = 2
    """CPUs Ray reserves for a cell; its teacher and stage 3 get that many torch threads"""
    students_at_once: int = 1
    """a cell's students (independent once its teacher is done) run this many at a time, each with
    cpus-per-trial / students-at-once torch threads"""
    gpus_per_trial: float = 0
    """GPUs Ray reserves for a cell (its stages see only those; 0: CPU)"""
    max_concurrent: int = 0
    """cells running at once (0: as many as the resources allow)"""
    address: str | None = None
    """Ray cluster to join (`auto`, or host:port); default: a Ray instance on this machine only"""
    max_failures: int = 3
    """retries of a failed cell (each continues from its runs' checkpoints)"""
    report_seconds: float = 30
    """the progress table is printed at most this often (and whenever a cell changes stage)"""
    dry_run: bool = False
    """print every cell's commands and exit without starting Ray"""


# =============================================================================================================
# The plan: every cell's stages as plain data (the trial gets it whole; no repository import on the worker)
# =============================================================================================================
def fail(msg: str) -> None:
    """Bad input: one line, exit code 2, nothing started."""
    print(f"04_sweep.py: {msg}", file=sys.stderr)
    raise SystemExit(2)


def split_flags(text: str, what: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError as e:
        fail(f"{what}: {e}")


def parse_variants(args: Args, preset: Preset) -> dict[str, list[str]]:
    out = {}
    for item in preset.variants if args.variants is None else args.variants:
        name, sep, flags = item.partition("=")
        if not sep and name not in VARIANTS:
            fail(f"unknown student variant {name!r}: use {', '.join(VARIANTS)}, or NAME=FLAGS")
        if sep and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
            fail(f"variant name {name!r}: letters, digits, '.', '_' and '-' only (it names the run)")
        if name in out:
            fail(f"variant {name!r} given twice")
        out[name] = split_flags(flags, f"variant {name}") if sep else VARIANTS[name]
    return out


def latest_run(root: str, runs: str, env_id: str, exp: str, seed: int) -> str | None:
    """The newest run directory of (game, experiment, seed): `<env>__<exp>__<seed>__<time>`, newest by <time>."""
    prefix = f"{env_id.replace('/', '-')}__{exp}__{seed}__"
    found = [(int(p.name[len(prefix):]), p) for p in Path(root, runs).glob(prefix + "*")
             if p.is_dir() and p.name[len(prefix):].isdigit()]
    return str(Path(runs) / max(found)[1].name) if found else None


def plan_cells(args: Args, preset: Preset, games: list[str], variants: dict[str, list[str]]) -> list[dict]:
    name = args.name or preset.name
    runs, results = str(Path(args.runs_dir) / name), Path(args.results_dir) / name
    threads = ["--threads", str(max(1, int(args.cpus_per_trial)))]
    at_once = max(1, min(args.students_at_once, len(variants)))  # fewer students than K: each gets more threads
    student_threads = ["--threads", str(max(1, int(args.cpus_per_trial // at_once)))]
    extra = {k: split_flags(getattr(args, f"{k}_flags"), f"--{k}-flags")
             for k in ("train", "teacher", "student", "evaluate")}
    cells = []
    for game in games:
        env_id = preset.env_id(game)
        # --threads first: a --threads in --train-flags still wins
        head, train = ["--env-id", env_id, "--run-dir", runs], [*preset.train_flags(game), *extra["train"]]
        for seed in args.seeds or preset.seeds:
            stages = [{"stage": "teacher", "kind": "teacher", "script": SCRIPTS["teacher"], "exp": "teacher",
                       "argv": [*head, *threads, *train, "--seed", str(seed), "--exp-name", "teacher",
                                *extra["teacher"]]}]
            for v, flags in variants.items():
                stages.append({"stage": f"student-{v}", "kind": "student", "script": SCRIPTS["student"],
                               "exp": f"student-{v}",
                               "argv": [*head, *student_threads, *train, "--seed", str(seed), "--exp-name",
                                        f"student-{v}", *preset.student, *flags, *extra["student"],
                                        "--teacher", "{teacher}"]})
            stages.append({"stage": "evaluate", "kind": "evaluate", "script": SCRIPTS["evaluate"],
                           "out": str(results / "cells" / f"{game}-{seed}"),
                           "argv": ["--out-dir", str(results / "cells"), "--name", f"{game}-{seed}", *threads,
                                    *preset.evaluate, *extra["evaluate"], "--checkpoints",
                                    *[f"{{{s['stage']}}}" for s in stages]]})
            cells.append({"cell": f"{game}-{seed}", "game": game, "seed": seed, "env_id": env_id, "runs": runs,
                          "logs": str(results / "logs"), "python": sys.executable, "root": str(ROOT),
                          "students_at_once": args.students_at_once, "stages": stages})
    return cells


def check_stage_flags(cells: list[dict]) -> None:
    """Parse every stage's command line with the stage's own parser and checks, before anything starts."""
    import contextlib
    import importlib.util
    import io

    modules = {}
    for kind, script in SCRIPTS.items():  # the scripts are not importable by name (they start with a digit)
        spec = importlib.util.spec_from_file_location(f"_sweep_stage_{kind}", ROOT / script)
        modules[kind] = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = modules[kind]  # tyro reads the flags' help from the module's source
        spec.loader.exec_module(modules[kind])
    checks = {"teacher": modules["teacher"].check_train_args, "student": modules["student"].check_args,
              "evaluate": lambda a: None}
    for cell in cells:
        for st in cell["stages"]:
            argv = [a if not a.startswith("{") else "runs/x/teacher.pt" for a in st["argv"]]
            text = io.StringIO()
            try:
                with contextlib.redirect_stderr(text), contextlib.redirect_stdout(text):
                    parsed = tyro.cli(modules[st["kind"]].Args, args=argv)
                    checks[st["kind"]](parsed)
            except SystemExit as e:
                message = e.code if isinstance(e.code, str) else text.getvalue()  # a check's, or tyro's box
                fail(f"{st['script']} refuses the flags of cell {cell['cell']} ({st['stage']}): {one_line(message)}")
            if st["kind"] != "evaluate" and parsed.final_eval_episodes < 1:
                fail(f"{st['stage']} of {cell['cell']}: the sweep needs --final-eval-episodes >= 1 (a run's "
                     f"eval.json is how it knows the run finished)")


# =============================================================================================================
# The trial: one cell's stages, each skipped, resumed or started (runs in a Ray worker, maybe on another node)
# =============================================================================================================
BAR = re.compile(r"(?:^|\s)(?:(?P<desc>[^:|\r\n]*): )?\s*\d+%\|[^|]*\| (?P<n>[\d,]+)/(?P<total>[\d,]+)")
SCORE = re.compile(r"(?:eval return|final evaluation \(\d+ episodes\):) (?P<score>-?[\d.]+)")
RESUMED = re.compile(r"resumed .*?: (?P<n>[\d,]+) updates")


def die_with_parent() -> None:
    """In the stage's process: get SIGKILL when the trial's process dies (a killed trial leaves no orphan)."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def git_commit(root: str) -> str:
    """The repository's commit; in the Docker image, which has no .git, the one it was built from."""
    try:
        commit = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                timeout=10).stdout.strip()
    except OSError:
        commit = ""
    return commit or os.environ.get("EZ_DISTILL_COMMIT", "")[:7] or "unknown"


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def write_json(path: Path, obj) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def stage_state(cell: dict, st: dict, done: dict) -> tuple[str, list[str]]:
    """('finished' | 'resume' | 'new', the stage's extra flags) of a stage, from what is on disk."""
    root = Path(cell["root"])
    if st["kind"] == "evaluate":
        summary = root / st["out"] / "summary.json"
        if summary.exists():
            try:
                evaluated = {m["checkpoint"] for m in json.loads(summary.read_text())["models"]}
            except (ValueError, KeyError, TypeError):
                evaluated = set()
            if evaluated == set(done.values()):
                return "finished", []
        return "new", []
    run = latest_run(cell["root"], cell["runs"], cell["env_id"], st["exp"], cell["seed"])
    if run and (root / run / "eval.json").exists():
        return "finished", [run]
    if run and (root / run / f"{st['kind']}.pt").exists():
        return "resume", [run]
    return "new", []


def run_cell(cell: dict, report) -> None:
    """The teacher, then its students (`students_at_once` at a time: each needs only the teacher), then stage 3;
    raises when a stage fails (Ray then retries the whole cell, which skips or resumes what is on disk)."""
    root, logs = Path(cell["root"]), Path(cell["root"], cell["logs"])
    logs.mkdir(parents=True, exist_ok=True)
    record_path = logs / f"{cell['cell']}.trial.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else {"cell": cell["cell"], "attempts": []}
    attempt = {"host": socket.gethostname(), "commit": git_commit(cell["root"]), "started": now(), "stages": []}
    t_attempt = time.time()
    record["attempts"].append(attempt)
    done: dict[str, str] = {}  # stage -> its checkpoint (the placeholders of later stages)
    lock = threading.Lock()  # students side by side share `record`, `done` and the progress
    running: dict[str, dict] = {}  # stage -> its last progress
    in_pool = False  # while students run in the pool's threads, only this one reports (Ray's report is the trial's)

    def progress(status: dict) -> None:
        with lock:
            running[status["stage"]] = status
        if not in_pool:
            report(dict(status))

    def report_students() -> None:  # one row for the cell: the students' names, and the updates of each
        with lock:
            rows = list(running.values())
        if len(rows) < 2:
            report(dict(rows[0]) if rows else {"stage": "students", "phase": "", "updates": None, "score": None})
            return
        report({"stage": "+".join(r["stage"].removeprefix("student-") for r in rows), "phase": "students",
                "updates": " ".join(str(r["updates"] or "-").split("/")[0] for r in rows), "score": None})

    def run_one(st: dict) -> None:
        with lock:
            state, found = stage_state(cell, st, done)
            entry = {"stage": st["stage"], "state": state}
            attempt["stages"].append(entry)
            argv = [done[a[1:-1]] if a.startswith("{") else a for a in st["argv"]]  # the earlier stages' runs
        if state == "finished":
            with lock:
                if st["kind"] != "evaluate":
                    done[st["stage"]] = f"{found[0]}/{st['kind']}.pt"
                write_json(record_path, record)
            if not in_pool:
                report({"stage": st["stage"], "phase": "was finished", "updates": None, "score": None})
            return
        if state == "resume":
            argv += ["--resume", found[0]]
        command = [cell["python"], st["script"], *argv]
        with lock:
            entry.update(command=shlex.join(command), started=now())
            write_json(record_path, record)
        t_stage = time.time()
        log = logs / f"{cell['game']}-{st['stage']}-{cell['seed']}.log"
        code = run_stage(command, root, log, st["stage"], progress)
        with lock:
            running.pop(st["stage"], None)
            entry.update(returncode=code, wall_seconds=round(time.time() - t_stage, 1))
            write_json(record_path, record)
        if code != 0:
            raise RuntimeError(f"{st['stage']} of {cell['cell']} exited with {code}; see {log}")
        if st["kind"] != "evaluate":
            run = latest_run(cell["root"], cell["runs"], cell["env_id"], st["exp"], cell["seed"])
            with lock:
                done[st["stage"]] = f"{run}/{st['kind']}.pt"

    teacher, *students, evaluate = cell["stages"]
    run_one(teacher)
    in_pool = True
    with ThreadPoolExecutor(max_workers=cell["students_at_once"]) as pool:
        futures = [pool.submit(run_one, st) for st in students]
        pending = set(futures)
        while pending:  # a failed student does not stop the others; its error is raised once all have ended
            pending = wait(pending, timeout=5).not_done
            report_students()
    in_pool = False
    for future in futures:
        future.result()
    run_one(evaluate)
    attempt["wall_seconds"] = round(time.time() - t_attempt, 1)
    write_json(record_path, record)
    report({"stage": "done", "phase": "", "updates": None, "score": None})


def run_stage(command: list[str], root: Path, log: Path, stage: str, report) -> int:
    """Run one stage, its output appended to `log`; report its progress (updates, last score) as it goes."""
    env = {**os.environ, "TQDM_MININTERVAL": "2"}  # the stage's progress bar, read below, not logged
    status = {"stage": stage, "phase": "", "updates": None, "score": None}
    last_report = 0.0
    with open(log, "a") as out:
        out.write(f"$ {shlex.join(command[1:])}  (git {git_commit(str(root))}, {socket.gethostname()}, "
                  f"{now()})\n")
        out.flush()
        start = time.time()
        proc = subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                preexec_fn=die_with_parent)
        pending = b""
        while chunk := os.read(proc.stdout.fileno(), 65536):
            pieces = re.split(rb"(\r|\n)", pending + chunk)
            pending = pieces.pop()  # the unfinished piece
            for text, sep in zip(pieces[::2], pieces[1::2]):
                line = text.decode(errors="replace")
                if sep == b"\n" and line.strip():  # bar refreshes (\r) are read, not logged
                    out.write(line.rstrip() + "\n")
                if m := BAR.search(line):
                    status["phase"] = (m["desc"] or "train").strip()
                    status["updates"] = f"{m['n']}/{m['total']}" if status["phase"] == "train" else status["updates"]
                if m := SCORE.search(line):
                    status["score"] = float(m["score"])
                if m := RESUMED.search(line):
                    status["phase"] = "resumed"
            out.flush()
            if time.time() - last_report > 5:
                report(dict(status))
                last_report = time.time()
        code = proc.wait()
        out.write(f"wall-clock of this call: {time.time() - start:.0f} s, exit code {code}\n")
    report(dict(status))
    return code


def trial(config: dict) -> None:
    from ray import tune

    run_cell(config["cell"], tune.report)


def ray_settings(args: Args) -> dict:
    """What the flags ask of Ray: ray.init's keywords (--address: the cluster to join), each cell's reservation
    (tune.with_resources), the cells at once (TuneConfig; --max-concurrent 0 is Tune's None: as many as fit) and the
    retries of a failed cell (FailureConfig)."""
    return {"init": {"address": args.address, "include_dashboard": False, "logging_level": logging.WARNING,
                     "log_to_driver": False},
            "resources": {"cpu": args.cpus_per_trial, "gpu": args.gpus_per_trial},
            "max_concurrent_trials": args.max_concurrent or None, "max_failures": args.max_failures}


# =============================================================================================================
# The live progress table (in the driver): every cell's status, stage, updates and last score
# =============================================================================================================
def progress_callback(report_seconds: float):
    from ray.tune import Callback

    class Progress(Callback):
        def __init__(self):
            self.rows, self.printed, self.last = {}, 0.0, ""

        def _row(self, trial, **kw):
            row = self.rows.setdefault(trial.config["cell"]["cell"], {"stage": "-", "updates": None, "score": None,
                                                                       "phase": "", "failures": 0})
            row.update(kw, status=trial.status.lower())
            if row["status"] == "terminated":  # ended: finished, or stopped (Ctrl-C) before the end
                row["status"] = "done" if row["stage"] == "done" else "stopped"
            return row

        def on_trial_start(self, iteration, trials, trial, **info):
            self._row(trial)
            self.print(trials)

        def on_trial_result(self, iteration, trials, trial, result, **info):
            old = self._row(trial)["stage"]
            self._row(trial, **{k: result.get(k) for k in ("stage", "phase", "updates", "score")})
            self.print(trials, force=result.get("stage") != old)

        def on_trial_recover(self, iteration, trials, trial, **info):
            row = self._row(trial)
            row["failures"] += 1
            print(f"cell {trial.config['cell']['cell']} failed ({row['stage']}); retrying from its checkpoints "
                  f"(failure {row['failures']})", flush=True)

        def on_trial_error(self, iteration, trials, trial, **info):
            self._row(trial)["failures"] += 1
            self.print(trials, force=True)

        def on_trial_complete(self, iteration, trials, trial, **info):
            self._row(trial)
            self.print(trials, force=True)

        def on_experiment_end(self, trials, **info):
            self.print(trials, force=True)

        def print(self, trials, force=False):
            if not force and time.time() - self.printed < report_seconds:
                return
            for t in trials:
                self._row(t)
            lines = [f"{'cell':<20} {'status':<10} {'stage':<20} {'phase':<12} {'updates':>13} {'last score':>10} "
                     f"{'retries':>7}"]
            for cell, r in sorted(self.rows.items()):
                score = "-" if r["score"] is None else f"{r['score']:.2f}"
                lines.append(f"{cell:<20} {r['status']:<10} {r['stage'] or '-':<20} {r['phase'] or '':<12} "
                             f"{r['updates'] or '-':>13} {score:>10} {r['failures']:>7}")
            table = "\n".join(lines)
            if table != self.last or time.time() - self.printed >= report_seconds:  # no twin tables
                print(f"--- {time.strftime('%H:%M:%S')}\n{table}", flush=True)
                self.printed, self.last = time.time(), table

    return Progress()


# =============================================================================================================
if __name__ == "__main__":
    args = parse_args(Args, __doc__)
    if args.preset not in PRESETS:
        fail(f"unknown preset {args.preset!r}: use {', '.join(PRESETS)}")
    preset = PRESETS[args.preset]
    games = []
    for game in expand_games(preset, args.games):
        try:
            family, canonical = resolve_env_id(preset.env_id(game))
        except ValueError as e:
            fail(str(e).split(". ")[0] + f" (preset {preset.name} plays {preset.family} games)")
        games.append(canonical)
    if len(set(args.seeds)) != len(args.seeds):
        fail("a seed is given twice")
    if args.cpus_per_trial <= 0 or args.gpus_per_trial < 0 or args.max_failures < 0 or args.max_concurrent < 0:
        fail("--cpus-per-trial must be > 0; --gpus-per-trial, --max-failures and --max-concurrent >= 0")
    if args.students_at_once < 1:
        fail("--students-at-once must be >= 1")
    variants = parse_variants(args, preset)
    cells = plan_cells(args, preset, list(dict.fromkeys(games)), variants)
    check_stage_flags(cells)
    name = args.name or preset.name
    print(f"sweep {name}: preset {preset.name} ({preset.about}); {len(cells)} cells = {len(games)} games x "
          f"{len(cells) // len(games)} seeds, each a teacher, {len(variants)} students ({', '.join(variants) or '-'})"
          f" and stage 3")

    if args.dry_run:
        print("# {stage}: the checkpoint that stage of the same cell writes")
        for cell in cells:
            print(f"\n# cell {cell['cell']}")
            for st in cell["stages"]:
                print(shlex.join(["python", st["script"], *st["argv"]]))
        raise SystemExit(0)

    # --- Ray: local by default, or join a cluster; one trial per cell -----------------------------------------
    import ray
    from ray import tune

    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")  # the trial runs the scripts from the repository
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's own tables off (verbose=0): the sweep prints its own
    ray_args = ray_settings(args)
    ray.init(**ray_args["init"])
    resources = ray_args["resources"]
    print(f"Ray: {ray.cluster_resources().get('CPU', 0):g} CPU(s), {ray.cluster_resources().get('GPU', 0):g} "
          f"GPU(s); each cell reserves {resources['cpu']:g} CPU(s) and {resources['gpu']:g} GPU(s)", flush=True)
    tuner = tune.Tuner(
        tune.with_resources(trial, resources),
        param_space={"cell": tune.grid_search(cells)},
        tune_config=tune.TuneConfig(max_concurrent_trials=ray_args["max_concurrent_trials"]),
        run_config=tune.RunConfig(
            name=f"{name}-{time.strftime('%Y%m%d-%H%M%S')}",
            storage_path=str((ROOT / args.runs_dir / name / "_ray").resolve()),
            failure_config=tune.FailureConfig(max_failures=ray_args["max_failures"]),
            callbacks=[progress_callback(args.report_seconds)], verbose=0))
    results = tuner.fit()  # returns on Ctrl-C too, with the cells that did not finish
    failed = [r.config["cell"]["cell"] for r in results if r.error or (r.metrics or {}).get("stage") != "done"]
    ray.shutdown()

    # --- one report over every evaluated cell of the table ---------------------------------------------------
    summaries = sorted(str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p)
                       for p in (ROOT / args.results_dir / name / "cells").glob("*/summary.json"))
    if summaries:
        merged = subprocess.run([sys.executable, "03_evaluate.py", "--out-dir", args.results_dir, "--name", name,
                                 "--merge", *summaries], cwd=ROOT)
        if merged.returncode:
            failed.append("the merged report")
    if failed:
        print(f"04_sweep.py: not finished: {', '.join(failed)}; the logs are in "
              f"{Path(args.results_dir) / name / 'logs'}; run the same command again to finish what is left",
              file=sys.stderr)
        raise SystemExit(1)
    print(f"sweep {name}: {len(cells)} cells finished; report {Path(args.results_dir) / name / 'report.md'}")
