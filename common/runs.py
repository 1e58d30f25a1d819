"""Run bookkeeping shared by the scripts: run directories, atomic writes and checkpoints, RNG states, TensorBoard
(+ optional wandb) logging.

Checkpoints hold only tensors and plain Python values, so they load with `torch.load(..., weights_only=True)`.
The replay a checkpoint describes is on disk beside it (`common.replay.ReplayStore`).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import time
import warnings
from pathlib import Path

import numpy as np
import torch



def claim_run_dir(parent: Path, env_id: str, exp_name: str, seed: int) -> Path:
    """Create a new run directory `<env>__<exp_name>__<seed>__<time>`, atomically: mkdir either creates it or
    fails, so two runs started in the same second never share one (the later takes the next free second)."""
    parent = Path(parent)
    stamp = int(time.time())
    while True:
        path = parent / f"{env_id.replace('/', '-')}__{exp_name}__{seed}__{stamp}"
        try:
            parent.mkdir(parents=True, exist_ok=True)
            path.mkdir()
            return path
        except FileExistsError:
            stamp += 1
        except OSError as e:  # read-only, no permission, disk full
            raise SystemExit(f"cannot create the run directory {path}: {e.strerror or e}") from None


def finished(run_dir: Path, ckpt: dict, total_updates: int, total_env_steps: int) -> bool:
    """A run whose counters reached its budget and whose final evaluation is written."""
    c = ckpt["counters"]
    return (c["updates"] >= total_updates and c["env_steps"] >= total_env_steps
            and (Path(run_dir) / "eval.json").exists())


def write_failed(path: Path, e: Exception) -> SystemExit:
    """The one-line error of a write that failed (disk full, read-only, no permission)."""
    reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e).strip().splitlines()[-1]
    return SystemExit(f"cannot write {path}: {reason}")


def atomic_write(path: Path, write) -> None:
    """`write(tmp)` to a temporary file, then rename it to `path`: a reader never sees half a file, and a write that
    fails (disk full, read-only, no permission) leaves no temporary file, `path` as it was, and one line."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:  # torch reports a full disk as a RuntimeError of its zip writer
        tmp.unlink(missing_ok=True)
        kept = f"; the previous {path.name} is untouched" if path.exists() else ""
        raise SystemExit(f"{write_failed(path, e).code}{kept}") from None


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def save_json(path, obj) -> None:
    """A benchmark's or profile's JSON: parent folders made, written atomically, and where it went printed."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(path), json.dumps(obj, indent=2) + "\n")
    print(f"wrote {path}")


def atomic_torch_save(obj, path: Path) -> None:
    """A checkpoint, written atomically: a resume after kill -9 or a full disk finds the previous one whole."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def atomic_np_save(path: Path, array: np.ndarray) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.save would append .npy to the temporary name
            np.save(f, array)
    atomic_write(path, write)


def load_checkpoint(path: Path, kind: str | None) -> dict:
    """Load a checkpoint written by ez-distill with weights_only=True; `kind` is 'teacher', 'student', or None
    for either."""
    path = Path(path)
    if path.is_dir():
        raise SystemExit(f"checkpoint {path} is a directory, not a teacher.pt or student.pt file")
    if not path.is_file():
        raise SystemExit(f"checkpoint {path} does not exist")
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickle protocols: the refusal below says it all
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - any failure of the safe loader means "not one of ours"
        # torch's own message suggests loading unsafely, the one thing never to do with an unknown file
        raise SystemExit(f"{path} is not an ez-distill checkpoint: it is not a file of tensors and plain values "
                         "that loads safely (weights_only=True); refused") from None
    wanted = (kind,) if kind else ("teacher", "student")
    if not isinstance(ckpt, dict) or ckpt.get("kind") not in wanted:
        found = ckpt.get("kind") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise SystemExit(f"{path} is not a {kind or 'teacher or student'} checkpoint (found {found!r})")
    return ckpt


def git_state() -> dict:
    """The code a result came from: the commit (in Docker, where there is no .git, the image's EZ_DISTILL_COMMIT)
    and whether the code had uncommitted changes (results/, which the scripts themselves rewrite, does not count)."""
    def git(*cmd):
        try:
            return subprocess.run(["git", *cmd], cwd=Path(__file__).parents[1], capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except OSError:
            return ""

    return {"git_commit": git("rev-parse", "HEAD") or os.environ.get("EZ_DISTILL_COMMIT", ""),
            "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!results"))}


def pick_device(name: str) -> torch.device:
    """`auto` -> CUDA when available, else CPU; a CUDA device on a machine without one fails with a message."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {name}: CUDA is not available on this machine")
    return torch.device(name)


# ---------------------------------------------------------------------------------------------------------
# RNG states (numpy Generator, torch CPU and CUDA)
# ---------------------------------------------------------------------------------------------------------
def rng_state(rng: np.random.Generator) -> dict:
    state = {"numpy": rng.bit_generator.state, "torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(rng: np.random.Generator, state: dict) -> None:
    rng.bit_generator.state = state["numpy"]
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------------------------------------------------
# Logging
# ---------------------------------------------------------------------------------------------------------
def hparams_markdown(args) -> str:
    rows = "\n".join(f"|{k}|{v}|" for k, v in sorted(vars(args).items()))
    return "|param|value|\n|-|-|\n" + rows


class Logger:
    """TensorBoard scalars under the run directory; mirrors them to wandb when `track` is set."""

    def __init__(self, run_dir: Path, args, track: bool = False, project: str = "ez-distill",
                 entity: str | None = None, run_name: str = "", resume: bool = False):
        from torch.utils.tensorboard import SummaryWriter

        self.wandb = None
        if track:
            try:
                import wandb
            except ImportError:
                raise SystemExit("--track needs wandb: pip install wandb") from None
            self.wandb = wandb.init(project=project, entity=entity, name=run_name, config=vars(args),
                                    sync_tensorboard=True, resume="allow" if resume else None)
        try:
            self.writer = SummaryWriter(str(run_dir))
            if not resume:
                self.writer.add_text("hyperparameters", hparams_markdown(args))
        except OSError as e:
            raise write_failed(Path(run_dir) / "events.out.tfevents.*", e) from None

    def scalars(self, values: dict[str, float], step: int) -> None:
        try:
            for k, v in values.items():
                self.writer.add_scalar(k, v, step)
        except OSError as e:  # disk full: the event file is appended to, the checkpoints stay as they were
            raise write_failed(self.writer.get_logdir() + "/events.out.tfevents.*", e) from None

    def close(self) -> None:
        try:
            self.writer.close()
        except OSError as e:
            raise write_failed(self.writer.get_logdir() + "/events.out.tfevents.*", e) from None
        if self.wandb is not None:
            self.wandb.finish()
