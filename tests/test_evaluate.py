"""Stage 3: 03_evaluate.py on checkpoints written by 01 and 02, the agreement metrics, and the evaluation options
it relies on (sticky actions, observation noise, held-out states)."""

import json

import numpy as np
import pytest
import torch

from common.distill import heldout_agreement
from common.envs import make_env
from common.networks import EfficientZeroNet, minatar_student_config, minatar_teacher_config
from common.selfplay import evaluate, random_play
from common.tree import MCTSConfig
from tests.conftest import evaluate_script

SMALL = ["--episodes", "2", "--num-simulations", "2", "--max-steps", "60", "--latency-repeats", "2",
         "--agreement-states", "64", "--threads", "1", "--no-progress"]


@pytest.fixture(scope="module")
def tiny_report(tiny_teacher, tiny_student, tmp_path_factory):
    """03 on the tiny teacher and its student, once for this module: -> the report's directory."""
    tmp_path = tmp_path_factory.mktemp("evaluate")
    r = evaluate_script(["--checkpoints", str(tiny_teacher), str(tiny_student.parent), "--name", "tiny",
                         "--export-onnx", *SMALL], tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    return tmp_path / "tiny"


def test_report_from_01_and_02_checkpoints(tiny_report):
    out = tiny_report
    summary = json.loads((out / "summary.json").read_text())
    for key in ("command", "git_commit", "versions", "hardware", "protocol", "models", "games", "aggregate_hns",
                "student_vs_teacher", "distillation_vs_rl", "agreement", "paper_claim", "notes", "references"):
        assert key in summary, key
    teacher, student = summary["models"]
    assert (teacher["kind"], student["kind"]) == ("teacher", "student")
    assert teacher["distill_weights"] is None
    # 02's defaults: every distillation term but the value one
    assert student["distill_weights"] == {"response": 1.0, "feature_latent": 1.0, "feature_lstm": 1.0, "value": 0.0}
    assert summary["distillation_vs_rl"] == []  # no RL-only student to compare with
    for m in (teacher, student):
        assert m["scores"]["episodes"] == 2 and len(m["scores"]["scores"]) == 2
        assert set(m["robustness"]) == {"sticky", "noise"}
        cost = m["cost"]
        for k in ("params_total", "params_acting", "macs_initial", "macs_recurrent", "macs_decision",
                  "latency_ms_decision_cpu", "checkpoint_mb", "file_mb"):
            assert cost[k] > 0, k
        assert cost["onnx"]["max_abs_diff"] < 1e-4
        assert m["curves"]  # both runs logged to TensorBoard
    assert summary["games"]["MinAtar/Breakout-v1"]["student/student"]["mean"] == student["scores"]["mean"]
    (agree,) = summary["agreement"]
    assert agree["student"] == student["label"] and agree["teacher"] == teacher["label"] and agree["states"] > 0
    assert 0 <= agree["search_action_agreement"] <= 1
    (pair,) = summary["student_vs_teacher"]
    assert pair["student"] == "student/student" and pair["teacher"] == "teacher/teacher"
    assert any("HNS" in n for n in summary["notes"])  # MinAtar: no human reference, said so
    rand = summary["random_play"]["MinAtar/Breakout-v1"]  # ... so random play is measured on the same seeds
    assert rand["seeds"] == [0, 1] and len(rand["scores"]) == 2 and rand["mean"] == np.mean(rand["scores"])
    assert summary["references"]["MinAtar/Breakout-v1"] == {"random (measured)": rand["mean"]}
    report = (out / "report.md").read_text()
    for heading in ("## Scores", "### Against random play", "## Student over teacher", "## Deployment cost",
                    "### ONNX", "## Agreement", "## Robustness", "## Plots"):
        assert heading in report, heading
    for png in ("scores.png", "cost_vs_score.png", "curves.png"):
        assert (out / png).stat().st_size > 1000 and f"]({png})" in report


def test_merge_recomputes_the_report_from_earlier_summaries(tiny_report, tmp_path):
    """--merge: two evaluations of one experiment with seeds 1 and 2 become one group of two seeds, without
    playing again; labels the two share are told apart; other protocols and double entries are refused."""
    first = json.loads((tiny_report / "summary.json").read_text())
    second = json.loads(json.dumps(first))  # the same runs as if trained with seed 2 and scored 1 higher
    for m in second["models"]:
        m["seed"], m["checkpoint"] = 2, m["checkpoint"].replace("__1__", "__2__")
        m["teachers"] = [t.replace("__1__", "__2__") for t in m["teachers"]]
        m["scores"]["mean"] += 1.0
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "summary.json").write_text(json.dumps(first))
    (tmp_path / "b" / "summary.json").write_text(json.dumps(second))
    sources = [str(tmp_path / x / "summary.json") for x in "ab"]
    r = evaluate_script(["--merge", *sources, "--name", "merged"], tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    merged = json.loads((tmp_path / "merged" / "summary.json").read_text())
    assert len(merged["models"]) == 4 and len({m["label"] for m in merged["models"]}) == 4
    row = merged["games"]["MinAtar/Breakout-v1"]["student/student"]
    s1, s2 = (s["models"][1]["scores"]["mean"] for s in (first, second))
    assert row["seeds"] == [1, 2] and row["per_seed"] == [s1, s2] and row["mean"] == pytest.approx((s1 + s2) / 2)
    assert row["seed_std"] == pytest.approx(0.5 ** 0.5)  # sample std of s and s + 1
    (pair,) = merged["student_vs_teacher"]  # each student found its own teacher by checkpoint path
    assert (pair["student"], pair["teacher"]) == ("student/student", "teacher/teacher")
    labels = {m["label"] for m in merged["models"]}
    assert len(merged["agreement"]) == 2 and all(a["student"] in labels and a["teacher"] in labels
                                                  for a in merged["agreement"])
    assert [m["summary"] for m in merged["merged_from"]] == sources
    assert merged["random_play"] == first["random_play"] and merged["protocol"] == first["protocol"]
    report = (tmp_path / "merged" / "report.md").read_text()
    assert "from 2 evaluations" in report and "### Against random play" in report
    assert "## Distillation against RL only" not in report  # no RL-only student: no section

    # an RL-only student of the seed-2 teacher (all distillation weights 0): the distilled one is compared with it
    rl_only = json.loads(json.dumps(second["models"][1]))
    rl_only.update(label="student/student-none/seed2", group="student/student-none",
                   checkpoint=rl_only["checkpoint"].replace("student", "student-none"),
                   distill_weights=dict.fromkeys(rl_only["distill_weights"], 0.0))
    rl_only["scores"]["scores"] = [x - 2.0 for x in rl_only["scores"]["scores"]]
    second["models"].append(rl_only)
    (tmp_path / "b" / "summary.json").write_text(json.dumps(second))
    r = evaluate_script(["--merge", *sources, "--name", "merged"], tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    (gain,) = json.loads((tmp_path / "merged" / "summary.json").read_text())["distillation_vs_rl"]
    assert (gain["student"], gain["rl_only"], gain["seeds"]) == ("student/student", "student/student-none", 1)
    assert gain["pairs"][0]["seed"] == 2 and gain["mean_difference"] == pytest.approx(2.0) and gain["higher"] == 1
    assert "## Distillation against RL only" in (tmp_path / "merged" / "report.md").read_text()
    second["models"].pop()

    r = evaluate_script(["--merge", sources[0], sources[0]], tmp_path)
    assert r.returncode != 0 and "more than one summary" in r.stderr and "Traceback" not in r.stderr
    second["protocol"]["episodes"] = 64
    (tmp_path / "b" / "summary.json").write_text(json.dumps(second))
    r = evaluate_script(["--merge", *sources], tmp_path)
    assert r.returncode != 0 and "another protocol" in r.stderr and "Traceback" not in r.stderr


def test_merged_cost_tables_keep_one_row_per_game_and_model(tiny_report, tmp_path):
    """Two games whose runs share labels (teacher/teacher/seed1 on both): the cost and ONNX tables keep both
    games' rows; a second seed of the same game adds none (the first seed's measurement stands)."""
    first = json.loads((tiny_report / "summary.json").read_text())
    other = json.loads(json.dumps(first).replace("Breakout", "SpaceInvaders"))  # the same runs, as another game
    seed2 = json.loads(json.dumps(first).replace("__1__", "__2__"))
    for m in seed2["models"]:
        m["seed"] = 2
    paths = []
    for name, summary in (("a", first), ("b", other), ("c", seed2)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(json.dumps(summary))
        paths.append(str(tmp_path / name / "summary.json"))
    r = evaluate_script(["--merge", *paths, "--name", "merged"], tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    report = (tmp_path / "merged" / "report.md").read_text()
    cost = report.split("## Deployment cost")[1].split("### ONNX")[0]
    onnx = report.split("### ONNX")[1].split("\n## ")[0]
    for table in (cost, onnx):
        rows = [line for line in table.splitlines() if line.startswith("| MinAtar/")]
        assert sorted(line.split(" | ")[:2] for line in rows) == [
            ["| MinAtar/Breakout-v1", "student/student"], ["| MinAtar/Breakout-v1", "teacher/teacher"],
            ["| MinAtar/SpaceInvaders-v1", "student/student"], ["| MinAtar/SpaceInvaders-v1", "teacher/teacher"]]


@pytest.mark.parametrize("on", [True, False])
def test_chunk_size_robustness_episodes_and_progress_flags(tiny_teacher, tmp_path, monkeypatch, on):
    """--search-chunk-size 1: no network call sees more than one root (the 2 episodes share one call otherwise);
    --robustness-episodes 1: each robustness evaluation plays 1 episode (otherwise --episodes, 2), --sticky-prob and
    --obs-noise set their perturbation; --progress draws tqdm bars, --no-progress none. In this process, so the
    network and evaluate() can be watched."""
    import common.selfplay
    from common.networks import EfficientZeroNet
    from tests.test_usage import run_in_process

    batches, robustness = [], []
    initial = EfficientZeroNet.initial_inference
    monkeypatch.setattr(EfficientZeroNet, "initial_inference", lambda net, obs: batches.append(len(obs)) or
                        initial(net, obs))
    evaluate_ = common.selfplay.evaluate  # 03 imports it from here when run

    def watched(*args, **kwargs):
        res = evaluate_(*args, **kwargs)
        if "sticky_action_prob" in kwargs or kwargs.get("obs_noise"):
            robustness.append((len(res["scores"]), kwargs.get("sticky_action_prob"), kwargs.get("obs_noise")))
        return res

    monkeypatch.setattr(common.selfplay, "evaluate", watched)
    flags = (["--search-chunk-size", "1", "--robustness-episodes", "1", "--sticky-prob", "0.5", "--obs-noise", "0.2",
              "--progress"] if on else ["--no-progress"])
    code, text = run_in_process("03_evaluate.py", [
        "--checkpoints", str(tiny_teacher), "--out-dir", str(tmp_path), "--episodes", "2", "--num-simulations", "2",
        "--max-steps", "20", "--threads", "1", "--no-cost", "--no-agreement", "--no-curves", *flags])
    assert code == 0, text
    assert max(batches) == (1 if on else 2), batches
    # (episodes, sticky probability, noise) of the two robustness evaluations; the defaults are 0.25 and 0.05
    assert robustness == ([(1, 0.5, None), (1, None, 0.2)] if on else [(2, 0.25, None), (2, None, 0.05)]), robustness
    assert ("teacher/teacher/seed1 sticky:   0%|" in text) == on and ("%|" in text) == on, text


@pytest.mark.parametrize("case", ["missing", "not-a-checkpoint", "incompatible"])
def test_bad_checkpoint_fails_with_a_readable_message(tiny_teacher, tmp_path, case):
    if case == "missing":
        path, message = tmp_path / "nope.pt", "does not exist"
    elif case == "not-a-checkpoint":
        path, message = tmp_path / "x.pt", "is not an ez-distill checkpoint"
        path.write_text("hello")
    else:  # a Breakout network declared as trained on Freeway (Freeway: 7 channels per frame, another input shape)
        ckpt = torch.load(tiny_teacher, weights_only=True)
        ckpt["args"]["env_id"] = "MinAtar/Freeway-v1"
        path, message = tmp_path / "teacher.pt", "incompatible checkpoint"
        torch.save(ckpt, path)
    r = evaluate_script(["--checkpoints", str(path), *SMALL], tmp_path)
    assert r.returncode != 0 and message in r.stderr, r.stderr[-2000:]
    assert "Traceback" not in r.stderr


def test_agreement_of_a_model_with_itself_is_perfect():
    torch.manual_seed(0)
    net = EfficientZeroNet(minatar_teacher_config((16, 10, 10), 3, channels=8, lstm_hidden=16)).eval()
    with torch.no_grad():  # the last layers start at zero: make the policies and values non-trivial
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    states = (np.random.default_rng(0).random((40, 16, 10, 10)) < 0.1).astype(np.uint8) * 255
    a = heldout_agreement(net, [net], states, MCTSConfig(num_simulations=4))
    assert {k: a[k] for k in ("states", "policy_argmax_agreement", "js_divergence", "value_mae",
                              "search_action_agreement")} == {"states": 40, "policy_argmax_agreement": 1.0,
                                                              "js_divergence": 0.0, "value_mae": 0.0,
                                                              "search_action_agreement": 1.0}
    assert 0 <= a["policy_vs_search_agreement"] <= 1  # a raw policy and its own search may disagree
    other = EfficientZeroNet(minatar_student_config((16, 10, 10), 3, channels=8, lstm_hidden=16)).eval()
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.1 * torch.randn_like(p))
    b = heldout_agreement(other, [net], states, MCTSConfig(num_simulations=4))
    assert b["js_divergence"] > 0 and b["value_mae"] > 0 and b["policy_argmax_agreement"] < 1


def test_random_play_follows_the_protocol():
    a = random_play("Toy/Catch-v0", 40, first_seed=3, seed=0)
    assert a == random_play("Toy/Catch-v0", 40, first_seed=3, seed=0)  # reproducible
    assert a["seeds"] == list(range(3, 43)) and a["lengths"] == [9] * 40 and set(a["scores"]) <= {-1.0, 1.0}
    assert -1 < np.mean(a["scores"]) < 0  # a random paddle mostly misses (about -0.6 expected)
    assert random_play("Toy/Catch-v0", 40, first_seed=3, seed=1)["scores"] != a["scores"]


def test_sticky_actions_repeat_the_previous_action():
    env = make_env("Toy/Catch-v0", mode="eval", seed=0, sticky_action_prob=1.0)
    env.reset()
    for _ in range(4):
        env.step(2)  # always "right": with p = 1 the initial "stay" repeats forever
    assert env.paddle == env.COLS // 2
    env = make_env("Toy/Catch-v0", mode="eval", seed=0, sticky_action_prob=0.0)
    env.reset()
    env.step(2)
    assert env.paddle == env.COLS // 2 + 1


def test_evaluate_records_states_and_noise_changes_inputs_only():
    net = EfficientZeroNet(minatar_teacher_config((8, 10, 5), 3, channels=8, lstm_hidden=16)).eval()
    mcts = MCTSConfig(num_simulations=2)
    clean = evaluate(net, "Toy/Catch-v0", 6, mcts, record_states=20)
    assert clean["states"].shape == (20, 8, 10, 5) and clean["states"].dtype == np.uint8
    assert set(np.unique(clean["states"])) <= {0, 255}  # the network's clean inputs
    again = evaluate(net, "Toy/Catch-v0", 6, mcts, record_states=20)
    assert np.array_equal(clean["states"], again["states"]) and clean["scores"] == again["scores"]
    noisy = evaluate(net, "Toy/Catch-v0", 6, mcts, obs_noise=0.3)
    assert noisy["lengths"] == clean["lengths"]  # Catch always lasts 9 steps: only what the network sees changed
