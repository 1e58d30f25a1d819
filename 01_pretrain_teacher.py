"""Stage 1 — train the EfficientZero teacher (ResNet) on Atari 100k, or on MinAtar at CPU scale.

    collect (batched MCTS on parallel envs) -> store segments -> sample (PER) -> reanalyse with the target network
    -> unrolled loss (value prefix, policy, value, SimSiam) -> SGD step -> priorities -> target refresh
    -> log -> evaluate -> checkpoint

Writes `runs/<run_name>/teacher.pt` (config, weights, target weights, optimizer, counters, RNG states, replay
index), `runs/<run_name>/replay/`, TensorBoard logs, and the final 32-episode evaluation `eval.json`.
Defaults are the paper's settings (docs/algorithm.md, stage 1); see docs/usage.md for CPU-sized flags.
"""

from __future__ import annotations

import common.interrupts  # noqa: F401  (first: a Ctrl-C while torch loads ends in one line)
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from common.args import TrainArgs, check_train_args, note_checkpoint, parse_args
from common.envs import make_env
from common.loss import unrolled_loss
from common.networks import NetConfig, default_config, online_and_target
from common.pipeline import SELFPLAY_LEAD, start_pipeline
from common.replay import ReplayBuffer, ReplayStore
from common.runs import Logger, atomic_torch_save, claim_run_dir, pick_device, rng_state
from common.selfplay import visit_temperature
from common.training import (describe_run, env_steps_allowed, final_eval, loss_config, periodic_eval, record_steps,
                             restore, resume_or_start, set_learning_rate, sgd_step, stop_if_not_finite,
                             train_scalars, updates_due)
from common.tree import MCTSConfig


KIND = "teacher"  # what this script trains: its checkpoint is teacher.pt


@dataclass
class Args(TrainArgs):
    """Every flag of stage 1 is a shared training flag (common/args.py): the teacher has nothing of its own."""


def teacher_config(args: Args, env) -> NetConfig:
    knobs = {"channels": args.channels, "lstm_hidden": args.lstm_hidden, "state_norm": args.state_norm,
             "norm": args.norm}
    knobs = {k: v for k, v in knobs.items() if v is not None}
    return default_config("teacher", env.family, env.obs_shape, env.num_actions, **knobs)


def save_checkpoint(path: Path, net, target_net, optimizer, scaler, counters: dict, args: Args, rng, store,
                    replay, batches, **extra) -> None:
    atomic_torch_save({
        "kind": KIND,
        "config": net.config.to_dict(),
        "model": net.state_dict(),
        "target_model": target_net.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "counters": dict(counters),
        "args": asdict(args),
        "rng": rng_state(rng),
        "replay": store.index(replay),
        **extra,
    }, path)
    store.after_checkpoint(batches.safe_before())


# =============================================================================================================
if __name__ == "__main__":
    args = parse_args(Args, __doc__)  # tyro; a usage error is one line, exit code 2
    check_train_args(args)
    device = pick_device(args.device)
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    # --- run directory: new (claimed below, once the game is known to exist), or resumed with the same flags ---
    run_dir, ckpt = resume_or_start(args, KIND)

    # --- seeding ---------------------------------------------------------------------------------------------
    rng = np.random.default_rng(args.seed)
    torch.manual_seed(args.seed)

    # --- environments ----------------------------------------------------------------------------------------
    env = make_env(args.env_id, mode="train", seed=args.seed)  # what the game is: the self-play makes its own
    env.close()
    augment = args.augment if args.augment is not None else env.family == "atari"

    # --- networks --------------------------------------------------------------------------------------------
    net_cfg = NetConfig.from_dict(ckpt["config"]) if ckpt else teacher_config(args, env)
    if run_dir is None:  # claimed atomically: never shared with a run started in the same second
        run_dir = claim_run_dir(Path(args.run_dir), args.env_id, args.exp_name, args.seed)
    note_checkpoint(run_dir / f"{KIND}.pt")  # a Ctrl-C says how to continue
    net, target_net = online_and_target(net_cfg, device)  # the target makes the reanalysed targets
    optimizer = torch.optim.SGD(list(net.parameters()), lr=args.lr,
                                momentum=args.momentum, weight_decay=args.weight_decay)
    use_amp = args.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    mcts = MCTSConfig(num_simulations=args.num_simulations)
    loss_cfg = loss_config(args, augment)
    total_updates = args.train_updates + args.extra_updates

    # --- replay and counters (restored on resume) -----------------------------------------------------------
    store = ReplayStore(run_dir)
    counters = {"env_steps": 0, "updates": 0, "episodes": 0, "learn_start_env_steps": -1, "resumes": 0}
    modules = {"model": net, "target_model": target_net, "optimizer": optimizer, "scaler": scaler}
    replay = (restore(ckpt, modules, counters, rng, store, run_dir) if ckpt
              else ReplayBuffer(capacity=args.replay_capacity, alpha=args.priority_alpha))
    del ckpt
    logger = Logger(run_dir, args, track=args.track, project=args.wandb_project_name, entity=args.wandb_entity,
                    run_name=run_dir.name, resume=bool(args.resume))
    print(f"run {run_dir} | {env.game} ({env.family}), {env.num_actions} actions, input {env.obs_shape}, "
          f"device {device}")
    print(describe_run(KIND, net, args, augment))

    # --- self-play and batches: in this process (--workers 0), or in worker processes -----------------------
    # time/* in TensorBoard: this process's seconds (collect, reanalyse, learn) and, wherever it ran, the work
    # they contain (selfplay, sample, bootstrap, search_net, search_tree)
    timing = {"collect": 0.0, "reanalyse": 0.0, "learn": 0.0}
    acting, batches = start_pipeline(args, net, target_net, mcts, loss_cfg, counters, args.random_transitions,
                                     run_dir, device, use_amp, timing)
    ckpt_path = run_dir / f"{KIND}.pt"
    recent_returns: list[float] = []
    last_log = {"time": time.time(), "env_steps": counters["env_steps"], "updates": counters["updates"]}
    bar = tqdm(total=total_updates, initial=counters["updates"], unit="update", disable=not args.progress,
               dynamic_ncols=True)

    # =========================================================================================================
    # ALGO LOGIC: the training loop
    # =========================================================================================================
    while counters["updates"] < total_updates or counters["env_steps"] < args.total_env_steps:
        updates = counters["updates"]
        collecting = counters["env_steps"] < args.total_env_steps

        # --- 1. collect: one batched search over all environments, one step each (or every step the self-play
        #        process played meanwhile); 2. store the completed segments ----------------------------------
        if collecting:
            t0 = time.time()
            steps = acting.collect(net, counters["env_steps"], visit_temperature(updates, args.train_updates), rng)
            recent_returns = record_steps(steps, store, replay, counters, logger, recent_returns)
            timing["collect"] += time.time() - t0
            bar.set_postfix(env=f"{counters['env_steps']:,}", ret=f"{np.mean(recent_returns):.1f}"
                            if recent_returns else "-", refresh=False)
            learning = not steps[-1].random and len(replay) >= args.batch_size  # not in the random phase
            due = updates_due(counters, args) if learning else updates  # train_updates spread over collection
            acting.progress(net, updates, env_steps_allowed(counters, args, SELFPLAY_LEAD * args.num_envs))
        else:
            if len(replay) == 0:
                raise SystemExit("collection ended without a single stored segment (trajectories are stored when "
                                 "they end or reach --segment-length); raise --total-env-steps or lower "
                                 "--segment-length")
            due = total_updates

        while counters["updates"] < due:
            updates = counters["updates"]
            # --- 3. sample (PER) and 4. reanalyse with the target network (or take the batch workers prepared) -
            t0 = time.time()
            ids, batch, re_stats, beta = batches.next(replay, updates, rng)
            t1 = time.time()
            timing["reanalyse"] += t1 - t0

            # --- 5. unrolled loss, 1/K gradient scale, clipped SGD step --------------------------------------
            lr = set_learning_rate(optimizer, updates, args)  # warm-up, then step decay
            net.train()
            loss, terms, value0 = unrolled_loss(net, batch, loss_cfg, rng, autocast=use_amp)
            stop_if_not_finite({**terms, "sum": loss}, updates, ckpt_path, bar)
            grad_norm = sgd_step(optimizer, scaler, loss, args)  # 1/K gradient scale, clip at 5

            # --- 6. priorities = |v_0 - z_0| + eps -----------------------------------------------------------
            new_prio = (value0 - batch.value[:, 0]).abs().cpu().numpy() + 1e-6
            replay.update_priorities(ids, new_prio)
            counters["updates"] += 1
            updates = counters["updates"]
            acting.progress(net, updates, env_steps_allowed(counters, args, SELFPLAY_LEAD * args.num_envs))
            timing["learn"] += time.time() - t1
            bar.update(1)

            # --- 7. target refresh ---------------------------------------------------------------------------
            if updates % args.target_update_interval == 0:
                target_net.load_state_dict(net.state_dict())
                batches.publish_target(target_net, updates)

            # --- 8. log --------------------------------------------------------------------------------------
            if updates % 10 == 0 or updates == total_updates:
                now = time.time()
                scalars = train_scalars(terms, grad_norm, lr, beta, value0, re_stats, counters, replay, timing,
                                        last_log, now)
                logger.scalars(scalars, updates)
                last_log = {"time": now, "env_steps": counters["env_steps"], "updates": updates}

            # --- 9. evaluate ---------------------------------------------------------------------------------
            if args.eval_interval and args.eval_episodes and updates % args.eval_interval == 0:
                periodic_eval(net, args, mcts, env, rng, use_amp, logger, updates, bar)  # logged and printed

            # --- 10. checkpoint ------------------------------------------------------------------------------
            if updates % args.checkpoint_interval == 0 or updates == total_updates:
                save_checkpoint(ckpt_path, net, target_net, optimizer, scaler, counters, args, rng, store, replay,
                                batches)
    bar.close()
    acting.close()
    batches.close()
    if not ckpt_path.exists() or counters["updates"] % args.checkpoint_interval:
        save_checkpoint(ckpt_path, net, target_net, optimizer, scaler, counters, args, rng, store, replay, batches)

    # =========================================================================================================
    # Final evaluation of the final weights (never a "best" checkpoint), seeds 0..n-1: the evaluation protocol
    # of docs/algorithm.md, 'Evaluation protocol'
    # =========================================================================================================
    record = {"checkpoint": str(ckpt_path), "updates": counters["updates"], "env_steps": counters["env_steps"]}
    if args.final_eval_episodes:
        final_eval(net, args, mcts, env, run_dir, record, use_amp, logger)  # -> eval.json, logged and printed
    logger.close()
