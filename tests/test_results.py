"""The committed results are generated, not typed: every report.md under results/ is what 03_evaluate.py writes from
the summary.json beside it (the merged MinAtar report from its cells' summaries), and the tables that
results/minatar/README.md quotes match that report. Checkpoints are not committed, so a report is rebuilt through
--merge, which recomputes every table from a summary's per-checkpoint rows."""

import json
import math
import re
from pathlib import Path

import pytest

from tests.conftest import ROOT, evaluate_script

RESULTS = ROOT / "results"
REPORTS = sorted(p.relative_to(ROOT).as_posix() for p in RESULTS.rglob("report.md")
                 if (p.parent / "summary.json").exists())


def body(report: str) -> str:
    """The report from its first section on. The lines above it name the date, the commit and the command, which
    differ between the call that measured and the --merge that rebuilds it."""
    return report[report.index("\n## "):]


def first_difference(a, b, path: str = "") -> str | None:
    """Where two JSON values differ (None when they do not), floats compared to 1e-12 relative: numpy's exp and log
    may differ in the last bit between CPUs (a geometric mean rebuilt on an AVX-512 EPYC differed from the committed
    one in its 16th digit)."""
    if isinstance(a, float) and isinstance(b, float):
        return None if math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15) else f"{path}: {a!r} != {b!r}"
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return f"{path}: keys {sorted(a.keys() ^ b.keys())} in one only"
        return next((d for k in a if (d := first_difference(a[k], b[k], f"{path}.{k}"))), None)
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} != {len(b)} items"
        return next((d for i, (x, y) in enumerate(zip(a, b)) if (d := first_difference(x, y, f"{path}[{i}]"))), None)
    return None if a == b else f"{path}: {a!r} != {b!r}"


def merge(sources: list[str], out_dir: Path) -> Path:
    r = evaluate_script(["--name", "rebuilt", "--merge", *sources], out_dir)
    assert r.returncode == 0, r.stdout + r.stderr
    return out_dir / "rebuilt"


def test_the_committed_reports_are_found():
    assert {"results/minatar/report.md", "results/minatar/atari-Breakout/report.md", "results/demo/report.md"} <= set(
        REPORTS)
    assert sum(p.startswith("results/minatar/cells/") for p in REPORTS) == 12


@pytest.mark.parametrize("report", REPORTS)
def test_each_committed_report_is_rebuilt_from_its_summaries(report, tmp_path):
    summary_path = ROOT / report.replace("report.md", "summary.json")
    summary = json.loads(summary_path.read_text())
    # a merged report comes from the summaries it names (as 04_sweep.py merges them), any other from its own
    sources = [m["summary"] for m in summary["merged_from"]] if "merged_from" in summary else [
        summary_path.relative_to(ROOT).as_posix()]
    rebuilt = merge(sources, tmp_path)
    assert body((rebuilt / "report.md").read_text()) == body((ROOT / report).read_text())
    if "merged_from" in summary:  # the whole merged summary too, but for the call's own provenance
        fresh = json.loads((rebuilt / "summary.json").read_text())
        provenance = {"command", "git_commit", "git_dirty", "date", "args", "versions", "hardware"}
        assert first_difference({k: v for k, v in fresh.items() if k not in provenance},
                                {k: v for k, v in summary.items() if k not in provenance}) is None


def table(markdown: str, header_start: str, nth: int = 0) -> list[dict[str, str]]:
    """The body rows of the nth (from 0) markdown table whose header row starts with header_start, as {column: cell}
    (a repeated column name gets its position appended, so that every cell stays)."""
    lines = markdown.splitlines()
    start = [i for i, line in enumerate(lines) if line.startswith(header_start)][nth]
    names = []
    for i, c in enumerate(c.strip() for c in lines[start].strip("|").split("|")):
        names.append(c if c not in names else f"{c} {i}")
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(names, [c.strip() for c in line.strip("|").split("|")], strict=True)))
    return rows


README_MODELS = {"teacher": "teacher/teacher", "student, no distillation": "student/student-none",
                 "student, response only": "student/student-response",
                 "student, feature only": "student/student-feature", "student, both": "student/student-both"}
README_GAMES = ["Breakout", "SpaceInvaders", "Asterix"]  # the columns of the README's results table


def test_minatar_readme_quotes_the_merged_report():
    readme = (RESULTS / "minatar" / "README.md").read_text().replace("−", "-")  # the README writes a true minus
    report = (RESULTS / "minatar" / "report.md").read_text()

    scores = {(r["game"], r["model"]): f"{r['score']} ({r['per seed']})"
              for r in table(report, "| game | model | seeds | score |")}
    random_play = {r["game"]: r["random play (± episode std)"]
                   for r in table(report, "| game | model | score | random play")}
    quoted = table(readme, "| model | Breakout | SpaceInvaders | Asterix")
    assert [r["model"] for r in quoted] == [*README_MODELS, "uniformly random play (± episode std)"]
    for row in quoted:  # the README's columns are its games, in order
        name, *cells = row.values()
        for game, cell in zip(README_GAMES, cells, strict=True):
            env_id = f"MinAtar/{game}-v1"
            expected = scores[env_id, README_MODELS[name]] if name in README_MODELS else random_play[env_id]
            assert cell == expected, (name, game)

    gains = {(r["game"], r["student"]): (r["difference"], re.sub(r" \(seed \d+\)", "", r["per seed (± episode SE)"]))
             for r in table(report, "| game | student | RL only |")}
    quoted = table(readme, "| student | Breakout | per seed |")
    assert [r["student"] for r in quoted] == ["response only", "both", "feature only"]
    for row in quoted:  # per game, the mean difference and the per-seed differences
        name, *cells = row.values()
        for i, game in enumerate(README_GAMES):
            quoted_pair = (cells[2 * i], cells[2 * i + 1])
            assert quoted_pair == gains[f"MinAtar/{game}-v1", README_MODELS[f"student, {name}"]], (name, game)


def test_five_seed_tables_quote_the_five_seed_report():
    """The five-seed tables of results/minatar/README.md (one per game) and the README's five-seed headline table
    are the numbers of results/minatar/five-seeds/report.md."""
    report = (RESULTS / "minatar" / "five-seeds" / "report.md").read_text()
    scores = {(r["game"], r["model"]): r for r in table(report, "| game | model | seeds | score |")}
    gains = {r["game"]: r for r in table(report, "| game | student | RL only |")
             if r["student"] == "student/student-response"}
    games = ["Breakout", "SpaceInvaders"]
    models = {k: v for k, v in README_MODELS.items() if k in ("teacher", "student, no distillation",
                                                             "student, response only")}

    results_readme = (RESULTS / "minatar" / "README.md").read_text().replace("−", "-")
    for nth, game in enumerate(games):  # Breakout's table, then SpaceInvaders'
        quoted = table(results_readme, "| model | seeds | mean ± seed std | per seed |", nth)
        assert [r["model"] for r in quoted] == list(models), game
        for row in quoted:
            expected = scores[f"MinAtar/{game}-v1", models[row["model"]]]
            assert [row["seeds"], row["mean ± seed std"], row["per seed"], row["median"], row["IQM"]] == [
                expected["seeds"], expected["score"], expected["per seed"], expected["median"], expected["IQM"]], game

    headline = table((ROOT / "README.md").read_text().replace("−", "-"), "| 5 seeds: mean ± seed std |")
    assert [r["5 seeds: mean ± seed std"] for r in headline[:3]] == list(models)
    for row in headline[:3]:
        for game in games:  # the score, then in brackets the share of the teacher's mean score
            score = scores[f"MinAtar/{game}-v1", models[row["5 seeds: mean ± seed std"]]]["score"]
            assert row[game].split(" (")[0] == score, (row, game)
    for game in games:  # response - RL only: the mean difference, its interval, the seeds where it was higher
        g = gains[f"MinAtar/{game}-v1"]
        assert headline[3][game] == f"{g['difference'].split(' ±')[0]}, {g['95% interval']}, {g['higher in']}", game

