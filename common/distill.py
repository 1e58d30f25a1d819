"""Distillation terms of stage 2 (docs/algorithm.md, 'Stage 2: the distilled student'; the seed paper's section 4).

The frozen teacher is unrolled over the same (augmented) observation and the same K actions as the student; the
student's per-step outputs come from `common.loss.unrolled_loss(..., return_steps=True)`. Terms, each summed
over the unroll steps like the task terms (steps k >= 1 masked past the trajectory end) and averaged over the batch:

    response  tau^2 KL(softmax(z_T / tau) || softmax(z_S / tau))               k = 0..K  (policy logits z)
              or KL(pi_search_T || softmax(z_S / tau)) with the teacher's search as the target
    feature   MSE(A_s(s_S,k), s_T,k)                                            k = 0..K  (latents, L_feature[0])
              MSE(A_h(h_S,k), h_T,k) + MSE(A_c(c_S,k), c_T,k)                   k = 1..K  (LSTM, L_feature[1])
    value     CE(two-hot of the teacher's value on the student's support, student value logits)   k = 0..K

A_* are the FeatureAdapter's 1x1 conv / linear maps (identity when the widths already match, unless --fitnets
learns them anyway); with --feature-normalise each MSE is taken in the teacher's per-channel standardised units.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from common.networks import (EfficientZeroNet, FeatureAdapter, NetConfig, Unroll, count_acting_params, count_params,
                             scalar_to_support, support_to_scalar)
from common.runs import atomic_np_save, atomic_write_text, load_checkpoint


def load_teacher(path: str, obs_shape, num_actions: int, device) -> EfficientZeroNet:
    """The teacher network alone from its checkpoint, checked against the environment, frozen."""
    ckpt = load_checkpoint(Path(path), "teacher")
    cfg = NetConfig.from_dict(ckpt["config"])
    env_id = ckpt.get("args", {}).get("env_id", "?")
    if cfg.num_actions != num_actions or tuple(cfg.obs_shape) != tuple(obs_shape):
        raise SystemExit(f"teacher {path} was trained on {env_id} ({cfg.num_actions} actions, input "
                         f"{tuple(cfg.obs_shape)}); this game has {num_actions} actions and input {tuple(obs_shape)}")
    net = EfficientZeroNet(cfg)
    net.load_state_dict(ckpt["model"])
    net.to(device).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


@torch.no_grad()
def teacher_unroll(teachers: list[EfficientZeroNet], obs: torch.Tensor, actions: torch.Tensor) -> list[Unroll]:
    """Each (frozen, eval-mode) teacher unrolled from the student's float input [B, C, H, W] along its actions
    [B, K]: the same `EfficientZeroNet.unroll` as the student's loss."""
    return [teacher.unroll(obs, actions) for teacher in teachers]


def temperature(update: int, total_updates: int, tau: float, tau_end: float | None) -> float:
    """--tau, or annealed linearly from --tau at the first update to --tau-end at the last."""
    if tau_end is None:
        return tau
    return tau + (tau_end - tau) * min(1.0, update / max(1, total_updates - 1))


def fade_factor(recent_returns: list[float], teacher_return: float | None) -> float:
    """QDagger's fade (--fade-distillation): max(0, 1 - student return / teacher return) over the student's recent
    games, so the distillation switches off once the student plays as well as its teacher; 1 without data."""
    if not teacher_return or not recent_returns:
        return 1.0
    return max(0.0, 1.0 - float(np.mean(recent_returns)) / teacher_return)


def combine_losses(task_loss: torch.Tensor, kd_loss: torch.Tensor, kd_alpha: float | None,
                   fade: float = 1.0) -> torch.Tensor:
    """L = L_task + fade L_KD, or with --kd-alpha Hinton's mix: alpha fade L_KD + (1 - alpha) L_task."""
    if kd_alpha is None:
        return task_loss + fade * kd_loss
    return fade * kd_alpha * kd_loss + (1 - kd_alpha) * task_loss


def mean_softmax(logits: list[torch.Tensor], tau: float) -> torch.Tensor:
    """Average of the teachers' tempered policies (an ensemble of one is just its softmax)."""
    return torch.stack([F.softmax(z.float() / tau, dim=-1) for z in logits]).mean(0)


def kl_to_student(target_probs: torch.Tensor, student_logits: torch.Tensor, tau: float) -> torch.Tensor:
    """KL(target || softmax(z_S / tau)) per sample; zero-probability targets contribute 0."""
    log_s = F.log_softmax(student_logits.float() / tau, dim=-1)
    t = target_probs.float()
    return (t * (torch.log(t.clamp_min(1e-12)) - log_s)).sum(-1)


def mse_per_sample(a: torch.Tensor, b: torch.Tensor, normalise: bool = False) -> torch.Tensor:
    """Mean squared difference per sample. `normalise`: both sides first standardised by the teacher's (b's)
    per-channel mean and standard deviation over the batch (and the spatial positions), held fixed: every
    channel counts alike, however large or flat its values are in the teacher."""
    a, b = a.float(), b.float()
    if normalise:
        dims = [0] + list(range(2, b.dim()))  # all but the channel axis
        mu, sd = b.mean(dims, keepdim=True).detach(), b.std(dims, keepdim=True).detach().clamp_min(1e-3)
        a, b = (a - mu) / sd, (b - mu) / sd
    return (a - b).pow(2).flatten(1).mean(1)


# Each distillation term and the 02_distill_student.py flag that weights it; 03 reads the same flags from a run's
# saved arguments to tell distilled students from RL-only ones.
WEIGHT_FLAGS = {"response": "response_weight", "feature_latent": "feature_latent_weight",
                "feature_lstm": "feature_lstm_weight", "value": "value_distill_weight"}


@dataclass(frozen=True)
class DistillConfig:
    response_weight: float = 1.0
    tau: float = 1.0
    feature_latent_weight: float = 1.0
    feature_lstm_weight: float = 1.0
    value_weight: float = 0.0
    feature_normalise: bool = False  # standardise features by the teacher's per-channel statistics first


def distillation_terms(student: Unroll, teachers: list[Unroll], mask: torch.Tensor, cfg: DistillConfig,
                       adapter: FeatureAdapter | None, student_support: int, teacher_support: int,
                       search_policy: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Per-sample distillation losses [B] (unweighted), each summed over the unroll like the task terms.

    mask [B, K+1]: 1 where step k follows a real transition. search_policy [B, K+1, A]: the teacher's search
    visit distribution to use as the response target instead of its raw policy (already an ensemble average).
    Only the terms with a non-zero weight are computed."""
    K1 = len(student.latents)
    B = mask.shape[0]
    zero = torch.zeros(B, device=mask.device)
    out: dict[str, torch.Tensor] = {}
    if cfg.response_weight:
        resp = zero
        for k in range(K1):
            target = (search_policy[:, k] if search_policy is not None
                      else mean_softmax([t.policy_logits[k] for t in teachers], cfg.tau))
            term = cfg.tau ** 2 * kl_to_student(target, student.policy_logits[k], cfg.tau)
            if search_policy is not None:
                # rows past the end have an all-zero search target: nothing to match there
                term = term * (search_policy[:, k].sum(-1) > 0)
            resp = resp + term * mask[:, k]
        out["response"] = resp
    if cfg.feature_latent_weight:
        feat = zero
        for k in range(K1):
            s = student.latents[k].float()  # float32 adapters; under CUDA autocast the student's features are fp16
            s = adapter.latent(s) if adapter is not None else s
            t = torch.stack([u.latents[k] for u in teachers]).mean(0)
            feat = feat + mse_per_sample(s, t, cfg.feature_normalise) * mask[:, k]
        out["feature_latent"] = feat
    if cfg.feature_lstm_weight:
        feat = zero
        for k in range(1, K1):
            h, c = student.hidden[k - 1].float(), student.cell[k - 1].float()
            if adapter is not None:
                h, c = adapter.hidden(h), adapter.cell(c)
            th = torch.stack([u.hidden[k - 1] for u in teachers]).mean(0)
            tc = torch.stack([u.cell[k - 1] for u in teachers]).mean(0)
            feat = feat + (mse_per_sample(h, th, cfg.feature_normalise)
                           + mse_per_sample(c, tc, cfg.feature_normalise)) * mask[:, k]
        out["feature_lstm"] = feat
    if cfg.value_weight:
        val = zero
        for k in range(K1):
            v = torch.stack([support_to_scalar(u.value_logits[k], teacher_support) for u in teachers]).mean(0)
            target = scalar_to_support(v, student_support)
            val = val - (target * F.log_softmax(student.value_logits[k].float(), -1)).sum(-1) * mask[:, k]
        out["value"] = val
    return out


def agreement(student: Unroll, teachers: list[Unroll]) -> tuple[float, float]:
    """Root (k = 0) action agreement of the argmax policies and Jensen-Shannon divergence (nats), batch means."""
    p = F.softmax(student.policy_logits[0].float(), -1)
    q = mean_softmax([t.policy_logits[0] for t in teachers], 1.0)
    agree = (p.argmax(-1) == q.argmax(-1)).float().mean().item()
    return agree, js_divergence(p, q).mean().item()


def distill_scalars(student: Unroll, teachers: list[Unroll], kd_loss: torch.Tensor, tau: float, fade: float,
                    teacher_return: float | None, recent_returns: list[float]) -> dict[str, float]:
    """What stage 2 logs every 10 updates beside stage 1's scalars (docs/usage.md, "What is logged")."""
    agree, jsd = agreement(student, teachers)
    return {"losses/distill_total": kd_loss.detach().item(), "distill/action_agreement": agree,
            "distill/js_divergence": jsd, "distill/tau": tau, "distill/fade": fade,
            "charts/teacher_return": teacher_return or 0.0,
            "charts/student_recent_return": float(np.mean(recent_returns)) if recent_returns else 0.0}


def js_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    m = 0.5 * (p + q)

    def kl(a, b):
        return (a * (torch.log(a.clamp_min(1e-12)) - torch.log(b.clamp_min(1e-12)))).sum(-1)

    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


@torch.no_grad()
def search_actions(net: EfficientZeroNet, states, mcts, chunk_size: int = 256, autocast: bool = False) -> np.ndarray:
    """The action `net`'s search plays from each state (argmax of visits, no root noise, lowest index on ties)."""
    from common.tree import select_action  # local: keeps this module importable without the search
    from common.search import run_search

    res = run_search(net, states, mcts, deterministic_ties=True, chunk_size=chunk_size, autocast=autocast)
    return select_action(res.visit_counts, 0.0)


@torch.no_grad()
def heldout_agreement(student: EfficientZeroNet, teachers: list[EfficientZeroNet], states, mcts=None,
                      chunk_size: int = 256, autocast: bool = False,
                      teacher_actions: np.ndarray | None = None) -> dict[str, float]:
    """How closely a student follows its teacher(s) on held-out observations `states` (uint8 [N, C, H, W], e.g.
    recorded from the teacher's evaluation episodes):

        policy_argmax_agreement  argmax of the student's raw policy == argmax of the teacher's (ensemble mean)
        search_action_agreement  the action each one's search would play (argmax of visits) is the same
                                 (only when `mcts` is given: deterministic tie-breaking, no root noise)
        js_divergence            Jensen-Shannon divergence (nats) of the raw policies, mean over states
        value_mae                |v_S - v_T| of the initial inference's scalar values, mean over states
        policy_vs_search_agreement  argmax of the student's raw policy == the action the teacher's search plays
                                 (when `mcts` or the teacher's `teacher_actions` are given): imitation of what
                                 the teacher does, which is what matters when the teacher's raw policy is weak

    A model compared with itself gives agreement 1 and divergence 0 exactly."""
    nets = [student, *teachers]
    for net in nets:
        net.eval()
    device = next(student.parameters()).device
    obs = torch.as_tensor(np.asarray(states))
    policies = {i: [] for i in range(len(nets))}
    values = {i: [] for i in range(len(nets))}
    for lo in range(0, len(obs), chunk_size):
        x = obs[lo: lo + chunk_size].to(device)
        for i, net in enumerate(nets):
            out = net.initial_inference(x)
            policies[i].append(F.softmax(out.policy_logits.float(), -1).cpu())
            values[i].append(support_to_scalar(out.value_logits.float(), net.config.support_size).cpu())
    p_s = torch.cat(policies[0])
    p_t = torch.stack([torch.cat(policies[i]) for i in range(1, len(nets))]).mean(0)
    v_s = torch.cat(values[0])
    v_t = torch.stack([torch.cat(values[i]) for i in range(1, len(nets))]).mean(0)
    result = {
        "states": int(len(obs)),
        "policy_argmax_agreement": float((p_s.argmax(-1) == p_t.argmax(-1)).float().mean()),
        "js_divergence": float(js_divergence(p_s, p_t).mean()),
        "value_mae": float((v_s - v_t).abs().mean()),
    }
    if teacher_actions is None and mcts is not None:
        # an ensemble has no single search; the first teacher's is the reference
        teacher_actions = search_actions(teachers[0], states, mcts, chunk_size, autocast)
    if teacher_actions is not None:
        result["policy_vs_search_agreement"] = float((p_s.argmax(-1).numpy() == teacher_actions).mean())
    if mcts is not None:
        a_s = search_actions(student, states, mcts, chunk_size, autocast)
        result["search_action_agreement"] = float((a_s == teacher_actions).mean())
    return result


class HeldOut:
    """The student measured against its teacher(s) during training, on states it never trains on: those the
    teacher's start-of-run evaluation visited (`heldout_states.npy` in the run directory). The teacher's search
    actions on them are computed once; `agreement(net)` compares the student's raw policy (docs/usage.md, "What is
    logged"). No states (the teacher was not evaluated): no agreement, an empty dict."""

    def __init__(self, teachers: list[EfficientZeroNet], run_dir: Path, mcts, chunk_size: int | None, autocast: bool):
        path = Path(run_dir) / "heldout_states.npy"
        self.teachers, self.run_dir = teachers, Path(run_dir)
        self.states = np.load(path) if path.exists() else None
        self.teacher_actions = (search_actions(teachers[0], self.states, mcts, chunk_size or 256, autocast)
                                if self.states is not None and len(self.states) else None)

    def agreement(self, net: EfficientZeroNet) -> dict[str, float]:
        if self.teacher_actions is None:
            return {}
        a = heldout_agreement(net, self.teachers, self.states, teacher_actions=self.teacher_actions)
        return {"distill/heldout_policy_agreement": a["policy_argmax_agreement"],
                "distill/heldout_policy_vs_search": a["policy_vs_search_agreement"],
                "distill/heldout_js_divergence": a["js_divergence"], "distill/heldout_value_mae": a["value_mae"]}

    def final(self, net: EfficientZeroNet, start: dict[str, float]) -> dict[str, float]:
        """The agreement at the end of training, printed next to the one at the start."""
        final = self.agreement(net)
        if final:
            print("held-out agreement with the teacher: " + ", ".join(
                f"{k.split('/')[1]} {start.get(k, float('nan')):.3f} -> {v:.3f}" for k, v in final.items()))
        return final

    def at_start(self, net: EfficientZeroNet) -> tuple[dict[str, float], bool]:
        """The agreement of the untrained student, measured once and kept in the run directory for a resumed
        run's final report; True when it was measured now."""
        path = self.run_dir / "heldout_agreement_start.json"
        new = not path.exists()
        if new:
            atomic_write_text(path, json.dumps(self.agreement(net)))
        return json.loads(path.read_text()), new


def describe_teachers(teachers: list[EfficientZeroNet], student: EfficientZeroNet, adapter: torch.nn.Module) -> str:
    """Stage 2's header line on the teacher(s): their size, and the student's against it."""
    ensemble = f" x {len(teachers)} (ensemble)" if len(teachers) > 1 else ""
    return (f"teacher: {count_params(teachers[0]):,} parameters ({count_acting_params(teachers[0]):,} acting)"
            f"{ensemble}, frozen; the student has {count_params(student) / count_params(teachers[0]):.3f} of its "
            f"parameters; adapters {count_params(adapter):,} parameters (training only)")


def evaluate_teacher(teacher: EfficientZeroNet, args, mcts, run_dir: Path, autocast: bool) -> float:
    """The teacher's score at the start of stage 2 (seeds 2000.., never the final seeds): what the student should
    reach. Up to 1,024 of the states it visits become the held-out states of `HeldOut`."""
    from common.selfplay import evaluate

    res = evaluate(teacher, args.env_id, args.teacher_eval_episodes, mcts, first_seed=2000,
                   max_steps=args.eval_max_steps, rng=np.random.default_rng(args.seed),
                   chunk_size=args.search_chunk_size, autocast=autocast, record_states=1024)
    atomic_np_save(Path(run_dir) / "heldout_states.npy", res["states"])
    print(f"teacher evaluation ({args.teacher_eval_episodes} episodes): {np.mean(res['scores']):.2f} "
          f"+- {np.std(res['scores']):.2f}; {len(res['states'])} of its states held out for agreement")
    return float(np.mean(res["scores"]))


def fill_with_teacher_play(teacher: EfficientZeroNet, args, store, replay, counters: dict, mcts, rng,
                           autocast: bool) -> None:
    """`--data teacher-buffer`: the replay first filled with --teacher-buffer-steps of the teacher's own play
    (visit temperature 0.25), a QDagger-style start. These are extra environment steps on top of the student's
    budget, counted apart (`teacher_env_steps`)."""
    from tqdm import tqdm

    from common.selfplay import SelfPlay

    print(f"filling the replay with {args.teacher_buffer_steps:,} agent steps of the teacher's play "
          "(extra environment steps, on top of the student's budget)")
    pad = args.num_unroll_steps + args.td_steps  # look-ahead of the furthest target: K unroll + n-step bootstrap
    play = SelfPlay(args.env_id, args.num_envs, seed=args.seed * 1000 + 500, segment_length=args.segment_length,
                    pad=pad)
    for _ in tqdm(range(0, args.teacher_buffer_steps, args.num_envs),
                  desc="teacher buffer", unit="step", unit_scale=args.num_envs, disable=not args.progress):
        segments, _, _ = play.step(teacher, mcts, 0.25, rng, chunk_size=args.search_chunk_size, autocast=autocast)
        counters["teacher_env_steps"] += args.num_envs
        for seg in segments:
            store.push(replay, seg)
    play.close()
