"""Stage 5: 05_inspect.py on the CI's tiny teacher and student. The view is written, every number it drew is what the
networks give on the episode's states (recomputed here from the replayed episode), a student inspected against
itself agrees with itself everywhere, and a bad checkpoint or game is refused in one line with no folder left."""

import contextlib
import copy
import io
import json
import runpy
import sys

import numpy as np
import pytest
import torch

from common.envs import FrameStack, make_env
from common.networks import EfficientZeroNet, NetConfig, support_to_scalar
from common.runs import load_checkpoint
from common.search import run_search
from common.selfplay import evaluate
from common.targets import value_prefix_targets
from common.tree import MCTSConfig, select_action
from tests.conftest import ROOT

K = 7  # longer than the value-prefix horizon (5): the unroll crosses an LSTM restart
SMALL = ["--num-simulations", "2", "--max-steps", "40", "--unroll-steps", str(K), "--frames", "4", "--threads", "1",
         "--no-progress"]


def inspect(args: list[str], out_dir) -> tuple[int, str]:
    """05_inspect.py's main block in this process (no interpreter and torch start-up per call): (exit code, output).
    Any exception but SystemExit propagates: a traceback the user would have seen."""
    out, argv = io.StringIO(), sys.argv
    sys.argv = [str(ROOT / "05_inspect.py"), "--out-dir", str(out_dir), *args]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            runpy.run_path(str(ROOT / "05_inspect.py"), run_name="__main__")
        return 0, out.getvalue()
    except SystemExit as e:
        return (e.code if isinstance(e.code, int) else 1), out.getvalue() + (e.code if isinstance(e.code, str) else "")
    finally:
        sys.argv = argv


def network(path) -> EfficientZeroNet:
    ckpt = load_checkpoint(path, None)
    net = EfficientZeroNet(NetConfig.from_dict(ckpt["config"]))
    net.load_state_dict(ckpt["model"])
    return net.eval()


@pytest.fixture(scope="module")
def seed(tiny_student) -> int:
    """An environment seed on which the tiny student's episode is long enough for several K-step unrolls (an
    untrained MinAtar Breakout paddle often misses the first ball: 6 steps)."""
    torch.set_num_threads(1)
    net, mcts = network(tiny_student), MCTSConfig(num_simulations=2)
    lengths = {s: evaluate(net, "MinAtar/Breakout-v1", 1, mcts, first_seed=s, max_steps=40,
                           rng=np.random.default_rng(s))["lengths"][0] for s in range(12)}
    best = max(lengths, key=lengths.get)
    assert lengths[best] >= K + 3, lengths
    return best


@pytest.fixture(scope="module")
def pair_view(tiny_student, tiny_teacher, seed, tmp_path_factory):
    out = tmp_path_factory.mktemp("inspect")
    code, text = inspect(["--checkpoint", str(tiny_student), "--teacher", str(tiny_teacher.parent), "--seed",
                          str(seed), "--name", "pair", *SMALL], out)
    assert code == 0, text
    return out / "pair"


def test_files_are_written(pair_view):
    view = json.loads((pair_view / "inspect.json").read_text())
    page = (pair_view / "index.html").read_text()
    assert set(view["figures"]) == {"episode.png", "policy.png", "value.png", "imagination.png", "unrolls.png",
                                    "agreement.png", "hidden_states.png"}
    for png in view["figures"]:
        assert (pair_view / png).stat().st_size > 5000 and f'src="{png}"' in page, png
    assert view["plays"] == "checkpoint" and view["networks"]["teacher"]["kind"] == "teacher"


def test_numbers_are_what_the_networks_give(pair_view, tiny_student, tiny_teacher, seed):
    """Replay the episode from its seed and recompute: the score (as 03_evaluate.py plays it), the rewards, the priors
    and values of both networks, the searches, the returns, and the unrolls in eval and train mode."""
    torch.set_num_threads(1)
    view = json.loads((pair_view / "inspect.json").read_text())
    student, teacher = network(tiny_student), network(tiny_teacher)
    ep, steps, mcts = view["episode"], view["per_step"], MCTSConfig(num_simulations=2)
    T = ep["length"]
    assert evaluate(student, "MinAtar/Breakout-v1", 1, mcts, first_seed=seed, max_steps=40,
                    rng=np.random.default_rng(seed)) == {"scores": [ep["score"]], "lengths": [T], "seeds": [seed]}

    # the episode again, with both searches as 05 runs them (the teacher's on a copy of the tie-breaking generator)
    env, stack, rng = make_env("MinAtar/Breakout-v1", mode="eval", seed=seed, max_episode_steps=40), FrameStack(), \
        np.random.default_rng(seed)
    stack.reset(env.reset())
    obs, rewards = [], []
    for t in range(T):
        obs.append(stack.obs())
        twin = copy.deepcopy(rng)
        for net, r, role in ((student, rng, "checkpoint"), (teacher, twin, "teacher")):
            res = run_search(net, obs[-1][None], mcts, rng=r)
            assert res.visit_counts[0].tolist() == steps[role]["visits"][t]
            assert res.root_value[0] == pytest.approx(steps[role]["root_value"][t], abs=1e-6)
            assert select_action(res.visit_counts, 0.0, r)[0] == steps[role]["action"][t]
        frame, reward, *_ = env.step(ep["actions"][t])
        stack.push(frame)
        rewards.append(reward)
    assert rewards == ep["raw_rewards"]
    obs = torch.from_numpy(np.stack(obs))

    with torch.no_grad():
        for net, role in ((student, "checkpoint"), (teacher, "teacher")):
            out = net.initial_inference(obs)
            np.testing.assert_allclose(torch.softmax(out.policy_logits, -1).numpy(), steps[role]["prior"], atol=1e-5)
            np.testing.assert_allclose(support_to_scalar(out.value_logits, 50).numpy(), steps[role]["value"],
                                       atol=1e-4)
    gamma, g = mcts.discount, [0.0]
    for r in reversed(np.sign(rewards)):  # MinAtar has no lives: one learner episode, the whole game
        g.insert(0, r + gamma * g[0])
    np.testing.assert_allclose(ep["returns"], g, atol=1e-9)

    # the unrolls: value prefixes of the network along the actions taken; the rewards 05 reports must sum back to
    # them the way the learner builds its prefix targets (restarting every 5 steps)
    im = view["imagination"]
    starts = np.asarray(im["starts"])
    assert len(starts) == T - K + 1 and im["actions"] == [ep["actions"][t:t + K] for t in starts]
    actions = torch.tensor(im["actions"])
    for mode in ("eval", "train"):
        net = student if mode == "eval" else copy.deepcopy(student).train()  # train: one batch of every start
        with torch.no_grad():
            out = net.initial_inference(obs[starts])
            latent, state = out.latent, net.initial_lstm_state(len(starts))
            prefixes, values = [], [support_to_scalar(out.value_logits, 50)]
            for k in range(K):
                step = net.recurrent_inference(latent, state, actions[:, k])
                prefixes.append(support_to_scalar(step.value_prefix_logits, 50))
                values.append(support_to_scalar(step.value_logits, 50))
                latent, state = step.latent, step.lstm_state
                if (k + 1) % 5 == 0:
                    state = net.initial_lstm_state(len(starts))
        np.testing.assert_allclose(im[mode]["value"], torch.stack(values, 1).numpy(), atol=1e-4)
        np.testing.assert_allclose(value_prefix_targets(np.asarray(im[mode]["reward"]), K, 5),
                                   torch.stack(prefixes, 1).numpy(), atol=1e-4)
    np.testing.assert_allclose(im["real_reward"], [np.sign(rewards[t:t + K]) for t in starts])
    np.testing.assert_allclose(im["real_value"], [g[t:t + K + 1] for t in starts], atol=1e-9)


def test_a_student_against_itself_agrees_everywhere(tiny_student, seed, tmp_path):
    code, text = inspect(["--checkpoint", str(tiny_student), "--teacher", str(tiny_student), "--seed", str(seed),
                               "--name", "self", *SMALL], tmp_path)
    assert code == 0 and "%|" not in text, text  # --no-progress: no bar
    view = json.loads((tmp_path / "self" / "inspect.json").read_text())
    agreement, steps = view["agreement"], view["per_step"]
    assert agreement["means"]["search_action"] == 1.0 and agreement["means"]["policy_argmax"] == 1.0
    assert agreement["means"]["js_divergence"] == 0.0 and agreement["means"]["visits_tv"] == 0.0
    assert steps["checkpoint"]["visits"] == steps["teacher"]["visits"]
    assert view["hidden_states"]["latent_mse"] == 0.0


def test_teacher_plays_unroll_every_and_progress(pair_view, tiny_student, tiny_teacher, seed, tmp_path, monkeypatch):
    """--teacher-plays: the episode is the one 03_evaluate.py plays with the teacher, the student searched on its
    states; --unroll-every 2: unrolls start on every second step; --progress: a bar (the other runs: none)."""
    import matplotlib.figure

    torch.set_num_threads(1)
    # the pictures are test_files_are_written's: not rendering them saves most of this run's seconds
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda fig, path, **kw: path.touch())
    code, text = inspect(["--checkpoint", str(tiny_student), "--teacher", str(tiny_teacher), "--teacher-plays",
                          "--seed", str(seed), "--name", "teacher-plays", "--num-simulations", "2", "--max-steps",
                          "40", "--unroll-steps", "2", "--unroll-every", "2", "--frames", "4", "--threads", "1",
                          "--progress"], tmp_path)
    assert code == 0, text
    assert f"teacher on MinAtar/Breakout-v1, seed {seed}:   0%|" in text, text
    view = json.loads((tmp_path / "teacher-plays" / "inspect.json").read_text())
    ep, steps = view["episode"], view["per_step"]
    assert view["plays"] == "teacher" and ep["actions"] == steps["teacher"]["action"]
    # not the student's episode (pair_view: the student plays the same seed), so the checks below tell them apart
    assert ep["actions"] != json.loads((pair_view / "inspect.json").read_text())["episode"]["actions"]

    # the teacher's episode again, as 03_evaluate.py plays it: the same actions and rewards, and the student's priors
    # are its priors on these states
    teacher, mcts, rng = network(tiny_teacher), MCTSConfig(num_simulations=2), np.random.default_rng(seed)
    env, stack = make_env("MinAtar/Breakout-v1", mode="eval", seed=seed, max_episode_steps=40), FrameStack()
    stack.reset(env.reset())
    obs, actions, rewards, done = [], [], [], False
    while not done:
        obs.append(stack.obs())
        actions.append(int(select_action(run_search(teacher, obs[-1][None], mcts, rng=rng).visit_counts, 0.0, rng)[0]))
        frame, reward, terminated, truncated, _ = env.step(actions[-1])
        stack.push(frame)
        rewards.append(reward)
        done = terminated or truncated
    assert (actions, rewards) == (ep["actions"], ep["raw_rewards"])
    with torch.no_grad():
        logits = network(tiny_student).initial_inference(torch.from_numpy(np.stack(obs))).policy_logits
    np.testing.assert_allclose(torch.softmax(logits, -1).numpy(), steps["checkpoint"]["prior"], atol=1e-5)
    # MinAtar has no lives: every step but the last K - 1 = 1 can start an unroll; every second one does
    starts = view["imagination"]["starts"]
    assert starts == list(range(0, ep["length"] - 1, 2)) and len(starts) >= 2, starts


@pytest.mark.parametrize("case", ["other game", "teacher of another game", "not a checkpoint", "bad flags"])
def test_bad_input_is_refused_in_one_line(case, tiny_teacher, tmp_path):
    out = tmp_path / "out"
    args = ["--checkpoint", str(tiny_teacher), "--name", "view", *SMALL]
    if case == "other game":
        args += ["--env-id", "MinAtar/Asterix-v1"]
    elif case == "teacher of another game":
        ckpt = load_checkpoint(tiny_teacher, "teacher")
        ckpt["args"]["env_id"] = "Toy/Catch-v0"
        torch.save(ckpt, tmp_path / "catch.pt")
        args += ["--teacher", str(tmp_path / "catch.pt")]
    elif case == "not a checkpoint":
        (tmp_path / "x.pt").write_text("not a checkpoint")
        args[1] = str(tmp_path / "x.pt")
    else:
        args += ["--unroll-steps", "0", "--max-steps", "-1"]
    code, text = inspect(args, out)
    lines = text.strip().splitlines()
    assert code != 0 and not out.exists(), text
    if case == "bad flags":
        assert code == 2 and lines[0] == "bad arguments:" and len(lines) == 3, text
    else:
        assert len(lines) == 1, text
