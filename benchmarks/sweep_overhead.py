"""What Ray costs: one toy cell through 04_sweep.py against the same three commands run directly.

    python benchmarks/sweep_overhead.py --repeats 3 --json-out results/speed/sweep_overhead.json

Each repeat runs, in fresh folders, (a) stages 1 -> 2 -> 3 of one cell of the toy preset at its plumbing budget
(`SMOKE` of common/presets.py) as plain subprocesses, one after another, and (b) the same cell through
`04_sweep.py --preset toy --seeds 1` (a local Ray instance started and stopped, one trial,
the merged report), alternating which goes first. Prints the wall-clock of each and the median ratio (b) / (a).
The absolute overhead (Ray's start, the trial's process, the merge) is what matters for real runs of hours.
"""

import importlib.util
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import tyro

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # 04_sweep.py imports common/
from common.presets import SMOKE  # noqa: E402  (the plumbing budget: what is measured is Ray's overhead)
from common.runs import save_json  # noqa: E402


@dataclass
class Args:
    repeats: int = 3
    """pairs of runs; the variants alternate which goes first"""
    threads: int = 2
    """CPUs of the cell (--cpus-per-trial of the sweep, --threads of the direct runs)"""
    json_out: str | None = None


def load_sweep():
    spec = importlib.util.spec_from_file_location("sweep04", ROOT / "04_sweep.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def direct(sweep, folder: Path, threads: int) -> float:
    """The cell's commands as a user would type them, each stage's checkpoint found the way the sweep finds it."""
    args = sweep.Args(preset="toy", seeds=[1], runs_dir=str(folder / "runs"), results_dir=str(folder / "results"),
                      cpus_per_trial=threads, variants=["response"], train_flags=SMOKE["train"],
                      student_flags=SMOKE["student"], evaluate_flags=SMOKE["evaluate"])
    preset = sweep.PRESETS["toy"]
    (cell,) = sweep.plan_cells(args, preset, ["Catch"], sweep.parse_variants(args, preset))
    start, done = time.perf_counter(), {}
    for st in cell["stages"]:
        argv = [done[a[1:-1]] if a.startswith("{") else a for a in st["argv"]]
        subprocess.run([sys.executable, st["script"], *argv], cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        if st["kind"] != "evaluate":
            run = sweep.latest_run(str(ROOT), cell["runs"], cell["env_id"], st["exp"], cell["seed"])
            done[st["stage"]] = f"{run}/{st['kind']}.pt"
    return time.perf_counter() - start


def through_ray(folder: Path, threads: int) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "04_sweep.py", "--preset", "toy", "--seeds", "1", "--cpus-per-trial",
                    str(threads), "--runs-dir", str(folder / "runs"), "--results-dir", str(folder / "results"),
                    "--variants", "response", f"--train-flags={SMOKE['train']}",
                    f"--student-flags={SMOKE['student']}", f"--evaluate-flags={SMOKE['evaluate']}"],
                   cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


if __name__ == "__main__":
    args = tyro.cli(Args, description=__doc__)
    sweep = load_sweep()
    times = {"direct": [], "ray": []}
    for i in range(args.repeats):
        order = ["direct", "ray"] if i % 2 == 0 else ["ray", "direct"]
        for variant in order:
            folder = Path(tempfile.mkdtemp(prefix=f"sweep_overhead_{variant}_"))
            try:
                seconds = direct(sweep, folder, args.threads) if variant == "direct" else through_ray(folder,
                                                                                                      args.threads)
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            times[variant].append(seconds)
            print(f"repeat {i + 1}: {variant:<6} {seconds:6.1f} s", flush=True)
    ratios = [r / d for r, d in zip(times["ray"], times["direct"])]
    out = {"cell": "toy preset, Catch seed 1: teacher, response student, stage 3", "threads": args.threads,
           "seconds": times, "median_seconds": {k: statistics.median(v) for k, v in times.items()},
           "median_ratio_ray_over_direct": statistics.median(ratios),
           "median_overhead_seconds": statistics.median(r - d for r, d in zip(times["ray"], times["direct"]))}
    print(f"direct {out['median_seconds']['direct']:.1f} s, through Ray {out['median_seconds']['ray']:.1f} s: "
          f"ratio {out['median_ratio_ray_over_direct']:.2f}, {out['median_overhead_seconds']:.1f} s more per sweep")
    if args.json_out:
        save_json(args.json_out, out)
