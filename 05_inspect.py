"""Stage 5 — see what an agent thinks: one seeded evaluation episode of a teacher or a student, drawn as pictures a
person reads without the code open; with --teacher, a second network searched on the same states, side by side.

    load the checkpoint(s) (network rebuilt from its config alone, game checked) -> play one episode exactly as
    03_evaluate.py plays each of its episodes (search without root noise, action = argmax of visits) and search the
    second network on every state the first one saw -> the root's prior, visits and value at every step, against
    the discounted return that followed -> the model's K-step unroll along the actions taken, in eval mode (what
    search uses) and train mode (what training used) -> agreement of the two networks and the spread of their
    hidden states -> <out-dir>/<name>/index.html, *.png, inspect.json (every number drawn)

    python 05_inspect.py --checkpoint runs/<teacher-run>/teacher.pt --name breakout-teacher
    python 05_inspect.py --checkpoint runs/<student-run> --teacher runs/<teacher-run> --name breakout-pair
    python 05_inspect.py --checkpoint runs/<student-run> --teacher runs/<teacher-run> --teacher-plays  # its states
"""

from __future__ import annotations

import common.interrupts  # noqa: F401  (first: a Ctrl-C while torch loads ends in one line)
import copy
import html
import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from common.args import at_least, parse_args, usage_error
from common.distill import js_divergence
from common.envs import FrameStack, make_env, resolve_env_id, stack_frames
from common.networks import VALUE_PREFIX_HORIZON, EfficientZeroNet, NetConfig, support_to_scalar
from common.runs import git_state, load_checkpoint, pick_device
from common.scores import canonical_game
from common.search import run_search
from common.tree import MCTSConfig, select_action

MINATAR_ACTIONS = ["no-op", "left", "up", "right", "down", "fire"]  # MinAtar's action_map 'n l u r d f'
CHUNK = 256  # states per network call after the episode; also the train-mode batch (a training batch's order)
EXAMPLES = 6  # unrolls drawn one by one in unrolls.png


@dataclass
class Args:
    checkpoint: str = ""
    """teacher.pt / student.pt (or the run directory holding one) of 01 / 02: the network inspected"""
    teacher: str | None = None
    """a second checkpoint of the same game (a student's teacher, or any other), searched on the same states"""
    teacher_plays: bool = False
    """with --teacher: the teacher plays the episode and --checkpoint is searched on its states (as 03_evaluate.py
    measures agreement on the teacher's states); default: --checkpoint plays"""
    env_id: str | None = None
    """game (default: the checkpoint's); another game than the checkpoint's is refused"""
    seed: int = 0
    """environment seed of the episode and seed of the search's tie-breaking: the episode 03_evaluate.py plays with
    `--episodes 1 --first-seed S --seed S`"""
    max_steps: int = 1_000
    """agent-step cap of the episode (the protocol's 27,000 makes pictures nobody reads and a long wait)"""
    num_simulations: int | None = None
    """simulations per decision (default: the checkpoint's training setting)"""
    unroll_steps: int = 5
    """K: steps of each imagined unroll (the learner's default is 5)"""
    unroll_every: int = 1
    """unroll from every this many steps (1: from every step whose next K steps stay in one life)"""
    frames: int = 8
    """steps drawn with their frame in episode.png (evenly spaced over the episode)"""
    name: str = "inspect"
    """the view goes to <out-dir>/<name>/"""
    out_dir: str = "results"
    """parent directory of the view"""
    device: str = "auto"
    """`auto` (CUDA if present), `cpu`, `cuda`, ..."""
    threads: int = 0
    """torch CPU threads (0 = torch's default)"""
    progress: bool = True
    """tqdm bar while playing"""


@dataclass
class Net:
    """One checkpoint: its network and where it came from."""

    role: str  # "checkpoint" or "teacher": the flag that named it
    label: str  # what the pictures call it
    path: Path
    kind: str
    env_id: str
    game: str
    net: EfficientZeroNet
    info: dict


# ---------------------------------------------------------------------------------------------------------
# Loading and checks
# ---------------------------------------------------------------------------------------------------------
def load_net(path: str, role: str, device: torch.device) -> Net:
    """Rebuild a network from its checkpoint alone (safe loader; any problem is one line)."""
    p = Path(path)
    if p.is_dir():
        found = [p / f for f in ("student.pt", "teacher.pt") if (p / f).is_file()]
        if not found:
            raise SystemExit(f"--{role} {p} is a directory without a teacher.pt or student.pt")
        p = found[0]
    ckpt = load_checkpoint(p, None)
    run_args = ckpt.get("args") if isinstance(ckpt.get("args"), dict) else {}
    env_id = run_args.get("env_id")
    if not env_id or "config" not in ckpt or "model" not in ckpt:
        raise SystemExit(f"{p} has no env_id, network config or weights: not a checkpoint of 01/02")
    try:
        game = canonical_game(env_id)[1]
        net = EfficientZeroNet(NetConfig.from_dict(ckpt["config"]))
        net.load_state_dict(ckpt["model"])
    except (ValueError, TypeError, KeyError, RuntimeError) as e:
        raise SystemExit(f"{p}: unreadable game, network config or weights ({str(e).splitlines()[0]})") from None
    kind, exp = ckpt["kind"], run_args.get("exp_name", ckpt["kind"])
    info = {"checkpoint": str(p), "kind": kind, "exp_name": exp, "env_id": env_id, "counters": ckpt.get("counters", {}),
            "teachers": [str(t) for t in ckpt.get("teachers", [])], "train_num_simulations":
            run_args.get("num_simulations"), "config": net.config.to_dict()}
    return Net(role, kind if exp == kind else f"{exp} ({kind})", p, kind, env_id, game, net.to(device).eval(), info)


def check_fit(n: Net, env) -> None:
    """The network's input and action count must be the game's (a renamed or damaged checkpoint is not)."""
    cfg = n.net.config
    if (tuple(cfg.obs_shape), cfg.num_actions) != (env.obs_shape, env.num_actions):
        raise SystemExit(f"--{n.role} {n.path}: network input {tuple(cfg.obs_shape)} / {cfg.num_actions} actions do "
                         f"not fit {n.env_id} ({env.obs_shape} / {env.num_actions}): incompatible checkpoint")


def check_args(args: Args) -> None:
    """Impossible flag values fail before anything is loaded or written, all listed at once (exit code 2)."""
    problems = []
    if not args.checkpoint:
        problems.append("--checkpoint: give a teacher.pt / student.pt (or its run directory)")
    if args.teacher_plays and not args.teacher:
        problems.append("--teacher-plays needs --teacher")
    if args.env_id is not None:
        try:
            resolve_env_id(args.env_id)
        except ValueError as e:
            problems.append(f"--env-id: {e}")
    if not args.name or "/" in args.name:
        problems.append(f"--name {args.name!r}: a non-empty folder name without '/'")
    problems += at_least(args, 1, "max_steps", "unroll_steps", "unroll_every", "frames")
    problems += at_least(args, 1, "num_simulations", optional=True)
    problems += at_least(args, 0, "seed", "threads")
    if problems:
        usage_error(problems)


def action_names(env) -> list[str]:
    if env.family == "atari":
        return [m.lower() for m in env.env.unwrapped.get_action_meanings()]
    if env.family == "minatar":
        return [MINATAR_ACTIONS[a] for a in env.action_set]
    return ["left", "stay", "right"]  # Toy/Catch: the paddle moves by action - 1


def channel_names(env) -> list[str] | None:
    """Names of the planes of a MinAtar / toy frame (None for Atari's RGB)."""
    if env.family == "minatar":
        channels = env.env.env.channels
        return sorted(channels, key=channels.get)
    return ["ball", "paddle"] if env.family == "toy" else None


# ---------------------------------------------------------------------------------------------------------
# Playing and measuring
# ---------------------------------------------------------------------------------------------------------
@torch.no_grad()
def play(player: Net, other: Net | None, env, mcts: MCTSConfig, seed: int, bar) -> dict:
    """One episode as `common.selfplay.evaluate` plays it (same environment, search, action rule and tie-breaking
    generator, so the same score). `other` is searched on every state too; its search gets a copy of the tie-breaking
    generator, so two identical networks make identical searches, and the player's generator is not disturbed."""
    rng = np.random.default_rng(seed)
    stack, frames = FrameStack(), [env.reset()]
    stack.reset(frames[0])
    searched = {n.role: {"visits": [], "root_value": [], "action": []} for n in (player, other) if n is not None}
    raw_rewards, ends = [], []
    while True:
        obs = stack.obs()[None]
        twin = copy.deepcopy(rng)
        for n, r in ((player, rng), (other, twin)):
            if n is not None:
                res = run_search(n.net, obs, mcts, rng=r, add_noise=False)
                s = searched[n.role]
                s["visits"].append(res.visit_counts[0].tolist())
                s["root_value"].append(float(res.root_value[0]))
                s["action"].append(int(select_action(res.visit_counts, 0.0, r)[0]))
        frame, _, terminated, truncated, info = env.step(searched[player.role]["action"][-1])
        frames.append(frame)
        stack.push(frame)
        raw_rewards.append(float(info["raw_reward"]))
        ends.append(bool(info["life_lost"] or terminated or truncated))  # the learner's episode ends here
        bar.update(1)
        if terminated or truncated:
            bar.set_postfix(score=info["episode"]["r"])
            return {"frames": np.stack(frames), "searched": searched, "raw_rewards": raw_rewards, "ends": ends,
                    "score": float(info["episode"]["r"]), "truncated": bool(truncated)}


def stacks(frames: np.ndarray, steps) -> torch.Tensor:
    """Network inputs at these steps, rebuilt from the frames as the replay does (equal to FrameStack's)."""
    return torch.from_numpy(np.stack([stack_frames(frames, int(t)) for t in steps]))


@torch.no_grad()
def initial(net: EfficientZeroNet, frames: np.ndarray, steps, device) -> dict:
    """The initial inference on every step's input: raw policy (the root's prior), value, flattened hidden state."""
    prior, value, latent = [], [], []
    for i in range(0, len(steps), CHUNK):
        out = net.initial_inference(stacks(frames, steps[i:i + CHUNK]).to(device))
        prior.append(torch.softmax(out.policy_logits.float(), -1).cpu())
        value.append(support_to_scalar(out.value_logits, net.config.support_size).cpu())
        latent.append(out.latent.float().flatten(1).cpu())
    return {"prior": torch.cat(prior).numpy(), "value": torch.cat(value).numpy(), "latent": torch.cat(latent).numpy()}


@torch.no_grad()
def imagine(net: EfficientZeroNet, frames: np.ndarray, starts: np.ndarray, actions: np.ndarray, device,
            train: bool = False) -> dict:
    """The model's unroll (`EfficientZeroNet.unroll`, the learner's) from each start along the K actions taken:
    predicted reward of steps k = 1..K and value of k = 0..K. The reward of step k is the value prefix after k minus
    the one after k - 1, except right after an LSTM restart (k - 1 a multiple of VALUE_PREFIX_HORIZON), where the
    prefix counts from 0 again: as `common.tree` turns prefixes into rewards and `targets.value_prefix_targets` builds
    their targets.

    train: a copy of the network in train mode, so BatchNorm normalises each batch by its own statistics, as in
    training, where eval mode (search) uses the running averages; batches of <= CHUNK starts of this episode."""
    if train:
        net = copy.deepcopy(net).train()  # the copy's running statistics move, the inspected network's do not
    S, K = net.config.support_size, actions.shape[1]
    restart = np.arange(K) % VALUE_PREFIX_HORIZON == 0  # steps k = 1, 6, 11, ... add to a prefix of 0
    rewards, values = [], []
    for part in np.array_split(np.arange(len(starts)), -(-len(starts) // CHUNK)):  # equal parts: never a batch of 1
        u = net.unroll(stacks(frames, starts[part]).to(device), torch.from_numpy(actions[part]).to(device))
        prefix = torch.stack([support_to_scalar(x, S) for x in u.value_prefix_logits], 1).cpu()
        before = torch.cat([torch.zeros(len(part), 1), prefix[:, :-1]], 1)
        before[:, restart] = 0.0
        rewards.append(prefix - before)
        values.append(torch.stack([support_to_scalar(x, S) for x in u.value_logits], 1).cpu())
    return {"reward": torch.cat(rewards).tolist(), "value": torch.cat(values).tolist()}


def discounted_returns(rewards: np.ndarray, ends: np.ndarray, gamma: float) -> np.ndarray:
    """G_t = r_t + gamma G_{t+1}, cut where the learner's episode ends (a lost life, the game's end, the cap): what
    the value learns to predict, on rewards clipped to their sign as the learner sees them. G_T = 0."""
    g = np.zeros(len(rewards) + 1)
    for t in reversed(range(len(rewards))):
        g[t] = rewards[t] + (0.0 if ends[t] else gamma * g[t + 1])
    return g


def by_depth(pred: dict, real_reward: np.ndarray, real_value: np.ndarray) -> dict:
    """The unroll summarised per depth k: mean predicted reward grouped by the real reward of that step (MinAtar: 0
    or 1), and the mean absolute error of the predicted value against the real return."""
    r, v = np.asarray(pred["reward"]), np.asarray(pred["value"])
    out = {"reward": {}, "value_mae": np.abs(v - real_value).mean(0).tolist()}
    for x in np.unique(real_reward):
        hit = real_reward == x
        out["reward"][f"{x:g}"] = {"n": hit.sum(0).tolist(), "mean_predicted": [
            float(r[hit[:, k], k].mean()) if hit[:, k].any() else None for k in range(r.shape[1])]}
    return out


def spread(prior: np.ndarray, latent: np.ndarray) -> dict:
    """How much a network's hidden state and raw policy vary over the episode's states (results/minatar README,
    'Why feature distillation hurts'): std over states of each latent unit, averaged over units; the same for the
    policy's probabilities; the share of states whose policy argmax is its most frequent one (1 = one action
    everywhere)."""
    ddof = 1 if len(prior) > 1 else 0
    unit_std = latent.std(0, ddof=ddof)
    return {"latent_spread": float(unit_std.mean()), "policy_spread": float(prior.std(0, ddof=ddof).mean()),
            "modal_action": float(np.bincount(prior.argmax(1)).max() / len(prior)),
            "unit_std": np.sort(unit_std)[::-1].tolist()}


def two(x: float) -> str:
    """Two decimals, without the '-0.00' of a tiny negative number."""
    return f"{x:.2f}".replace("-0.00", "0.00")


def evenly(items, n: int) -> list:
    """Up to n items spread evenly over the list, first and last included."""
    return [items[i] for i in sorted(set(np.linspace(0, len(items) - 1, min(n, len(items))).round().astype(int)))]


# ---------------------------------------------------------------------------------------------------------
# Pictures: every number drawn comes from `view` (what inspect.json holds); the frames are the observations
# ---------------------------------------------------------------------------------------------------------
COLORS = {"checkpoint": "tab:blue", "teacher": "tab:orange"}  # the two networks, in every picture
# MinAtar / toy planes on black, in colours that are not the networks' (Breakout: paddle white, ball yellow, ...)
PLANE_COLORS = ["#ffffff", "#ffd92f", "#a6d854", "#e7298a", "#66c2a5", "#8da0cb", "#e5c494", "#b3b3b3", "#fc8d62",
                "#a65628"]
REWARD_COLORS = {1: "tab:green", 0: "tab:gray", -1: "tab:red"}  # real rewards, clipped to their sign


def render(frame: np.ndarray, family: str) -> np.ndarray:
    """A frame as an RGB image: Atari's as it is; MinAtar / toy planes each in its colour on black."""
    from matplotlib.colors import to_rgb

    if family == "atari":
        return frame.transpose(1, 2, 0)
    img = np.zeros((*frame.shape[1:], 3))
    for c in range(frame.shape[0]):
        img[frame[c] > 0] = to_rgb(PLANE_COLORS[c])
    return img


def draw(view: dict, frames: np.ndarray, out_dir: Path) -> dict[str, str]:
    """Write the PNGs; -> {file name: caption for index.html}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    g, ep, steps = view["game"], view["episode"], view["per_step"]
    names, roles = g["action_names"], [r for r in ("checkpoint", "teacher") if view["networks"][r]]
    label = {r: view["networks"][r]["label"] for r in roles}
    played = view["plays"]
    T, A = ep["length"], len(names)
    t_axis = np.arange(T)
    returns = np.asarray(ep["returns"])
    reward_steps = np.flatnonzero(np.asarray(ep["rewards"]) != 0)
    captions = {}

    def save(fig, name, caption):
        fig.savefig(out_dir / name, dpi=110, bbox_inches="tight")
        plt.close(fig)
        captions[name] = caption

    # --- episode.png: chosen steps with their frame, the prior and the search's visits ---------------------------
    shown = view["frames_drawn"]
    frame_h = min(2.1 * frames.shape[2] / frames.shape[3], 3.5)  # inches: a column is ~2.3 wide
    fig, axes = plt.subplots(1 + len(roles), len(shown), figsize=(max(2.3 * len(shown), 7), frame_h + 1.2 + 2.2 *
                             len(roles)), squeeze=False, layout="constrained",
                             gridspec_kw={"height_ratios": [frame_h + 0.4] + [2.0] * len(roles)})
    for j, t in enumerate(shown):
        ax = axes[0, j]
        ax.imshow(render(frames[t], g["family"]), interpolation="nearest")  # the newest of the 4 frames it saw
        ax.set_xticks([])
        ax.set_yticks([])
        r = ep["raw_rewards"][t]
        ax.set_title(f"step {t}" + (f", its action earned {r:g}" if r else "") + f"\nreturn that followed: "
                     f"{two(returns[t])}",
                     fontsize=8)
        for i, role in enumerate(roles, start=1):
            s, ax = steps[role], axes[i, j]
            visits = np.asarray(s["visits"][t], float)
            x, a = np.arange(A), s["action"][t]
            ax.bar(x - 0.2, s["prior"][t], 0.4, color=COLORS[role], alpha=0.35)
            bars = ax.bar(x + 0.2, visits / visits.sum(), 0.4, color=COLORS[role])
            bars[a].set_edgecolor("black")
            bars[a].set_linewidth(1.5)
            ax.set_ylim(0, 1.05)
            ax.set_xticks(x, names, rotation=90 if A > 4 else 0, fontsize=7)
            ax.get_xticklabels()[a].set_fontweight("bold")
            ax.tick_params(axis="y", labelsize=7, labelleft=j == 0)
            ax.set_title(f"chose {names[a]}, root value {two(s['root_value'][t])}", fontsize=8)
            if j == 0:
                ax.set_ylabel(label[role] + ("\nplays" if role == played and len(roles) > 1 else ""), fontsize=8)
    handles = [Patch(color="0.6", alpha=0.35, label="raw policy (the root's prior)"),
               Patch(facecolor="0.3", edgecolor="black", label="search: share of the simulations (outlined and bold: "
                     "the action chosen)")]
    if view["channel_names"]:
        handles += [Patch(facecolor=PLANE_COLORS[c], edgecolor="black", label=n)
                    for c, n in enumerate(view["channel_names"])]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 6), fontsize=8, frameon=False)
    fig.suptitle(f"{g['env_id']}, seed {g['seed']}: {len(shown)} of the episode's {T} steps", fontsize=10)
    save(fig, "episode.png", "Some steps of the episode, evenly spaced: the frame the agent saw (the newest of the "
         "4 the network sees) with the discounted return that really followed, then per network the raw policy "
         "(light bars) and where its search spent the simulations (dark bars); the outlined, bold action is the one "
         "that network's search chose, and its root value is what the search expected.")

    # --- policy.png: the prior and the visits of every step, as heat maps ------------------------------------------
    fig, axes = plt.subplots(2 * len(roles), 1, figsize=(11, 1.0 + (0.35 * A + 0.6) * 2 * len(roles)), sharex=True,
                             squeeze=False)
    for i, role in enumerate(roles):
        s = steps[role]
        visits = np.asarray(s["visits"], float)
        for ax, data, what in ((axes[2 * i, 0], np.asarray(s["prior"]), "raw policy"),
                               (axes[2 * i + 1, 0], visits / visits.sum(1, keepdims=True), "search visits")):
            im = ax.imshow(data.T, aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest",
                           extent=(-0.5, T - 0.5, A - 0.5, -0.5))
            ax.scatter(t_axis, s["action"], s=4 if T > 200 else 10, color="red", marker="o", linewidths=0)
            ax.set_yticks(range(A), names, fontsize=7)
            ax.set_title(f"{label[role]}{' (plays)' * (role == played and len(roles) > 1)}: {what}", fontsize=9,
                         loc="left")
    axes[-1, 0].set_xlabel("step (red dots: the action each network's search chose)")
    fig.colorbar(im, ax=axes[:, 0], label="probability", fraction=0.02, pad=0.01)
    save(fig, "policy.png", "Every step of the episode: the raw policy and the search's visit distribution of each "
         "network (colour = probability), with the action its search chose as a red dot. A search that keeps "
         "one action everywhere, or visits that ignore the prior, show here at a glance.")

    # --- value.png: the value the agent expected against the return that followed ----------------------------------
    fig, ax = plt.subplots(figsize=(11, 3.6))
    ax.plot(t_axis, returns[:T], color="black", lw=1.6, label="discounted return that followed")
    for role in roles:
        s = steps[role]
        ax.plot(t_axis, s["root_value"], color=COLORS[role], lw=1, label=f"{label[role]}: search's root value")
        ax.plot(t_axis, s["value"], color=COLORS[role], lw=0.8, ls=":", label=f"{label[role]}: raw value (network)")
    if len(reward_steps):
        ax.plot(reward_steps, np.zeros(len(reward_steps)), "|", color="green", ms=12, mew=1.5, label="reward")
    for t in np.flatnonzero(ep["ends"][:-1]):
        ax.axvline(t + 0.5, color="gray", lw=0.6, ls="--")
    ax.set_xlabel("step")
    ax.set_ylabel("value")
    lives = " and cut where a life ended (dashed)" if any(ep["ends"][:-1]) else ""
    ax.set_title(f"Expected vs real: the return of rewards clipped to their sign, discounted by "
                 f"{view['search']['discount']:.4f} per step{lives}", fontsize=9)
    ax.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.15), frameon=False)
    save(fig, "value.png", "What the agent expected at each step against what came: the search's root value (solid), "
         "the network's raw value (dotted) and the discounted return that really followed (black), with the "
         "steps that gave a reward (green ticks). A good value function runs along the black line ahead of rewards.")

    # --- imagination.png / unrolls.png: predicted rewards and values along the actions taken, eval and train mode --
    im_ = view["imagination"]
    K, starts = im_["unroll_steps"], im_["starts"]
    modes = [m for m in ("eval", "train") if im_[m] is not None]
    style = {"eval": dict(ls="-", marker="o"), "train": dict(ls="--", marker="s", mfc="none")}
    mode_label = {"eval": "eval mode (what search uses)", "train": "train mode (batch statistics, as training)"}
    fig = plt.figure(figsize=(11, 6.6))
    gs = fig.add_gridspec(2, 2, height_ratios=[1, 1])
    if not starts:
        ax = fig.add_subplot(gs[:, :])
        ax.text(0.5, 0.5, f"no unroll: no step has {K} more steps in the same life", ha="center", va="center")
        ax.axis("off")
    else:
        ax = fig.add_subplot(gs[0, 0])
        k_axis = np.arange(1, K + 1)
        for x, d in im_["by_depth"]["eval"]["reward"].items():
            c = REWARD_COLORS.get(int(np.sign(float(x))))
            n = f"{min(d['n'])}" if min(d["n"]) == max(d["n"]) else f"{min(d['n'])}–{max(d['n'])} per k"
            ax.axhline(float(x), color=c, lw=0.6, ls=":")
            for m in modes:
                y = [np.nan if v is None else v for v in im_["by_depth"][m]["reward"][x]["mean_predicted"]]
                ax.plot(k_axis, y, color=c, **style[m], label=f"real reward {x} (n = {n}), {m} mode")
        ax.set_xticks(k_axis)
        ax.set_xlabel("steps ahead (k)")
        ax.set_ylabel("mean predicted reward")
        ax.set_title("Imagined reward k steps ahead, grouped by the real one", fontsize=9)
        ax.legend(fontsize=7)
        ax = fig.add_subplot(gs[0, 1])
        for m in modes:
            ax.plot(np.arange(K + 1), im_["by_depth"][m]["value_mae"], color="tab:purple", **style[m],
                    label=mode_label[m])
        ax.set_xticks(np.arange(K + 1))
        ax.set_xlabel("steps ahead (k; 0 = the real state)")
        ax.set_ylabel("mean |predicted value - real return|")
        ax.set_title("Error of the imagined value", fontsize=9)
        ax.legend(fontsize=7)
        ax = fig.add_subplot(gs[1, :])
        ax.vlines(t_axis, 0, ep["rewards"], color="0.55", lw=2.5, label="real reward (clipped)")
        st = np.asarray(starts)
        for m in modes:
            r = np.asarray(im_[m]["reward"])
            for k, c in ((1, "tab:blue"), (K, "tab:red")) if K > 1 else ((1, "tab:blue"),):
                ax.plot(st + k - 1, r[:, k - 1], color=c, lw=0.9, ms=3, **style[m],
                        label=f"predicted {k} step{'s' if k > 1 else ''} ahead, {m} mode")
        ax.set_xlabel("step (the reward the action of that step brought)")
        ax.set_ylabel("reward")
        ax.set_title(f"Along the episode: the reward of each step as the model imagined it 1 and {K} steps before",
                     fontsize=9)
        ax.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False)
    fig.suptitle(f"{label['checkpoint']}: imagination vs reality, {K}-step unrolls along the actions taken from "
                 f"{len(starts)} steps", fontsize=10)
    fig.tight_layout()
    save(fig, "imagination.png", "The model's imagination against reality. From each start the dynamics network is "
         "unrolled along the actions really taken; the predicted reward of each step is the difference of "
         "consecutive value prefixes. Top left: predicted rewards k steps ahead, grouped by what the real reward "
         "was (a good model sits on the dotted line of its group). Eval mode is what the search sees; train mode "
         "normalises by batch statistics as training did. A gap between the two is the batch-norm trap: the search "
         "then plans with rewards training never taught.")

    if starts:
        ex = im_["examples"]
        fig, axes = plt.subplots(2, len(ex), figsize=(2.4 * len(ex) + 0.8, 5), squeeze=False, sharey="row")
        for j, i in enumerate(ex):
            acts = [names[a] for a in im_["actions"][i]]
            ax = axes[0, j]
            ax.bar(np.arange(1, K + 1), im_["real_reward"][i], color="0.75", label="real reward")
            for m in modes:
                ax.plot(np.arange(1, K + 1), im_[m]["reward"][i], color="tab:blue", **style[m],
                        label=f"predicted, {mode_label[m]}")
            ax.set_title(f"from step {starts[i]}", fontsize=9)
            ax.set_xticks(np.arange(1, K + 1), [f"{k}\n{a}" for k, a in zip(range(1, K + 1), acts)], fontsize=7)
            ax = axes[1, j]
            ax.plot(np.arange(K + 1), im_["real_value"][i], color="black", marker="x", label="real return")
            for m in modes:
                ax.plot(np.arange(K + 1), im_[m]["value"][i], color="tab:purple", **style[m],
                        label=f"predicted, {mode_label[m]}")
            ax.set_xticks(np.arange(K + 1), [str(k) for k in range(K + 1)], fontsize=7)
            ax.set_xlabel("steps ahead", fontsize=8)
        axes[0, 0].set_ylabel("reward")
        axes[1, 0].set_ylabel("value")
        for row in axes:
            handles, labels = row[0].get_legend_handles_labels()
            row[-1].legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
        fig.suptitle(f"{label['checkpoint']}: single unrolls (under each step: the action taken)", fontsize=10)
        fig.tight_layout()
        save(fig, "unrolls.png", "A few of the unrolls one by one (those that meet a reward first): the rewards and "
             "values the model imagined along the actions taken, next to the real rewards and returns.")

    # --- agreement.png: the two networks on the same states -----------------------------------------------------
    agr = view["agreement"]
    if agr:
        w = max(5, T // 25)  # a running mean over ~4% of the episode
        kernel = np.ones(w) / w
        fig, axes = plt.subplots(2, 1, figsize=(11, 5), sharex=True)
        ax = axes[0]
        for key, c, what in (("search_action", "tab:green", "the two searches choose the same action"),
                             ("policy_argmax", "tab:olive", "the raw policies' argmax is the same")):
            a = np.asarray(agr[key], float)
            ax.plot(t_axis[w - 1:] if T >= w else [], np.convolve(a, kernel, "valid"), color=c,
                    label=f"{what}: on {np.mean(a):.0%} of the steps (line: mean over the last {w} steps)")
        miss = np.flatnonzero(~np.asarray(agr["search_action"]))
        ax.plot(miss, np.full(len(miss), -0.05), "|", color="red", ms=8, label="a step where the searches differ")
        ax.set_ylim(-0.12, 1.05)
        ax.set_ylabel("agreement")
        ax.legend(fontsize=7, loc="lower left", bbox_to_anchor=(0, 1.0), ncol=2, frameon=False)
        fig.suptitle(f"{label['checkpoint']} and {label['teacher']} on the states {label[played]} played",
                     fontsize=10)
        ax = axes[1]
        ax.plot(t_axis, agr["js_divergence"], color="tab:brown", lw=0.9,
                label=f"Jensen-Shannon divergence of the raw policies (nats), mean {np.mean(agr['js_divergence']):.3f}")
        ax.plot(t_axis, agr["visits_tv"], color="tab:cyan", lw=0.9,
                label=f"total variation of the visit distributions, mean {np.mean(agr['visits_tv']):.3f}")
        ax.set_ylim(bottom=0)
        ax.set_xlabel("step")
        ax.set_ylabel("distance")
        ax.legend(fontsize=7, loc="lower left", bbox_to_anchor=(0, 1.0), ncol=2, frameon=False)
        fig.tight_layout()
        save(fig, "agreement.png", "How closely the two networks agree along the episode: how often their searches "
             "choose the same action and their raw policies the same argmax (running means; red ticks: steps "
             "where the searches differ), and how far apart their policies and visit distributions are.")

    # --- hidden_states.png: how much each hidden state varies over the episode's states ---------------------------
    hs = view["hidden_states"]
    pair_mse = hs.get("latent_mse_per_step") is not None
    fig, axes = plt.subplots(1, 2 if pair_mse else 1, figsize=(11 if pair_mse else 6.5, 3.6), squeeze=False)
    ax = axes[0, 0]
    for role in roles:
        h = hs[role]
        ax.plot(h["unit_std"], color=COLORS[role], label=f"{label[role]}: mean spread {h['latent_spread']:.3f}; "
                f"its raw policy: spread {h['policy_spread']:.3f}, its most common argmax on "
                f"{h['modal_action']:.0%} of states")
    ax.set_xlabel("hidden-state unit (sorted by its spread)")
    ax.set_ylabel("std over the episode's states")
    ax.set_title("Spread of each hidden-state unit over the states", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0, -0.18), frameon=False)
    if pair_mse:
        ax = axes[0, 1]
        ax.plot(t_axis, hs["latent_mse_per_step"], color="tab:gray", lw=0.9)
        ax.set_xlabel("step")
        ax.set_ylabel("mean squared difference")
        ax.set_title(f"Distance between the two networks' hidden states, mean {hs['latent_mse']:.4f}", fontsize=9)
        ax.set_ylim(bottom=0)
    fig.tight_layout()
    save(fig, "hidden_states.png", "How much the hidden state (the representation network's output) varies from state "
         "to state: the standard deviation of each unit over the episode's states, largest first, and how far the "
         "two networks' hidden states are apart (when they have the same size). A feature-distilled student that "
         "matched its teacher by making its hidden state nearly constant shows a flat, low curve; policy spread "
         "and 'most common argmax on N% of states' say whether its raw policy still depends on the state.")
    return captions


def write_html(view: dict, captions: dict[str, str], path: Path) -> None:
    """index.html: the headline numbers and every picture with its caption."""
    ep, nets = view["episode"], view["networks"]
    e = html.escape
    rows = [("game", f"{view['game']['env_id']}, environment seed {view['game']['seed']}"),
            *[(f"--{r}", f"{n['label']}: {n['checkpoint']} ({n['counters'].get('updates', '?')} updates)")
              for r, n in nets.items() if n],
            ("plays", nets[view["plays"]]["label"]),
            ("score", f"{ep['score']:g} in {ep['length']} steps" + (" (cut at --max-steps)" * ep["truncated"])),
            ("search", f"{view['search']['num_simulations']} simulations, no root noise, action = argmax of visits")]
    if view["agreement"]:
        m = view["agreement"]["means"]
        rows.append(("agreement", f"searches choose the same action on {m['search_action']:.0%} of steps, raw "
                     f"policies' argmax on {m['policy_argmax']:.0%}; JS divergence {m['js_divergence']:.3f}"))
    hs = view["hidden_states"]
    spreads = [f"{nets[r]['label']}: {hs[r]['latent_spread']:.3f}" for r in ("checkpoint", "teacher") if nets[r]]
    if hs.get("latent_mse") is not None:
        spreads.append(f"mean squared distance between the two: {hs['latent_mse']:.4f}")
    rows.append(("hidden-state spread (std over states, mean over units)", "; ".join(spreads)))
    im_ = view["imagination"]
    for mode, how in (("eval", "eval mode, as search sees it"), ("train", "train mode, as training saw it")):
        d = im_["by_depth"].get(mode)
        if d:
            parts = [f"where the real reward was {x}: " + ", ".join(
                "–" if v is None else two(v) for v in g["mean_predicted"])
                for x, g in reversed(d["reward"].items())]
            rows.append((f"mean predicted reward 1..{im_['unroll_steps']} steps ahead ({how})", "; ".join(parts)))
    body = "\n".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in rows)
    figs = "\n".join(f'<figure><img src="{n}" alt="{n}"><figcaption>{e(c)}</figcaption></figure>'
                     for n, c in captions.items())
    notes = "".join(f"<li>{e(n)}</li>" for n in view["notes"])
    path.write_text(f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{e(nets['checkpoint']['label'])}: {e(view['game']['env_id'])}</title>
<style>body{{font-family:sans-serif;max-width:1300px;margin:1em auto;padding:0 1em}} img{{max-width:100%}}
table{{border-collapse:collapse}} th,td{{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}}
figure{{margin:2em 0}} figcaption{{max-width:900px;color:#333}}</style></head><body>
<h1>What {e(nets['checkpoint']['label'])} thinks: one episode of {e(view['game']['env_id'])}</h1>
<table>{body}</table>
{f"<ul>{notes}</ul>" if notes else ""}
{figs}
<p>Every number drawn is in <a href="inspect.json">inspect.json</a>. Made by <code>{e(view['command'])}</code> on
{e(view['date'])}.</p>
</body></html>
""")


# =============================================================================================================
if __name__ == "__main__":
    args = parse_args(Args, __doc__)  # tyro; a usage error is one line, exit code 2
    check_args(args)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    out_dir = Path(args.out_dir) / args.name
    if out_dir.exists() and not out_dir.is_dir():
        raise SystemExit(f"{out_dir} exists and is not a folder")

    # --- networks and game: every refusal before anything is played or written ------------------------------
    ckpt = load_net(args.checkpoint, "checkpoint", device)
    env_id = args.env_id or ckpt.env_id
    if canonical_game(env_id)[1] != ckpt.game:
        raise SystemExit(f"--checkpoint {ckpt.path} was trained on {ckpt.game}, not on {canonical_game(env_id)[1]}")
    teacher = load_net(args.teacher, "teacher", device) if args.teacher else None
    if teacher is not None and teacher.game != ckpt.game:
        raise SystemExit(f"--teacher {teacher.path} was trained on {teacher.game}, --checkpoint {ckpt.path} on "
                         f"{ckpt.game}: the two must play the same game")
    if teacher is not None and teacher.label == ckpt.label:
        teacher.label += " (as --teacher)"
    env = make_env(env_id, mode="eval", seed=args.seed, max_episode_steps=args.max_steps)
    for n in (ckpt, teacher):
        if n is not None:
            check_fit(n, env)
    player, other = (teacher, ckpt) if args.teacher_plays else (ckpt, teacher)
    sims = args.num_simulations or ckpt.info["train_num_simulations"] or 50
    mcts = MCTSConfig(num_simulations=sims)
    names = action_names(env)

    # --- the episode --------------------------------------------------------------------------------------------
    t0 = time.time()
    with tqdm(total=args.max_steps, desc=f"{player.label} on {env_id}, seed {args.seed}", unit="step",
              disable=not args.progress) as bar:
        ep = play(player, other, env, mcts, args.seed, bar)
    frames, T, K = ep["frames"], len(ep["ends"]), args.unroll_steps
    env.close()
    play_seconds = time.time() - t0
    steps = np.arange(T)
    rewards, ends = np.sign(ep["raw_rewards"]), np.asarray(ep["ends"])  # the learner sees rewards clipped to sign
    returns = discounted_returns(rewards, ends, mcts.discount)
    per_step, latents = {}, {}
    for n in (ckpt, teacher):
        if n is not None:
            out = initial(n.net, frames, steps, device)
            latents[n.role] = out.pop("latent")
            per_step[n.role] = {"prior": out["prior"].tolist(), "value": out["value"].tolist(),
                                **ep["searched"][n.role]}

    # --- imagination: K-step unrolls along the actions taken, from starts whose K steps stay in one life --------
    actions = np.asarray(ep["searched"][player.role]["action"])
    starts = np.array([t for t in range(0, T - K + 1, args.unroll_every) if not ends[t:t + K - 1].any()], int)
    unroll_actions, real_reward = actions[starts[:, None] + np.arange(K)], rewards[starts[:, None] + np.arange(K)]
    # the real value at depth k: the return from t + k, or 0 once the learner's episode ended at step t + k - 1
    real_value = np.stack([np.where(k == 0 or ~ends[starts + k - 1], returns[starts + k], 0.0)
                           for k in range(K + 1)], 1)
    imagination = {"unroll_steps": K, "unroll_every": args.unroll_every, "value_prefix_horizon": VALUE_PREFIX_HORIZON,
                   "starts": starts.tolist(), "actions": unroll_actions.tolist(), "real_reward": real_reward.tolist(),
                   "real_value": real_value.tolist(), "eval": None, "train": None, "by_depth": {}, "examples": []}
    notes = []
    if len(starts):
        imagination["eval"] = imagine(ckpt.net, frames, starts, unroll_actions, device)
        if len(starts) > 1:  # batch statistics need two states at least
            imagination["train"] = imagine(ckpt.net, frames, starts, unroll_actions, device, train=True)
        else:
            notes.append("one unroll only: train mode (batch statistics) needs two; use a smaller --unroll-every")
        imagination["by_depth"] = {m: by_depth(imagination[m], real_reward, real_value)
                                   for m in ("eval", "train") if imagination[m] is not None}
        hit = real_reward.any(1)  # drawn one by one: unrolls that meet a reward first, then others
        chosen = evenly(np.flatnonzero(hit).tolist(), EXAMPLES)
        imagination["examples"] = sorted(chosen + evenly(np.flatnonzero(~hit).tolist(), EXAMPLES - len(chosen)))

    # --- the two networks side by side, and the spread of the hidden states --------------------------------------
    hidden = {n.role: spread(np.asarray(per_step[n.role]["prior"]), latents[n.role])
              for n in (ckpt, teacher) if n is not None}
    agreement = None
    if teacher is not None:
        p, q = np.asarray(per_step["checkpoint"]["prior"]), np.asarray(per_step["teacher"]["prior"])
        vp, vq = (np.asarray(per_step[r]["visits"], float) for r in ("checkpoint", "teacher"))
        vp, vq = vp / vp.sum(1, keepdims=True), vq / vq.sum(1, keepdims=True)
        agreement = {
            "search_action": (np.asarray(per_step["checkpoint"]["action"]) == per_step["teacher"]["action"]).tolist(),
            "policy_argmax": (p.argmax(1) == q.argmax(1)).tolist(),
            "js_divergence": js_divergence(torch.from_numpy(p), torch.from_numpy(q)).tolist(),
            "visits_tv": (0.5 * np.abs(vp - vq).sum(1)).tolist(),
            "value_difference": (np.asarray(per_step["checkpoint"]["value"]) - per_step["teacher"]["value"]).tolist()}
        agreement["means"] = {k: float(np.mean(v)) for k, v in agreement.items()}
        same = latents["checkpoint"].shape == latents["teacher"].shape
        per_state = ((latents["checkpoint"] - latents["teacher"]) ** 2).mean(1) if same else None
        hidden["latent_mse"] = float(per_state.mean()) if same else None
        hidden["latent_mse_per_step"] = per_state.tolist() if same else None
        if not same:
            notes.append("the two hidden states differ in size, so their distance is not drawn")
    elif ckpt.kind == "student" and ckpt.info["teachers"]:
        notes.append(f"this student was distilled from {', '.join(ckpt.info['teachers'])}: add --teacher to see them "
                     "side by side")
    if ep["truncated"]:
        notes.append(f"the episode was cut at --max-steps {args.max_steps}: returns near the end miss what came after")

    view = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        **git_state(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "args": asdict(args),
        "seconds": {"play": play_seconds},
        "game": {"env_id": env_id, "family": env.family, "seed": args.seed, "max_steps": args.max_steps,
                 "action_names": names},
        "channel_names": channel_names(env),
        "search": {"num_simulations": sims, "discount": mcts.discount, "root_noise": False,
                   "action": "argmax of visits, ties broken by a generator seeded with --seed"},
        "networks": {"checkpoint": {"label": ckpt.label, **ckpt.info},
                     "teacher": {"label": teacher.label, **teacher.info} if teacher else None},
        "plays": player.role,
        "episode": {"score": ep["score"], "length": T, "truncated": ep["truncated"], "actions": actions.tolist(),
                    "raw_rewards": ep["raw_rewards"], "rewards": rewards.tolist(), "ends": ends.tolist(),
                    "returns": returns.tolist()},
        "per_step": per_step,
        "imagination": imagination,
        "agreement": agreement,
        "hidden_states": hidden,
        "frames_drawn": evenly(list(range(T)), args.frames),
        "notes": notes,
    }

    # --- outputs: a folder this call made goes again if a write fails ------------------------------------------
    try:
        json.dumps(view, allow_nan=False)
    except ValueError:
        raise SystemExit("the networks give NaN or infinite values on this episode (a diverged checkpoint?): "
                         "nothing to draw") from None
    made = not out_dir.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        captions = draw(view, frames, out_dir)
        for name in ("unrolls.png", "agreement.png"):  # drawn only sometimes: not left over from an earlier view
            if name not in captions:
                (out_dir / name).unlink(missing_ok=True)
        view["figures"] = captions
        (out_dir / "inspect.json").write_text(json.dumps(view, indent=1, allow_nan=False))
        write_html(view, captions, out_dir / "index.html")
    except OSError as e:
        if made:
            shutil.rmtree(out_dir, ignore_errors=True)
        raise SystemExit(f"cannot write the view to {out_dir}: {e.strerror or e}") from None
    print(f"{player.label} scored {ep['score']:g} in {T} steps ({play_seconds:.0f} s) -> {out_dir / 'index.html'}, "
          f"{len(captions)} pictures, inspect.json")
