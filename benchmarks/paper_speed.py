"""How fast a training run goes, and where an update's time goes: the synchronous loop against --workers.

    python benchmarks/paper_speed.py --json-out results/speed/paper_speed_cpu.json        # this 2-core CPU: < 5 minutes
    python benchmarks/paper_speed.py --workers 8 --json-out results/speed/paper_speed_gpu.json   # a GPU box
    python benchmarks/paper_speed.py --setting minatar --updates 500 --warmup 50 --repeats 3   # the MinAtar preset

`--setting paper` is the paper's stage 1 on Breakout: the full-size teacher, batch 256, 50 simulations, 99%
reanalysis, the target refreshed every 200 updates, about one update per agent step (100k updates over the 98k
agent steps after the random phase). `--setting minatar` is the CPU preset of `results/minatar/`.

Each variant (`sync`: --workers 0; `workers`: --workers N; `workers+graphs`: also --cuda-graphs, CUDA only) starts
from the same replay of `--fill-steps` random transitions (the random phase, played once) and fresh networks, then
runs the training loop of 01_pretrain_teacher.py (collection, reanalysis, learning; no evaluation, logging or
checkpoints) with the pieces it uses (`common.pipeline`) for `--warmup` updates, then `--updates` timed ones.
Printed and written as JSON per variant:
  updates/s and agent steps/s over the timed updates, and the hours 120k updates would take at that rate (with
    about one update per agent step, a window of a few updates may hold no self-play step: the speed of
    self-play alone, over the whole variant, is printed too);
  the learner's seconds per update: collect (playing inline, or taking what the self-play process played),
    reanalyse (sampling and reanalysing inline, or waiting for the workers' batch and copying it), learn;
  the work per update wherever it ran (several workers' seconds add up, so this can exceed the wall time):
    selfplay, sample (PER and frame windows), bootstrap (the target network's values), search_net (the
    reanalysis search's network calls with their host-device copies), search_tree (its numpy tree).
"""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import tyro

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere: common/ importable
from common.args import TrainArgs  # noqa: E402
from common.envs import make_env  # noqa: E402
from common.loss import LossConfig, unrolled_loss  # noqa: E402
from common.networks import default_config, online_and_target  # noqa: E402
from common.pipeline import SELFPLAY_LEAD, start_pipeline  # noqa: E402
from common.replay import ReplayBuffer, ReplayStore  # noqa: E402
from common.runs import pick_device, save_json  # noqa: E402
from common.selfplay import SelfPlay, visit_temperature  # noqa: E402
from common.training import env_steps_allowed, learning_rate, record_steps, sgd_step, updates_due  # noqa: E402
from common.tree import MCTSConfig  # noqa: E402

PAPER_UPDATES = 120_000
# the teacher of the minatar preset (common/presets.py): the MinAtar runs of the results table
MINATAR_PRESET = dict(env_id="MinAtar/Breakout-v1", total_env_steps=20_000, train_updates=4_000, extra_updates=0,
                      batch_size=64, num_simulations=20, segment_length=200, reanalyse_fraction=0.0, lr_warmup=200)
WORK = ("selfplay", "sample", "bootstrap", "search_net", "search_tree")


@dataclass
class Args:
    setting: Literal["paper", "minatar"] = "paper"
    """the paper's Atari setting, or results/minatar's CPU preset"""
    variants: list[str] = field(default_factory=lambda: ["sync", "workers", "workers+graphs"])
    """`sync` (--workers 0), `workers` (--workers N), `workers+graphs` (and --cuda-graphs; skipped without CUDA)"""
    workers: int | None = None
    """N of the workers variants (default: the CPU cores minus two for the learner and self-play, at least 1, at
    most 8)"""
    updates: int | None = None
    """timed updates per variant (default: 1 on the CPU, where a paper-setting update takes ~1 minute; 100 on CUDA)"""
    warmup: int | None = None
    """updates per variant before timing starts, at least 1 (default: 1 on the CPU, 30 on CUDA)"""
    fill_steps: int = 2_000
    """random transitions in the replay when a variant starts (the paper's random phase)"""
    device: str = "auto"
    """`auto`, `cpu`, `cuda`, ..."""
    repeats: int = 1
    """runs of each variant, alternating; the JSON keeps every run, the summary the median one"""
    seed: int = 1
    json_out: str | None = None
    """write the measurements here"""


def fill_replay(train: TrainArgs, run_dir: Path, rng: np.random.Generator) -> tuple[dict, int]:
    """The random phase, played once: a replay on disk (returns its index) and the agent steps it took."""
    pad = train.num_unroll_steps + train.td_steps
    store, replay = ReplayStore(run_dir), ReplayBuffer(capacity=train.replay_capacity, alpha=train.priority_alpha)
    selfplay = SelfPlay(train.env_id, train.num_envs, seed=train.seed * 1000, segment_length=train.segment_length,
                        pad=pad)
    steps = 0
    while steps < train.random_transitions or len(replay) < train.batch_size:
        segments, _, _ = selfplay.step(None, MCTSConfig(), 1.0, rng)
        steps += train.num_envs
        for seg in segments:
            store.push(replay, seg)
    selfplay.close()
    return store.index(replay), steps


class _NoLogger:  # the benchmark measures the loop, not TensorBoard
    def scalars(self, values, step):
        pass


def run_variant(train: TrainArgs, base: Path, index: dict, filled_steps: int, warmup: int, updates: int,
                device: torch.device) -> dict:
    """The loop of 01_pretrain_teacher.py, from a copy of the filled replay, for warmup + updates updates."""
    run_dir = Path(tempfile.mkdtemp(prefix="variant-", dir=base))
    shutil.copytree(base / "fill" / "replay", run_dir / "replay")
    store = ReplayStore(run_dir)
    replay = store.restore(index)
    probe = make_env(train.env_id, mode="train", seed=0)
    family, obs_shape, num_actions = probe.family, probe.obs_shape, probe.num_actions
    probe.close()
    torch.manual_seed(train.seed)
    rng = np.random.default_rng(train.seed)
    net, target_net = online_and_target(default_config("teacher", family, obs_shape, num_actions), device)
    optimizer = torch.optim.SGD(net.parameters(), lr=train.lr, momentum=train.momentum,
                                weight_decay=train.weight_decay)
    use_amp = train.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    mcts = MCTSConfig(num_simulations=train.num_simulations)
    loss_cfg = LossConfig(num_unroll_steps=train.num_unroll_steps, augment=family == "atari")
    counters = {"env_steps": filled_steps, "updates": 0, "episodes": 0, "learn_start_env_steps": -1, "resumes": 0}
    timing = {"collect": 0.0, "reanalyse": 0.0, "learn": 0.0}
    acting, batches = start_pipeline(train, net, target_net, mcts, loss_cfg, counters, train.random_transitions,
                                     run_dir, device, use_amp, timing)
    lead = SELFPLAY_LEAD * train.num_envs
    marks = []  # after each update: (time, agent steps, timing)
    recent: list[float] = []
    try:
        while counters["updates"] < warmup + updates:
            updates_now = counters["updates"]
            t0 = time.perf_counter()
            steps = acting.collect(net, counters["env_steps"], visit_temperature(updates_now, train.train_updates),
                                   rng)
            recent = record_steps(steps, store, replay, counters, _NoLogger(), recent)
            timing["collect"] += time.perf_counter() - t0
            due = min(updates_due(counters, train), warmup + updates)
            acting.progress(net, updates_now, env_steps_allowed(counters, train, lead))
            while counters["updates"] < due:
                u = counters["updates"]
                t0 = time.perf_counter()
                ids, batch, _, _ = batches.next(replay, u, rng)
                t1 = time.perf_counter()
                timing["reanalyse"] += t1 - t0
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(u, train.lr, train.lr_warmup, train.lr_decay_steps,
                                                train.lr_decay_rate)
                net.train()
                loss, _, value0 = unrolled_loss(net, batch, loss_cfg, rng, autocast=use_amp)
                sgd_step(optimizer, scaler, loss, train)
                replay.update_priorities(ids, (value0 - batch.value[:, 0]).abs().cpu().numpy() + 1e-6)
                counters["updates"] += 1
                acting.progress(net, counters["updates"], env_steps_allowed(counters, train, lead))
                if counters["updates"] % train.target_update_interval == 0:
                    target_net.load_state_dict(net.state_dict())
                    batches.publish_target(target_net, counters["updates"])
                timing["learn"] += time.perf_counter() - t1
                marks.append((time.perf_counter(), counters["env_steps"], dict(timing)))
    finally:
        acting.close()
        batches.close()
    graphs = getattr(batches, "graphs", [])
    shutil.rmtree(run_dir, ignore_errors=True)
    (t0, env0, tim0), (t1, env1, tim1) = marks[warmup - 1], marks[-1]  # from the end of the warm-up to the end
    seconds, n = t1 - t0, len(marks) - warmup
    played = counters["env_steps"] - filled_steps  # over the whole variant: a short window may hold no play at all
    per_update = {k: (tim1.get(k, 0.0) - tim0.get(k, 0.0)) / n for k in sorted(set(tim1) | set(tim0))}
    return {"updates": n, "seconds": seconds, "updates_per_second": n / seconds,
            "agent_steps_per_second": (env1 - env0) / seconds,
            "selfplay_agent_steps_per_second": played / max(timing.get("selfplay", 0.0), 1e-9),
            "hours_for_120k_updates": PAPER_UPDATES / (n / seconds) / 3600,
            "learner_seconds_per_update": {k: per_update.get(k, 0.0) for k in ("collect", "reanalyse", "learn")},
            "work_seconds_per_update": {k: per_update.get(k, 0.0) for k in WORK},
            "cuda_graphs": graphs}


def main(args: Args) -> dict:
    device = pick_device(args.device)
    cuda = device.type == "cuda"
    cores = os.cpu_count() or 1
    n_workers = args.workers or max(1, min(8, cores - 2))
    updates = args.updates if args.updates is not None else (100 if cuda else 1)
    warmup = args.warmup if args.warmup is not None else (30 if cuda else 1)
    bad = [v for v in args.variants if v not in ("sync", "workers", "workers+graphs")]
    problems = ([f"unknown variants {bad}: choose from sync, workers, workers+graphs"] if bad else []) + \
        (["--updates must be >= 1"] if updates < 1 else []) + (["--warmup must be >= 1"] if warmup < 1 else []) + \
        (["--fill-steps must be >= 1"] if args.fill_steps < 1 else []) + \
        (["--repeats must be >= 1"] if args.repeats < 1 else [])
    if problems:
        raise SystemExit("bad arguments:\n  " + "\n  ".join(problems))
    variants = [v for v in args.variants if cuda or v != "workers+graphs"]
    preset = MINATAR_PRESET if args.setting == "minatar" else {"env_id": "Breakout"}
    base_train = replace(TrainArgs(), **preset, seed=args.seed, random_transitions=args.fill_steps,
                         device=str(device), progress=False)
    print(f"{args.setting} setting on {base_train.env_id}: batch {base_train.batch_size}, "
          f"{base_train.num_simulations} simulations, reanalyse {base_train.reanalyse_fraction:.0%} | device {device}, "
          f"{cores} CPU cores | {warmup} warm-up + {updates} timed updates per variant")
    result = {"setting": args.setting, "env_id": base_train.env_id, "device": str(device),
              "device_name": torch.cuda.get_device_name(device) if cuda else platform.processor() or "cpu",
              "cpu_cores": cores, "torch": torch.__version__, "batch_size": base_train.batch_size,
              "num_simulations": base_train.num_simulations, "reanalyse_fraction": base_train.reanalyse_fraction,
              "warmup_updates": warmup, "timed_updates": updates, "repeats": args.repeats, "workers": n_workers,
              "variants": {}}
    with tempfile.TemporaryDirectory(prefix="paper-speed-") as tmp:
        base = Path(tmp)
        t0 = time.perf_counter()
        index, filled = fill_replay(base_train, base / "fill", np.random.default_rng(args.seed))
        print(f"replay filled with {filled:,} random agent steps ({len(index['priorities']):,} transitions stored) "
              f"in {time.perf_counter() - t0:.1f} s")
        runs: dict[str, list[dict]] = {name: [] for name in variants}
        for repeat in range(args.repeats):  # variants alternate, so a slow spell of the machine hits them alike
            for name in variants:
                workers = 0 if name == "sync" else n_workers
                # one torch thread per process that runs beside others; the synchronous loop alone gets every core
                threads = 0 if workers == 0 else max(1, cores - workers - 1)
                train = replace(base_train, workers=workers, cuda_graphs=name == "workers+graphs", threads=threads)
                torch.set_num_threads(threads or cores)
                r = run_variant(train, base, index, filled, warmup, updates, device)
                r["threads_learner"] = torch.get_num_threads()
                runs[name].append(r)
                print(f"{name:>15s}: {r['updates_per_second']:.3f} updates/s, {r['agent_steps_per_second']:.2f} "
                      f"agent steps/s -> {r['hours_for_120k_updates']:.1f} h for 120k updates (self-play alone: "
                      f"{r['selfplay_agent_steps_per_second']:.1f} agent steps/s while playing)")
                print(f"{'':>17s}learner s/update: " + ", ".join(f"{k} {v:.3f}" for k, v in
                                                                 r["learner_seconds_per_update"].items()))
                print(f"{'':>17s}work s/update:    " + ", ".join(f"{k} {v:.3f}" for k, v in
                                                                 r["work_seconds_per_update"].items()))
                if r["cuda_graphs"]:
                    print(f"{'':>17s}CUDA graphs: {'; '.join(r['cuda_graphs'])}")
                if cuda:
                    torch.cuda.empty_cache()
    # per variant: the run of median updates/s (all of its numbers from that one run), and every run
    for name, rs in runs.items():
        result["variants"][name] = {**sorted(rs, key=lambda r: r["updates_per_second"])[len(rs) // 2], "runs": rs}
    if "sync" in runs:
        result["speedup_over_sync"] = {  # median over repeats of the ratio within each repeat
            name: statistics.median(r["updates_per_second"] / s["updates_per_second"]
                                    for r, s in zip(rs, runs["sync"])) for name, rs in runs.items()}
        print("updates/s relative to sync (median over repeats of the ratio within a repeat): " + ", ".join(
            f"{k} {v:.2f}x" for k, v in result["speedup_over_sync"].items()))
    if args.json_out:
        save_json(args.json_out, result)
    return result


if __name__ == "__main__":
    main(tyro.cli(Args, description=__doc__))
