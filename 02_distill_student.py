"""Stage 2 — distil a compressed student (MobileNetV2 inverted-residual blocks, smaller LSTM and projection) from
a frozen EfficientZero teacher written by stage 1.

    load + freeze the teacher(s), evaluate them briefly -> [optional: fill the replay with the teacher's play]
    -> collect with the student's own search -> sample -> reanalyse with the student's target network
    -> student task loss (stage 1's loss on its own targets) + distillation on the same batch:
       response  tau^2 KL(softmax(z_T/tau) || softmax(z_S/tau)) at k = 0..K (or the teacher's search as target)
       feature   MSE(latents) at k = 0..K + MSE(LSTM h) + MSE(LSTM c) at k = 1..K, through adapters where widths
                 differ (--fitnets: always, learned), optionally in the teacher's standardised units
                 (--feature-normalise)
       value     (optional) CE against the teacher's value
    -> SGD step -> priorities -> target refresh -> log -> evaluate -> checkpoint

Writes `runs/<run_name>/student.pt` (config, weights, adapters, optimizer, counters, RNG states, replay index),
the replay, TensorBoard logs and the final 32-episode `eval.json`. Every distillation term has its own weight
(0 switches it off), so the ablation no-KD / response / feature / both is four command lines (docs/usage.md).

This script is stage 1's script plus distillation: in the main block, everything stage 1 does not do sits between
`# >>> distillation` and `# <<< distillation`, or is a single line marked `# + distillation`, so that
`diff 01_pretrain_teacher.py 02_distill_student.py` shows what distillation adds and little else (above the main
block, the imports, `Args` and the checks differ by the student's and distillation's own flags).
"""

from __future__ import annotations

import common.interrupts  # noqa: F401  (first: a Ctrl-C while torch loads ends in one line)
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from common.args import TrainArgs, at_least, note_checkpoint, parse_args, train_args_problems, usage_error
from common.distill import (WEIGHT_FLAGS, DistillConfig, HeldOut, combine_losses, describe_teachers, distill_scalars,
                            distillation_terms, evaluate_teacher, fade_factor, fill_with_teacher_play, load_teacher,
                            teacher_unroll, temperature)
from common.envs import make_env
from common.loss import unrolled_loss
from common.networks import FeatureAdapter, NetConfig, amp_context, default_config, online_and_target
from common.pipeline import SELFPLAY_LEAD, start_pipeline
from common.replay import ReplayBuffer, ReplayStore
from common.runs import Logger, atomic_torch_save, claim_run_dir, load_checkpoint, pick_device, rng_state
from common.search import run_search
from common.selfplay import visit_temperature
from common.training import (describe_run, env_steps_allowed, final_eval, loss_config, periodic_eval, record_steps,
                             restore, resume_or_start, set_learning_rate, sgd_step, stop_if_not_finite,
                             train_scalars, updates_due)
from common.tree import MCTSConfig


KIND = "student"  # what this script trains: its checkpoint is student.pt


@dataclass
class Args(TrainArgs):
    exp_name: str = "student"
    """name of this experiment, part of the run name `<env>__<exp_name>__<seed>__<time>`"""

    # --- teacher ---------------------------------------------------------------------------------------------
    teacher: list[str] = field(default_factory=list)
    """path(s) to teacher.pt written by 01_pretrain_teacher.py (required); several = an averaged ensemble"""
    teacher_eval_episodes: int = 8
    """episodes of the teacher's evaluation at the start (seeds 2000..; its return is logged next to the student's
    and the states it visits become the held-out states of the logged agreement, `distill/heldout_*`)"""
    data: str = "self-play"
    """`self-play`: the student collects its own data within the same budget (the paper's setting).
    `teacher-buffer`: first fill the replay with --teacher-buffer-steps of the teacher's play (QDagger-style
    offline start; these are EXTRA environment steps on top of --total-env-steps)"""
    teacher_buffer_steps: int = 10_000
    """agent steps the teacher plays to fill the replay when --data teacher-buffer"""

    # --- student network (defaults: the default student of common/networks.py) ------------------------------
    student_block: str = "inverted_residual"
    """block of representation and dynamics: `inverted_residual` (MobileNetV2) or `residual`"""
    expand_ratio: int | None = None
    """inverted-residual expansion t (default 2)"""
    num_blocks: int | None = None
    """blocks in representation, dynamics and prediction (default 1)"""
    proj_hidden: int | None = None
    """SimSiam projection hidden width"""
    proj_out: int | None = None
    """SimSiam projection output width"""
    pred_hidden: int | None = None
    """SimSiam predictor hidden width"""

    # --- distillation ----------------------------------------------------------------------------------------
    response_weight: float = 1.0
    """weight of the response term tau^2 KL(teacher policy || student policy), summed over k = 0..K (0: off)"""
    tau: float = 1.0
    """distillation temperature (start value when --tau-end is given)"""
    tau_end: float | None = None
    """anneal tau linearly from --tau to this over all updates (default: fixed tau)"""
    response_target: str = "policy"
    """`policy`: the teacher's raw policy; `search`: the teacher's MCTS visit distribution (costs a teacher search
    over all B x (K+1) positions per update)"""
    feature_latent_weight: float = 1.0
    """weight of MSE between student and teacher hidden states at k = 0..K (the paper's L_feature[0]; 0: off)"""
    feature_lstm_weight: float = 1.0
    """weight of MSE between the value-prefix LSTM's hidden and cell states at k = 1..K (L_feature[1]; 0: off)"""
    value_distill_weight: float = 0.0
    """weight of CE between the teacher's value and the student's value distribution (optional; 0: off)"""
    adapters: bool = True
    """learn 1x1-conv / linear adapters when student and teacher widths differ (training only, not deployed)"""
    fitnets: bool = False
    """learn the adapters even where student and teacher widths match (FitNets regressors)"""
    feature_normalise: bool = False
    """standardise both sides of each feature MSE by the teacher's per-channel batch mean and std"""
    kd_alpha: float | None = None
    """use L = alpha L_KD + (1 - alpha) L_task instead of L = L_task + L_KD"""
    fade_distillation: bool = False
    """scale the distillation by max(0, 1 - student return / teacher return) over the last 20 games (QDagger)"""


def check_args(args: Args) -> None:
    problems = train_args_problems(args)
    if not args.teacher:
        problems.append("--teacher PATH is required (a teacher.pt written by 01_pretrain_teacher.py)")
    if args.data not in ("self-play", "teacher-buffer"):
        problems.append("--data must be `self-play` or `teacher-buffer`")
    if args.response_target not in ("policy", "search"):
        problems.append("--response-target must be `policy` or `search`")
    if not args.tau > 0 or (args.tau_end is not None and not args.tau_end > 0):
        problems.append("--tau and --tau-end must be > 0")
    if args.kd_alpha is not None and not 0 <= args.kd_alpha <= 1:
        problems.append("--kd-alpha must be in [0, 1]")
    problems += at_least(args, 0, *WEIGHT_FLAGS.values())  # the distillation weights
    if args.student_block not in ("inverted_residual", "residual"):
        problems.append(f"--student-block must be `inverted_residual` or `residual` (got {args.student_block!r})")
    problems += at_least(args, 1, "expand_ratio", "num_blocks", "proj_hidden", "proj_out", "pred_hidden",
                         optional=True)
    if args.data == "teacher-buffer":
        problems += at_least(args, 1, "teacher_buffer_steps")
    if args.fitnets and not args.adapters:
        problems.append("--fitnets learns the adapters: drop --no-adapters")
    if args.feature_normalise and args.batch_size == 1:  # a standard deviation over one sample is undefined
        problems.append("--feature-normalise standardises by the batch's statistics: it needs --batch-size >= 2")
    if problems:
        usage_error(problems)


def student_config(args: Args, env) -> NetConfig:
    knobs = {"block": args.student_block, "channels": args.channels, "lstm_hidden": args.lstm_hidden,
             "expand_ratio": args.expand_ratio, "num_blocks": args.num_blocks, "proj_hidden": args.proj_hidden,
             "proj_out": args.proj_out, "pred_hidden": args.pred_hidden, "state_norm": args.state_norm,
             "norm": args.norm}
    knobs = {k: v for k, v in knobs.items() if v is not None}
    return default_config("student", env.family, env.obs_shape, env.num_actions, **knobs)


def check_pairing(net_cfg: NetConfig, teachers: list, args: Args) -> None:
    """The student and its teachers must fit together before anything is created: features of other widths need
    adapters, and an ensemble's teachers must share their widths and value support."""
    t_cfg = teachers[0].config
    feature_on = args.feature_latent_weight > 0 or args.feature_lstm_weight > 0
    widths_differ = (net_cfg.channels, net_cfg.lstm_hidden) != (t_cfg.channels, t_cfg.lstm_hidden)
    if feature_on and widths_differ and not args.adapters:
        raise SystemExit(f"feature distillation between widths (channels, LSTM) "
                         f"{(net_cfg.channels, net_cfg.lstm_hidden)} and the teacher's "
                         f"{(t_cfg.channels, t_cfg.lstm_hidden)} needs adapters: drop "
                         "--no-adapters, match the widths, or set --feature-latent-weight 0 --feature-lstm-weight 0")
    if len({(t.config.channels, t.config.lstm_hidden, t.config.support_size) for t in teachers}) > 1:
        raise SystemExit("an ensemble of teachers must share latent channels, LSTM width and support size")


@torch.no_grad()
def teacher_search_policy(teachers, obs: torch.Tensor, inside: torch.Tensor, mcts: MCTSConfig, rng, chunk_size,
                          amp) -> torch.Tensor:
    """Average over teachers of the visit distribution of a search (no root noise) from each real observation
    t+k (k = 0..K) inside the trajectory; zeros elsewhere. obs uint8 [B, K+1, ...], inside bool [B, K+1]."""
    out = np.zeros((*inside.shape, teachers[0].config.num_actions), np.float32)
    if inside.any():
        out[inside.cpu().numpy()] = np.mean([run_search(t, obs[inside], mcts, rng=rng, chunk_size=chunk_size,
                                                        autocast=amp).policy for t in teachers], axis=0)
    return torch.as_tensor(out).to(obs.device)


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
    check_args(args)
    device = pick_device(args.device)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    # >>> distillation: the teachers must load before anything is created
    for path in args.teacher:
        load_checkpoint(Path(path), "teacher")
    # <<< distillation

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
    # >>> distillation: the frozen teacher(s), checked against the student before the run directory exists
    teachers = [load_teacher(p, env.obs_shape, env.num_actions, device) for p in args.teacher]
    t_cfg = teachers[0].config
    # <<< distillation
    net_cfg = NetConfig.from_dict(ckpt["config"]) if ckpt else student_config(args, env)
    check_pairing(net_cfg, teachers, args)  # + distillation (feature widths, ensemble)
    if run_dir is None:  # claimed atomically: never shared with a run started in the same second
        run_dir = claim_run_dir(Path(args.run_dir), args.env_id, args.exp_name, args.seed)
    note_checkpoint(run_dir / f"{KIND}.pt")  # a Ctrl-C says how to continue
    net, target_net = online_and_target(net_cfg, device)  # the target makes the reanalysed targets
    adapter = FeatureAdapter(net_cfg, t_cfg, args.fitnets).to(device)  # + distillation (-> teacher widths, trained)
    optimizer = torch.optim.SGD(list(net.parameters()) + list(adapter.parameters()), lr=args.lr,
                                momentum=args.momentum, weight_decay=args.weight_decay)
    use_amp = args.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    mcts = MCTSConfig(num_simulations=args.num_simulations)
    loss_cfg = loss_config(args, augment)
    total_updates = args.train_updates + args.extra_updates

    # --- replay and counters (restored on resume) -----------------------------------------------------------
    store = ReplayStore(run_dir)
    counters = {"env_steps": 0, "updates": 0, "episodes": 0, "learn_start_env_steps": -1, "resumes": 0}
    counters["teacher_env_steps"] = 0  # + distillation (the teacher's play of --data teacher-buffer)
    teacher_return = ckpt["teacher_return"] if ckpt else None  # + distillation (measured once, at the start)
    modules = {"model": net, "target_model": target_net, "optimizer": optimizer, "scaler": scaler}
    modules["adapter"] = adapter  # + distillation
    replay = (restore(ckpt, modules, counters, rng, store, run_dir) if ckpt
              else ReplayBuffer(capacity=args.replay_capacity, alpha=args.priority_alpha))
    del ckpt
    logger = Logger(run_dir, args, track=args.track, project=args.wandb_project_name, entity=args.wandb_entity,
                    run_name=run_dir.name, resume=bool(args.resume))
    print(f"run {run_dir} | {env.game} ({env.family}), {env.num_actions} actions, input {env.obs_shape}, "
          f"device {device}")
    print(describe_run(KIND, net, args, augment))
    # >>> distillation: sizes against the teacher's; the teacher's score (what the student should reach) and the
    # states it visits (the held-out states of the logged agreement)
    print(describe_teachers(teachers, net, adapter))
    if teacher_return is None and args.teacher_eval_episodes:  # measured once: a resumed run keeps it
        teacher_return = evaluate_teacher(teachers[0], args, mcts, run_dir, use_amp)
    logger.scalars({"charts/teacher_return": teacher_return or 0.0}, 0)
    teacher_note = "teacher not evaluated" if teacher_return is None else f"teacher {teacher_return:.2f}"
    heldout = HeldOut(teachers, run_dir, mcts, args.search_chunk_size, use_amp)
    heldout_start, new = heldout.at_start(net)
    if new:
        logger.scalars(heldout_start, counters["updates"])

    def kd_state() -> dict:
        """What a student's checkpoint holds beyond what a teacher's does."""
        return {"adapter": adapter.state_dict(), "teachers": list(args.teacher), "teacher_return": teacher_return}

    # optional QDagger-style start: the replay filled by the teacher's own play (extra environment steps)
    if args.data == "teacher-buffer" and counters["teacher_env_steps"] < args.teacher_buffer_steps:
        fill_with_teacher_play(teachers[0], args, store, replay, counters, mcts, rng, use_amp)
    random_transitions = 0 if args.data == "teacher-buffer" else args.random_transitions  # the teacher's play instead
    # <<< distillation

    # --- self-play and batches: in this process (--workers 0), or in worker processes -----------------------
    # time/* in TensorBoard: this process's seconds (collect, reanalyse, learn) and, wherever it ran, the work
    # they contain (selfplay, sample, bootstrap, search_net, search_tree)
    timing = {"collect": 0.0, "reanalyse": 0.0, "learn": 0.0}
    timing["teacher"] = 0.0  # + distillation (the teacher's forward passes)
    acting, batches = start_pipeline(args, net, target_net, mcts, loss_cfg, counters, random_transitions,
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
                            if recent_returns else "-", teacher=f"{teacher_return or 0:.1f}",  # + distillation
                            refresh=False)
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
            adapter.train()  # + distillation
            loss, terms, value0, obs0, student_steps = unrolled_loss(net, batch, loss_cfg, rng, autocast=use_amp,
                                                                     return_steps=True)  # + distillation: the steps
            # >>> distillation: the frozen teacher over the same observation and actions; the distillation terms
            t2 = time.time()
            tau = temperature(updates, total_updates, args.tau, args.tau_end)
            with torch.no_grad(), amp_context(device, use_amp):
                teacher_steps = teacher_unroll(teachers, obs0.detach(), batch.actions)
            searched = args.response_target == "search" and args.response_weight > 0  # the teacher's search as target
            search_policy = (teacher_search_policy(teachers, batch.obs, batch.inside, mcts, rng, args.search_chunk_size,
                                                   use_amp) if searched else None)
            dcfg = DistillConfig(args.response_weight, tau, args.feature_latent_weight, args.feature_lstm_weight,
                                 args.value_distill_weight, args.feature_normalise)
            kd_terms = distillation_terms(student_steps, teacher_steps, batch.mask, dcfg, adapter,
                                          net_cfg.support_size, t_cfg.support_size, search_policy)
            timing["teacher"] += time.time() - t2
            kd_loss = sum((batch.weights * getattr(args, WEIGHT_FLAGS[k]) * v).mean() for k, v in kd_terms.items())
            kd_loss = kd_loss if kd_terms else torch.zeros((), device=device)
            fade = fade_factor(recent_returns, teacher_return) if args.fade_distillation else 1.0
            loss = combine_losses(loss, kd_loss, args.kd_alpha, fade)  # task loss + weighted distillation
            terms = {**terms, **{f"distill_{k}": v.mean() for k, v in kd_terms.items()}}
            # <<< distillation
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
                scalars.update(distill_scalars(student_steps, teacher_steps, kd_loss, tau, fade, teacher_return,
                                               recent_returns))  # + distillation
                logger.scalars(scalars, updates)
                last_log = {"time": now, "env_steps": counters["env_steps"], "updates": updates}

            # --- 9. evaluate ---------------------------------------------------------------------------------
            if args.eval_interval and args.eval_episodes and updates % args.eval_interval == 0:
                periodic_eval(net, args, mcts, env, rng, use_amp, logger, updates, bar,  # logged and printed
                              note=f"; {teacher_note}")  # + distillation
                logger.scalars(heldout.agreement(net), updates)  # + distillation

            # --- 10. checkpoint ------------------------------------------------------------------------------
            if updates % args.checkpoint_interval == 0 or updates == total_updates:
                save_checkpoint(ckpt_path, net, target_net, optimizer, scaler, counters, args, rng, store, replay,
                                batches, **kd_state())  # + distillation: adapters, teachers, teacher's return
    bar.close()
    acting.close()
    batches.close()
    if not ckpt_path.exists() or counters["updates"] % args.checkpoint_interval:
        save_checkpoint(ckpt_path, net, target_net, optimizer, scaler, counters, args, rng, store, replay, batches,
                        **kd_state())  # + distillation

    # =========================================================================================================
    # Final evaluation of the final weights (never a "best" checkpoint), seeds 0..n-1: the evaluation protocol
    # of docs/algorithm.md, 'Evaluation protocol'
    # =========================================================================================================
    record = {"checkpoint": str(ckpt_path), "updates": counters["updates"], "env_steps": counters["env_steps"]}
    # >>> distillation: agreement with the teacher on its held-out states, at the start and now
    heldout_final = heldout.final(net, heldout_start)
    logger.scalars(heldout_final, counters["updates"])
    record.update({"teachers": list(args.teacher), "heldout_agreement_start": heldout_start,
                   "heldout_agreement_final": heldout_final, "teacher_return_start": teacher_return,
                   "teacher_env_steps": counters["teacher_env_steps"]})
    # <<< distillation
    if args.final_eval_episodes:
        final_eval(net, args, mcts, env, run_dir, record, use_amp, logger,  # -> eval.json, logged and printed
                   note=f" ({teacher_note})")  # + distillation
    logger.close()
