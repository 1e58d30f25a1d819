"""Batches prepared by worker processes against the same batches prepared in this process, the captured search
step against the eager one, and the run-level guarantees of --workers: a dead worker stops the run in one line,
and a killed run resumes with or without workers."""

import json
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from common.args import TrainArgs, check_train_args
from common.loss import LossConfig
from common.networks import EfficientZeroNet, minatar_teacher_config
from common.pipeline import (InlineBatches, PipelineConfig, ReanalysisWorkers, SharedWeights, WorkerFailed,
                             _selfplay_worker, _wait, prepare_batch, sample_job, start_pipeline)
from common.replay import ReplayBuffer, ReplayStore, Segment, TrajectoryRecorder
from common.runs import load_checkpoint
from common.search import run_search
from common.targets import stacks, to_device
from common.training import env_steps_allowed, updates_due
from common.tree import MCTSConfig
from tests.conftest import ENV, ROOT, TINY

A, FRAME = 3, (4, 10, 10)


def filled_store(tmp_path: Path, transitions: int = 300, seed: int = 0) -> tuple[ReplayStore, ReplayBuffer]:
    """A replay of random MinAtar-shaped frames (short trajectories, so some samples reach an end), written to disk
    as a run would, with some priorities already updated."""
    rng = np.random.default_rng(seed)
    store, buf = ReplayStore(tmp_path), ReplayBuffer(capacity=10_000)
    rec = TrajectoryRecorder(segment_length=25, pad=10)
    rec.start((rng.random(FRAME) < 0.2).astype(np.uint8) * 255)
    for t in range(transitions):
        policy = rng.dirichlet(np.ones(A)).astype(np.float32)
        frame = (rng.random(FRAME) < 0.2).astype(np.uint8) * 255
        for seg in rec.add(int(rng.integers(A)), float(rng.random() < 0.1), 0.0, policy, frame):
            store.push(buf, seg)
        if t % 70 == 69:
            for seg in rec.end():
                store.push(buf, seg)
            rec.start(frame)
    buf.update_priorities(np.arange(len(buf)), rng.random(len(buf)) + 0.1)
    return store, buf


def small_net(seed: int = 0) -> EfficientZeroNet:
    torch.manual_seed(seed)
    net = EfficientZeroNet(minatar_teacher_config((16, 10, 10), A, channels=8, lstm_hidden=16, support_size=10))
    with torch.no_grad():  # a value head that says something, so that the bootstrap values matter
        for p in net.prediction.fc_value[-1].parameters():
            p.normal_(0, 0.5)
    return net.eval()


def spec_for(net: EfficientZeroNet, batch_size: int = 16, cuda_graph: bool = False) -> PipelineConfig:
    return PipelineConfig(net.config.to_dict(), A, batch_size, num_unroll_steps=5, td_steps=5, td_age_per_step=100,
                          reanalyse_fraction=0.75, mcts=MCTSConfig(num_simulations=4), loss=LossConfig(augment=False),
                          chunk_size=None, autocast=False, cuda_graph=cuda_graph)


def test_workers_prepare_exactly_the_batches_this_process_would(tmp_path):
    """The same job (ids, weights, seed) and target weights give the same targets, bit for bit, in a worker process
    reading the segment files as in this process reading the replay in memory."""
    torch.set_num_threads(1)  # the worker computes with one thread: same kernels, same rounding
    store, replay = filled_store(tmp_path)
    net = small_net()
    spec, total, timing = spec_for(net), 8, {}
    workers = ReanalysisWorkers(1, net, spec, FRAME, "cpu", tmp_path, start_update=0, total_updates=total,
                                priority_beta=0.4, target_update_interval=200, timing=timing)
    rng = np.random.default_rng(7)
    try:
        workers.next(replay, 0, rng)
        for update in range(1, total):
            job = workers.pending[update]  # sampled ahead, in preparation
            arrays, stats = prepare_batch(job, replay, net, spec)
            ids, batch, got_stats, beta = workers.next(replay, update, rng)
            np.testing.assert_array_equal(ids, job.ids)
            assert stats == got_stats and beta == job.beta
            expected = to_device(arrays, "cpu")
            for field in ("obs", "actions", "mask", "value", "value_prefix", "policy", "weights", "inside"):
                assert torch.equal(getattr(batch, field), getattr(expected, field)), (update, field)
            assert 0 < stats["reanalyse/roots"] < 16 * 6  # some samples were reanalysed, some reached an end
    finally:
        workers.close()
    assert {"sample", "bootstrap", "search_net", "search_tree"} <= set(timing)  # the workers' time, per part
    assert workers.safe_before() == float("inf")  # nothing left in preparation


def test_the_synchronous_loop_draws_every_random_number_from_the_run_generator(tmp_path):
    """--workers 0 keeps one Generator for the whole run (the loop's draws in order, no per-batch seeds), so a run
    of the reference loop is reproducible from its seed alone."""
    store, replay = filled_store(tmp_path)
    net = small_net()
    spec = spec_for(net)
    a = InlineBatches(net, spec, 8, 0.4, "cpu", timing={}).next(replay, 0, np.random.default_rng(3))
    job_rng = np.random.default_rng(3)
    job = sample_job(replay, spec.batch_size, 0, 8, 0.4, job_rng, with_seed=False)
    arrays, _ = prepare_batch(job, replay, net, spec, rng=job_rng)
    assert job.seed is None and torch.equal(a[1].policy, to_device(arrays, "cpu").policy)


def test_workers_reanalyse_with_the_current_target_or_around_a_refresh_the_previous_one(tmp_path):
    """Target refreshed every 4 updates, 2 batches prepared ahead: the job of update u is handed out while the
    learner gets the batch of u - 2, so it uses the current refresh's weights when that refresh came before u - 2,
    and the current or the previous one otherwise (never older: EfficientZero's bound)."""
    torch.set_num_threads(1)
    store, replay = filled_store(tmp_path)
    targets = [small_net(seed) for seed in range(3)]  # the weights of refreshes 0, 1, 2
    spec = spec_for(targets[0])
    workers = ReanalysisWorkers(1, targets[0], spec, FRAME, "cpu", tmp_path, start_update=0, total_updates=12,
                                priority_beta=0.4, target_update_interval=4, timing={})
    rng = np.random.default_rng(0)
    try:
        workers.next(replay, 0, rng)
        for update in range(1, 12):
            if update % 4 == 0:
                workers.publish_target(targets[update // 4], update)
            job = workers.pending[update]
            got = workers.next(replay, update, rng)
            made_with = [torch.equal(to_device(prepare_batch(job, replay, net, spec)[0], "cpu").policy,
                                     got[1].policy) for net in targets]
            refresh = update // 4
            if update % 4 >= 2:
                assert made_with[refresh] and sum(made_with) == 1, (update, made_with)
            else:
                assert made_with[refresh] or made_with[max(0, refresh - 1)], (update, made_with)
    finally:
        workers.close()


def test_more_batches_ahead_than_a_refresh_interval_is_refused(capsys):
    with pytest.raises(SystemExit) as e:
        check_train_args(TrainArgs(workers=3, target_update_interval=5, total_env_steps=1000, batch_size=16,
                                   random_transitions=100, replay_capacity=1000))
    assert e.value.code == 2 and "--workers 3 prepares up to 6 batches ahead" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------
# The search step: cached, padded and (on CUDA) captured
# ---------------------------------------------------------------------------------------------------------
def test_cached_padded_search_step_gives_the_eager_results():
    """`cuda_graph=True` keeps one padded step per (network, size) and reuses it; on the CPU the same code runs
    without the graph, and every search must come out exactly as the eager one."""
    net = small_net()
    rng = np.random.default_rng(0)
    for B in (5, 12, 3):  # different batch sizes through the one step padded to 12
        obs = (rng.random((B, 16, 10, 10)) < 0.2).astype(np.uint8) * 255
        eager = run_search(net, obs, MCTSConfig(num_simulations=8), rng=np.random.default_rng(1), add_noise=True)
        cached = run_search(net, obs, MCTSConfig(num_simulations=8), rng=np.random.default_rng(1), add_noise=True,
                            cuda_graph=True, pad_to=12)
        np.testing.assert_array_equal(eager.visit_counts, cached.visit_counts)
        np.testing.assert_array_equal(eager.root_value, cached.root_value)


def test_failed_capture_falls_back_to_eager_with_one_warning(monkeypatch):
    """Force a capture where none can happen (this CPU): the search warns once and gives the eager results."""
    import common.search as search_module

    def capturing_step(*args, **kwargs):
        step = make_step(*args, **kwargs)
        step.want_graph = True  # as on CUDA
        return step

    make_step = search_module.captured_step
    monkeypatch.setattr(search_module, "captured_step", capturing_step)
    net = small_net()
    obs = np.zeros((4, 16, 10, 10), np.uint8)
    obs[:, :, 2:4] = 255
    eager = run_search(net, obs, MCTSConfig(num_simulations=6), rng=np.random.default_rng(1), add_noise=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):  # the second search reuses the step: no second attempt, no second warning
            res = run_search(net, obs, MCTSConfig(num_simulations=6), rng=np.random.default_rng(1), add_noise=True,
                             cuda_graph=True)
            np.testing.assert_array_equal(res.visit_counts, eager.visit_counts)
            np.testing.assert_array_equal(res.root_value, eager.root_value)
    assert len([w for w in caught if "CUDA graph capture of the search step failed" in str(w.message)]) == 1


def test_search_chunk_size_bounds_the_network_calls_of_the_training_searches(tmp_path, monkeypatch):
    """--search-chunk-size reaches the training loop's searches: with 5 environments and chunks of 2, no call of
    the network in a self-play search sees more than 2 roots or leaves; without the flag, all 5 at once."""
    largest = {}
    for chunk in (2, None):
        net, calls = small_net(), []
        for name in ("initial_inference", "recurrent_inference"):
            call = getattr(net, name)
            monkeypatch.setattr(net, name, lambda x, *a, call=call: calls.append(len(x)) or call(x, *a))
        args = TrainArgs(env_id="MinAtar/Breakout-v1", num_envs=5, search_chunk_size=chunk, num_simulations=3)
        acting, batches = start_pipeline(args, net, small_net(), MCTSConfig(num_simulations=3),
                                         LossConfig(augment=False), {"resumes": 0, "env_steps": 0, "updates": 0}, 0,
                                         tmp_path, torch.device("cpu"), False, {})
        acting.collect(net, 0, 1.0, np.random.default_rng(0))
        acting.close()
        batches.close()
        largest[chunk] = max(calls)
    assert largest == {2: 2, None: 5}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_captured_search_step_matches_eager_on_cuda():
    net = small_net().cuda()
    obs = np.zeros((6, 16, 10, 10), np.uint8)
    obs[:, :, 3:5] = 255
    for amp in (False, True):
        eager = run_search(net, obs, MCTSConfig(num_simulations=10), rng=np.random.default_rng(1), add_noise=True,
                           autocast=amp)
        graph = run_search(net, obs, MCTSConfig(num_simulations=10), rng=np.random.default_rng(1), add_noise=True,
                           autocast=amp, cuda_graph=True, pad_to=8)
        np.testing.assert_allclose(graph.root_value, eager.root_value, rtol=1e-3, atol=1e-3)
    from common.search import graph_status
    assert any("captured" in s for s in graph_status())


# ---------------------------------------------------------------------------------------------------------
# Pieces: windows of frames, segments on disk, deferred deletion, the self-play gate
# ---------------------------------------------------------------------------------------------------------
def test_stacks_from_windows_agree_in_numpy_and_torch():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (3, 14, 2, 4, 4), dtype=np.uint8)
    base = rng.integers(0, 11, (3, 6))
    select = rng.random((3, 6)) < 0.5
    np.testing.assert_array_equal(stacks(frames, base), stacks(torch.as_tensor(frames), base).numpy())
    np.testing.assert_array_equal(stacks(frames, base, select), stacks(torch.as_tensor(frames), base, select).numpy())
    np.testing.assert_array_equal(stacks(frames, base)[1, 2], frames[1, base[1, 2]:base[1, 2] + 4].reshape(8, 4, 4))


def test_segment_frames_load_memory_mapped_and_old_files_still_load(tmp_path):
    store, buf = filled_store(tmp_path, transitions=60)
    seg = buf.segments[0]
    mapped = Segment.load(store.path(buf.first_ids[0]), mmap=True)
    assert isinstance(mapped.frames, np.memmap)
    np.testing.assert_array_equal(mapped.frames, seg.frames)
    old = tmp_path / "old.npz"  # the format before frames moved to their own file
    np.savez(old, **{k: getattr(seg, k) for k in Segment.ARRAYS},
             meta=np.array([seg.history, seg.length, int(seg.ended)], np.int64))
    np.testing.assert_array_equal(Segment.load(old).frames, seg.frames)


def test_evicted_segment_files_outlive_the_batches_that_may_read_them(tmp_path):
    store, buf = ReplayStore(tmp_path), ReplayBuffer(capacity=60)
    rec = TrajectoryRecorder(segment_length=25, pad=0)
    rec.start(np.zeros(FRAME, np.uint8))
    for t in range(100):
        for seg in rec.add(0, 0.0, 0.0, np.full(A, 1 / A, np.float32), np.zeros(FRAME, np.uint8)):
            store.push(buf, seg)
    evicted = [first_id for first_id, _ in store.pending_delete]
    assert evicted == [0, 25]  # 4 segments of 25 pushed into 60: the first two went (at 75 and 100 pushed)
    store.after_checkpoint(safe_before=80)  # a batch sampled at 80 transitions may still read segment 25
    assert not store.path(0).exists() and store.path(25).exists()
    store.after_checkpoint()
    assert not store.path(25).exists() and not (tmp_path / "replay" / "0000000025.frames.npy").exists()


def test_self_play_gate_lets_exactly_the_due_data_through():
    args = TrainArgs(total_env_steps=1000, train_updates=300, random_transitions=100)
    counters = {"env_steps": 100, "updates": 0, "learn_start_env_steps": -1}
    assert env_steps_allowed(counters, args, lead=8) == 108  # before learning: a little past what was played
    counters["env_steps"] = 104
    updates_due(counters, args)  # learning starts at 104
    for updates in (0, 1, 57, 299):
        counters["updates"] = updates
        allowed = env_steps_allowed(counters, args, lead=0)
        counters["env_steps"] = allowed  # the data the gate lets through makes the next update due ...
        assert updates_due(counters, args) >= updates + 1
        counters["env_steps"] = allowed - 1  # ... and not one step less
        assert updates_due(counters, args) <= updates
    counters["updates"] = 300
    assert env_steps_allowed(counters, args, lead=8) == 1000  # all updates of the collection phase done


# ---------------------------------------------------------------------------------------------------------
# Whole runs with workers
# ---------------------------------------------------------------------------------------------------------
RUN = ["--env-id", "MinAtar/Breakout-v1", "--random-transitions", "100", "--batch-size", "16", "--num-simulations",
       "2", "--segment-length", "30", "--channels", "8", "--lstm-hidden", "16", "--final-eval-episodes", "0",
       "--eval-interval", "0", "--no-progress", "--threads", "1", "--total-env-steps", "1200",
       "--train-updates", "150", "--extra-updates", "0", "--checkpoint-interval", "20", "--target-update-interval",
       "20"]


def children(pid: int) -> list[int]:
    """The child processes of `pid` in the order they started (by start time: pids wrap around at pid_max)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()  # fields 3.. of proc(5)'s stat
                if int(fields[1]) == pid:
                    out.append((int(fields[19]), int(d.name)))  # field 22: start time
            except (OSError, IndexError, ValueError):
                pass
    return [p for _, p in sorted(out)]


def start(args: list[str], run_parent: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "01_pretrain_teacher.py"), "--run-dir", str(run_parent),
                             *args], cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_checkpoint(proc: subprocess.Popen, run_parent: Path, min_updates: int) -> Path:
    deadline = time.time() + 300
    while time.time() < deadline:
        time.sleep(0.5)
        assert proc.poll() is None, proc.communicate()
        dirs = [p for p in run_parent.iterdir() if p.is_dir()]
        if dirs and (dirs[0] / "teacher.pt").exists():
            if load_checkpoint(dirs[0] / "teacher.pt", "teacher")["counters"]["updates"] >= min_updates:
                return dirs[0]
    proc.kill()
    raise AssertionError(f"no checkpoint of {min_updates} updates within 300 s")


def gone(pids: list[int]) -> bool:
    return all(not Path(f"/proc/{p}").exists() or b"zombie" in Path(f"/proc/{p}/status").read_bytes().lower()
               for p in pids)


def test_the_self_play_process_delivers_every_step_it_played_then_ends(tmp_path):
    """Its queue is flushed before it exits (a process that exits with messages in its queue's buffer loses
    them), the learner's draining does not mistake its normal end for a death, and waiting for more after it ended
    says so in one line."""
    ctx = mp.get_context("spawn")
    net = small_net()
    weights = SharedWeights(net, ctx)
    weights.publish(net, 0)
    # kept referenced while it starts: its arguments are unpickled in the child after start() returns
    out, wanted, updates, allowed = ctx.Queue(), ctx.Value("q", 0), ctx.Value("q", 0), ctx.Value("q", 10**9)
    proc = ctx.Process(target=_selfplay_worker, name="self-play process",
                       args=("self-play process", "MinAtar/Breakout-v1", 4, 0, [1, 0], 25, 10, spec_for(net), "cpu",
                             0, 120, 60, 100, weights, wanted, updates, allowed, out, os.getpid()))
    proc.start()
    steps, deadline = [], time.time() + 120
    while sum(s.agent_steps for s in steps) < 120 and time.time() < deadline:
        while (step := _wait(out, [proc], tmp_path, block=False)) is not None:
            steps.append(step)
        time.sleep(0.05)
    proc.join(timeout=60)
    assert proc.exitcode == 0 and _wait(out, [proc], tmp_path, block=False) is None
    assert [s.agent_steps for s in steps] == [4] * 30 and [s.random for s in steps] == [True] * 15 + [False] * 15
    assert wanted.value == 1  # it took the published weights and asks for the next copy
    with pytest.raises(WorkerFailed, match=r"^self-play process \(pid \d+\) ended with exit code 0; the run"):
        _wait(out, [proc], tmp_path)


def test_a_failed_workers_own_error_is_what_the_learner_reports(tmp_path):
    """A worker that raises sends its error line, then exits 1: the learner, checking its workers before each batch,
    must read that line (the cause), not only notice a dead process."""
    import queue

    class Dead:
        name, pid, exitcode = "reanalysis worker 0", 4242, 1

        def is_alive(self):
            return False

    workers = object.__new__(ReanalysisWorkers)  # only what next() reads before it would submit a job
    workers.procs, workers.run_dir, workers.results, workers.ready = [Dead()], tmp_path, queue.Queue(), {}
    workers.results.put(("error", "reanalysis worker 0", "ValueError: a damaged segment"))
    with pytest.raises(WorkerFailed, match="^reanalysis worker 0 failed: ValueError: a damaged segment; the run"):
        workers.next(None, 0, None)
    with pytest.raises(WorkerFailed, match=r"^reanalysis worker 0 \(pid 4242\) died with exit code 1"):
        workers.next(None, 0, None)  # nothing left to read: the dead process itself


def test_a_run_with_workers_collects_everything_then_finishes_its_extra_updates(tmp_path):
    """The self-play process ends once it has played --total-env-steps; every step it played must reach the
    learner, which then runs the updates left without it."""
    r = subprocess.run([sys.executable, str(ROOT / "01_pretrain_teacher.py"), "--env-id", "MinAtar/Breakout-v1",
                        *TINY, "--extra-updates", "30", "--workers", "1", "--target-update-interval", "4",
                        "--run-dir", str(tmp_path)], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    counters = load_checkpoint(run_dir / "teacher.pt", "teacher")["counters"]
    assert counters["updates"] == 6 + 30 and 240 <= counters["env_steps"] < 240 + 4
    assert "final evaluation (2 episodes)" in r.stdout and r.stderr == ""


@pytest.mark.skipif(not Path("/proc").exists(), reason="finds the worker processes through /proc")
def test_killed_worker_and_killed_learner_then_resume_with_and_without_workers(tmp_path):
    # 1. kill -9 one reanalysis worker: the run stops with one line naming it, and its other processes go too
    proc = start(RUN + ["--workers", "2"], tmp_path)
    try:
        run_dir = wait_for_checkpoint(proc, tmp_path, 20)
        workers = [p for p in children(proc.pid) if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]
        assert len(workers) == 3  # the self-play process, then reanalysis workers 0 and 1 (started in that order)
        os.kill(workers[-1], signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 1
    assert re.fullmatch(rf"reanalysis worker 1 \(pid {workers[-1]}\) died with exit code -9; the run stopped\. "
                        rf"Continue it with --resume {re.escape(str(run_dir))}", err.strip()), err
    time.sleep(2)
    assert gone(workers), "worker processes outlived the learner"
    first = load_checkpoint(run_dir / "teacher.pt", "teacher")["counters"]

    # 2. resume with a worker, then kill -9 the learner: its processes notice and exit on their own
    proc = start(RUN + ["--workers", "1", "--resume", str(run_dir)], tmp_path)
    try:
        wait_for_checkpoint(proc, tmp_path, first["updates"] + 20)
        workers = children(proc.pid)
    finally:
        proc.kill()
        proc.communicate()
    deadline = time.time() + 15
    while time.time() < deadline and not gone(workers):
        time.sleep(0.5)
    assert gone(workers), "orphaned worker processes"
    second = load_checkpoint(run_dir / "teacher.pt", "teacher")["counters"]
    assert second["resumes"] == 1 and second["updates"] > first["updates"]

    # 3. resume without workers: the run finishes from the checkpoint, with the replay it describes
    r = subprocess.run([sys.executable, str(ROOT / "01_pretrain_teacher.py"), *RUN, "--run-dir", str(tmp_path),
                        "--resume", str(run_dir)], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    m = re.search(r"resumed .*: ([\d,]+) updates, ([\d,]+) env steps, replay ([\d,]+) transitions", r.stdout)
    assert m and int(m.group(1).replace(",", "")) == second["updates"]
    after = load_checkpoint(run_dir / "teacher.pt", "teacher")
    assert after["counters"]["updates"] == 150 and after["counters"]["resumes"] == 2
    assert after["counters"]["env_steps"] >= 1200
    files = {p.name for p in (run_dir / "replay").iterdir()}
    live = {f"{i:010d}.npz" for i in after["replay"]["first_ids"]}
    assert live | {n.replace(".npz", ".frames.npy") for n in live} == files  # every named file, nothing else


def test_speed_benchmark_runs_both_loops_and_reports_the_split(tmp_path):
    out = tmp_path / "speed.json"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "paper_speed.py"), "--setting", "minatar",
                        "--updates", "3", "--warmup", "1", "--fill-steps", "200", "--workers", "1",
                        "--json-out", str(out)], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    result = json.loads(out.read_text())
    assert set(result["variants"]) == {"sync", "workers"}  # workers+graphs needs CUDA
    for v in result["variants"].values():
        assert v["updates"] == 3 and v["updates_per_second"] > 0
        assert v["hours_for_120k_updates"] == pytest.approx(120_000 / v["updates_per_second"] / 3600)
        assert set(v["work_seconds_per_update"]) == {"selfplay", "sample", "bootstrap", "search_net", "search_tree"}
        assert v["learner_seconds_per_update"]["learn"] > 0
    assert result["speedup_over_sync"]["sync"] == 1.0
    assert "updates/s relative to sync" in r.stdout
