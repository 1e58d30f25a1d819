"""The steps of the training loop that stage 1 (teacher) and stage 2 (student) share, each a named call so both
scripts still read top to bottom: record self-play -> updates due -> SGD step -> evaluate. Where self-play steps
and reanalysed batches come from (this process or workers) is `common/pipeline.py`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from common.args import TrainArgs, check_resume_args
from common.loss import LossConfig
from common.networks import EfficientZeroNet, count_acting_params, count_params
from common.pipeline import SelfPlayStep
from common.replay import ReplayBuffer, ReplayStore
from common.runs import Logger, atomic_write_text, finished, load_checkpoint, set_rng_state
from common.selfplay import eval_summary, evaluate
from common.tree import MCTSConfig


def resume_or_start(args: TrainArgs, kind: str) -> tuple[Path | None, dict | None]:
    """`--resume DIR`: DIR and its checkpoint, refused (a line per differing flag, exit 2) when the flags differ
    from the ones it was started with; a finished run ends here, untouched (exit 0). A new run: (None, None), its
    directory is claimed once the game is known to exist."""
    if not args.resume:
        return None, None
    run_dir = Path(args.resume)
    ckpt = load_checkpoint(run_dir / f"{kind}.pt", kind)
    check_resume_args(ckpt["args"], args, run_dir)
    if finished(run_dir, ckpt, args.train_updates + args.extra_updates, args.total_env_steps):
        print(f"{run_dir} is finished: {ckpt['counters']['updates']:,} updates, final evaluation in "
              f"{run_dir / 'eval.json'}; nothing to do")
        raise SystemExit(0)
    return run_dir, ckpt


def loss_config(args: TrainArgs, augment: bool) -> LossConfig:
    """The unrolled loss's horizon and weights, from the training flags."""
    return LossConfig(num_unroll_steps=args.num_unroll_steps, value_prefix_weight=args.value_prefix_weight,
                      policy_weight=args.policy_weight, value_weight=args.value_weight,
                      consistency_weight=args.consistency_weight, augment=augment)


def describe_run(kind: str, net: EfficientZeroNet, args: TrainArgs, augment: bool) -> str:
    """The run's second header line: the network's size and the budget it trains with."""
    workers = (f" | {args.workers} reanalysis worker{'s' * (args.workers > 1)} + 1 self-play process"
               if args.workers else "")
    return (f"{kind}: {count_params(net):,} parameters ({count_acting_params(net):,} acting) | "
            f"{args.total_env_steps:,} env steps, {args.train_updates + args.extra_updates:,} updates of batch "
            f"{args.batch_size}, {args.num_simulations} simulations, reanalyse {args.reanalyse_fraction:.0%}, "
            f"augment {augment}{workers}")


def restore(ckpt: dict, modules: dict, counters: dict, rng: np.random.Generator, store: ReplayStore,
            run_dir: Path) -> ReplayBuffer:
    """Continue where a checkpoint stopped: the state of each module (checkpoint key -> module: networks,
    optimizer, gradient scaler), the counters (one more resume), the RNG and the replay it describes."""
    for key, module in modules.items():
        module.load_state_dict(ckpt[key])
    counters.update(ckpt["counters"])
    counters["resumes"] += 1
    set_rng_state(rng, ckpt["rng"])
    replay = store.restore(ckpt["replay"])
    print(f"resumed {run_dir}: {counters['updates']:,} updates, {counters['env_steps']:,} env steps, "
          f"replay {len(replay):,} transitions")
    return replay


def record_steps(steps: list[SelfPlayStep], store: ReplayStore, replay: ReplayBuffer, counters: dict,
                 logger: Logger, recent_returns: list[float]) -> list[float]:
    """Store the segments the self-play steps completed, count their agent steps and games, log the games at the
    agent-step count. Returns the last 20 game scores."""
    for step in steps:
        counters["env_steps"] += step.agent_steps
        for seg in step.segments:
            store.push(replay, seg)
        for ep in step.episodes:
            counters["episodes"] += 1
            recent_returns = (recent_returns + [ep["r"]])[-20:]
            logger.scalars({"charts/episodic_return": ep["r"], "charts/episodic_length": ep["l"]},
                           counters["env_steps"])
        if step.search_stats:
            logger.scalars(step.search_stats, counters["env_steps"])
    return recent_returns


def updates_due(counters: dict, args: TrainArgs) -> int:
    """`train_updates` spread evenly over the agent steps left once learning started (recorded in counters on the
    first call), all of them once collection is over."""
    if counters["learn_start_env_steps"] < 0:
        counters["learn_start_env_steps"] = counters["env_steps"]
    start = counters["learn_start_env_steps"]
    frac = (counters["env_steps"] - start) / max(1, args.total_env_steps - start)
    return min(args.train_updates, math.floor(args.train_updates * min(1.0, frac)))


def env_steps_allowed(counters: dict, args: TrainArgs, lead: int) -> int:
    """How far a self-play process may play: `lead` agent steps past the data that makes the learner's next
    update due (the inverse of `updates_due`), or past what it has played so far while learning has not
    started. Keeps the update-to-data ratio of the synchronous loop, within `lead`."""
    start, updates = counters["learn_start_env_steps"], counters["updates"]
    if start < 0:
        return max(counters["env_steps"], args.random_transitions) + lead
    if args.train_updates == 0 or updates >= args.train_updates:
        return args.total_env_steps
    needed = start + math.ceil((updates + 1) * max(1, args.total_env_steps - start) / args.train_updates)
    return min(args.total_env_steps, needed + lead)


def stop_if_not_finite(terms: dict[str, torch.Tensor], updates: int, ckpt_path: Path, bar: tqdm) -> None:
    """A NaN or infinite loss term ends the run in one line before the step could spoil the weights: the last
    checkpoint stays the last good one."""
    bad = [k for k, v in terms.items() if not torch.isfinite(v)]
    if bad:
        bar.close()
        hint = " or the distillation weights" if any(k.startswith("distill_") for k in terms) else ""
        raise SystemExit(f"non-finite loss at update {updates}: "
                         + ", ".join(f"{k} = {terms[k].item()}" for k in bad) + ". "
                         + (f"The last good checkpoint ({ckpt_path}) is untouched" if ckpt_path.exists()
                            else "No checkpoint was written yet") + f"; lower --lr{hint}, or check the inputs.")


def sgd_step(optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, loss: torch.Tensor, args: TrainArgs
             ) -> float:
    """Backward with EfficientZero's 1/K gradient scale, clip the norm of every optimised parameter, step.
    Returns the gradient norm before clipping."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss / args.num_unroll_steps).backward()
    scaler.unscale_(optimizer)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    grad_norm = torch.nn.utils.clip_grad_norm_(params, args.max_grad_norm)
    scaler.step(optimizer)
    scaler.update()
    return float(grad_norm)


def periodic_eval(net: EfficientZeroNet, args: TrainArgs, mcts: MCTSConfig, env, rng: np.random.Generator,
                  autocast: bool, logger: Logger, updates: int, bar: tqdm, note: str = "") -> dict:
    """Evaluation during training on seeds 1000.. (never the final seeds 0..n-1), logged and printed with `note`
    after the score. `env` is the game's description (`make_env`'s `game` and `family`)."""
    res = eval_summary(evaluate(net, args.env_id, args.eval_episodes, mcts, first_seed=1000,
                                max_steps=args.eval_max_steps, rng=rng, chunk_size=args.search_chunk_size,
                                autocast=autocast), env.game, env.family)
    logger.scalars({"eval/return_mean": res["mean"], "eval/return_std": res["std"]}, updates)
    bar.write(f"update {updates:,}: eval return {res['mean']:.1f} +- {res['std']:.1f} ({args.eval_episodes} "
              f"episodes){note}")
    return res


def final_eval(net: EfficientZeroNet, args: TrainArgs, mcts: MCTSConfig, env, run_dir: Path, info: dict,
               autocast: bool, logger: Logger, note: str = "") -> dict:
    """The evaluation protocol (docs/algorithm.md, 'Evaluation protocol') on the final weights (seeds 0..n-1),
    written atomically to run_dir/eval.json together with `info` (checkpoint, counters, ...), logged and printed
    with `note` after the score."""
    with tqdm(total=args.final_eval_episodes, unit="episode", desc="final eval", disable=not args.progress) as pb:
        res = evaluate(net, args.env_id, args.final_eval_episodes, mcts, first_seed=0, max_steps=args.eval_max_steps,
                       rng=np.random.default_rng(args.seed), progress=pb, chunk_size=args.search_chunk_size,
                       autocast=autocast)
    summary = {"env_id": args.env_id, "game": env.game, "family": env.family, **info,
               "num_simulations": args.num_simulations, "max_steps": args.eval_max_steps,
               **eval_summary(res, env.game, env.family)}
    atomic_write_text(run_dir / "eval.json", json.dumps(summary, indent=2))
    logger.scalars({"eval/final_return_mean": summary["mean"]}, info["updates"])
    hns = f", HNS {summary['hns']:.3f}" if "hns" in summary else ""
    print(f"final evaluation ({args.final_eval_episodes} episodes): {summary['mean']:.2f} +- {summary['std']:.2f}"
          f"{hns}{note} -> {run_dir / 'eval.json'}")
    return summary


def train_scalars(terms: dict[str, torch.Tensor], grad_norm: float, lr: float, beta: float, value0: torch.Tensor,
                  reanalyse_stats: dict, counters: dict, replay: ReplayBuffer, timing: dict, last_log: dict,
                  now: float) -> dict[str, float]:
    """The scalars both stages log every 10 updates (docs/usage.md, "What is logged")."""
    dt = max(1e-9, now - last_log["time"])
    return {
        **{f"losses/{k}": v.item() for k, v in terms.items()},
        "losses/grad_norm": grad_norm,
        "charts/learning_rate": lr,
        "charts/SPS": (counters["env_steps"] - last_log["env_steps"]) / dt,
        "charts/updates_per_second": (counters["updates"] - last_log["updates"]) / dt,
        "charts/env_steps": counters["env_steps"],
        "replay/transitions": len(replay),
        "replay/priority_mean": float(replay.priorities.mean()),
        "replay/priority_max": float(replay.priorities.max()),
        "replay/beta": beta,
        "charts/value_prediction": float(value0.mean()),
        **reanalyse_stats,
        **{f"time/{k}_seconds": v for k, v in timing.items()},
    }


# ---------------------------------------------------------------------------------------------------------
# The learning-rate schedule
# ---------------------------------------------------------------------------------------------------------
def set_learning_rate(optimizer: torch.optim.Optimizer, update: int, args: TrainArgs) -> float:
    """The optimizer's learning rate for `update` (`learning_rate` with the run's flags); returns it."""
    lr = learning_rate(update, args.lr, args.lr_warmup, args.lr_decay_steps, args.lr_decay_rate)
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


def learning_rate(update: int, lr: float = 0.2, warmup: int = 1000, decay_steps: int = 100_000,
                  decay_rate: float = 0.1) -> float:
    """Linear warm-up to `lr` over `warmup` updates, then x decay_rate every `decay_steps` updates."""
    if update < warmup:
        return lr * (update + 1) / warmup
    return lr * decay_rate ** (update // decay_steps)
