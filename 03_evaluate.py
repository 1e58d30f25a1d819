"""Stage 3 — evaluate teachers and students: scores by the Atari 100k protocol against the published baselines, what
a model costs to deploy, ONNX export, teacher-student agreement and robustness.

    load every checkpoint (network rebuilt from its config alone) -> play the evaluation protocol (parallel
    episodes, batched search) -> group seeds of one experiment -> HNS and mean / median / IQM, the seed paper's
    Table 1 and the published EfficientZero side by side, student-over-teacher ratios the honest ways
    -> deployment cost (parameters, multiply-adds, latency per decision, checkpoint size) [-> ONNX export + check]
    -> agreement of each student with its teacher on the teacher's evaluation states
    -> robustness (sticky actions, observation noise) -> results/<name>/summary.json, report.md, *.png

    python 03_evaluate.py --checkpoints runs/<teacher-run>/teacher.pt runs/<student-run>/student.pt --name breakout
    python 03_evaluate.py --merge results/breakout/summary.json results/pong/summary.json --name both  # no replay
"""

from __future__ import annotations

import common.interrupts  # noqa: F401  (first: a Ctrl-C while torch loads ends in one line)
import json
import os
import platform
import sys
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from common.args import at_least, not_finite, parse_args, usage_error
from common.distill import WEIGHT_FLAGS, heldout_agreement
from common.envs import load_reference_scores, make_env
from common.networks import EfficientZeroNet, NetConfig
from common.profile import profile_models
from common.report import read_curves, write_plots, write_report
from common.runs import atomic_write_text, git_state, load_checkpoint, pick_device
from common.scores import (canonical_game, distillation_gains, hns_aggregate, load_paper_table1, paper_claim,
                           ratio_analysis)
from common.selfplay import eval_summary, evaluate, random_play
from common.tree import MCTSConfig


@dataclass
class Args:
    checkpoints: list[str] = field(default_factory=list)
    """teacher.pt / student.pt files (or run directories holding one) written by 01 / 02; any number, any games"""
    merge: list[str] = field(default_factory=list)
    """instead of --checkpoints: summary.json files of earlier calls (same protocol), merged into one report
    without playing again; e.g. one call per teacher and its students, on different days or machines"""
    name: str = "eval"
    """the report goes to <out-dir>/<name>/"""
    out_dir: str = "results"
    """parent directory of the report"""
    episodes: int = 32
    """evaluation episodes per checkpoint (environment seeds first-seed .. first-seed + episodes - 1)"""
    first_seed: int = 0
    """environment seed of the first episode (0: the protocol's seeds 0..31)"""
    max_steps: int = 27_000
    """agent-step cap per episode (27,000 = 108,000 frames, the protocol's cap)"""
    num_simulations: int = 50
    """simulations per decision (no root noise, action = argmax of visits)"""
    search_chunk_size: int | None = None
    """at most this many roots per network call (bounds device memory)"""
    seed: int = 0
    """seed of the tie-breaking generator"""
    device: str = "auto"
    """`auto` (CUDA if present), `cpu`, `cuda`, `cuda:1`, ... for the evaluation episodes"""
    threads: int = 0
    """torch CPU threads (0 = torch's default)"""
    amp: bool = True
    """float16 autocast of the network on CUDA (ignored on CPU)"""
    cost: bool = True
    """measure the deployment cost of each distinct architecture"""
    latency_repeats: int = 30
    """timed decisions per model for the latency medians and quartiles (at least 2; after 5 warm-up decisions)"""
    export_onnx: bool = False
    """export the acting networks to ONNX, check onnxruntime against torch and time it (part of the cost
    measurement: skipped with --no-cost)"""
    agreement: bool = True
    """student-teacher agreement on states of the teacher's evaluation episodes (when both are given)"""
    agreement_states: int = 1024
    """held-out states drawn uniformly from the teacher's evaluation episodes"""
    robustness: bool = True
    """re-evaluate with sticky actions and with observation noise"""
    sticky_prob: float = 0.25
    """repeat-previous-action probability of the sticky-action evaluation"""
    obs_noise: float = 0.05
    """std of the Gaussian noise added to the network's input (on the [0, 1] scale) in the noise evaluation"""
    robustness_episodes: int | None = None
    """episodes of each robustness evaluation (default: --episodes)"""
    curves: bool = True
    """plot the training curves from the runs' TensorBoard logs when present"""
    progress: bool = True
    """tqdm bars"""


@dataclass
class Model:
    """One checkpoint: its network, where it came from and the experiment it belongs to."""

    label: str  # <kind>/<exp_name>/seed<seed>
    group: str  # <kind>/<exp_name>: the seeds of one experiment are averaged under this name
    kind: str
    path: Path
    env_id: str
    game: str
    family: str
    seed: int
    net: EfficientZeroNet
    teachers: list[str]
    ckpt_info: dict


def resolve_checkpoint(path: str) -> Path:
    p = Path(path)
    if p.is_dir():
        found = [p / f for f in ("student.pt", "teacher.pt") if (p / f).is_file()]
        if not found:
            raise SystemExit(f"{p} is a directory without a teacher.pt or student.pt")
        return found[0]
    return p


def load_model(path: str, device: torch.device) -> Model:
    """Rebuild the network from the checkpoint alone; check it fits the game it was trained on."""
    p = resolve_checkpoint(path)
    ckpt = load_checkpoint(p, None)
    kind = ckpt["kind"]
    run_args = ckpt.get("args", {})
    env_id = run_args.get("env_id")
    if not env_id or "config" not in ckpt or "model" not in ckpt:
        raise SystemExit(f"{p} has no env_id, network config or weights: not a checkpoint of 01/02")
    family, game = canonical_game(env_id)  # "Breakout" (Atari) vs "MinAtar/Breakout-v1": never mixed up
    cfg = NetConfig.from_dict(ckpt["config"])
    probe = make_env(env_id, mode="eval", seed=0)
    if (tuple(cfg.obs_shape), cfg.num_actions) != (probe.obs_shape, probe.num_actions):
        raise SystemExit(f"{p}: network input {tuple(cfg.obs_shape)} / {cfg.num_actions} actions do not fit "
                         f"{env_id} ({probe.obs_shape} / {probe.num_actions}): incompatible checkpoint")
    probe.close()
    net = EfficientZeroNet(cfg)
    try:
        net.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise SystemExit(f"{p}: weights do not match the stored network config ({e})") from None
    exp, seed = run_args.get("exp_name", kind), int(run_args.get("seed", 0))
    # a student's distillation loss weights (all 0: the RL-only baseline of `distillation_gains`); None if unknown
    known = kind == "student" and all(f in run_args for f in WEIGHT_FLAGS.values())
    distill = {k: float(run_args[f]) for k, f in WEIGHT_FLAGS.items()} if known else None
    return Model(label=f"{kind}/{exp}/seed{seed}", group=f"{kind}/{exp}", kind=kind, path=p, env_id=env_id,
                 game=game, family=family, seed=seed, net=net.to(device).eval(),
                 teachers=[str(Path(t)) for t in ckpt.get("teachers", [])],
                 ckpt_info={"counters": ckpt.get("counters", {}), "exp_name": exp, "distill_weights": distill,
                            "file_mb": p.stat().st_size / 2**20})


def play(model: Model, args: Args, mcts: MCTSConfig, episodes: int, desc: str, use_amp: bool, **kw) -> dict:
    with tqdm(total=episodes, desc=desc, unit="episode", disable=not args.progress, leave=False) as bar:
        return evaluate(model.net, model.env_id, episodes, mcts, first_seed=args.first_seed, max_steps=args.max_steps,
                        rng=np.random.default_rng(args.seed), progress=bar, chunk_size=args.search_chunk_size,
                        autocast=use_amp, **kw)


def environment_info(device: torch.device) -> dict:
    import gymnasium
    import onnxruntime

    return {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        **git_state(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
                     "gymnasium": gymnasium.__version__, "onnxruntime": onnxruntime.__version__},
        "hardware": {"cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
                     "torch_threads": torch.get_num_threads(), "device": str(device),
                     "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None},
    }


def reference_scores(games, measured_random: dict[str, dict]) -> dict[str, dict[str, float]]:
    """Per Atari game: random, human, published EfficientZero and the seed paper's Table 1 columns (when listed).
    Per other game: the random play measured here (`measured_random`)."""
    table = load_reference_scores()
    table1, methods = load_paper_table1()
    out = {}
    for game in games:
        if game in table:
            ref = table[game]
            out[game] = {"random": ref.random, "human": ref.human, "EfficientZero (published)":
                         ref.efficientzero_published, **{m: table1.get(game, {}).get(m) for m in methods}}
        elif game in measured_random:
            out[game] = {"random (measured)": measured_random[game]["mean"]}
    return out


def measure_random_play(models: list[Model], args: Args) -> dict[str, dict]:
    """Per game without a published random score: uniformly random play under the protocol (seeds, cap)."""
    table = load_reference_scores()
    out = {}
    for m in models:
        if m.game not in table and m.game not in out:
            r = random_play(m.env_id, args.episodes, first_seed=args.first_seed, max_steps=args.max_steps,
                            seed=args.seed)
            out[m.game] = {"env_id": m.env_id, **eval_summary(r, m.game, m.family)}
            tqdm.write(f"random play {m.game}: {out[m.game]['mean']:.2f} +- {out[m.game]['std']:.2f}")
    return out


def group_scores(rows: list[dict]) -> dict[str, dict[str, dict]]:
    """game -> group -> mean over seeds of the per-checkpoint means, the spread across seeds, the seeds."""
    out: dict[str, dict[str, dict]] = defaultdict(dict)
    by = defaultdict(list)
    for r in rows:
        by[(r["game"], r["group"])].append(r)
    for (game, group), rs in by.items():
        means = [r["scores"]["mean"] for r in rs]
        # the sample std (ddof 1): with 2 or 3 seeds the population std would understate the spread
        out[game][group] = {"mean": float(np.mean(means)),
                            "seed_std": float(np.std(means, ddof=1)) if len(rs) > 1 else None,
                            "episode_std": float(np.mean([r["scores"]["std"] for r in rs])),
                            "seeds": [r["seed"] for r in rs], "per_seed": means, "kind": rs[0]["kind"]}
    return dict(out)


def student_teacher_pairs(rows: list[dict], games: dict) -> list[dict]:
    """Each student group against the group of the teachers it was distilled from (when they were evaluated)."""
    by_path = {Path(r["checkpoint"]).resolve(): r for r in rows}
    pairs = []
    for s_group in sorted({r["group"] for r in rows if r["kind"] == "student"}):
        teacher_groups = {by_path[Path(t).resolve()]["group"] for r in rows if r["group"] == s_group
                          for t in r["teachers"] if Path(t).resolve() in by_path}
        for t_group in sorted(teacher_groups):
            common = [g for g, row in games.items() if s_group in row and t_group in row]
            ratio = ratio_analysis({g: games[g][s_group]["mean"] for g in common},
                                   {g: games[g][t_group]["mean"] for g in common})
            pairs.append({"student": s_group, "teacher": t_group, "games": common, **ratio})
    return pairs


def assemble(rows: list[dict], agreements: list[dict], measured_random: dict, notes: list[str]) -> dict:
    """Everything of the summary that follows from the per-checkpoint rows: groups of seeds, HNS, Table 1,
    student over teacher, distillation against RL only. Shared by a measuring call and --merge."""
    games = group_scores(rows)
    groups = sorted({r["group"] for r in rows})
    aggregate = {g: hns_aggregate({game: row[g]["mean"] for game, row in games.items() if g in row})
                 for g in groups}
    return {
        "models": rows,
        "games": games,
        "references": reference_scores(games, measured_random),
        "random_play": measured_random,
        "aggregate_hns": aggregate,
        "student_vs_teacher": student_teacher_pairs(rows, games),
        "distillation_vs_rl": distillation_gains(rows),
        "agreement": agreements,
        "paper_claim": paper_claim(),
        "measurement_notes": notes,
        "notes": notes + [f"{g}: {', '.join(a['skipped'])} not in the Atari 100k reference table, so no HNS"
                          for g, a in aggregate.items() if a["skipped"]],
    }


def merge_summaries(paths: list[str]) -> tuple[dict, list[dict], list[dict], dict, list[str], list[dict]]:
    """Read earlier summaries; check they share one protocol; keep labels unique (a label two summaries share
    gets its run directory appended, as within one call). -> protocol, rows, agreements, random play, notes,
    provenance of each summary."""
    loaded = []
    for p in paths:
        try:
            loaded.append((p, json.loads(Path(p).read_text())))
        except (OSError, ValueError) as e:
            raise SystemExit(f"--merge {p}: not a readable summary.json ({e})") from None
    protocol = loaded[0][1]["protocol"]
    for p, s in loaded:
        if s["protocol"] != protocol:
            raise SystemExit(f"--merge: {p} was evaluated under another protocol ({s['protocol']}) than "
                             f"{loaded[0][0]} ({protocol}); scores under different protocols do not average")
    counts = defaultdict(int)
    for _, s in loaded:
        for r in s["models"]:
            counts[r["label"]] += 1
    rows, agreements, measured_random, notes, sources = [], [], {}, [], []
    for p, s in loaded:
        rename = {}
        for r in s["models"]:
            new = r["label"] if counts[r["label"]] == 1 else f"{r['label']}/{Path(r['checkpoint']).parent.name}"
            rename[r["label"]] = new
            rows.append({**r, "label": new})
        agreements += [{**a, "student": rename[a["student"]], "teacher": rename[a["teacher"]]}
                       for a in s["agreement"]]
        for game, rand in s.get("random_play", {}).items():
            measured_random.setdefault(game, rand)
        notes += s.get("measurement_notes", [])
        sources.append({"summary": str(p), **{k: s.get(k) for k in ("command", "git_commit", "git_dirty", "date",
                                                                      "versions", "hardware")}})
    labels = [r["label"] for r in rows]
    if len(set(labels)) < len(labels):
        raise SystemExit("--merge: a checkpoint appears in more than one summary "
                         f"({sorted({x for x in labels if labels.count(x) > 1})})")
    return protocol, rows, agreements, measured_random, notes, sources


def write_outputs(summary: dict, out_dir: Path) -> list[str]:
    """summary.json, the plots and report.md; -> the plot file names."""
    atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=2, default=float))
    plots = write_plots(summary, out_dir)
    write_report(summary, out_dir, plots)
    return plots


def make_out_dir(out_dir: Path) -> None:
    """The report's folder, or one line saying why it cannot be made (read-only, no permission, disk full)."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SystemExit(f"cannot create the report folder {out_dir}: {e.strerror or e}") from None


def check_args(args: Args) -> None:
    """Impossible flag values fail before anything is played or written, all listed at once (exit code 2)."""
    problems = not_finite(args)
    if bool(args.checkpoints) == bool(args.merge):
        problems.append("--checkpoints or --merge: give checkpoints (--checkpoints runs/<run>/teacher.pt [...]) or "
                        "earlier summaries (--merge results/<name>/summary.json [...]), not both")
    if not args.name or "/" in args.name:
        problems.append(f"--name {args.name!r}: a non-empty folder name without '/'")
    problems += at_least(args, 1, "episodes", "max_steps", "num_simulations", "agreement_states")
    problems += at_least(args, 2, "latency_repeats")  # the latency quartiles need two timings
    problems += at_least(args, 1, "search_chunk_size", "robustness_episodes", optional=True)
    problems += at_least(args, 0, "first_seed", "seed", "threads", "obs_noise")
    if not 0 <= args.sticky_prob <= 1:
        problems.append(f"--sticky-prob must be in [0, 1] (got {args.sticky_prob})")
    if problems:
        usage_error(problems)


def write_merged_report(args: Args) -> None:
    """--merge: the report of several earlier calls, from their summaries alone (nothing is played)."""
    out_dir = Path(args.out_dir) / args.name
    protocol, rows, agreements, measured_random, notes, sources = merge_summaries(args.merge)
    make_out_dir(out_dir)
    summary = {**environment_info(torch.device("cpu")), "args": asdict(args), "protocol": protocol,
               "merged_from": sources, **assemble(rows, agreements, measured_random, notes)}
    plots = write_outputs(summary, out_dir)
    print(f"merged {len(rows)} checkpoint(s) of {len(sources)} summaries -> {out_dir / 'summary.json'}, "
          f"{out_dir / 'report.md'} and {len(plots)} plot(s)")


def load_models(paths: list[str], device: torch.device) -> list[Model]:
    """Every checkpoint, checked before any work, with a unique label each."""
    models = [load_model(p, device) for p in paths]
    labels = [m.label for m in models]
    for m in models:  # two runs of one experiment and seed: tell them apart by their run directory
        if labels.count(m.label) > 1:
            m.label = f"{m.label}/{m.path.parent.name}"
    return models


def score_models(models: list[Model], args: Args, mcts: MCTSConfig,
                 use_amp: bool) -> tuple[dict[str, dict], dict[str, np.ndarray]]:
    """Each checkpoint's scores under the protocol; -> scores by label, the teachers' visited states by label."""
    clean: dict[str, dict] = {}
    states: dict[str, np.ndarray] = {}
    for m in tqdm(models, desc="checkpoints", unit="ckpt", disable=not args.progress):
        t0 = time.time()
        # the teachers' states are kept for the agreement of their students
        keep = args.agreement_states if (args.agreement and m.kind == "teacher") else 0
        res = play(m, args, mcts, args.episodes, m.label, use_amp, record_states=keep)
        if keep:
            states[m.label] = res.pop("states")
        clean[m.label] = {**eval_summary(res, m.game, m.family), "seconds": time.time() - t0}
        tqdm.write(f"{m.label:40s} {m.game:14s} {clean[m.label]['mean']:10.2f} +- {clean[m.label]['std']:.2f}")
    return clean, states


def measure_robustness(models: list[Model], args: Args, mcts: MCTSConfig, use_amp: bool,
                       clean: dict[str, dict]) -> dict[str, dict]:
    """Each checkpoint's score with sticky actions and with observation noise, and its drop from the clean score."""
    robust: dict[str, dict] = {}
    n = args.robustness_episodes or args.episodes
    for m in tqdm(models, desc="robustness", unit="ckpt", disable=not args.progress):
        sticky = eval_summary(play(m, args, mcts, n, f"{m.label} sticky", use_amp,
                                   sticky_action_prob=args.sticky_prob), m.game, m.family)
        noisy = eval_summary(play(m, args, mcts, n, f"{m.label} noise", use_amp, obs_noise=args.obs_noise),
                             m.game, m.family)
        base = clean[m.label]["mean"]
        robust[m.label] = {
            "sticky": {"prob": args.sticky_prob, "mean": sticky["mean"], "std": sticky["std"],
                       "drop": base - sticky["mean"]},
            "noise": {"sigma": args.obs_noise, "mean": noisy["mean"], "std": noisy["std"],
                      "drop": base - noisy["mean"]},
        }
    return robust


def measure_agreement(models: list[Model], args: Args, mcts: MCTSConfig, use_amp: bool,
                      states: dict[str, np.ndarray]) -> tuple[list[dict], list[str]]:
    """Each student against its teacher on the teacher's evaluation states; -> agreements, notes on the missing."""
    agreements: list[dict] = []
    notes: list[str] = []
    by_path = {m.path.resolve(): m for m in models}
    for s in (m for m in models if m.kind == "student"):
        teachers = [by_path.get(Path(t).resolve()) for t in s.teachers]
        if not s.teachers or None in teachers:
            notes.append(f"{s.label}: its teacher ({', '.join(s.teachers) or 'unknown'}) is not among the "
                         "checkpoints, so no agreement was measured; pass the teacher checkpoint too")
            continue
        if not args.agreement:
            continue
        a = heldout_agreement(s.net, [t.net for t in teachers], states[teachers[0].label], mcts,
                              chunk_size=args.search_chunk_size or 256, autocast=use_amp)
        agreements.append({"student": s.label, "teacher": teachers[0].label, "game": s.game, **a})
    return agreements, notes


def measure_cost(models: list[Model], args: Args, device: torch.device, out_dir: Path) -> dict[str, dict]:
    """The deployment cost of each distinct architecture (measured once, shared by its checkpoints) [+ ONNX]."""
    cost: dict[str, dict] = {}
    arch: dict[str, list[Model]] = {}
    for m in models:
        arch.setdefault(json.dumps(m.net.config.to_dict(), sort_keys=True), []).append(m)
    print(f"deployment cost of {len(arch)} architecture(s) (latency: {args.latency_repeats} decisions each, "
          f"{torch.get_num_threads()} CPU threads)")
    cfgs = {ms[0].label: ms[0].net.config for ms in arch.values()}
    measured = profile_models(cfgs, args.num_simulations, args.latency_repeats, cuda=True)
    for ms in arch.values():
        for m in ms:
            cost[m.label] = {**measured[ms[0].label], "file_mb": m.ckpt_info["file_mb"]}
    if args.export_onnx:
        add_onnx(arch, args, device, out_dir, cost)
    return cost


def add_onnx(arch: dict[str, list[Model]], args: Args, device: torch.device, out_dir: Path,
             cost: dict[str, dict]) -> None:
    """Export each architecture's acting networks to ONNX, check and time them; into `cost` of its checkpoints."""
    from common.export import check_onnx, export_onnx, time_decisions  # onnx is loaded only when asked for

    for ms in arch.values():
        m = ms[0]
        files = export_onnx(m.net.cpu(), out_dir / "onnx" / m.label.replace("/", "_"))
        check = check_onnx(m.net, files)
        timing = time_decisions(m.net, files, args.num_simulations, args.latency_repeats)
        m.net.to(device)
        for other in ms:
            cost[other.label]["onnx"] = {**files, **check, **timing, "exported_from": m.label}
        tqdm.write(f"ONNX {m.label}: max |ort - torch| {check['max_abs_diff']:.2e}")


def checkpoint_rows(models: list[Model], args: Args, clean: dict[str, dict], robust: dict[str, dict],
                    cost: dict[str, dict]) -> list[dict]:
    """The summary's row of each checkpoint: where it came from and everything measured on it."""
    return [{"label": m.label, "group": m.group, "kind": m.kind, "checkpoint": str(m.path), "env_id": m.env_id,
             "game": m.game, "family": m.family, "seed": m.seed, "teachers": m.teachers,
             "distill_weights": m.ckpt_info["distill_weights"], "counters": m.ckpt_info["counters"],
             "scores": clean[m.label], "robustness": robust.get(m.label),
             "cost": cost.get(m.label), "curves": read_curves(m.path.parent) if args.curves else {}}
            for m in models]


def protocol_of(args: Args) -> dict:
    """The evaluation protocol, which --merge requires every merged summary to share."""
    return {"episodes": args.episodes, "seeds": [args.first_seed, args.first_seed + args.episodes - 1],
            "max_steps": args.max_steps, "num_simulations": args.num_simulations, "root_noise": False,
            "action": "argmax of visit counts"}


# =============================================================================================================
if __name__ == "__main__":
    args = parse_args(Args, __doc__)  # tyro; a usage error is one line, exit code 2
    check_args(args)
    if args.merge:  # no playing: the report of several earlier calls, from their summaries alone
        write_merged_report(args)
        raise SystemExit(0)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    use_amp = args.amp and device.type == "cuda"
    out_dir = Path(args.out_dir) / args.name

    # --- models ----------------------------------------------------------------------------------------------
    models = load_models(args.checkpoints, device)  # every checkpoint checked before any work
    make_out_dir(out_dir)
    info = environment_info(device)
    mcts = MCTSConfig(num_simulations=args.num_simulations)
    print(f"{len(models)} checkpoint(s) -> {out_dir} | {args.episodes} episodes each, {args.num_simulations} "
          f"simulations, cap {args.max_steps:,} steps, device {device}")

    # --- scores by the protocol; the teachers' visited states are kept for agreement --------------------------
    clean, states = score_models(models, args, mcts, use_amp)

    # --- robustness: sticky actions and observation noise, as drops from the clean score ----------------------
    robust = measure_robustness(models, args, mcts, use_amp, clean) if args.robustness else {}

    # --- agreement of each student with its teacher on the teacher's evaluation states -----------------------
    agreements, notes = measure_agreement(models, args, mcts, use_amp, states)

    # --- deployment cost of each distinct architecture ---------------------------------------------------------
    cost = measure_cost(models, args, device, out_dir) if args.cost else {}

    # --- a random baseline where none is published (MinAtar, toy): uniform actions, same seeds and cap ----------
    measured_random = measure_random_play(models, args)

    # --- aggregate: groups of seeds, HNS, Table 1, student over teacher ----------------------------------------
    rows = checkpoint_rows(models, args, clean, robust, cost)
    summary = {**info, "args": asdict(args), "protocol": protocol_of(args),
               **assemble(rows, agreements, measured_random, notes)}
    plots = write_outputs(summary, out_dir)
    print(f"wrote {out_dir / 'summary.json'}, {out_dir / 'report.md'} and {len(plots)} plot(s)")
