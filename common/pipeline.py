"""Where the training loop's data comes from: self-play steps and reanalysed batches, made in this process
(`--workers 0`, the readable reference) or by worker processes (`--workers N`).

Both kinds come in pairs with the same methods, so the scripts' loop is the same either way:

    acting.collect(net, env_steps, temperature, rng)           one step of every environment, or every step the
        -> [SelfPlayStep]                                       self-play process made since the last call
    acting.progress(net, updates, allowed_env_steps)           the learner's progress (the self-play process
                                                                takes fresh weights before every step and waits
                                                                when it is too far ahead)
    batches.next(replay, update, rng) -> (ids, Targets, stats, beta)
    batches.publish_target(target_net, update)                  after every target refresh

With workers, the learner (this process) keeps the replay's priorities, samples every batch's ids and a seed for
its random draws, and hands them as a `Job` to N reanalysis workers through a queue; each worker gathers the
frames from the segment files on disk (memory-mapped, so the OS page cache holds one copy for all processes) and
reanalyses them with its copy of the target network, then writes the result into one of a few shared-memory
slots. Up to `2 N` batches are prepared ahead of the learner. A job carries everything random about its batch (a
seed), so `prepare_batch` gives the same targets in a worker as in this process.

What the workers change, and what bounds it (docs/speed.md, "One process, or workers"):
- a batch is sampled up to 2 N updates before it is trained on: its ids do not see the priorities of the last
  2 N updates or the segments stored since;
- it is reanalysed with the target network of the current refresh or, around a refresh, the previous one (never
  older: EfficientZero's own bound; checked for every batch);
- self-play plays each step with the learner's weights after the update that followed its previous step (the
  learner copies them out whenever self-play has taken the last copy: about one step of every environment's worth
  of updates old), and runs at most `SELFPLAY_LEAD` steps of every environment ahead of the data the learner's
  updates call for.
"""

from __future__ import annotations

import os
import queue
import signal
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.multiprocessing as mp

from common.args import TrainArgs
from common.envs import FRAME_STACK
from common.loss import LossConfig
from common.networks import EfficientZeroNet, NetConfig
from common.replay import ReplayBuffer, Segment, beta_schedule
from common.search import graph_status
from common.selfplay import SelfPlay, visit_temperature
from common.targets import TargetArrays, gather_batch, reanalyse, to_device
from common.tree import MCTSConfig

SELFPLAY_LEAD = 4  # steps of every environment the self-play process may play ahead of what the learner needs


@dataclass
class SelfPlayStep:
    """One step of every self-play environment: the segments it completed and the games that ended in it."""

    segments: list[Segment]
    episodes: list[dict]
    search_stats: dict[str, float]
    agent_steps: int
    random: bool  # uniformly random actions (the first --random-transitions agent steps)
    seconds: float  # spent playing it


@dataclass
class PipelineConfig:
    """What self-play and batch preparation need, in any process: the network's config, shapes, search, targets."""

    net_config: dict
    num_actions: int
    batch_size: int
    num_unroll_steps: int
    td_steps: int
    td_age_per_step: int
    reanalyse_fraction: float
    mcts: MCTSConfig
    loss: LossConfig
    chunk_size: int | None
    autocast: bool
    cuda_graph: bool


@dataclass
class Job:
    """One batch to prepare: the sampled ids and everything else random about it (its own seed)."""

    update: int
    ids: np.ndarray
    weights: np.ndarray
    beta: float
    seed: int | None  # None: the caller's own Generator draws the batch's random numbers (the synchronous loop)
    total_pushed: int  # transitions ever stored when it was sampled (the off-policy correction's age)
    segment_ids: list[int]  # first ids of the segments it reads, sorted
    first_live_id: int
    slot: int = -1


def sample_job(replay: ReplayBuffer, batch_size: int, update: int, total_updates: int, priority_beta: float,
               rng: np.random.Generator, with_seed: bool = True) -> Job:
    """PER sample of the ids for update `update` and (with_seed) a seed for the rest of the batch's random draws,
    so that a worker can make them."""
    beta = beta_schedule(update, total_updates, priority_beta)
    ids, weights = replay.sample(batch_size, beta, rng)
    seg_idx, _ = replay.locate(ids)
    segment_ids = sorted({replay.first_ids[i] for i in seg_idx})
    seed = int(rng.integers(2**63)) if with_seed else None
    return Job(update, ids, weights, beta, seed, replay.total_pushed, segment_ids, replay.first_live_id)


def prepare_batch(job: Job, replay: ReplayBuffer, target_net: EfficientZeroNet, spec: PipelineConfig,
                  timing: dict | None = None, rng: np.random.Generator | None = None) -> tuple[TargetArrays, dict]:
    """Gather the job's frames from `replay` (or any buffer holding its segments) and reanalyse them, drawing the
    batch's random numbers (actions past an end, which samples are reanalysed, root noise, ties) from `rng`, by
    default a Generator seeded with the job's seed."""
    t0 = time.perf_counter()
    rng = rng if rng is not None else np.random.default_rng(job.seed)
    raw = gather_batch(replay, job.ids, spec.num_unroll_steps, spec.td_steps, spec.num_actions, rng,
                       spec.td_age_per_step)
    if timing is not None:
        timing["sample"] = timing.get("sample", 0.0) + time.perf_counter() - t0
    return reanalyse(raw, job.weights, target_net, spec.mcts, spec.reanalyse_fraction, rng,
                     spec.chunk_size, spec.autocast, spec.cuda_graph, timing)


# =============================================================================================================
# In this process (--workers 0)
# =============================================================================================================
class InlineSelfPlay:
    """Self-play in the learner's process: every `collect` plays one step of every environment with `net`."""

    def __init__(self, selfplay: SelfPlay, random_transitions: int, spec: PipelineConfig, timing: dict):
        self.selfplay, self.random_transitions, self.spec, self.timing = selfplay, random_transitions, spec, timing

    def collect(self, net: EfficientZeroNet, env_steps: int, temperature: float, rng: np.random.Generator
                ) -> list[SelfPlayStep]:
        t0 = time.perf_counter()
        random = env_steps < self.random_transitions
        segments, episodes, stats = self.selfplay.step(None if random else net, self.spec.mcts, temperature, rng,
                                                       self.spec.chunk_size, self.spec.autocast,
                                                       self.spec.cuda_graph)
        seconds = time.perf_counter() - t0
        self.timing["selfplay"] = self.timing.get("selfplay", 0.0) + seconds
        return [SelfPlayStep(segments, episodes, stats, len(self.selfplay.envs), random, seconds)]

    def progress(self, net: EfficientZeroNet, updates: int, allowed_env_steps: int) -> None:
        pass  # self-play waits for the learner by construction

    def close(self) -> None:
        self.selfplay.close()


class InlineBatches:
    """Batches sampled and reanalysed in the learner's process, when they are needed."""

    def __init__(self, target_net: EfficientZeroNet, spec: PipelineConfig, total_updates: int, priority_beta: float,
                 device, timing: dict):
        self.target_net, self.spec, self.device, self.timing = target_net, spec, device, timing
        self.total_updates, self.priority_beta = total_updates, priority_beta

    def _take(self, msg: tuple) -> None:
        _, done, stats, work, version, graphs = msg
        self.ready[done] = (stats, work, version)
        self.graphs = graphs

    def next(self, replay: ReplayBuffer, update: int, rng: np.random.Generator):
        job = sample_job(replay, self.spec.batch_size, update, self.total_updates, self.priority_beta, rng,
                         with_seed=False)  # one Generator for the whole run: the loop's draws in a fixed order
        arrays, stats = prepare_batch(job, replay, self.target_net, self.spec, self.timing, rng)
        return job.ids, to_device(arrays, self.device), stats, job.beta

    def publish_target(self, target_net: EfficientZeroNet, update: int) -> None:
        pass  # the next batch uses target_net itself

    def safe_before(self) -> float:
        return float("inf")  # no batch in preparation: every evicted segment's files may go

    def close(self) -> None:
        pass


# =============================================================================================================
# In worker processes (--workers N)
# =============================================================================================================
class WorkerFailed(SystemExit):
    """A worker process died or raised: the run stops with one line naming it."""


class SharedWeights:
    """A network's state dict in shared CPU memory, with a version number: the learner publishes, workers copy in.
    A lock makes every copy whole (a worker never loads half of one version and half of the next)."""

    def __init__(self, net: torch.nn.Module, ctx):
        self.tensors = {k: v.detach().to("cpu", copy=True).share_memory_() for k, v in net.state_dict().items()}
        self.version = ctx.Value("q", -1, lock=False)
        self.lock = ctx.Lock()

    def publish(self, net: torch.nn.Module, version: int, check_alive=lambda: None) -> None:
        """Copy `net`'s weights in. `check_alive` raises if a reader died (possibly holding the lock) while we
        wait for it."""
        while not self.lock.acquire(timeout=1.0):
            check_alive()
        try:
            with torch.no_grad():
                for k, v in net.state_dict().items():
                    self.tensors[k].copy_(v)
            self.version.value = version
        finally:
            self.lock.release()

    def load_into(self, net: torch.nn.Module, have: int, parent_pid: int) -> int:
        """Copy the published weights into `net` (in place: captured CUDA graphs keep working) if they are newer
        than version `have`; returns the version `net` now holds. Exits if the learner is gone."""
        if self.version.value == have:
            return have
        while not self.lock.acquire(timeout=1.0):
            if not _parent_alive(parent_pid):  # it may have died holding the lock
                raise SystemExit(0)
        try:
            version = self.version.value
            with torch.no_grad():
                for k, v in net.state_dict().items():
                    v.copy_(self.tensors[k])
        finally:
            self.lock.release()
        return version


def _parent_alive(parent_pid: int) -> bool:
    return os.getppid() == parent_pid  # re-parented (to init) once the learner is gone, even after kill -9


def _get(q, parent_pid: int):
    """Blocking get that gives up (returns None) when the learner process is gone."""
    while True:
        try:
            return q.get(timeout=1.0)
        except queue.Empty:
            if not _parent_alive(parent_pid):
                return None


def _setup_worker(device: str) -> torch.device:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches every process: the learner alone handles it
    torch.set_num_threads(1)  # one core per process; the learner keeps --threads
    return torch.device(device)


def _report_failure(results, name: str) -> None:
    last = traceback.format_exc().strip().splitlines()[-1]
    results.put(("error", name, last))
    _flush(results)


def _flush(q) -> None:
    """Wait until what this process put on `q` has reached the pipe: a process that exits with messages still in
    its queue's buffer loses them. (If the learner is gone, the write fails and this returns.)"""
    q.close()
    q.join_thread()


def _reanalysis_worker(name: str, spec: PipelineConfig, device: str, replay_dir: str, jobs, results, slots,
                       target: SharedWeights, parent_pid: int) -> None:
    try:
        dev = _setup_worker(device)
        net = EfficientZeroNet(NetConfig.from_dict(spec.net_config)).to(dev).eval()
        version, cache = -1, {}
        while (job := _get(jobs, parent_pid)) is not None:
            version = target.load_into(net, version, parent_pid)
            timing: dict[str, float] = {}
            for first_id in job.segment_ids:  # segments are immutable: loaded (memory-mapped) once, kept while live
                if first_id not in cache:
                    cache[first_id] = Segment.load(Path(replay_dir) / f"{first_id:010d}.npz", mmap=True)
            view = ReplayBuffer(segments=[cache[i] for i in job.segment_ids], first_ids=list(job.segment_ids),
                                total_pushed=job.total_pushed)
            arrays, stats = prepare_batch(job, view, net, spec, timing)
            for field, tensor in slots[job.slot].items():
                tensor.numpy()[...] = getattr(arrays, field)
            results.put(("batch", job.update, stats, timing, version, graph_status()))
            for first_id in [i for i in cache if i < job.first_live_id]:  # evicted before this job was sampled
                del cache[first_id]
    except Exception:  # noqa: BLE001 - any failure is reported to the learner in one line
        _report_failure(results, name)
        raise SystemExit(1) from None


def _selfplay_worker(name: str, env_id: str, num_envs: int, env_seed: int, rng_seed: list[int], segment_length: int,
                     pad: int, spec: PipelineConfig, device: str, env_steps: int, total_env_steps: int,
                     random_transitions: int, train_updates: int, weights: SharedWeights, wanted, updates, allowed, out,
                     parent_pid: int) -> None:
    try:
        dev = _setup_worker(device)
        net = EfficientZeroNet(NetConfig.from_dict(spec.net_config)).to(dev).eval()
        selfplay = SelfPlay(env_id, num_envs, seed=env_seed, segment_length=segment_length, pad=pad)
        rng = np.random.default_rng(rng_seed)
        version = -1
        while env_steps < total_env_steps:
            while env_steps + num_envs > allowed.value:  # ahead of the learner: wait for its updates
                if not _parent_alive(parent_pid):
                    return
                time.sleep(0.002)
            t0 = time.perf_counter()
            random = env_steps < random_transitions
            if not random:
                version = weights.load_into(net, version, parent_pid)
                wanted.value = 1  # the learner copies out its weights after its next update
            segments, episodes, stats = selfplay.step(None if random else net, spec.mcts,
                                                      visit_temperature(updates.value, train_updates), rng,
                                                      spec.chunk_size, spec.autocast, spec.cuda_graph)
            env_steps += num_envs
            out.put(SelfPlayStep(segments, episodes, stats, num_envs, random, time.perf_counter() - t0))
        selfplay.close()
        _flush(out)  # every step played must reach the learner before this process ends
    except Exception:  # noqa: BLE001
        _report_failure(out, name)
        raise SystemExit(1) from None


def _check_alive(procs: list, run_dir: Path) -> None:
    """Called before each batch and whenever a queue stays empty: a worker that ended (even normally: its messages
    would be there) means nothing more will come."""
    for p in procs:
        if not p.is_alive():
            raise WorkerFailed(f"{p.name} (pid {p.pid}) {'ended' if p.exitcode == 0 else 'died'} with exit code "
                               f"{p.exitcode}; the run stopped. Continue it with --resume {run_dir}")


def _wait(q, procs: list, run_dir: Path, block: bool = True):
    """Next message of `q` (None if not `block` and none is there). While it blocks, a worker's error or end
    raises WorkerFailed."""
    while True:
        try:
            msg = q.get(timeout=1.0) if block else q.get_nowait()
        except queue.Empty:
            if not block:
                return None
            _check_alive(procs, run_dir)
            continue
        if isinstance(msg, tuple) and msg[0] == "error":
            raise WorkerFailed(f"{msg[1]} failed: {msg[2]}; the run stopped. Continue it with --resume {run_dir}")
        return msg


def shared_memory_check(nbytes: int) -> None:
    """Fail at once, in one line, when /dev/shm cannot hold the batch slots (Docker's default is 64 MB)."""
    try:
        st = os.statvfs("/dev/shm")
    except OSError:
        return  # not Linux: torch picks its own shared memory
    free = st.f_bavail * st.f_frsize
    if free < nbytes:
        raise SystemExit(f"--workers needs {nbytes / 2**30:.2f} GiB of shared memory for its batch slots, but "
                         f"/dev/shm has {free / 2**30:.2f} GiB free: fewer --workers, or in Docker run with "
                         "--ipc=host (or --shm-size=8g)")


class ReanalysisWorkers:
    """N processes that prepare batches ahead of the learner (see the module docstring)."""

    def __init__(self, num_workers: int, target_net: EfficientZeroNet, spec: PipelineConfig, obs_frame_shape: tuple,
                 device, run_dir: Path, start_update: int, total_updates: int, priority_beta: float,
                 target_update_interval: int, timing: dict):
        ctx = mp.get_context("spawn")  # CUDA cannot be used in a forked child
        self.spec, self.device, self.run_dir, self.timing = spec, torch.device(device), Path(run_dir), timing
        self.total_updates, self.priority_beta, self.interval = total_updates, priority_beta, target_update_interval
        self.depth = 2 * num_workers  # batches in preparation or ready: enough to keep every worker busy
        B, K = spec.batch_size, spec.num_unroll_steps
        shapes = {"frames": ((B, K + 4, *obs_frame_shape), torch.uint8), "obs_base": ((B, K + 1), torch.int64),
                  "actions": ((B, K), torch.int64), "mask": ((B, K + 1), torch.float32),
                  "value": ((B, K + 1), torch.float32), "value_prefix": ((B, K), torch.float32),
                  "policy": ((B, K + 1, spec.num_actions), torch.float32), "weights": ((B,), torch.float32),
                  "inside": ((B, K + 1), torch.bool)}
        slot_bytes = sum(int(np.prod(s)) * torch.empty(0, dtype=d).element_size() for s, d in shapes.values())
        shared_memory_check(self.depth * slot_bytes)
        self.slots = [{k: torch.empty(s, dtype=d).share_memory_() for k, (s, d) in shapes.items()}
                      for _ in range(self.depth)]
        self.free = list(range(self.depth))
        self.jobs, self.results = ctx.Queue(), ctx.Queue()
        self.jobs.cancel_join_thread()  # jobs still queued when the run stops are dropped, never waited for
        self.target = SharedWeights(target_net, ctx)
        self.target.publish(target_net, start_update // self.interval)  # before any worker exists
        self.procs = [ctx.Process(target=_reanalysis_worker, name=f"reanalysis worker {i}", daemon=True,
                                  args=(f"reanalysis worker {i}", spec, str(self.device), str(self.run_dir / "replay"),
                                        self.jobs, self.results, self.slots, self.target, os.getpid()))
                      for i in range(num_workers)]
        for p in self.procs:
            p.start()
        self.pending: dict[int, Job] = {}  # submitted, not yet trained on
        self.ready: dict[int, tuple] = {}  # prepared, waiting for their turn
        self.next_submit = start_update
        self.graphs: list[str] = []

    def _fill(self, replay: ReplayBuffer, rng: np.random.Generator) -> None:
        """Sample and submit jobs for the next updates while slots are free."""
        while self.free and self.next_submit < self.total_updates:
            job = sample_job(replay, self.spec.batch_size, self.next_submit, self.total_updates, self.priority_beta,
                             rng)
            job.slot = self.free.pop()
            self.pending[job.update] = job
            self.jobs.put(job)
            self.next_submit += 1

    def _take(self, msg: tuple) -> None:
        _, done, stats, work, version, graphs = msg
        self.ready[done] = (stats, work, version)
        self.graphs = graphs

    def next(self, replay: ReplayBuffer, update: int, rng: np.random.Generator):
        # what the workers sent first (a failed worker's error line raises here, naming its cause) ...
        while (msg := _wait(self.results, self.procs, self.run_dir, block=False)) is not None:
            self._take(msg)
        # ... then an idle worker that died would never be missed (the others take its jobs): stop, not slow down
        _check_alive(self.procs, self.run_dir)
        self._fill(replay, rng)
        while update not in self.ready:
            self._take(_wait(self.results, self.procs, self.run_dir))
        stats, work, version = self.ready.pop(update)
        job = self.pending.pop(update)
        # EfficientZero's staleness bound; it holds by construction while depth <= interval (check_train_args)
        if version < update // self.interval - 1:
            raise RuntimeError(f"batch of update {update} was reanalysed with target version {version}, "
                               f"older than the previous refresh")
        for k, v in work.items():
            self.timing[k] = self.timing.get(k, 0.0) + v
        slot = self.slots[job.slot]
        batch = to_device(TargetArrays(**{k: v.numpy() for k, v in slot.items()}), self.device)
        self.free.append(job.slot)
        self._fill(replay, rng)  # the freed slot goes back to work before the learner trains
        return job.ids, batch, stats, job.beta

    def publish_target(self, target_net: EfficientZeroNet, update: int) -> None:
        """Hand the target network refreshed at `update` to the workers (its version: the refresh's index)."""
        self.target.publish(target_net, update // self.interval, lambda: _check_alive(self.procs, self.run_dir))

    def safe_before(self) -> float:
        """Transitions pushed when the oldest batch still in preparation was sampled (see ReplayStore)."""
        return min((job.total_pushed for job in self.pending.values()), default=float("inf"))

    def close(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.join(timeout=10)


class SelfPlayProcess:
    """Self-play in its own process, so that collection never stalls the learner (see the module docstring)."""

    def __init__(self, env_id: str, num_envs: int, env_seed: int, rng_seed: list[int], segment_length: int, pad: int,
                 net: EfficientZeroNet, spec: PipelineConfig, device, run_dir: Path, env_steps: int,
                 total_env_steps: int, random_transitions: int, train_updates: int, timing: dict):
        ctx = mp.get_context("spawn")
        self.run_dir, self.timing = Path(run_dir), timing
        self.weights = SharedWeights(net, ctx)
        self.weights.publish(net, 0)
        self.updates = ctx.Value("q", 0, lock=False)
        self.wanted = ctx.Value("q", 0, lock=False)  # 1: self-play has loaded the last copy of the weights
        self.allowed = ctx.Value("q", total_env_steps, lock=False)  # no limit until learning starts
        self.out = ctx.Queue()
        name = "self-play process"
        self.proc = ctx.Process(target=_selfplay_worker, name=name, daemon=True,
                                args=(name, env_id, num_envs, env_seed, rng_seed, segment_length, pad, spec,
                                      str(torch.device(device)), env_steps, total_env_steps, random_transitions,
                                      train_updates, self.weights, self.wanted, self.updates, self.allowed, self.out,
                                      os.getpid()))
        self.proc.start()

    def collect(self, net: EfficientZeroNet, env_steps: int, temperature: float, rng: np.random.Generator
                ) -> list[SelfPlayStep]:
        """Every step played since the last call; waits for the first one."""
        steps = [_wait(self.out, [self.proc], self.run_dir)]
        while (step := _wait(self.out, [self.proc], self.run_dir, block=False)) is not None:
            steps.append(step)
        self.timing["selfplay"] = self.timing.get("selfplay", 0.0) + sum(s.seconds for s in steps)
        return steps

    def progress(self, net: EfficientZeroNet, updates: int, allowed_env_steps: int) -> None:
        if self.wanted.value and self.proc.is_alive():  # it took the last copy (and has steps left to play)
            self.weights.publish(net, updates, lambda: _check_alive([self.proc], self.run_dir))
            self.wanted.value = 0
        self.updates.value = updates
        self.allowed.value = allowed_env_steps

    def close(self) -> None:
        self.proc.terminate()
        self.proc.join(timeout=10)


def start_pipeline(args: TrainArgs, net: EfficientZeroNet, target_net: EfficientZeroNet, mcts: MCTSConfig,
                   loss_cfg: LossConfig, counters: dict, random_transitions: int, run_dir: Path, device,
                   autocast: bool, timing: dict) -> tuple:
    """(acting, batches) for a training script: in this process with --workers 0, else one self-play process and
    --workers reanalysis workers. Environments are re-seeded on every (re)start: a resumed run does not replay its
    first games (partial trajectories in flight at a checkpoint are not stored)."""
    cfg = net.config
    spec = PipelineConfig(cfg.to_dict(), cfg.num_actions, args.batch_size, args.num_unroll_steps, args.td_steps,
                          args.td_age_per_step, args.reanalyse_fraction, mcts, loss_cfg, args.search_chunk_size,
                          autocast, args.cuda_graphs)
    env_seed = args.seed * 1000 + 100 * counters["resumes"]
    pad = args.num_unroll_steps + args.td_steps  # look-ahead of the furthest target: K unroll + n-step bootstrap
    total_updates = args.train_updates + args.extra_updates
    if not args.workers:
        selfplay = SelfPlay(args.env_id, args.num_envs, seed=env_seed, segment_length=args.segment_length, pad=pad)
        return (InlineSelfPlay(selfplay, random_transitions, spec, timing),
                InlineBatches(target_net, spec, total_updates, args.priority_beta, device, timing))
    frame_shape = (cfg.obs_shape[0] // FRAME_STACK, *cfg.obs_shape[1:])
    acting = SelfPlayProcess(args.env_id, args.num_envs, env_seed, [args.seed, counters["resumes"]],
                             args.segment_length, pad, net, spec, device, run_dir, counters["env_steps"],
                             args.total_env_steps, random_transitions, args.train_updates, timing)
    batches = ReanalysisWorkers(args.workers, target_net, spec, frame_shape, device, run_dir, counters["updates"],
                                total_updates, args.priority_beta, args.target_update_interval, timing)
    return acting, batches
