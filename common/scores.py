"""Score aggregation for the stage-3 evaluation: human-normalised aggregates, honest "student over teacher"
statistics, a check of the seed paper's headline number against its own Table 1, and each distilled student against
the student trained without distillation.

Why a module of its own: a single "the student is X% better" number hides a choice of aggregation, and on Atari
the choices disagree wildly (one game with a 7x ratio can move a mean of ratios by 40 points while the median
hardly moves). So every function here returns *all* the usual summaries side by side, says which games were
left out of which summary and why, and never raises for a game that simply has no human reference (MinAtar, the
toy game): those are listed, not dropped silently.

Game names: any spelling `common.envs.resolve_env_id` accepts ("Breakout", "ALE/Breakout-v5",
"BreakoutNoFrameskip-v4", "MinAtar/Breakout-v1", "Toy/Catch-v0"). Results are keyed by one canonical name per game
(`canonical_game`): the bare ALE name for Atari ("Breakout"), "MinAtar/<Game>-v1" and "Toy/Catch-v0" otherwise,
so that "ALE/Breakout-v5" in one dict and "Breakout" in another are the same game, and MinAtar Breakout is never
mistaken for Atari Breakout. A name that resolves to no game at all is a typo and raises ValueError (a silently
skipped game would change every average).

Undefined statistics (an empty set of games, a ratio whose denominator is not positive) are None, so that the
result serialises as strict JSON.

IQM: the interquartile mean as rliable (Agarwal et al. 2021) computes it, the 25% trimmed mean
`scipy.stats.trim_mean(x, 0.25)`: int(0.25 n) values are cut from each end. (Weighting the two boundary values
fractionally so that exactly 50% of the mass is kept gives another number when n is not a multiple of 4: 1.035
instead of the published 1.047 on the 26 EfficientZero HNS values.)
"""

from __future__ import annotations

import csv
import functools
import math
from pathlib import Path

import numpy as np

from common.envs import DATA_DIR, GameScores, load_reference_scores, resolve_env_id

PAPER_TABLE1_CSV = DATA_DIR / "paper_table1_scores.csv"
PAPER_STUDENT = "Ours_distilled_student"  # the seed paper's distilled student
PAPER_TEACHER = "EfficientZero_rerun"  # the paper's own re-run of EfficientZero: the student's teacher
PAPER_CLAIM_PCT = 12.1  # "performance improved by about 12.1%" (abstract; section 5.2 says "vs the SoTA")
CLAIM_TOLERANCE = 0.05  # a candidate "gives 12.1%" when it rounds to 12.1 at one decimal
REL_TIE_TOL = 1e-9  # scores this close (relative) count as a tie: means of equal episodes may differ in the last bit


# ---------------------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def canonical_game(name: str) -> tuple[str, str]:
    """(family, canonical name) of any accepted spelling; cached because resolving scans ALE's registry."""
    family, game = resolve_env_id(name)
    if family == "atari":
        return family, game
    if family == "minatar":
        return family, f"MinAtar/{game}-v1"
    return family, f"Toy/{game}-v0"


def _canonical_scores(scores: dict[str, float], what: str) -> dict[str, float]:
    """Re-key a game -> score dict by canonical names, failing on non-finite scores (a crashed evaluation must not
    quietly become a NaN mean) and on two spellings of one game (which one would count?)."""
    out: dict[str, float] = {}
    given: dict[str, str] = {}
    for name, score in scores.items():
        _, game = canonical_game(name)
        if score is None or not math.isfinite(float(score)):
            raise ValueError(f"{what}: score for {name!r} is {score!r}; every score must be a finite number")
        if game in out:
            raise ValueError(f"{what}: {given[game]!r} and {name!r} are the same game ({game}); give it once")
        out[game], given[game] = float(score), name
    return out


def _reference_for(game: str, table: dict[str, GameScores]) -> GameScores | None:
    family, name = canonical_game(game)
    return table.get(name) if family == "atari" else None


def _no_reference_reason(game: str) -> str:
    family, _ = canonical_game(game)
    if family != "atari":
        return f"{family} game: no human reference score"
    return "Atari game outside the Atari 100k reference table: no human reference score"


def _hns(score: float, ref: GameScores) -> float:
    return (score - ref.random) / (ref.human - ref.random)


def _mean(x) -> float | None:
    return float(np.mean(x)) if len(x) else None


def _median(x) -> float | None:
    return float(np.median(x)) if len(x) else None


def _pct(ratio: float | None) -> float | None:
    """A ratio as a percentage change: 1.121 -> 12.1."""
    return None if ratio is None else 100.0 * (ratio - 1.0)


def _div(a: float | None, b: float | None) -> float | None:
    """a / b when b > 0; None otherwise (a ratio to a non-positive baseline has no meaning as 'x% better')."""
    return None if a is None or b is None or b <= 0 else a / b


def _sub(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def iqm(values) -> float | None:
    """Interquartile mean as in rliable (Agarwal et al. 2021): the 25% trimmed mean, cutting int(0.25 n) values
    from each end of the sorted sample (scipy.stats.trim_mean(x, 0.25)), written in numpy so scipy is not needed.
    This is the IQM that published Atari 100k numbers use."""
    x = np.sort(np.asarray(values, dtype=np.float64).ravel())
    n = len(x)
    if n == 0:
        return None
    k = int(0.25 * n)
    return float(x[k:n - k].mean())


@functools.lru_cache(maxsize=None)
def t_quantile(p: float, df: int) -> float:
    """The p-quantile (p > 0.5) of Student's t with `df` degrees of freedom: the density integrated by Simpson's
    rule and the CDF inverted by bisection (scipy is not a dependency; 1e-6 is far below what a CI needs)."""
    c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)

    def cdf(t: float, n: int = 2000) -> float:  # 0.5 + the integral of the density over [0, t], n even
        x = np.linspace(0.0, t, n + 1)
        f = c * (1 + x * x / df) ** (-(df + 1) / 2)
        return 0.5 + t / n / 3 * (f[0] + f[-1] + 4 * f[1:-1:2].sum() + 2 * f[2:-1:2].sum())

    lo, hi = 0.0, 1000.0
    while hi - lo > 1e-7:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) < p else (lo, mid)
    return (lo + hi) / 2


def paired_ci(differences, level: float = 0.95) -> tuple[float, float] | None:
    """The t interval of the mean of paired differences (one per training seed); None with under 2 pairs."""
    d = np.asarray(differences, dtype=np.float64)
    if len(d) < 2:
        return None
    half = t_quantile(0.5 + level / 2, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    return float(d.mean() - half), float(d.mean() + half)


def _geomean(x) -> float | None:
    return float(np.exp(np.mean(np.log(x)))) if len(x) else None


# ---------------------------------------------------------------------------------------------------------
# The paper's Table 1
# ---------------------------------------------------------------------------------------------------------
def load_paper_table1(path: Path = PAPER_TABLE1_CSV) -> tuple[dict[str, dict[str, float]], list[str]]:
    """The seed paper's Table 1 as (game -> method -> score, method names in file order).

    The methods are SimPLe, OTRainbow, CURL, DrQ, SPR, MuZero, EfficientZero_rerun (the paper's re-run of
    EfficientZero, i.e. its teacher) and Ours_distilled_student. Order matters for the report's columns, hence
    the separate list. A malformed file fails here, with the row, rather than later as a confusing KeyError."""
    path = Path(path)
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or reader.fieldnames[0] != "game":
            raise ValueError(f"{path}: the first column must be 'game', got {reader.fieldnames}")
        methods = list(reader.fieldnames[1:])
        table: dict[str, dict[str, float]] = {}
        for line, row in enumerate(reader, start=2):
            game = row["game"]
            if game in table:
                raise ValueError(f"{path}:{line}: game {game!r} appears twice")
            try:
                table[game] = {m: float(row[m]) for m in methods}
            except (TypeError, ValueError) as e:
                raise ValueError(f"{path}:{line}: every method needs a numeric score for {game!r} ({e})") from e
    return table, methods


# ---------------------------------------------------------------------------------------------------------
# Human-normalised aggregates
# ---------------------------------------------------------------------------------------------------------
def hns_aggregate(scores: dict[str, float], table: dict[str, GameScores] | None = None) -> dict:
    """Human-normalised score per game and its mean, median and IQM over the games that have a human reference.

    Returns {games: sorted canonical names with an HNS, n_games, hns: game -> HNS, mean, median, iqm (rliable's
    25% trimmed mean), skipped: canonical names given but
    without a human reference (MinAtar, toy, Atari games outside the 26), skipped_reasons: name -> why}.
    Skipping rather than raising lets one call summarise a mixed set of runs; the skipped list keeps it visible.
    The mean is dominated by a few games far above human (e.g. Boxing, Breakout), which is why the median and IQM
    are given next to it."""
    table = table if table is not None else load_reference_scores()
    given = _canonical_scores(scores, "hns_aggregate")
    hns: dict[str, float] = {}
    skipped: dict[str, str] = {}
    for game, score in given.items():
        ref = _reference_for(game, table)
        if ref is None:
            skipped[game] = _no_reference_reason(game)
        else:
            hns[game] = _hns(score, ref)
    games = sorted(hns)
    values = [hns[g] for g in games]
    return {"games": games, "n_games": len(games), "hns": {g: hns[g] for g in games},
            "mean": _mean(values), "median": _median(values), "iqm": iqm(values),
            "skipped": sorted(skipped), "skipped_reasons": dict(sorted(skipped.items()))}


# ---------------------------------------------------------------------------------------------------------
# Student over teacher
# ---------------------------------------------------------------------------------------------------------
def ratio_analysis(student: dict[str, float], teacher: dict[str, float],
                   table: dict[str, GameScores] | None = None) -> dict:
    """Every common way of stating "student over teacher", on the games both were scored on.

    Why so many: they answer different questions and on Atari they disagree. A mean of per-game ratios is pulled
    up by one game with a huge ratio; a median or geometric mean is not; the change of summed raw scores is
    dominated by the games whose scores are in the tens of thousands (CrazyClimber, UpNDown, ...) and says little
    about the rest; HNS-based numbers weight games by how far from random to human the scores moved.

    Returned keys (None where undefined):
      games, n_games: common games (canonical names, sorted); only_student, only_teacher: games left out because
        the other side has no score.
      ratio: game -> student / teacher, only where the teacher's score is > 0 (a ratio to zero is undefined, one
        to a negative score flips meaning); ratio_skipped: game -> why; n_ratio.
      ratio_mean, ratio_median, ratio_geomean (the geometric mean needs positive ratios: games with a student
        score <= 0 are left out of it and listed in ratio_geomean_skipped), and each as *_pct = 100 (r - 1).
      wins, ties, losses (raw scores on all common games, ties to a relative 1e-9) and won_games, tied_games,
        lost_games.
      hns_games (common games with a human reference), hns_skipped (the others: kept for ratios, not for HNS),
        hns_student, hns_teacher (game -> HNS), hns_mean_student, hns_mean_teacher, hns_mean_diff (student -
        teacher, in units of the human-random gap), hns_median_*, hns_median_diff, hns_iqm_*, hns_iqm_diff,
        hns_mean_ratio = mean HNS student / mean HNS teacher (if the latter > 0) and hns_mean_ratio_pct.
      sum_student, sum_teacher, sum_ratio, sum_change_pct: the relative change of summed raw scores on all
        common games. Raw scores differ by orders of magnitude between games, so this is mostly the change on the
        two or three highest-scoring games; it is given because papers sometimes quote it, not because it is a
        good summary.
    """
    table = table if table is not None else load_reference_scores()
    s = _canonical_scores(student, "student")
    t = _canonical_scores(teacher, "teacher")
    games = sorted(set(s) & set(t))

    ratio: dict[str, float] = {}
    ratio_skipped: dict[str, str] = {}
    for g in games:
        if t[g] > 0:
            ratio[g] = s[g] / t[g]
        elif t[g] == 0:
            ratio_skipped[g] = "teacher score is 0: the ratio is undefined"
        else:
            ratio_skipped[g] = "teacher score is negative: a ratio would invert the comparison"
    r = [ratio[g] for g in sorted(ratio)]
    geo_skipped = {g: "student score <= 0: no logarithm" for g in sorted(ratio) if ratio[g] <= 0}
    r_pos = [ratio[g] for g in sorted(ratio) if g not in geo_skipped]

    won, tied, lost = [], [], []
    for g in games:
        if math.isclose(s[g], t[g], rel_tol=REL_TIE_TOL, abs_tol=REL_TIE_TOL):
            tied.append(g)
        elif s[g] > t[g]:
            won.append(g)
        else:
            lost.append(g)

    hns_games = [g for g in games if _reference_for(g, table) is not None]
    hns_skipped = {g: _no_reference_reason(g) for g in games if g not in hns_games}
    hs = {g: _hns(s[g], _reference_for(g, table)) for g in hns_games}
    ht = {g: _hns(t[g], _reference_for(g, table)) for g in hns_games}
    hs_v, ht_v = [hs[g] for g in hns_games], [ht[g] for g in hns_games]
    hm_s, hm_t = _mean(hs_v), _mean(ht_v)
    hmed_s, hmed_t = _median(hs_v), _median(ht_v)
    hiqm_s, hiqm_t = iqm(hs_v), iqm(ht_v)

    sum_s = float(sum(s[g] for g in games)) if games else None
    sum_t = float(sum(t[g] for g in games)) if games else None
    sum_ratio = _div(sum_s, sum_t)

    ratio_mean, ratio_median, ratio_geomean = _mean(r), _median(r), _geomean(r_pos)
    hns_mean_ratio = _div(hm_s, hm_t)
    return {
        "games": games, "n_games": len(games),
        "only_student": sorted(set(s) - set(t)), "only_teacher": sorted(set(t) - set(s)),
        "ratio": dict(sorted(ratio.items())), "ratio_skipped": ratio_skipped, "n_ratio": len(r),
        "ratio_mean": ratio_mean, "ratio_mean_pct": _pct(ratio_mean),
        "ratio_median": ratio_median, "ratio_median_pct": _pct(ratio_median),
        "ratio_geomean": ratio_geomean, "ratio_geomean_pct": _pct(ratio_geomean),
        "ratio_geomean_skipped": geo_skipped,
        "wins": len(won), "ties": len(tied), "losses": len(lost),
        "won_games": won, "tied_games": tied, "lost_games": lost,
        "hns_games": hns_games, "hns_skipped": hns_skipped, "hns_student": hs, "hns_teacher": ht,
        "hns_mean_student": hm_s, "hns_mean_teacher": hm_t, "hns_mean_diff": _sub(hm_s, hm_t),
        "hns_median_student": hmed_s, "hns_median_teacher": hmed_t, "hns_median_diff": _sub(hmed_s, hmed_t),
        "hns_iqm_student": hiqm_s, "hns_iqm_teacher": hiqm_t, "hns_iqm_diff": _sub(hiqm_s, hiqm_t),
        "hns_mean_ratio": hns_mean_ratio, "hns_mean_ratio_pct": _pct(hns_mean_ratio),
        "sum_student": sum_s, "sum_teacher": sum_t, "sum_ratio": sum_ratio, "sum_change_pct": _pct(sum_ratio),
    }


# ---------------------------------------------------------------------------------------------------------
# The paper's "about 12.1%"
# ---------------------------------------------------------------------------------------------------------
def _best_per_game(table1: dict[str, dict[str, float]], methods: list[str]) -> dict[str, dict]:
    """game -> {method, score} of the highest score among `methods` (first in column order on a tie)."""
    out = {}
    for game, row in table1.items():
        best = max(methods, key=lambda m: row[m])  # max keeps the first maximum: deterministic on ties
        out[game] = {"method": best, "score": row[best]}
    return out


def _candidate(name: str, description: str, value_pct: float | None) -> dict:
    matches = value_pct is not None and abs(value_pct - PAPER_CLAIM_PCT) <= CLAIM_TOLERANCE + 1e-12
    return {"name": name, "description": description, "value_pct": value_pct, "matches": bool(matches)}


def _table1_and_methods(table1: dict[str, dict[str, float]] | None) -> tuple[dict[str, dict[str, float]], list[str]]:
    """Table 1 (the paper's file unless given) and its method columns, which must include the student and teacher."""
    if table1 is None:
        table1, methods = load_paper_table1()
    else:
        methods = list(next(iter(table1.values())))
    for m in (PAPER_STUDENT, PAPER_TEACHER):
        if m not in methods:
            raise ValueError(f"Table 1 has no {m!r} column (columns: {', '.join(methods)})")
    return table1, methods


def _teacher_candidates(a: dict, student: dict[str, float], teacher: dict[str, float]) -> list[dict]:
    """The candidates against the teacher: the standard summaries of `a`, then variants someone might have used."""
    r = a["ratio"]
    rs = sorted(r.values())
    no_ties = [r[g] for g in r if g not in a["tied_games"]]
    largest = max(r, key=r.get) if r else None
    without_largest = [r[g] for g in r if g != largest]
    rel_student = [(student[g] - teacher[g]) / abs(student[g]) for g in student if student[g] != 0]
    hns_ratios = [a["hns_student"][g] / a["hns_teacher"][g] for g in a["hns_games"] if a["hns_teacher"][g] > 0]
    hns_median_ratio = _div(a["hns_median_student"], a["hns_median_teacher"])
    hns_iqm_ratio = _div(a["hns_iqm_student"], a["hns_iqm_teacher"])
    T = "vs the teacher (EfficientZero_rerun)"
    return [
        _candidate("teacher: mean of per-game % change", f"mean over games of 100 (s/t - 1), {T}",
                   a["ratio_mean_pct"]),
        _candidate("teacher: median of per-game % change", f"median over games of 100 (s/t - 1), {T}",
                   a["ratio_median_pct"]),
        _candidate("teacher: geometric mean of ratios", f"100 (geomean(s/t) - 1), {T}", a["ratio_geomean_pct"]),
        _candidate("teacher: IQM of ratios", f"100 (25%-trimmed mean of s/t - 1), {T}", _pct(iqm(rs))),
        _candidate("teacher: mean % change without ties", f"mean of 100 (s/t - 1) over games not tied, {T}",
                   _pct(_mean(no_ties))),
        _candidate(f"teacher: mean % change without the largest ({largest})",
                   f"mean of 100 (s/t - 1) leaving out the game with the largest ratio, {T}",
                   _pct(_mean(without_largest))),
        _candidate("teacher: summed raw scores", f"100 (sum s / sum t - 1), {T}; dominated by large-score games",
                   a["sum_change_pct"]),
        _candidate("teacher: mean HNS, relative", f"100 (mean HNS s / mean HNS t - 1), {T}",
                   a["hns_mean_ratio_pct"]),
        _candidate("teacher: median HNS, relative", f"100 (median HNS s / median HNS t - 1), {T}",
                   _pct(hns_median_ratio)),
        _candidate("teacher: IQM HNS, relative", f"100 (IQM HNS s / IQM HNS t - 1), {T}", _pct(hns_iqm_ratio)),
        _candidate("teacher: mean HNS difference (points)", f"100 (mean HNS s - mean HNS t), {T}",
                   None if a["hns_mean_diff"] is None else 100 * a["hns_mean_diff"]),
        _candidate("teacher: median HNS difference (points)", f"100 (median HNS s - median HNS t), {T}",
                   None if a["hns_median_diff"] is None else 100 * a["hns_median_diff"]),
        _candidate("teacher: mean of per-game HNS ratios", f"mean over games of 100 (HNS s / HNS t - 1), {T}",
                   _pct(_mean(hns_ratios))),
        _candidate("teacher: mean of (s - t) / s", f"mean over games of 100 (s - t) / |s| (change relative to "
                   f"the student's score, a non-standard denominator), {T}", None if not rel_student
                   else 100 * float(np.mean(rel_student))),
    ]


def _baseline_candidates(short: str, desc: str, student: dict[str, float], base: dict[str, float],
                         table: dict[str, GameScores]) -> list[dict]:
    """The candidates against another baseline `base` (game -> score), on the games it has a score for."""
    b = ratio_analysis({g: student[g] for g in base}, base, table)
    return [
        _candidate(f"{short}: mean of per-game % change", f"mean of 100 (s/b - 1), b = {desc}", b["ratio_mean_pct"]),
        _candidate(f"{short}: median of per-game % change", f"median of 100 (s/b - 1), b = {desc}",
                   b["ratio_median_pct"]),
        _candidate(f"{short}: geometric mean of ratios", f"100 (geomean(s/b) - 1), b = {desc}",
                   b["ratio_geomean_pct"]),
        _candidate(f"{short}: summed raw scores", f"100 (sum s / sum b - 1), b = {desc}", b["sum_change_pct"]),
        _candidate(f"{short}: mean HNS, relative", f"100 (mean HNS s / mean HNS b - 1), b = {desc}",
                   b["hns_mean_ratio_pct"]),
    ]


def _other_baselines(games: list[str], best_other: dict[str, dict], best_prior: dict[str, dict],
                     table: dict[str, GameScores]) -> list[tuple[str, str, dict[str, float]]]:
    """(short name, description, game -> score) of each baseline other than the teacher."""
    published = {}
    for g in games:
        ref = _reference_for(g, table)
        if ref is not None:
            published[g] = ref.efficientzero_published
    return [
        ("best other", "the best of the 7 other Table 1 columns per game (teacher included)",
         {g: best_other[g]["score"] for g in games}),
        ("best prior", "the best of SimPLe, OTRainbow, CURL, DrQ, SPR, MuZero per game (teacher excluded)",
         {g: best_prior[g]["score"] for g in games}),
        ("published EfficientZero", "EfficientZero's published scores (data/atari100k_reference_scores.csv)",
         published),
    ]


def paper_claim(table1: dict[str, dict[str, float]] | None = None,
                table: dict[str, GameScores] | None = None) -> dict:
    """Check the paper's "about 12.1% better" against its own Table 1.

    The paper states the improvement of its distilled student over its teacher ("the student network improves
    on the teacher by 12.1%", section 1) and over "the current SoTA on average" (section 5.2), without saying how
    the number was computed. This recomputes it: `analysis` is `ratio_analysis(student, EfficientZero_rerun)` on
    the 14 games of Table 1, and `candidates` are aggregations the number could plausibly come from, each with its
    value and whether it rounds to 12.1 (|value - 12.1| <= 0.05). Baselines tried: the teacher; the best other
    column per game (all seven other methods, teacher included: "SoTA" read per game); the best *prior* method per
    game (teacher excluded); and the published EfficientZero scores of `data/atari100k_reference_scores.csv`.
    The list is fixed in advance rather than searched: with enough ad-hoc variants (dropping games, odd
    denominators) some number lands near 12.1 by chance, which would explain nothing.

    Returns {games, n_games, claim_pct, student, teacher, analysis, best_other, best_prior, candidates (list of
    {name, description, value_pct, matches}), matching (names of matching candidates), closest (the candidate
    nearest to 12.1)}."""
    table = table if table is not None else load_reference_scores()
    table1, methods = _table1_and_methods(table1)
    games = sorted(table1)
    student = {g: table1[g][PAPER_STUDENT] for g in games}
    teacher = {g: table1[g][PAPER_TEACHER] for g in games}
    a = ratio_analysis(student, teacher, table)

    others = [m for m in methods if m != PAPER_STUDENT]
    best_other = _best_per_game(table1, others)
    best_prior = _best_per_game(table1, [m for m in others if m != PAPER_TEACHER])
    cands = _teacher_candidates(a, student, teacher)
    for short, desc, base in _other_baselines(games, best_other, best_prior, table):
        cands += _baseline_candidates(short, desc, student, base, table)
    valued = [c for c in cands if c["value_pct"] is not None]
    closest = min(valued, key=lambda c: abs(c["value_pct"] - PAPER_CLAIM_PCT)) if valued else None
    return {"games": games, "n_games": len(games), "claim_pct": PAPER_CLAIM_PCT, "student": PAPER_STUDENT,
            "teacher": PAPER_TEACHER, "analysis": a, "best_other": best_other, "best_prior": best_prior,
            "candidates": cands, "matching": [c["name"] for c in cands if c["matches"]],
            "closest": None if closest is None else {"name": closest["name"], "value_pct": closest["value_pct"]}}


# ---------------------------------------------------------------------------------------------------------
# Per-game table for the report
# ---------------------------------------------------------------------------------------------------------
def per_game_table(our_scores: dict[str, dict[str, float]], table: dict[str, GameScores] | None = None,
                   table1: dict[str, dict[str, float]] | None = None) -> list[dict]:
    """One row per game scored by any of our labels (canonical names, sorted), for the markdown report.

    Each row: game, then one key per label of `our_scores` (label -> game -> score; None where that label has no
    score for the game), random, human, efficientzero_published (None off the 26 Atari 100k games), then one key
    per Table 1 method in file order (None where the game is not one of Table 1's 14). Columns keep their source
    names so the report's header says where each number comes from; a label equal to one of those names would be
    ambiguous and raises ValueError."""
    table = table if table is not None else load_reference_scores()
    if table1 is None:
        table1, methods = load_paper_table1()
    else:
        methods = list(next(iter(table1.values()))) if table1 else []
    fixed = ["game", "random", "human", "efficientzero_published", *methods]
    clash = [label for label in our_scores if label in fixed]
    if clash:
        raise ValueError(f"labels {clash} collide with the table's own columns {fixed}; rename them")
    ours = {label: _canonical_scores(sc, f"per_game_table[{label!r}]") for label, sc in our_scores.items()}
    t1 = {canonical_game(g)[1]: row for g, row in table1.items()}
    rows = []
    for game in sorted({g for sc in ours.values() for g in sc}):
        ref = _reference_for(game, table)
        row: dict = {"game": game}
        row.update({label: sc.get(game) for label, sc in ours.items()})
        row.update({"random": ref.random if ref else None, "human": ref.human if ref else None,
                    "efficientzero_published": ref.efficientzero_published if ref else None})
        row.update({m: t1[game][m] if game in t1 else None for m in methods})
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------------------
# Distillation against RL only
# ---------------------------------------------------------------------------------------------------------
def distillation_gains(rows: list[dict]) -> list[dict]:
    """Each distilled student against the student trained by RL alone from the same teacher with the same seed:
    does distillation help, and by how much beyond the noise of the evaluation and of training?

    `rows`: stage 3's per-checkpoint rows (kind, group, game, seed, teachers, scores with the episode scores, and
    for students `distill_weights`, the run's distillation loss weights). The RL-only student is the one whose
    weights are all 0. Result, one entry per (game, distilled group, RL-only group), sorted: per shared (teacher,
    seed) the two means, their difference and its standard error over the evaluation episodes (unpaired, sample
    variances); over those pairs (the training seeds) the mean and median difference, the sample std of the
    differences and the 95% paired t interval of their mean (None with one seed), and in how many the distilled
    student scored higher. Rows without `distill_weights`
    (summaries written before 03 recorded them) are left out."""
    def trained_from(r):  # the same teacher run and the same seed
        return r["game"], tuple(sorted(str(Path(t)) for t in r["teachers"])), r["seed"]

    students = [r for r in rows if r["kind"] == "student" and r.get("distill_weights") is not None]
    rl_only: dict[tuple, list[dict]] = {}
    for r in students:
        if not any(r["distill_weights"].values()):
            rl_only.setdefault(trained_from(r), []).append(r)
    pairs: dict[tuple, list[dict]] = {}
    for r in students:
        if not any(r["distill_weights"].values()):
            continue
        for b in rl_only.get(trained_from(r), []):
            x, y = np.asarray(r["scores"]["scores"], float), np.asarray(b["scores"]["scores"], float)
            se = math.sqrt(x.var(ddof=1) / len(x) + y.var(ddof=1) / len(y)) if min(len(x), len(y)) > 1 else None
            pairs.setdefault((r["game"], r["group"], b["group"]), []).append(
                {"seed": r["seed"], "teachers": r["teachers"], "student": float(x.mean()), "rl_only": float(y.mean()),
                 "difference": float(x.mean() - y.mean()), "se": se})
    out = []
    for (game, group, base), ps in sorted(pairs.items()):
        ps.sort(key=lambda p: p["seed"])
        d = np.array([p["difference"] for p in ps])
        ci = paired_ci(d)
        out.append({"game": game, "student": group, "rl_only": base, "pairs": ps, "mean_difference": float(d.mean()),
                    "median_difference": float(np.median(d)), "ci95": list(ci) if ci else None,
                    "seed_std": float(d.std(ddof=1)) if len(d) > 1 else None, "higher": int((d > 0).sum()),
                    "seeds": len(d)})
    return out
