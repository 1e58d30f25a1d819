"""Replay for EfficientZero: game segments, prioritized sampling, and the raw material of targets (docs/algorithm.md,
'Replay and prioritized sampling' and 'n-step value targets and off-policy correction').

A learner trajectory (one life in train mode) is recorded by a `TrajectoryRecorder` and cut into `Segment`s of
400 transitions. Each segment stores every frame once (uint8; stacking happens at sampling) and, past its own 400
transitions, a padding of the next `pad` transitions (frames, actions, rewards, values, policies) so that n-step
value targets and unrolls that start near the cut see the real future. A segment whose trajectory ends (game over,
lost life, or time-limit cut) inside its data is marked `ended`: nothing bootstraps past that end.

Time inside a segment: transition t (t = 0..L-1) goes from observation t with action t to observation t + 1 and
reward t. Frames of times -history..L are stored, where `history` (0..3) counts real frames before time 0; a stack
that reaches before the first stored frame repeats it (the trajectory-start rule: 4 copies of the first frame).

`ReplayBuffer` gives every stored transition a global id (0, 1, 2, ... in push order). Priorities live in one flat
array over the live ids, which makes sampling one `rng.choice` and lets the off-policy correction read a sample's
age as (ids pushed so far - its id), as EfficientZero does with its buffer index.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from common.envs import FRAME_STACK
from common.runs import write_failed


# ---------------------------------------------------------------------------------------------------------
# Segments and recording
# ---------------------------------------------------------------------------------------------------------
@dataclass
class Segment:
    frames: np.ndarray  # uint8 [history + L + 1, C, H, W]: frames of times -history..L
    history: int  # real frames stored before time 0 (0 at a trajectory start)
    actions: np.ndarray  # int64 [L]
    rewards: np.ndarray  # float32 [L], what the learner sees (sign-clipped in train mode)
    root_values: np.ndarray  # float32 [L], search root value at each observation (logging, priorities)
    policies: np.ndarray  # float32 [L, A], search visit distribution at each observation
    length: int  # T: transitions owned (sampled) by this segment; T..L-1 are padding borrowed from the next one
    ended: bool  # the trajectory ends at time L: no bootstrap from, and no data past, observation L

    ARRAYS = ("frames", "actions", "rewards", "root_values", "policies")  # older files also hold raw_rewards

    @property
    def num_stored(self) -> int:
        """L: transitions with data (owned + padding)."""
        return len(self.actions)

    def stack(self, t: int) -> np.ndarray:
        """4-frame network input at time t (0 <= t <= L), oldest first, [4C, H, W]."""
        idx = np.clip(np.arange(t - FRAME_STACK + 1, t + 1) + self.history, 0, None)
        return self.frames[idx].reshape(-1, *self.frames.shape[2:])

    def stacks(self, times: np.ndarray) -> np.ndarray:
        """Stacks at several times [n] -> [n, 4C, H, W] in one gather."""
        idx = np.clip(np.asarray(times)[:, None] + np.arange(-FRAME_STACK + 1, 1) + self.history, 0, None)
        f = self.frames[idx]  # [n, 4, C, H, W]
        return f.reshape(len(idx), -1, *self.frames.shape[2:])

    def save(self, path: Path) -> None:
        """Write `<name>.npz` (the small arrays) and `<name>.frames.npy` (the frames, a plain .npy so that reanalysis
        workers can memory-map them: the OS page cache then holds one copy for every process). The frames are
        written first and the .npz last, each atomically: a segment whose .npz exists is complete. No pickle."""
        frames_tmp = frames_path(path).with_name(frames_path(path).name + ".tmp.npy")
        np.save(frames_tmp, self.frames)
        os.replace(frames_tmp, frames_path(path))
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, **{k: getattr(self, k) for k in self.ARRAYS if k != "frames"},
                 meta=np.array([self.history, self.length, int(self.ended)], np.int64))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path, mmap: bool = False) -> "Segment":
        """Read a segment written by `save`; mmap=True maps the frames read-only instead of reading them."""
        with np.load(path, allow_pickle=False) as z:
            history, length, ended = (int(v) for v in z["meta"])
            arrays = {k: z[k] for k in cls.ARRAYS if k in z}
        if "frames" not in arrays:
            arrays["frames"] = np.load(frames_path(path), mmap_mode="r" if mmap else None, allow_pickle=False)
        return cls(**arrays, history=history, length=length, ended=bool(ended))


def frames_path(path: Path) -> Path:
    """`replay/0000000400.npz` -> `replay/0000000400.frames.npy`."""
    path = Path(path)
    return path.with_name(path.name.removesuffix(".npz") + ".frames.npy")


class TrajectoryRecorder:
    """Records one environment's learner trajectory and cuts it into segments of `segment_length` transitions.

    A segment is emitted once `pad` transitions past its cut exist (so its padding is real data), or when the
    trajectory ends. `pad` must cover the furthest look-ahead of a target: K unroll steps + n-step horizon.
    """

    def __init__(self, segment_length: int = 400, pad: int = 10):
        if segment_length < 1 or pad < 0:
            raise ValueError("segment_length must be >= 1 and pad >= 0")
        self.segment_length, self.pad = segment_length, pad
        self.frames: list[np.ndarray] = []
        self.history = 0
        self.actions: list[int] = []
        self.rewards: list[float] = []
        self.root_values: list[float] = []
        self.policies: list[np.ndarray] = []

    def start(self, frame: np.ndarray) -> None:
        """A new learner trajectory begins with this first frame."""
        self.frames, self.history = [frame], 0
        self.actions, self.rewards, self.root_values, self.policies = [], [], [], []

    def add(self, action: int, reward: float, root_value: float, policy: np.ndarray,
            next_frame: np.ndarray) -> list[Segment]:
        """Record one transition; returns the segment completed by it, if any."""
        self.actions.append(int(action))
        self.rewards.append(float(reward))
        self.root_values.append(float(root_value))
        self.policies.append(np.asarray(policy, np.float32))
        self.frames.append(next_frame)
        if len(self.actions) == self.segment_length + self.pad:
            seg = self._emit(self.segment_length, len(self.actions), ended=False)
            self._drop(self.segment_length)
            return [seg]
        return []

    def end(self) -> list[Segment]:
        """The trajectory ended (terminal, lost life or time-limit cut): emit what is left, marked `ended`."""
        out = []
        n = len(self.actions)
        if n > self.segment_length:  # the last full segment's padding runs into the end
            out.append(self._emit(self.segment_length, n, ended=True))
            self._drop(self.segment_length)
            n = len(self.actions)
        if n > 0:
            out.append(self._emit(n, n, ended=True))
        self.actions = []
        return out

    def _emit(self, owned: int, stored: int, ended: bool) -> Segment:
        h = self.history
        return Segment(
            frames=np.stack(self.frames[:h + stored + 1]),
            history=h,
            actions=np.asarray(self.actions[:stored], np.int64),
            rewards=np.asarray(self.rewards[:stored], np.float32),
            root_values=np.asarray(self.root_values[:stored], np.float32),
            policies=np.stack(self.policies[:stored]),
            length=owned,
            ended=ended,
        )

    def _drop(self, n: int) -> None:
        """Forget the first n transitions, keeping up to FRAME_STACK - 1 frames of history before the new time 0."""
        new_history = min(FRAME_STACK - 1, self.history + n)
        self.frames = self.frames[self.history + n - new_history:]
        self.history = new_history
        for name in ("actions", "rewards", "root_values", "policies"):
            setattr(self, name, getattr(self, name)[n:])


# ---------------------------------------------------------------------------------------------------------
# Prioritized replay
# ---------------------------------------------------------------------------------------------------------
@dataclass
class ReplayBuffer:
    """Segments in push order, evicted oldest-first beyond `capacity` transitions. Priorities: p^alpha sampling,
    importance weights (N P)^-beta normalised by the batch maximum (as EfficientZero), new data at the current
    maximum priority."""

    capacity: int = 100_000
    alpha: float = 0.6
    segments: list[Segment] = field(default_factory=list)
    first_ids: list[int] = field(default_factory=list)  # global id of each segment's transition 0
    priorities: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))  # over live ids
    first_live_id: int = 0  # id of priorities[0]
    total_pushed: int = 0  # ids handed out so far (transitions ever stored)

    def __len__(self) -> int:
        return len(self.priorities)

    def push(self, seg: Segment) -> list[int]:
        """Store a segment; returns the first ids of the segments evicted to make room."""
        p = self.priorities.max() if len(self.priorities) else 1.0
        self.segments.append(seg)
        self.first_ids.append(self.total_pushed)
        self.priorities = np.concatenate([self.priorities, np.full(seg.length, p)])
        self.total_pushed += seg.length
        evicted = []
        while len(self) > self.capacity and len(self.segments) > 1:
            old = self.segments.pop(0)
            evicted.append(self.first_ids.pop(0))
            self.priorities = self.priorities[old.length:]
            self.first_live_id += old.length
        return evicted

    def sample(self, batch_size: int, beta: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Draw `batch_size` ids with replacement, P(i) = p_i^alpha / sum p^alpha. Returns (ids, weights)."""
        if len(self) == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        pa = self.priorities ** self.alpha
        prob = pa / pa.sum()
        idx = rng.choice(len(prob), size=batch_size, p=prob)
        weights = (len(prob) * prob[idx]) ** (-beta)
        return idx + self.first_live_id, weights / weights.max()

    def update_priorities(self, ids: np.ndarray, priorities: np.ndarray) -> None:
        """Set new priorities for ids still in the buffer (ids evicted since sampling are skipped)."""
        idx = np.asarray(ids) - self.first_live_id
        live = idx >= 0
        self.priorities[idx[live]] = np.asarray(priorities, np.float64)[live]

    def locate(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Global ids -> (index into `segments`, position t inside that segment)."""
        ids = np.asarray(ids)
        seg = np.searchsorted(np.asarray(self.first_ids), ids, side="right") - 1
        return seg, ids - np.asarray(self.first_ids)[seg]


def beta_schedule(update: int, total_updates: int, beta_start: float = 0.4) -> float:
    """Importance-sampling exponent annealed linearly from beta_start to 1 over training."""
    return beta_start + (1.0 - beta_start) * min(1.0, update / max(1, total_updates))


# ---------------------------------------------------------------------------------------------------------
# Replay on disk
# ---------------------------------------------------------------------------------------------------------
class ReplayStore:
    """Mirrors a ReplayBuffer into `<run>/replay/`: two files per segment (`Segment.save`), written when it is pushed.
    The checkpoint keeps only the index (which segments are live, their priorities), so a run killed at any moment
    resumes from its last checkpoint with the replay that checkpoint describes.

    The files of an evicted segment are deleted only once no checkpoint and no batch still in preparation can need
    them: at the first checkpoint after its eviction, unless a reanalysis worker may still read it (`safe_before`)."""

    def __init__(self, run_dir: Path):
        self.dir = Path(run_dir) / "replay"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.pending_delete: list[tuple[int, int]] = []  # (first id, transitions pushed when it was evicted)

    def path(self, first_id: int) -> Path:
        return self.dir / f"{first_id:010d}.npz"

    def push(self, buffer: ReplayBuffer, seg: Segment) -> None:
        self.delete(buffer.total_pushed)  # leftovers of a run killed before its checkpoint named them
        try:
            seg.save(self.path(buffer.total_pushed))
        except OSError as e:  # disk full: no half segment stays behind (the last checkpoint does not name it)
            self.delete(buffer.total_pushed)
            raise write_failed(self.path(buffer.total_pushed), e) from None
        evicted = buffer.push(seg)
        self.pending_delete += [(first_id, buffer.total_pushed) for first_id in evicted]

    def delete(self, first_id: int) -> None:
        self.path(first_id).unlink(missing_ok=True)
        frames_path(self.path(first_id)).unlink(missing_ok=True)

    def index(self, buffer: ReplayBuffer) -> dict:
        """What a checkpoint stores about the replay."""
        return {"first_ids": list(buffer.first_ids), "priorities": torch.from_numpy(buffer.priorities.copy()),
                "first_live_id": buffer.first_live_id, "total_pushed": buffer.total_pushed,
                "capacity": buffer.capacity, "alpha": buffer.alpha}

    def after_checkpoint(self, safe_before: float = float("inf")) -> None:
        """The new checkpoint no longer refers to evicted segments: their files can go, except those evicted after
        the oldest batch still in preparation was sampled (`safe_before`: transitions pushed at that sampling)."""
        keep = []
        for first_id, evicted_at in self.pending_delete:
            if evicted_at <= safe_before:
                self.delete(first_id)
            else:
                keep.append((first_id, evicted_at))
        self.pending_delete = keep

    def restore(self, index: dict) -> ReplayBuffer:
        """Rebuild the buffer a checkpoint describes; delete segment files it does not know (written after it)."""
        buf = ReplayBuffer(capacity=index["capacity"], alpha=index["alpha"])
        wanted = {self.path(i).name for i in index["first_ids"]} | {frames_path(self.path(i)).name
                                                                    for i in index["first_ids"]}
        for first_id in index["first_ids"]:
            p = self.path(first_id)
            if not p.is_file():
                raise SystemExit(f"replay segment {p} named by the checkpoint is missing; cannot resume")
            try:
                buf.segments.append(Segment.load(p))
            except Exception as e:  # noqa: BLE001 - truncated, emptied or overwritten: any of numpy's errors
                raise SystemExit(f"replay segment {p} (or its .frames.npy) is damaged ({type(e).__name__}): the "
                                 "run cannot resume without it; put the file back from a copy, or start a new run"
                                 ) from None
        buf.first_ids = list(index["first_ids"])
        buf.priorities = index["priorities"].numpy().astype(np.float64)
        buf.first_live_id, buf.total_pushed = index["first_live_id"], index["total_pushed"]
        for p in self.dir.iterdir():
            if p.name not in wanted:
                p.unlink()
        if sum(s.length for s in buf.segments) != len(buf.priorities):
            raise SystemExit("replay index and segment files disagree; cannot resume")
        return buf
