"""Stage 3's outputs: training curves read back from TensorBoard, the PNG plots and the markdown report, all made
from `summary.json`'s content so that every number in the report is one the script measured."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from common.runs import atomic_write, atomic_write_text
from common.scores import iqm

CURVE_TAGS = ("eval/return_mean", "charts/episodic_return")


def read_curves(run_dir: Path, tags=CURVE_TAGS) -> dict[str, dict[str, list]]:
    """{tag: {"steps": [...], "values": [...]}} from the TensorBoard event files of a run directory ({} if none).
    `eval/return_mean` is indexed by updates, `charts/episodic_return` by environment steps."""
    run_dir = Path(run_dir)
    if not any(run_dir.glob("events.out.tfevents.*")):
        return {}
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})  # 0 = keep every point
    acc.Reload()
    have = set(acc.Tags().get("scalars", []))
    out = {}
    for tag in tags:
        if tag in have:
            events = acc.Scalars(tag)
            out[tag] = {"steps": [e.step for e in events], "values": [float(e.value) for e in events]}
    return out


def save_figure(fig, path: Path, tight: bool = False) -> str:
    """Lay out, write as a PNG atomically (a full disk leaves the previous picture, or none, and one line) and close
    the figure; returns the file's name."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight" if tight else None))
    plt.close(fig)
    return path.name


def _fmt(x, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, (int, np.integer)) or (isinstance(x, float) and abs(x) >= 1e5):
        return f"{x:,.0f}"
    return f"{x:,.{digits}f}"


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return lines + [""]


def _groups(summary: dict) -> list[str]:
    return sorted({m["group"] for m in summary["models"]}, key=lambda g: (not g.startswith("teacher"), g))


# ---------------------------------------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------------------------------------
def write_plots(summary: dict, out_dir: Path) -> list[str]:
    """scores.png (every group per game, with the reference scores), hns.png (Atari games only), cost_vs_score.png,
    curves.png (when the runs have TensorBoard logs). Returns the file names written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    written = []
    games = sorted(summary["games"])
    groups = _groups(summary)
    colors = {g: plt.cm.tab10(i % 10) for i, g in enumerate(groups)}

    # scores per game: our groups (spread across seeds as error bars) next to the reference scores
    fig, axes = plt.subplots(1, len(games), figsize=(max(4.5, 1.2 * len(groups) + 2.5) * len(games), 4), squeeze=False)
    refs = summary.get("references", {})
    for ax, game in zip(axes[0], games):
        row = summary["games"][game]
        names, vals, errs, cols = [], [], [], []
        for g in groups:
            if g in row:
                names.append(g)
                vals.append(row[g]["mean"])
                errs.append(row[g]["seed_std"] or 0.0)
                cols.append(colors[g])
        for ref_name, val in refs.get(game, {}).items():
            if val is not None:
                names.append(ref_name)
                vals.append(val)
                errs.append(0.0)
                cols.append("0.75")
        ax.bar(range(len(vals)), vals, yerr=errs, color=cols, capsize=3)
        ax.set_xticks(range(len(vals)), names, rotation=60, ha="right", fontsize=7)
        ax.set_title(game)
        ax.set_ylabel("score (error bar: std across seeds)")
    written.append(save_figure(fig, out_dir / "scores.png", tight=True))

    # HNS aggregates (only groups with Atari games)
    agg = {g: a for g, a in summary["aggregate_hns"].items() if a["games"]}
    if agg:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        width = 0.8 / len(agg)
        for i, (g, a) in enumerate(sorted(agg.items())):
            ax.bar(np.arange(3) + i * width, [a["mean"], a["median"], a["iqm"]], width, label=g, color=colors[g])
        ax.set_xticks(np.arange(3) + 0.4 - width / 2, ["mean HNS", "median HNS", "IQM HNS"])
        ax.axhline(1.0, color="k", lw=0.8, ls="--")
        ax.legend(fontsize=7)
        written.append(save_figure(fig, out_dir / "hns.png"))

    # cost vs score: one panel per game, x = CPU latency per decision, y = score
    with_cost = [m for m in summary["models"] if m.get("cost")]
    if with_cost:
        fig, axes = plt.subplots(1, len(games), figsize=(4.5 * len(games), 3.6), squeeze=False)
        for ax, game in zip(axes[0], games):
            for g in groups:
                ms = [m for m in with_cost if m["game"] == game and m["group"] == g]
                if ms:
                    ax.scatter([m["cost"]["latency_ms_decision_cpu"] for m in ms],
                               [m["scores"]["mean"] for m in ms], color=colors[g], label=g, s=30)
            ax.set_xlabel(f"CPU ms per {summary['protocol']['num_simulations']}-simulation decision (batch 1)")
            ax.set_ylabel("score")
            ax.set_title(game)
            ax.legend(fontsize=7)
        written.append(save_figure(fig, out_dir / "cost_vs_score.png"))

    # training curves from TensorBoard: periodic evaluation (by update) or, without it, the training returns
    curved = [m for m in summary["models"] if m.get("curves")]
    if curved:
        fig, axes = plt.subplots(1, len(games), figsize=(5 * len(games), 3.6), squeeze=False)
        for ax, game in zip(axes[0], games):
            xlabel = None
            for m in (m for m in curved if m["game"] == game):
                c = m["curves"]
                if "eval/return_mean" in c:
                    steps, vals, xlabel = c["eval/return_mean"]["steps"], c["eval/return_mean"]["values"], "updates"
                else:
                    steps, vals = c["charts/episodic_return"]["steps"], c["charts/episodic_return"]["values"]
                    k = max(1, len(vals) // 20)  # moving average over ~5% of the games
                    vals = np.convolve(vals, np.ones(k) / k, mode="valid").tolist()
                    steps, xlabel = steps[k - 1:], xlabel or "environment steps (training games, smoothed)"
                ax.plot(steps, vals, color=colors[m["group"]], label=m["label"], lw=1)
            ax.set_xlabel(xlabel or "")
            ax.set_ylabel("return")
            ax.set_title(game)
            ax.legend(fontsize=6)
        written.append(save_figure(fig, out_dir / "curves.png"))
    return written


# ---------------------------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------------------------
def _claim_rows(r: dict) -> list[list]:
    return [
        ["games compared", r.get("n_games", len(r.get("games", [])))],
        ["student wins / ties / losses", f"{r.get('wins')} / {r.get('ties')} / {r.get('losses')}"],
        ["mean of per-game ratios", f"{_fmt(r.get('ratio_mean'), 3)} ({_fmt(r.get('ratio_mean_pct'), 1)}%)"],
        ["median of per-game ratios", f"{_fmt(r.get('ratio_median'), 3)} ({_fmt(r.get('ratio_median_pct'), 1)}%)"],
        ["geometric mean of ratios", f"{_fmt(r.get('ratio_geomean'), 3)} ({_fmt(r.get('ratio_geomean_pct'), 1)}%)"],
        ["change of summed raw scores", f"{_fmt(r.get('sum_change_pct'), 1)}%"],
        ["mean HNS teacher → student", f"{_fmt(r.get('hns_mean_teacher'), 3)} → {_fmt(r.get('hns_mean_student'), 3)}"],
        ["median HNS teacher → student",
         f"{_fmt(r.get('hns_median_teacher'), 3)} → {_fmt(r.get('hns_median_student'), 3)}"],
    ]


def _protocol_text(p: dict) -> str:
    """The evaluation protocol of a summary in one sentence."""
    return (f"{p['episodes']} episodes per checkpoint (environment seeds {p['seeds'][0]}..{p['seeds'][1]}), "
            f"at most {p['max_steps']:,} agent steps, {p['num_simulations']} simulations, no root noise, "
            "action = argmax of visit counts")


def _provenance_section(summary: dict, name: str) -> list[str]:
    """The title, and the commit, command, protocol and hardware the numbers come from."""
    protocol = _protocol_text(summary["protocol"])
    L = [f"# Evaluation report: {name}", ""]
    if summary.get("merged_from"):  # scores, costs and agreement were measured by the merged calls, not this one
        L += [f"Merged by `03_evaluate.py` on {summary['date']} at commit `{summary['git_commit'][:12]}` from "
              f"{len(summary['merged_from'])} evaluations, which measured everything below. Command:", "",
              f"```\n{summary['command']}\n```", "", f"Protocol of every evaluation: {protocol}.", ""]
        L += _table(["evaluation", "commit", "date", "hardware (torch threads)", "torch"],
                    [[f"`{m['summary']}`", f"`{(m['git_commit'] or '')[:12]}`"
                      f"{' (uncommitted changes)' if m.get('git_dirty') else ''}", m["date"],
                      f"{m['hardware']['cpu']}, {m['hardware']['cpu_count']} cores ({m['hardware']['torch_threads']}),"
                      f" GPU: {m['hardware']['gpu'] or 'none'}", m["versions"]["torch"]]
                     for m in summary["merged_from"]])
    else:
        hw = summary["hardware"]
        L += [f"Generated by `03_evaluate.py` on {summary['date']} at commit `{summary['git_commit'][:12]}`"
              f"{' (uncommitted changes)' if summary.get('git_dirty') else ''}. Command:", "",
              f"```\n{summary['command']}\n```", "",
              f"Protocol: {protocol}. Hardware: {hw['cpu']} ({hw['cpu_count']} cores, {hw['torch_threads']} torch "
              f"threads), GPU: {hw['gpu'] or 'none'}; torch {summary['versions']['torch']}.", ""]
    return L


def _scores_section(summary: dict, groups: list[str], games: list[str]) -> list[str]:
    """One row per game and model: the score over seeds, the per-seed means and the HNS; with 3 seeds or more, also
    the median and the interquartile mean of the per-seed means (robust to one seed that went astray)."""
    L = ["## Scores", "",
         "Mean over episodes; with several seeds, the mean over seeds ± the sample standard deviation across "
         "seeds, and the per-seed means. HNS = (score − random) / (human − random), Atari 100k games only.", ""]
    robust = any(len(r["seeds"]) >= 3 for game in games for r in summary["games"][game].values())
    if robust:
        L[-1:-1] = ["Median and IQM (the mean of the middle half, as in rliable) are over the per-seed means, for "
                    "a model with 3 seeds or more."]
    rows = []
    for game in games:
        for g in groups:
            r = summary["games"][game].get(g)
            if r is None:
                continue
            spread = (f" ± {_fmt(r['seed_std'])}" if r["seed_std"] is not None
                      else f" (episode std {_fmt(r['episode_std'])})")
            hns = summary["aggregate_hns"][g]["hns"].get(game)
            rows.append([game, g, len(r["seeds"]), f"{_fmt(r['mean'])}{spread}",
                         ", ".join(_fmt(x) for x in r["per_seed"])]
                        + ([_fmt(float(np.median(r["per_seed"]))), _fmt(iqm(r["per_seed"]))]
                           if len(r["seeds"]) >= 3 else ["–", "–"] if robust else [])
                        + [_fmt(hns, 3)])
    return L + _table(["game", "model", "seeds", "score", "per seed", *(["median", "IQM"] if robust else []), "HNS"],
                      rows)


def _published_section(summary: dict, groups: list[str], games: list[str]) -> list[str]:
    """Our models next to the published reference scores and the seed paper's Table 1 ([] without any)."""
    refs = summary.get("references", {})
    rand = summary.get("random_play", {})
    published = [g for g in games if refs.get(g) and g not in rand]  # measured random play has its own section
    if not published:
        return []
    cols = sorted({k for g in published for k in refs[g]}, key=lambda k: list(refs[published[0]]).index(k)
                  if k in refs[published[0]] else 99)
    L = ["### Against the published baselines", "",
         "Random, human and published EfficientZero scores (Atari 100k), and the seed paper's Table 1 "
         "(`EfficientZero_rerun` is the paper's teacher, `Ours_distilled_student` its student).", ""]
    rows = [[g, *[_fmt(summary["games"][g][x]["mean"]) if x in summary["games"][g] else "–" for x in groups],
             *[_fmt(refs[g].get(c)) for c in cols]] for g in published]
    return L + _table(["game", *groups, *cols], rows)


def _random_play_section(summary: dict, groups: list[str]) -> list[str]:
    """Each model's margin over the uniformly random play measured here ([] where none was measured)."""
    rand = summary.get("random_play", {})
    if not rand:
        return []
    L = ["### Against random play", "",
         "Uniformly random actions on the same environment seeds; the margin is (model − random) in units of "
         "the random play's episode standard deviation.", ""]
    rows = []
    for game in sorted(rand):
        r = rand[game]
        for g in groups:
            x = summary["games"].get(game, {}).get(g)
            if x is not None:
                margin = (x["mean"] - r["mean"]) / r["std"] if r["std"] > 0 else None
                rows.append([game, g, _fmt(x["mean"]), f"{_fmt(r['mean'])} ± {_fmt(r['std'])}", _fmt(margin, 1)])
    return L + _table(["game", "model", "score", "random play (± episode std)", "margin (random std)"], rows)


def _hns_aggregate_section(summary: dict) -> list[str]:
    """Mean, median and IQM HNS of each model with Atari games ([] without any)."""
    agg = {g: a for g, a in summary["aggregate_hns"].items() if a["games"]}
    if not agg:
        return []
    return ["### Human-normalised aggregates", ""] + _table(
        ["model", "games", "mean HNS", "median HNS", "IQM HNS"],
        [[g, len(a["games"]), _fmt(a["mean"], 3), _fmt(a["median"], 3), _fmt(a["iqm"], 3)]
         for g, a in sorted(agg.items())])


def _distillation_section(summary: dict) -> list[str]:
    """Each distilled student against the RL-only student of the same teacher and seed ([] without pairs)."""
    gains = summary.get("distillation_vs_rl", [])
    if not gains:
        return []
    L = ["## Distillation against RL only", "",
         "Each distilled student's score minus that of the student trained from the same teacher with the same "
         "seed and budget with every distillation weight 0 (RL loss only). Per seed: the difference ± its "
         "standard error over the evaluation episodes. Over seeds: the mean difference ± the sample standard "
         "deviation of the per-seed differences, and in how many seeds the distilled student scored higher.", ""]
    paired = any(g.get("ci95") for g in gains)
    if paired:
        L[-1:-1] = ["The 95% interval is the paired t interval of the mean difference over seeds (each seed's "
                    "two students share a teacher): an interval that excludes 0 is a gain, or a loss, beyond the "
                    "spread between seeds."]
    rows = [[g["game"], g["student"], g["rl_only"], g["seeds"],
             f"{g['mean_difference']:+.2f}" + (f" ± {_fmt(g['seed_std'])}" if g["seed_std"] is not None else "")]
            + ([f"[{g['ci95'][0]:+.2f}, {g['ci95'][1]:+.2f}]" if g.get("ci95") else "-",
                f"{g['median_difference']:+.2f}"] if paired else [])
            + [", ".join(f"{p['difference']:+.2f} ± {_fmt(p['se'])} (seed {p['seed']})" for p in g["pairs"]),
               f"{g['higher']} of {g['seeds']}"] for g in gains]
    return L + _table(["game", "student", "RL only", "seeds", "difference",
                       *(["95% interval", "median"] if paired else []), "per seed (± episode SE)", "higher in"], rows)


def _student_over_teacher_section(summary: dict) -> list[str]:
    """Every student-over-teacher statistic of our pairs, then of the paper's Table 1 and its 12.1% candidates."""
    L = ["## Student over teacher", "",
         "The seed paper reports that its student improves on its teacher by \"about 12.1%\". A ratio of "
         "Atari scores can be summarised several ways, and they disagree; all of them are given, for our runs "
         "and for the paper's own Table 1.", ""]
    for pair in summary["student_vs_teacher"]:
        L += [f"**{pair['student']} over {pair['teacher']}** ({', '.join(pair['games'])}):", ""]
        L += _table(["statistic", "value"], _claim_rows(pair))
    claim = summary["paper_claim"]
    L += ["**The paper's own Table 1** (Ours_distilled_student over EfficientZero_rerun):", ""]
    L += _table(["statistic", "value"], _claim_rows(claim.get("analysis", claim)))
    if claim.get("candidates"):
        hits = [c["name"] for c in claim["candidates"] if c.get("matches")]
        L += [f"Which aggregation gives the paper's 12.1%: {', '.join(hits) if hits else 'none of the '}"
              f"{'' if hits else str(len(claim['candidates'])) + ' candidates below rounds to 12.1'}.", "",
              "<details><summary>every candidate</summary>", ""]
        L += _table(["candidate", "value (%)", "rounds to 12.1?"],
                    [[c["name"], _fmt(c["value_pct"], 2), "yes" if c.get("matches") else "no"]
                     for c in claim["candidates"]])
        L += ["</details>", ""]
    return L


def _cost_row(m: dict, with_cost: list[dict]) -> list:
    """One deployment-cost row: a model's measurements, a student's with its ratio to the teacher's in brackets."""
    c = m["cost"]
    # ratios to a teacher of the same game (the first one given)
    t = next((x["cost"] for x in with_cost if x["kind"] == "teacher" and x["game"] == m["game"]), None)

    def ratio(k, c=c, t=t, student=m["kind"] == "student"):
        return f" ({c[k] / t[k]:.2f})" if t and student else ""

    cuda = c.get("latency_ms_decision_cuda")
    return [m["game"], m["group"], f"{c['params_total']:,}{ratio('params_total')}",
            f"{c['params_acting']:,}{ratio('params_acting')}",
            f"{c['macs_initial'] / 1e6:,.2f}M{ratio('macs_initial')}",
            f"{c['macs_recurrent'] / 1e6:,.3f}M{ratio('macs_recurrent')}",
            f"{c['macs_decision'] / 1e6:,.1f}M{ratio('macs_decision')}",
            f"{c['latency_ms_decision_cpu']:.1f}{ratio('latency_ms_decision_cpu')}",
            f"{cuda:.1f}{ratio('latency_ms_decision_cuda')}" if cuda else "–",
            f"{c['checkpoint_mb']:.2f}{ratio('checkpoint_mb')}"]


def _cost_section(summary: dict) -> list[str]:
    """Parameters, multiply-adds, latency and weights of each architecture, and its ONNX check ([] unmeasured)."""
    # one row per game and model, the first seed's measurement: the seeds of a model share its architecture
    first_of: dict[tuple[str, str], dict] = {}
    for m in summary["models"]:
        if m.get("cost"):
            first_of.setdefault((m["game"], m["group"]), m)
    with_cost = list(first_of.values())
    if not with_cost:
        return []
    L = ["## Deployment cost", "",
         "Per architecture (student/teacher ratio in brackets). Parameters: all, and the acting part "
         "(representation, dynamics, prediction: what a deployed agent runs). Multiply-adds counted by "
         "`torch.utils.flop_counter`; a decision = 1 initial + "
         f"{summary['protocol']['num_simulations']} recurrent inferences at batch 1 (median latency after warm-up, "
         "tree work excluded). Checkpoint: the network's weights alone.", ""]
    L += _table(["game", "model", "params", "acting params", "MACs initial", "MACs recurrent", "MACs / decision",
                 "CPU ms / decision", "CUDA ms / decision", "weights MB"], [_cost_row(m, with_cost) for m in with_cost])
    onnx = [(m["game"], m["group"], m["cost"]["onnx"]) for m in with_cost if m["cost"].get("onnx")]
    if onnx:
        rows = [[game, g, f"{o['max_abs_diff']:.1e}", f"{o['torch_ms']:.1f}", f"{o['ort_ms']:.1f}",
                 f"{o['ort_ms'] / o['torch_ms']:.2f}"] for game, g, o in onnx]
        L += ["### ONNX (onnxruntime, CPU)", "",
              "Acting networks exported with a dynamic batch dimension; outputs checked against torch on "
              "random inputs at several batch sizes.", ""]
        L += _table(["game", "model", "max abs diff", "torch ms / decision", "onnxruntime ms / decision", "ratio"],
                    rows)
    return L


def _agreement_section(summary: dict) -> list[str]:
    """How often each student acts as its teacher on the teacher's held-out states ([] when not measured)."""
    if not summary["agreement"]:
        return []
    L = ["## Agreement with the teacher", "",
         "On states drawn uniformly from the teacher's evaluation episodes (never trained on): agreement of "
         "the argmax of the raw policies; of the student's raw-policy argmax with the action the teacher's "
         "search plays; of the actions the two searches play; Jensen–Shannon divergence of the raw policies "
         "(nats); mean absolute difference of the predicted values.", ""]
    return L + _table(["student", "teacher", "states", "policy argmax", "student policy vs teacher search",
                       "search action", "JS divergence", "value MAE"],
                      [[a["student"], a["teacher"], a["states"], _fmt(a["policy_argmax_agreement"], 3),
                        _fmt(a.get("policy_vs_search_agreement"), 3), _fmt(a.get("search_action_agreement"), 3),
                        _fmt(a["js_divergence"], 4), _fmt(a["value_mae"], 3)] for a in summary["agreement"]])


def _robustness_section(summary: dict) -> list[str]:
    """Each checkpoint's drop under sticky actions and observation noise ([] when not measured)."""
    robust = [m for m in summary["models"] if m.get("robustness")]
    if not robust:
        return []
    r0 = robust[0]["robustness"]
    L = ["## Robustness", "",
         f"The same protocol with sticky actions (the previous action repeats with probability "
         f"{r0['sticky']['prob']}) and with Gaussian noise of std {r0['noise']['sigma']} (on the [0, 1] input "
         "scale) on what the network sees; drop = clean − perturbed score.", ""]
    return L + _table(["model", "game", "clean", "sticky", "drop", "noise", "drop"],
                      [[m["label"], m["game"], _fmt(m["scores"]["mean"]), _fmt(m["robustness"]["sticky"]["mean"]),
                        _fmt(m["robustness"]["sticky"]["drop"]), _fmt(m["robustness"]["noise"]["mean"]),
                        _fmt(m["robustness"]["noise"]["drop"])] for m in robust])


def _closing_sections(summary: dict, plots: list[str]) -> list[str]:
    """The plots, the notes and the checkpoints each row was measured on."""
    L = []
    if plots:
        L += ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    if summary["notes"]:
        L += ["## Notes", ""] + [f"- {n}" for n in summary["notes"]] + [""]
    L += ["## Checkpoints", ""]
    return L + _table(["model", "checkpoint", "updates", "env steps"],
                      [[m["label"], f"`{m['checkpoint']}`", _fmt(m["counters"].get("updates")),
                        _fmt(m["counters"].get("env_steps"))] for m in summary["models"]])


def write_report(summary: dict, out_dir: Path, plots: list[str]) -> Path:
    """report.md: every table of `summary`, section by section (a section without data is left out)."""
    out_dir = Path(out_dir)
    groups = _groups(summary)
    games = sorted(summary["games"])
    L = _provenance_section(summary, out_dir.name)
    L += _scores_section(summary, groups, games)
    L += _published_section(summary, groups, games)
    L += _random_play_section(summary, groups)
    L += _hns_aggregate_section(summary)
    # distillation against RL only: the same teacher and seed, with and without the distillation terms
    L += _distillation_section(summary)
    L += _student_over_teacher_section(summary)  # and the paper's headline
    L += _cost_section(summary)
    L += _agreement_section(summary)
    L += _robustness_section(summary)
    L += _closing_sections(summary, plots)
    path = out_dir / "report.md"
    atomic_write_text(path, "\n".join(L))
    return path
