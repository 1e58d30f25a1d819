"""Environment protocol (docs/algorithm.md, 'Atari preprocessing'): life loss, no-ops, max-pooling, clipping, caps,
stacking, determinism."""

import numpy as np
import pytest

from common.envs import (ATARI_100K_GAMES, EVAL_MAX_STEPS, TRAIN_MAX_STEPS, AtariEnv, FrameStack, GameEnv,
                         human_normalized_score, load_reference_scores, make_env, resolve_env_id, stack_frames)


# ----------------------------------------------------------------------------------------------------------
# Scripted games for the train/eval semantics, independent of any emulator
# ----------------------------------------------------------------------------------------------------------
class ScriptedGame(GameEnv):
    """Each step pops (raw_reward, lives, game_over) from a script; frames carry the step index."""

    def __init__(self, script, mode, max_episode_steps=None, lives_at_start=0):
        super().__init__("Scripted", mode, seed=0, max_episode_steps=max_episode_steps)
        self.script, self.t, self.current_lives, self.new_games = list(script), 0, lives_at_start, 0
        self.lives_at_start = lives_at_start

    def _new_game(self):
        self.new_games += 1
        self.current_lives = self.lives_at_start
        return np.zeros((1, 2, 2), np.uint8)

    def _continue_game(self):
        return np.zeros((1, 2, 2), np.uint8)

    def _lives(self):
        return self.current_lives

    def _act(self, action):
        reward, lives, over = self.script[self.t]
        self.t += 1
        self.current_lives = lives
        return np.full((1, 2, 2), self.t, np.uint8), reward, over, False, lives


def test_only_a_decrease_of_lives_ends_a_training_episode():
    # Amidar-like: 0 lives at reset, then 3 once play starts (an increase must not count), then 2 (a loss).
    env = ScriptedGame([(0, 3, False), (0, 3, False), (5, 2, False), (0, 2, False), (0, 0, True)], "train")
    env.reset()
    dones = [env.step(0)[2] for _ in range(3)]
    assert dones == [False, False, True]
    assert env.new_games == 1
    env.reset()  # continues the same game
    assert env.new_games == 1 and env.game_score == 5
    _, _, term, trunc, info = env.step(0)
    assert not term and not trunc
    _, _, term, _, info = env.step(0)
    assert term and info["episode"] == {"r": 5.0, "l": 5}
    env.reset()
    assert env.new_games == 2 and env.game_score == 0


def test_eval_mode_plays_through_lost_lives():
    env = ScriptedGame([(1, 3, False), (0, 2, False), (0, 1, False), (2, 0, True)], "eval", lives_at_start=3)
    env.reset()
    out = [env.step(0) for _ in range(4)]
    assert [o[2] for o in out] == [False, False, False, True]
    assert [o[4]["life_lost"] for o in out] == [False, True, True, True]
    assert out[-1][4]["episode"] == {"r": 3.0, "l": 4}


def test_reward_clipping_only_in_train_mode():
    script = [(4.0, 0, False), (-7.0, 0, False), (0.0, 0, True)]
    train, ev = ScriptedGame(script, "train"), ScriptedGame(script, "eval")
    train.reset(), ev.reset()
    for expect_train, expect_eval in [(1.0, 4.0), (-1.0, -7.0), (0.0, 0.0)]:
        _, r_train, *_, info_train = train.step(0)
        _, r_eval, *_, info_eval = ev.step(0)
        assert (r_train, r_eval) == (expect_train, expect_eval)
        assert info_train["raw_reward"] == info_eval["raw_reward"] == expect_eval
    assert info_train["episode"]["r"] == -3.0  # raw game score, for logging


def test_time_caps_truncate_and_start_a_new_game():
    assert TRAIN_MAX_STEPS == 3_000 and EVAL_MAX_STEPS == 27_000
    assert ScriptedGame([], "train").max_episode_steps == 3_000
    assert ScriptedGame([], "eval").max_episode_steps == 27_000
    env = ScriptedGame([(0, 0, False)] * 10, "train", max_episode_steps=4)
    env.reset()
    flags = [env.step(0)[2:4] for _ in range(4)]
    assert flags == [(False, False)] * 3 + [(False, True)]
    env.reset()
    assert env.new_games == 2  # a cut game is not continued


# ----------------------------------------------------------------------------------------------------------
# Atari: frame processing against a fake emulator, then the real ALE
# ----------------------------------------------------------------------------------------------------------
class FakeALE:
    def __init__(self):
        self.n = 0

    def lives(self):
        return 3


class FakeGym:
    """Raw 210x160 frames whose pixel (0, 0, 0) holds a per-frame pattern, so the max-pool is visible."""

    def __init__(self, values, rewards):
        self.values, self.rewards, self.i, self.actions = values, rewards, 0, []

    def step(self, action):
        self.actions.append(action)
        frame = np.zeros((210, 160, 3), np.uint8)
        frame[:, :, 0] = self.values[self.i]
        frame[:, :, 1] = 255 - self.values[self.i]
        r = self.rewards[self.i]
        self.i += 1
        return frame, r, False, False, {}


def test_action_repeat_max_pools_last_two_frames_and_sums_rewards():
    env = AtariEnv("Breakout", mode="eval")
    env.env, env.ale = FakeGym([10, 200, 50, 90], [1.0, 0.0, 2.0, 3.0]), FakeALE()
    env.lives = 3
    frame, reward, *_ = env.step(2)
    assert env.env.actions == [2, 2, 2, 2]
    assert frame.shape == (3, 96, 96) and frame.dtype == np.uint8
    assert reward == 6.0
    assert (frame[0] == 90).all()  # max(50, 90): frames 1 and 2 are not part of the pool
    assert (frame[1] == 205).all()  # max(255 - 50, 255 - 90)


def test_noops_at_new_games_are_between_1_and_30():
    env = AtariEnv("Pong", mode="eval", seed=3)
    counts = []
    inner_step = env.env.step

    def counting_step(action):
        counts[-1] += 1
        assert action == 0
        return inner_step(action)

    env.env.step = counting_step
    for _ in range(60):
        counts.append(0)
        env.needs_new_game = True
        env.reset()
    assert 1 <= min(counts) and max(counts) <= 30
    assert len(set(counts)) > 10  # drawn, not fixed


def test_breakout_life_loss_semantics_on_the_real_game():
    rng = np.random.default_rng(0)
    env = make_env("Breakout", mode="train", seed=0)
    frame = env.reset()
    assert frame.shape == (3, 96, 96) and frame.dtype == np.uint8 and env.num_actions == 4
    start_lives = env.lives
    assert start_lives == 5
    for _ in range(5000):
        _, reward, term, trunc, info = env.step(rng.integers(4))
        assert reward in (-1.0, 0.0, 1.0)
        if term or trunc:
            break
    assert term and info["life_lost"] and "episode" not in info  # the game is not over
    score, lives = env.game_score, env.lives
    env.reset()  # the same game continues: no new game, lives and score carried over
    assert env.lives == lives == start_lives - 1 and env.game_score >= score and not env.needs_new_game
    episodes = 1
    while True:
        _, _, term, trunc, info = env.step(rng.integers(4))
        if term or trunc:
            episodes += 1
            if "episode" in info:
                break
            env.reset()
    assert episodes == 5 and info["episode"]["l"] > 0  # five lives, five training episodes, one game

    ev = make_env("ALE/Breakout-v5", mode="eval", seed=0)
    ev.reset()
    lost = 0
    for _ in range(20000):
        _, _, term, trunc, info = ev.step(rng.integers(4))
        lost += info["life_lost"]
        if term or trunc:
            break
    assert term and lost == 5 and "episode" in info  # all lives in one evaluation episode


def test_same_seed_same_frames():
    def run(seed):
        env = make_env("BreakoutNoFrameskip-v4", mode="train", seed=seed)
        frames = [env.reset()]
        for a in [1, 2, 3, 0, 1, 2] * 10:
            f, r, term, trunc, _ = env.step(a)
            frames.append(f)
            if term or trunc:
                frames.append(env.reset())
        return np.stack(frames)

    a, b = run(7), run(7)
    assert np.array_equal(a, b)


# ----------------------------------------------------------------------------------------------------------
# MinAtar
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("game,channels", [("Breakout", 4), ("Asterix", 4), ("Freeway", 7), ("Seaquest", 10),
                                           ("SpaceInvaders", 6)])
def test_minatar_interface(game, channels):
    env = make_env(f"MinAtar/{game}-v1", mode="eval", seed=0)
    frame = env.reset()
    assert frame.shape == (channels, 10, 10) and frame.dtype == np.uint8
    assert set(np.unique(frame)) <= {0, 255}
    f, r, term, trunc, info = env.step(0)
    assert f.shape == frame.shape and "raw_reward" in info


def test_minatar_determinism_and_clipping():
    def run(mode):
        env = make_env("MinAtar/Breakout-v1", mode=mode, seed=5)
        env.reset()
        rewards, frames = [], []
        rng = np.random.default_rng(1)
        for _ in range(300):
            f, r, term, trunc, info = env.step(rng.integers(env.num_actions))
            rewards.append((r, info["raw_reward"]))
            frames.append(f)
            if term or trunc:
                env.reset()
        return rewards, np.stack(frames)

    (r1, f1), (r2, f2) = run("train"), run("train")
    assert r1 == r2 and np.array_equal(f1, f2)
    assert all(r == np.sign(raw) for r, raw in r1)


# ----------------------------------------------------------------------------------------------------------
# Names, stacking, scores
# ----------------------------------------------------------------------------------------------------------
def test_name_resolution_and_unknown_names():
    for name in ["Breakout", "breakout", "ALE/Breakout-v5", "BreakoutNoFrameskip-v4"]:
        assert resolve_env_id(name) == ("atari", "Breakout")
    assert resolve_env_id("MinAtar/SpaceInvaders-v1") == ("minatar", "SpaceInvaders")
    with pytest.raises(ValueError, match="Atari 100k games: Alien"):
        make_env("Breakoot")
    with pytest.raises(ValueError, match="MinAtar/Asterix-v1"):
        make_env("MinAtar/Pong-v1")


def test_frame_stacking_helpers_agree_oldest_first():
    frames = np.arange(7)[:, None, None, None] * np.ones((7, 3, 2, 2), np.uint8)
    fs = FrameStack(4)
    got = [fs.reset(frames[0])] + [fs.push(frames[t]) for t in range(1, 7)]
    for t in range(7):
        want = stack_frames(frames, t, 4, start=0)
        assert want.shape == (12, 2, 2)
        assert np.array_equal(got[t], want)
    # oldest first, and the episode's first frame repeats at the start
    assert [int(v) for v in stack_frames(frames, 1, 4)[::3, 0, 0]] == [0, 0, 0, 1]
    assert [int(v) for v in stack_frames(frames, 6, 4, start=4)[::3, 0, 0]] == [4, 4, 5, 6]


def test_reference_table_and_hns():
    table = load_reference_scores()
    assert len(table) == 26 and ATARI_100K_GAMES[0] == "Alien"
    assert human_normalized_score("Breakout", 30.5) == pytest.approx(1.0)
    assert human_normalized_score("ALE/Pong-v5", -20.7) == pytest.approx(0.0)
    assert human_normalized_score("Breakout", 414.1) == pytest.approx((414.1 - 1.7) / (30.5 - 1.7))
    with pytest.raises(KeyError):
        human_normalized_score("MinAtar/Breakout-v1", 10)


def test_real_atari_train_cap_truncates_and_restarts_the_game():
    env = make_env("Pong", mode="train", seed=0, max_episode_steps=25)  # Pong has no lives: only the cap can cut
    assert env.obs_shape == (12, 96, 96)
    env.reset()
    for step in range(1, 26):
        _, _, term, trunc, info = env.step(0)
        if term or trunc:
            break
    assert step == 25 and trunc and not term and info["episode"]["l"] == 25
    env.reset()
    assert env.game_steps == 0 and env.game_score == 0.0


def test_toy_catch_rules():
    from common.envs import make_env

    env = make_env("Toy/Catch-v0", mode="train", seed=3)
    frame = env.reset()
    assert env.family == "toy" and env.num_actions == 3 and frame.shape == (2, 10, 5) and env.obs_shape == (8, 10, 5)
    col = int(np.argmax(frame[0, 0]))
    rewards = []
    for t in range(9):  # steer under the ball, then stay
        frame, r, terminated, truncated, info = env.step(int(np.sign(col - env.paddle)) + 1)
        rewards.append(r)
        assert terminated == (t == 8) and not truncated
    assert rewards == [0.0] * 8 + [1.0] and info["episode"] == {"r": 1.0, "l": 9}
    env.reset()
    for _ in range(9):  # run to the far side from the ball: always a miss
        _, r, terminated, _, _ = env.step(0 if env.ball_col >= 2 else 2)
    assert terminated and r == -1.0
    with pytest.raises(ValueError, match="unknown toy game"):
        make_env("Toy/Pong-v0")
