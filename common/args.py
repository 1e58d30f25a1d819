"""Command-line flags shared by the training scripts (tyro reads the field docstrings for `--help`)."""

from __future__ import annotations

import errno
import math
import os
import sys
from dataclasses import asdict, dataclass
from typing import Literal


@dataclass
class TrainArgs:
    """Flags shared by stage 1 (teacher) and stage 2 (student): run, schedule, learner, replay, search, network width,
    evaluation and checkpoints. Defaults are the paper's settings (docs/algorithm.md, stage 1)."""

    # --- run -------------------------------------------------------------------------------------------------
    env_id: str = "Breakout"
    """game: an Atari name (`Breakout`, `ALE/Breakout-v5`, `BreakoutNoFrameskip-v4`) or `MinAtar/<Game>-v1`"""
    seed: int = 1
    """seed of the run (environments, network init, sampling, search)"""
    exp_name: str = "teacher"
    """name of this experiment, part of the run name `<env>__<exp_name>__<seed>__<time>`"""
    run_dir: str = "runs"
    """parent directory of the run directory"""
    resume: str | None = None
    """continue the run in this directory (e.g. `runs/Breakout__teacher__1__1700000000`); give the same flags"""
    device: str = "auto"
    """`auto` (CUDA when available), `cpu`, `cuda`, `cuda:1`, ..."""
    threads: int = 0
    """torch CPU threads (0: torch's default)"""
    amp: bool = True
    """mixed precision (float16 autocast + grad scaling) on CUDA; ignored on CPU"""
    track: bool = False
    """mirror the logs to Weights & Biases (needs `pip install wandb`)"""
    wandb_project_name: str = "ez-distill"
    """wandb project"""
    wandb_entity: str | None = None
    """wandb entity (team)"""
    progress: bool = True
    """show the tqdm progress bar"""

    # --- schedule (docs/algorithm.md, 'Training schedule and the 100k budget') -------------------------------
    total_env_steps: int = 100_000
    """agent steps collected in all (Atari 100k: 100k steps = 400k frames)"""
    num_envs: int = 4
    """parallel self-play environments, searched as one batch"""
    random_transitions: int = 2_000
    """uniformly random actions for the first this many agent steps"""
    train_updates: int = 100_000
    """updates spread evenly over collection (~1 per agent step after the random ones)"""
    extra_updates: int = 20_000
    """updates after collection ends (the paper's 20k; 120k updates in total)"""
    target_update_interval: int = 200
    """updates between refreshes of the target network (used for reanalysis)"""

    # --- learner ---------------------------------------------------------------------------------------------
    batch_size: int = 256
    """samples per update"""
    num_unroll_steps: int = 5
    """K: unrolled dynamics steps per sample"""
    td_steps: int = 5
    """n of the n-step value target for fresh data"""
    td_age_per_step: int = 30_000
    """off-policy correction: n shrinks by 1 per this many transitions of age (never below 1)"""
    lr: float = 0.2
    """SGD learning rate after warm-up"""
    lr_warmup: int = 1_000
    """linear warm-up updates"""
    lr_decay_steps: int = 100_000
    """the learning rate is multiplied by lr_decay_rate every this many updates"""
    lr_decay_rate: float = 0.1
    """learning-rate decay factor"""
    momentum: float = 0.9
    """SGD momentum"""
    weight_decay: float = 1e-4
    """SGD weight decay"""
    max_grad_norm: float = 5.0
    """gradient-norm clipping"""
    value_prefix_weight: float = 1.0
    """loss weight of the value-prefix cross-entropy"""
    policy_weight: float = 1.0
    """loss weight of the policy cross-entropy"""
    value_weight: float = 0.25
    """loss weight of the value cross-entropy"""
    consistency_weight: float = 2.0
    """loss weight of the SimSiam temporal consistency"""
    augment: bool | None = None
    """random shift (+-4 px) and intensity on learner inputs; default: on for Atari, off for MinAtar (10x10)"""

    # --- replay and reanalysis (docs/algorithm.md, 'Replay and prioritized sampling', 'Reanalysis') ----------
    replay_capacity: int = 100_000
    """transitions kept (the whole 100k run by default)"""
    segment_length: int = 400
    """transitions per stored game segment"""
    priority_alpha: float = 0.6
    """PER exponent"""
    priority_beta: float = 0.4
    """initial importance-sampling exponent, annealed to 1 over training"""
    reanalyse_fraction: float = 0.99
    """fraction of each batch whose policy targets come from a fresh search with the target network"""

    # --- search (docs/algorithm.md, 'Search (MCTS)') ---------------------------------------------------------
    num_simulations: int = 50
    """MCTS simulations per search (self-play, reanalysis, evaluation)"""
    search_chunk_size: int | None = None
    """at most this many roots per network call (bounds GPU memory in reanalysis); default: all at once"""
    cuda_graphs: bool = False
    """on CUDA, record each search's per-simulation network call as a CUDA graph and replay it (checked against the
    eager call when recorded; falls back to eager calls with a warning if recording fails)"""

    # --- parallelism (docs/speed.md) -------------------------------------------------------------------------
    workers: int = 0
    """reanalysis worker processes preparing batches ahead of the learner, plus one self-play process (0: everything
    in this process, the synchronous reference loop). Each worker takes one CPU core and a copy of the network"""

    # --- network ---------------------------------------------------------------------------------------------
    channels: int | None = None
    """latent channels (default: 64 on Atari, 32 on MinAtar)"""
    lstm_hidden: int | None = None
    """value-prefix LSTM width (default: 512 on Atari, 128 on MinAtar)"""
    state_norm: bool | None = None
    """min-max scale hidden states to [0, 1] per sample (default: on for MinAtar; off on Atari, as in EfficientZero's
    Atari config, and on the toy game)"""
    norm: Literal["batch", "layer"] | None = None
    """normalisation in representation, dynamics and prediction: 'batch' (EfficientZero's BatchNorm, the default)
    or 'layer' (per sample, the same parameters; search then computes exactly what training did)"""

    # --- evaluation and checkpoints --------------------------------------------------------------------------
    eval_interval: int = 10_000
    """updates between evaluations during training (0: none)"""
    eval_episodes: int = 8
    """episodes per evaluation during training (seeds 1000..)"""
    final_eval_episodes: int = 32
    """episodes of the final evaluation, seeds 0..n-1 (docs/algorithm.md, 'Evaluation protocol')"""
    eval_max_steps: int = 27_000
    """agent-step cap of an evaluation episode"""
    checkpoint_interval: int = 1_000
    """updates between checkpoints"""


# Flags that may change when a run is resumed; every other flag must match the stored run.
RESUMABLE_CHANGES = {"resume", "device", "threads", "track", "wandb_project_name", "wandb_entity", "progress",
                     "eval_interval", "eval_episodes", "final_eval_episodes", "eval_max_steps", "checkpoint_interval",
                     "search_chunk_size", "run_dir", "workers", "cuda_graphs"}


def parse_args(cls, description: str | None = None):
    """tyro.cli, with its usage errors (unknown flag, a value of the wrong type) as one line and exit code 2."""
    import contextlib
    import io

    import tyro

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = tyro.cli(cls, description=description)
    except SystemExit as e:
        if e.code not in (0, None):
            print(one_line(err.getvalue()), file=sys.stderr)
        raise SystemExit(e.code) from None
    except BrokenPipeError:  # `--help | head` closed the pipe: nothing left to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(0) from None
    sys.stderr.write(err.getvalue())  # warnings of a parse that worked
    sys.excepthook = one_line_errors
    return args


# The machine's fault, not the program's: these end a run with one line instead of a traceback.
ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}
_checkpoint: list = []  # the running script's checkpoint path, for the Ctrl-C message


def note_checkpoint(path) -> None:
    """Where this run's checkpoint is (or will be): a Ctrl-C then says how to continue."""
    _checkpoint[:] = [path]


def one_line_errors(kind, exc, tb) -> None:
    """sys.excepthook of the scripts: Ctrl-C and a full, read-only or forbidden disk end in one line; anything else
    (a bug) keeps its traceback. Exit codes stay Python's (130-style for Ctrl-C, 1 otherwise)."""
    if issubclass(kind, KeyboardInterrupt):
        ckpt = _checkpoint[0] if _checkpoint else None
        hint = ("" if ckpt is None else f"; continue from {ckpt} with the same flags plus --resume {ckpt.parent}"
                if ckpt.exists() else f"; no checkpoint was written yet ({ckpt.parent} can go)")
        print(f"\ninterrupted{hint}", file=sys.stderr)
    elif issubclass(kind, OSError) and exc.errno in ENVIRONMENT_ERRNOS:
        print(f"cannot use {exc.filename or 'a file'}: {exc.strerror}", file=sys.stderr)
    else:
        sys.__excepthook__(kind, exc, tb)


def one_line(message: str) -> str:
    """The message of tyro's error box (or of a check's list) on one line."""
    lines = [ln.strip(" │╭╮╰╯") for ln in message.splitlines()]
    lines = [ln for ln in lines if ln.strip("─-") and ln != "bad arguments:" and not ln.startswith(
        ("For full helptext", "Argument helptext"))]
    parser = [ln for ln in lines if ln.startswith(("Error parsing", "Unrecognized options:", "Required options"))]
    return "; ".join(parser[:1] or lines) or message.strip()


def usage_error(problems: list[str]) -> None:
    """Bad flags: every problem on a line of its own, exit code 2 (a usage error), before anything is created."""
    print("bad arguments:\n  " + "\n  ".join(problems), file=sys.stderr)
    raise SystemExit(2)


def at_least(args, minimum: float, *flags: str, optional: bool = False) -> list[str]:
    """'--flag must be >= minimum' for each flag below it (None passes when the flag is optional)."""
    return [f"--{f.replace('_', '-')} must be >= {minimum:g} (got {getattr(args, f)})" for f in flags
            if not (optional and getattr(args, f) is None) and not getattr(args, f) >= minimum]


def not_finite(args) -> list[str]:
    """'--flag must be a finite number' for every float flag that is nan or infinite."""
    return [f"--{k.replace('_', '-')} must be a finite number (got {v})" for k, v in vars(args).items()
            if isinstance(v, float) and not math.isfinite(v)]


def train_args_problems(args: TrainArgs) -> list[str]:
    """Every impossible value of the shared training flags, and the game, as one line each."""
    from common.envs import resolve_env_id

    problems = not_finite(args)
    try:
        resolve_env_id(args.env_id)
    except ValueError as e:
        problems.append(f"--env-id: {e}")
    if not args.exp_name or "/" in args.exp_name or "__" in args.exp_name:
        problems.append(f"--exp-name {args.exp_name!r}: a non-empty name without '/' or '__' (it names the run "
                        "directory)")
    problems += at_least(args, 1, "num_simulations", "num_envs", "batch_size", "num_unroll_steps", "td_steps",
                         "td_age_per_step", "segment_length", "replay_capacity", "total_env_steps",
                         "target_update_interval", "lr_decay_steps", "checkpoint_interval", "eval_max_steps")
    problems += at_least(args, 1, "channels", "lstm_hidden", "search_chunk_size", optional=True)
    problems += at_least(args, 0, "seed", "random_transitions", "train_updates", "extra_updates", "lr_warmup",
                         "threads", "eval_interval", "eval_episodes", "final_eval_episodes", "weight_decay",
                         "value_prefix_weight", "policy_weight", "value_weight", "consistency_weight",
                         "priority_alpha", "workers")
    if not args.lr > 0 or not args.lr_decay_rate > 0 or not args.max_grad_norm > 0:
        problems.append("--lr, --lr-decay-rate and --max-grad-norm must be > 0")
    if not 0 <= args.momentum < 1:
        problems.append(f"--momentum must be in [0, 1) (got {args.momentum})")
    if not 0 <= args.priority_beta <= 1:
        problems.append(f"--priority-beta must be in [0, 1] (got {args.priority_beta})")
    if not 0 <= args.reanalyse_fraction <= 1:
        problems.append(f"--reanalyse-fraction must be in [0, 1] (got {args.reanalyse_fraction})")
    if args.batch_size > min(args.replay_capacity, args.total_env_steps):
        problems.append(f"--batch-size {args.batch_size} is larger than the buffer can serve "
                        f"(min of --replay-capacity {args.replay_capacity} and "
                        f"--total-env-steps {args.total_env_steps})")
    if args.random_transitions >= args.total_env_steps:
        problems.append("--random-transitions must be smaller than --total-env-steps")
    if args.train_updates + args.extra_updates < 1:
        problems.append("--train-updates and --extra-updates must give at least one update")
    if args.workers >= 0 and 2 * args.workers > args.target_update_interval:
        problems.append(f"--workers {args.workers} prepares up to {2 * args.workers} batches ahead, more than "
                        f"--target-update-interval {args.target_update_interval}: a batch could be reanalysed with a "
                        "target network older than the previous refresh")
    return problems


def check_train_args(args: TrainArgs) -> None:
    """Impossible flag values fail before anything runs, all listed at once (exit code 2)."""
    problems = train_args_problems(args)
    if problems:
        usage_error(problems)


def check_resume_args(stored: dict, args: TrainArgs, run_dir) -> None:
    """A resumed run must be given the flags it was started with (except RESUMABLE_CHANGES); list what differs."""
    defaults = asdict(type(args)())  # a flag newer than the run: the run had its default (new flags keep old behaviour)
    diff = {k: (stored.get(k, defaults[k]), v) for k, v in asdict(args).items()
            if k not in RESUMABLE_CHANGES and stored.get(k, defaults[k]) != v}
    if diff:
        lines = "\n  ".join(f"--{k.replace('_', '-')}: run has {a!r}, you gave {b!r}" for k, (a, b) in diff.items())
        print(f"{run_dir} was trained with other flags; resume with the same ones:\n  {lines}", file=sys.stderr)
        raise SystemExit(2)  # a usage error, like any other bad flag
