"""common/scores.py against hand-computed answers and an independent re-reading of the CSV files."""

import csv
import math
import statistics

import numpy as np
import pytest

from common.envs import DATA_DIR, load_reference_scores
from common.scores import (PAPER_TABLE1_CSV, distillation_gains, hns_aggregate, iqm, load_paper_table1, paired_ci,
                           paper_claim, per_game_table, ratio_analysis, t_quantile)

METHODS = ["SimPLe", "OTRainbow", "CURL", "DrQ", "SPR", "MuZero", "EfficientZero_rerun", "Ours_distilled_student"]


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ---------------------------------------------------------------------------------------------------------
# HNS aggregates
# ---------------------------------------------------------------------------------------------------------
def test_published_efficientzero_hns_aggregates():
    table = load_reference_scores()
    agg = hns_aggregate({g: r.efficientzero_published for g, r in table.items()}, table)
    assert agg["n_games"] == 26 and agg["skipped"] == []
    assert round(agg["mean"], 3) == 1.943
    assert round(agg["median"], 3) == 1.090
    assert round(agg["iqm"], 3) == 1.047  # rliable's IQM: 25% trimmed mean, 6 of 26 cut at each end
    # independent: the middle 14 of the sorted 26 values
    rows = _read_csv(DATA_DIR / "atari100k_reference_scores.csv")
    h = sorted((float(r["efficientzero_published"]) - float(r["random"])) / (float(r["human"]) - float(r["random"]))
               for r in rows)
    assert agg["iqm"] == pytest.approx(sum(h[6:20]) / 14)
    assert agg["mean"] == pytest.approx(sum(h) / 26)
    assert agg["median"] == pytest.approx((h[12] + h[13]) / 2)


def test_iqm_by_hand_and_against_scipy():
    x = [100, 0, 16, 0, 1, 100, 2, 0, 4, 8]  # sorted: 0 0 0 1 2 4 8 16 100 100; int(2.5) = 2 cut at each end
    assert iqm(x) == pytest.approx((0 + 1 + 2 + 4 + 8 + 16) / 6)
    assert iqm(x) != pytest.approx((0.5 * 0 + 1 + 2 + 4 + 8 + 0.5 * 16) / 5)  # not the fractional-ends variant
    assert iqm([1, 2, 3, 4, 5, 6, 7, 8]) == pytest.approx(4.5)
    assert iqm([]) is None
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 5, 7, 13, 14, 26, 57):
        v = rng.standard_exponential(n)
        assert iqm(v) == pytest.approx(stats.trim_mean(v, 0.25))


def test_hns_aggregate_skips_games_without_a_human_reference():
    agg = hns_aggregate({"MinAtar/Breakout-v1": 12.0, "Toy/Catch-v0": 1.0, "ALE/Breakout-v5": 30.5, "Pong": -20.7})
    assert agg["games"] == ["Breakout", "Pong"]
    assert agg["hns"] == {"Breakout": pytest.approx(1.0), "Pong": pytest.approx(0.0)}
    assert agg["mean"] == pytest.approx(0.5) and agg["median"] == pytest.approx(0.5)
    assert agg["skipped"] == ["MinAtar/Breakout-v1", "Toy/Catch-v0"]
    assert "minatar" in agg["skipped_reasons"]["MinAtar/Breakout-v1"]

    only_minatar = hns_aggregate({"MinAtar/Breakout-v1": 12.0, "MinAtar/Asterix-v1": 3.0})
    assert only_minatar["games"] == [] and only_minatar["mean"] is None and only_minatar["iqm"] is None
    assert only_minatar["skipped"] == ["MinAtar/Asterix-v1", "MinAtar/Breakout-v1"]
    assert hns_aggregate({})["n_games"] == 0


def test_bad_scores_fail_fast():
    with pytest.raises(ValueError, match="unknown game"):
        hns_aggregate({"Breakuot": 3.0})
    with pytest.raises(ValueError, match="finite"):
        hns_aggregate({"Breakout": float("nan")})
    with pytest.raises(ValueError, match="same game"):
        hns_aggregate({"Breakout": 3.0, "ALE/Breakout-v5": 4.0})


# ---------------------------------------------------------------------------------------------------------
# Student over teacher
# ---------------------------------------------------------------------------------------------------------
def test_ratio_analysis_by_hand():
    student = {"Breakout": 60, "Pong": 10, "Alien": 500, "MinAtar/Breakout-v1": 40, "Boxing": 5, "Hero": 500}
    teacher = {"ALE/Breakout-v5": 30, "Pong": -5, "Alien": 500, "MinAtar/Breakout-v1": 10, "Boxing": 0,
               "Hero": 1000, "Qbert": 100}
    r = ratio_analysis(student, teacher)
    assert r["games"] == ["Alien", "Boxing", "Breakout", "Hero", "MinAtar/Breakout-v1", "Pong"]
    assert r["n_games"] == 6 and r["only_teacher"] == ["Qbert"] and r["only_student"] == []

    # ratios: teacher <= 0 (Boxing 0, Pong -5) skipped; the MinAtar game stays (no HNS needed for a ratio)
    assert r["ratio"] == {"Alien": 1.0, "Breakout": 2.0, "Hero": 0.5, "MinAtar/Breakout-v1": 4.0}
    assert set(r["ratio_skipped"]) == {"Boxing", "Pong"}
    assert "0" in r["ratio_skipped"]["Boxing"] and "negative" in r["ratio_skipped"]["Pong"]
    assert r["ratio_mean"] == pytest.approx(7.5 / 4) and r["ratio_mean_pct"] == pytest.approx(87.5)
    assert r["ratio_median"] == pytest.approx(1.5) and r["ratio_median_pct"] == pytest.approx(50.0)
    assert r["ratio_geomean"] == pytest.approx(math.sqrt(2))  # (0.5 * 1 * 2 * 4) ** (1/4)
    assert r["ratio_geomean_pct"] == pytest.approx(100 * (math.sqrt(2) - 1))

    # wins / ties / losses on all six common games, raw scores
    assert (r["wins"], r["ties"], r["losses"]) == (4, 1, 1)
    assert r["won_games"] == ["Boxing", "Breakout", "MinAtar/Breakout-v1", "Pong"]
    assert r["tied_games"] == ["Alien"] and r["lost_games"] == ["Hero"]

    # HNS on the five Atari games; the MinAtar game is skipped for HNS only
    assert r["hns_games"] == ["Alien", "Boxing", "Breakout", "Hero", "Pong"]
    assert list(r["hns_skipped"]) == ["MinAtar/Breakout-v1"]
    hs = [(500 - 227.8) / 6899.9, (5 - 0.1) / 12.0, (60 - 1.7) / 28.8, (500 - 1027) / 29799.4, (10 + 20.7) / 35.3]
    ht = [(500 - 227.8) / 6899.9, (0 - 0.1) / 12.0, (30 - 1.7) / 28.8, (1000 - 1027) / 29799.4, (-5 + 20.7) / 35.3]
    assert r["hns_mean_student"] == pytest.approx(statistics.mean(hs))
    assert r["hns_mean_teacher"] == pytest.approx(statistics.mean(ht))
    assert r["hns_mean_diff"] == pytest.approx(statistics.mean(hs) - statistics.mean(ht))
    assert r["hns_median_student"] == pytest.approx(statistics.median(hs))
    assert r["hns_median_teacher"] == pytest.approx(statistics.median(ht))
    assert r["hns_median_diff"] == pytest.approx(statistics.median(hs) - statistics.median(ht))
    assert r["hns_mean_ratio"] == pytest.approx(statistics.mean(hs) / statistics.mean(ht))
    assert r["hns_mean_ratio_pct"] == pytest.approx(100 * (statistics.mean(hs) / statistics.mean(ht) - 1))

    # summed raw scores over the six common games
    assert r["sum_student"] == 1115 and r["sum_teacher"] == 1535
    assert r["sum_change_pct"] == pytest.approx(100 * (1115 / 1535 - 1))


def test_ratio_analysis_edge_cases():
    # a negative student score over a positive teacher: in the mean and median, not in the geometric mean
    r = ratio_analysis({"Pong": -3, "Breakout": 4}, {"Pong": 2, "Breakout": 2})
    assert r["ratio"] == {"Breakout": 2.0, "Pong": -1.5}
    assert r["ratio_mean"] == pytest.approx(0.25) and r["ratio_geomean"] == pytest.approx(2.0)
    assert list(r["ratio_geomean_skipped"]) == ["Pong"]
    # nothing in common: every statistic undefined, nothing raises
    e = ratio_analysis({"Breakout": 1.0}, {"Pong": 1.0})
    assert e["games"] == [] and e["ratio_mean"] is None and e["hns_mean_diff"] is None and e["sum_change_pct"] is None
    # only non-positive teacher scores: ratios undefined, HNS still computed
    z = ratio_analysis({"Pong": 5.0}, {"Pong": -21.0})
    assert z["n_ratio"] == 0 and z["ratio_mean_pct"] is None and z["wins"] == 1
    assert z["hns_mean_diff"] == pytest.approx(26 / 35.3)
    # a mean teacher HNS <= 0 (below random) gives no ratio of means
    assert z["hns_mean_teacher"] < 0 and z["hns_mean_ratio"] is None


# ---------------------------------------------------------------------------------------------------------
# The paper's Table 1 and its 12.1%
# ---------------------------------------------------------------------------------------------------------
def test_load_paper_table1(tmp_path):
    t1, methods = load_paper_table1()
    assert methods == METHODS and len(t1) == 14
    assert t1["UpNDown"]["Ours_distilled_student"] == 64405.0 and t1["PrivateEye"]["DrQ"] == -13.6
    bad = tmp_path / "bad.csv"
    bad.write_text("game,A,B\nAlien,1,\n")
    with pytest.raises(ValueError, match="numeric"):
        load_paper_table1(bad)


def test_paper_claim_against_an_independent_recomputation():
    rows = _read_csv(PAPER_TABLE1_CSV)
    ref = {r["game"]: r for r in _read_csv(DATA_DIR / "atari100k_reference_scores.csv")}
    s = {r["game"]: float(r["Ours_distilled_student"]) for r in rows}
    t = {r["game"]: float(r["EfficientZero_rerun"]) for r in rows}
    games = sorted(s)

    c = paper_claim()
    a = c["analysis"]
    assert c["games"] == games and c["n_games"] == 14 and a["n_games"] == 14 and a["ratio_skipped"] == {}

    ratios = [s[g] / t[g] for g in games]
    assert a["ratio_mean_pct"] == pytest.approx(100 * (statistics.mean(ratios) - 1))
    assert a["ratio_median_pct"] == pytest.approx(100 * (statistics.median(ratios) - 1))
    assert a["ratio_geomean_pct"] == pytest.approx(100 * (statistics.geometric_mean(ratios) - 1))
    assert a["sum_change_pct"] == pytest.approx(100 * (sum(s.values()) / sum(t.values()) - 1))
    wins = sum(s[g] > t[g] for g in games)
    ties = sum(s[g] == t[g] for g in games)
    assert (a["wins"], a["ties"], a["losses"]) == (wins, ties, 14 - wins - ties) == (11, 1, 2)

    def hns(g, x):
        return (x - float(ref[g]["random"])) / (float(ref[g]["human"]) - float(ref[g]["random"]))
    hs, ht = [hns(g, s[g]) for g in games], [hns(g, t[g]) for g in games]
    assert a["hns_mean_ratio_pct"] == pytest.approx(100 * (statistics.mean(hs) / statistics.mean(ht) - 1))
    assert a["hns_median_diff"] == pytest.approx(statistics.median(hs) - statistics.median(ht))

    # the numbers themselves (the paper's own table, so they should not move)
    assert round(a["ratio_mean_pct"], 2) == 51.19 and round(a["ratio_median_pct"], 2) == 8.70
    assert round(a["ratio_geomean_pct"], 2) == 22.60 and round(a["sum_change_pct"], 2) == 46.95
    assert round(a["hns_mean_ratio_pct"], 2) == 27.68

    # best other / best prior baseline per game, by a plain loop
    others = [m for m in METHODS if m != "Ours_distilled_student"]
    prior = [m for m in others if m != "EfficientZero_rerun"]
    best_other = {r["game"]: max(float(r[m]) for m in others) for r in rows}
    best_prior = {r["game"]: max(float(r[m]) for m in prior) for r in rows}
    assert {g: b["score"] for g, b in c["best_other"].items()} == best_other
    assert {g: b["score"] for g, b in c["best_prior"].items()} == best_prior
    by_name = {x["name"]: x for x in c["candidates"]}
    assert by_name["best other: mean of per-game % change"]["value_pct"] == pytest.approx(
        100 * (statistics.mean(s[g] / best_other[g] for g in games) - 1))
    assert by_name["best prior: median of per-game % change"]["value_pct"] == pytest.approx(
        100 * (statistics.median(s[g] / best_prior[g] for g in games) - 1))
    pub = {g: float(ref[g]["efficientzero_published"]) for g in games}
    assert by_name["published EfficientZero: summed raw scores"]["value_pct"] == pytest.approx(
        100 * (sum(s.values()) / sum(pub.values()) - 1))
    assert by_name["teacher: mean of (s - t) / s"]["value_pct"] == pytest.approx(
        100 * statistics.mean((s[g] - t[g]) / s[g] for g in games))

    # every candidate's flag agrees with its value; none of them reproduces the paper's 12.1%
    for x in c["candidates"]:
        assert x["matches"] == (x["value_pct"] is not None and abs(x["value_pct"] - 12.1) <= 0.05)
    assert c["matching"] == []
    assert c["closest"]["name"] == "teacher: mean of (s - t) / s" and round(c["closest"]["value_pct"], 1) == 11.9


# ---------------------------------------------------------------------------------------------------------
# Report table
# ---------------------------------------------------------------------------------------------------------
def test_per_game_table():
    rows = per_game_table({"teacher/a": {"ALE/Breakout-v5": 20.0, "MinAtar/Breakout-v1": 7.0},
                           "student/b": {"Breakout": 25.0, "Amidar": 3.0}})
    assert [r["game"] for r in rows] == ["Amidar", "Breakout", "MinAtar/Breakout-v1"]
    amidar, breakout, minatar = rows
    assert list(breakout) == ["game", "teacher/a", "student/b", "random", "human", "efficientzero_published",
                              *METHODS]
    assert breakout["teacher/a"] == 20.0 and breakout["student/b"] == 25.0
    assert (breakout["random"], breakout["human"], breakout["efficientzero_published"]) == (1.7, 30.5, 414.1)
    assert breakout["EfficientZero_rerun"] == 353.3 and breakout["Ours_distilled_student"] == 393.9
    assert amidar["teacher/a"] is None and amidar["human"] == 1719.5 and amidar["SPR"] is None  # not in Table 1
    assert minatar["random"] is None and minatar["MuZero"] is None and minatar["teacher/a"] == 7.0
    with pytest.raises(ValueError, match="collide"):
        per_game_table({"human": {"Breakout": 1.0}})


# ---------------------------------------------------------------------------------------------------------
# Distillation against RL only
# ---------------------------------------------------------------------------------------------------------
def _row(kind, exp, seed, scores, weights=None, game="MinAtar/Breakout-v1"):
    teacher = f"runs/{game.replace('/', '-')}__teacher__{seed}/teacher.pt"
    return {"kind": kind, "group": f"{kind}/{exp}", "game": game, "seed": seed,
            "teachers": [teacher] if kind == "student" else [], "distill_weights": weights,
            "scores": {"scores": scores, "mean": float(np.mean(scores))}}


def test_distillation_gains_against_a_recomputation_by_hand():
    """Each distilled group minus the RL-only student of the same teacher and seed: per seed with its episode SE,
    over seeds with the sample std; rows that cannot be paired are left out."""
    rl_only = {"response": 0.0, "feature_latent": 0.0, "feature_lstm": 0.0, "value": 0.0}
    response = {**rl_only, "response": 1.0}
    both = {**response, "feature_latent": 1.0, "feature_lstm": 1.0}
    scores = {  # (exp, seed) -> episode scores
        ("none", 1): [1, 2, 3, 2], ("response", 1): [4, 3, 5, 4], ("both", 1): [2, 2, 3, 1],
        ("none", 2): [2, 2, 2, 3], ("response", 2): [3, 3, 4, 3], ("both", 2): [3, 4, 2, 3]}
    weights = {"none": rl_only, "response": response, "both": both}
    rows = [_row("student", exp, seed, sc, weights[exp]) for (exp, seed), sc in scores.items()]
    rows += [_row("teacher", "teacher", 1, [5, 6, 7, 6]),
             _row("student", "response", 3, [9, 9, 9, 9], response),  # seed 3 has no RL-only student
             _row("student", "old", 1, [9, 9, 9, 9], None),  # an older summary without weights
             _row("student", "none", 1, [0, 0, 1, 0], rl_only, game="MinAtar/Asterix-v1")]  # no distilled partner

    got = distillation_gains(rows)
    assert [(g["game"], g["student"], g["rl_only"]) for g in got] == [
        ("MinAtar/Breakout-v1", "student/both", "student/none"),
        ("MinAtar/Breakout-v1", "student/response", "student/none")]
    for g in got:
        exp = g["student"].split("/")[1]
        diffs = []
        for p, seed in zip(g["pairs"], (1, 2)):
            x, y = scores[(exp, seed)], scores[("none", seed)]
            diff = statistics.mean(x) - statistics.mean(y)
            se = math.sqrt(statistics.variance(x) / len(x) + statistics.variance(y) / len(y))
            assert p["seed"] == seed and p["difference"] == pytest.approx(diff) and p["se"] == pytest.approx(se)
            assert (p["student"], p["rl_only"]) == pytest.approx((statistics.mean(x), statistics.mean(y)))
            diffs.append(diff)
        assert g["seeds"] == 2 and g["mean_difference"] == pytest.approx(statistics.mean(diffs))
        assert g["seed_std"] == pytest.approx(statistics.stdev(diffs)) and g["higher"] == sum(d > 0 for d in diffs)
        half = 12.7062 * statistics.stdev(diffs) / math.sqrt(2)  # t(0.975, 1 degree of freedom), from a table
        assert g["ci95"] == pytest.approx([statistics.mean(diffs) - half, statistics.mean(diffs) + half], rel=1e-4)
        assert g["median_difference"] == pytest.approx(statistics.median(diffs))
    assert got[1]["higher"] == 2 and got[0]["higher"] == 1  # response: +2.0, +1.0; both: 0.0, +0.75
    one_seed = distillation_gains([r for r in rows if r["seed"] == 1])
    assert one_seed and all(g["seeds"] == 1 and g["seed_std"] is None and g["ci95"] is None for g in one_seed)


@pytest.mark.parametrize("df, expected", [(1, 12.7062), (2, 4.3027), (4, 2.7764), (9, 2.2622), (29, 2.0452),
                                          (200, 1.9719)])
def test_t_quantile_matches_the_printed_table(df, expected):
    """The 97.5% point of Student's t, as every statistics table prints it (4 decimals)."""
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=1e-4)


def test_paired_ci_covers_the_mean_at_the_nominal_rate():
    """Simulated pairs with a known mean gain: the 95% interval holds it in about 95% of 2,000 draws of 5 seeds,
    and an interval needs two seeds."""
    rng = np.random.default_rng(0)
    hits = [lo <= 1.0 <= hi for lo, hi in (paired_ci(rng.normal(1.0, 2.0, size=5)) for _ in range(2000))]
    assert 0.93 < np.mean(hits) < 0.97
    assert paired_ci([1.0]) is None
