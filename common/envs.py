"""Environments: the Atari 100k protocol (docs/algorithm.md, 'Atari preprocessing') and MinAtar behind one small
interface.

    env = make_env("Breakout", mode="train", seed=0)   # or "ALE/Breakout-v5", "BreakoutNoFrameskip-v4",
    frame = env.reset()                                  #    "MinAtar/Breakout-v1"
    frame, reward, terminated, truncated, info = env.step(action)

Frames come one at a time as uint8 arrays [C, H, W] (Atari: 3x96x96 RGB; MinAtar: Cx10x10 planes of 0/255, so
the network's x/255 turns them into 0/1 floats on the same code path). Stacking the last 4 frames into the network
input is done by `FrameStack` (acting) and `stack_frames` (replay), which agree by construction.

Train mode (what the learner sees): rewards clipped to their sign, a lost life ends the learner's episode while the
game goes on (the next `reset()` continues it), episodes capped at 3,000 agent steps. Eval mode: whole games, raw
scores, 27,000-step cap. In both modes `info["raw_reward"]` is the unclipped reward and, when a game really ends
(game over or a cap), `info["episode"] = {"r": raw game score, "l": agent steps in the game}` for logging.
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
REFERENCE_SCORES_CSV = DATA_DIR / "atari100k_reference_scores.csv"

FRAME_STACK = 4  # network input = the last 4 frames, oldest first
# gamma per agent step: 0.997 per frame, 4 frames per step (EfficientZero's, kept on every game here). The n-step
# value targets (common/targets.py), the search's backups (MCTSConfig.discount) and 05_inspect's returns use it.
DISCOUNT = 0.997**4
TRAIN_MAX_STEPS = 3_000  # 12k frames: EfficientZero's cap on a training episode
EVAL_MAX_STEPS = 27_000  # 108k frames = 30 minutes of play: the Atari 100k evaluation cap
MINATAR_GAMES = {"Asterix": "asterix", "Breakout": "breakout", "Freeway": "freeway", "Seaquest": "seaquest",
                 "SpaceInvaders": "space_invaders"}


# ---------------------------------------------------------------------------------------------------------
# Game table and human-normalised score
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GameScores:
    game: str
    ale_id: str
    random: float
    human: float
    efficientzero_published: float


def load_reference_scores(path: Path = REFERENCE_SCORES_CSV) -> dict[str, GameScores]:
    """The 26 Atari 100k games with random, human and published EfficientZero scores."""
    with open(path, newline="") as f:
        return {r["game"]: GameScores(r["game"], r["ale_id"], float(r["random"]), float(r["human"]),
                                      float(r["efficientzero_published"])) for r in csv.DictReader(f)}


ATARI_100K_GAMES = tuple(load_reference_scores())


def human_normalized_score(game: str, score: float, table: dict[str, GameScores] | None = None) -> float:
    """HNS = (score - random) / (human - random). Accepts any name `resolve_env_id` accepts."""
    table = table or load_reference_scores()
    family, name = resolve_env_id(game)
    if family != "atari" or name not in table:
        raise KeyError(f"no human reference score for {game!r}; HNS is defined for the Atari 100k games: "
                       f"{', '.join(table)}")
    ref = table[name]
    return (score - ref.random) / (ref.human - ref.random)


# ---------------------------------------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------------------------------------
def _ale_games() -> dict[str, str]:
    """lower-case name -> ALE's CamelCase name, for every ROM ale-py ships."""
    import ale_py  # noqa: F401  (registers the ALE/ namespace)
    import gymnasium as gym

    gym.register_envs(ale_py)
    names = [k[4:-3] for k in gym.registry if k.startswith("ALE/") and k.endswith("-v5")]
    return {n.lower(): n for n in names}


def resolve_env_id(env_id: str) -> tuple[str, str]:
    """('atari', 'Breakout'), ('minatar', 'Breakout') or ('toy', 'Catch') from any accepted spelling; unknown
    names fail at once with the list of valid ones."""
    name = env_id.strip()
    if name.lower().startswith("toy/"):
        if name.lower().split("/", 1)[1].split("-v")[0] != "catch":
            raise ValueError(f"unknown toy game {env_id!r}; valid: Toy/Catch-v0")
        return "toy", "Catch"
    if name.lower().startswith("minatar/"):
        game = name.split("/", 1)[1].split("-v")[0]
        match = {k.lower(): k for k in MINATAR_GAMES}.get(game.lower())
        if match is None:
            raise ValueError(f"unknown MinAtar game {env_id!r}; valid: "
                             + ", ".join(f"MinAtar/{g}-v1" for g in MINATAR_GAMES))
        return "minatar", match
    if name.startswith("ALE/"):
        name = name[4:]
    for suffix in ("NoFrameskip-v4", "-v5", "-v4"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    games = _ale_games()
    if name.lower() not in games:
        raise ValueError(
            f"unknown game {env_id!r}. Atari 100k games: {', '.join(ATARI_100K_GAMES)}. "
            f"MinAtar: {', '.join(f'MinAtar/{g}-v1' for g in MINATAR_GAMES)}. "
            f"Any other ALE game also works: {', '.join(sorted(games.values()))}.")
    return "atari", games[name.lower()]


# ---------------------------------------------------------------------------------------------------------
# Frame stacking (shared by acting and replay)
# ---------------------------------------------------------------------------------------------------------
def stack_frames(frames: np.ndarray, t: int, n: int = FRAME_STACK, start: int = 0) -> np.ndarray:
    """Network input at time t from frames [T, C, H, W]: frames t-n+1..t concatenated on channels, oldest first.
    Indices before the episode's first frame `start` repeat it (at reset the stack is n copies of frame 0)."""
    idx = np.maximum(np.arange(t - n + 1, t + 1), start)
    return frames[idx].reshape(-1, *frames.shape[2:])


class FrameStack:
    """Rolling stack for acting: `reset(frame)` fills n copies, `push(frame)` drops the oldest."""

    def __init__(self, n: int = FRAME_STACK):
        self.n = n
        self.frames: np.ndarray | None = None

    def reset(self, frame: np.ndarray) -> np.ndarray:
        self.frames = np.repeat(frame[None], self.n, axis=0)
        return self.obs()

    def push(self, frame: np.ndarray) -> np.ndarray:
        self.frames = np.concatenate([self.frames[1:], frame[None]], axis=0)
        return self.obs()

    def obs(self) -> np.ndarray:
        return self.frames.reshape(-1, *self.frames.shape[2:])


# ---------------------------------------------------------------------------------------------------------
# Environments
# ---------------------------------------------------------------------------------------------------------
class GameEnv:
    """Train/eval semantics shared by Atari and MinAtar. Subclasses provide `_new_game()`, `_continue_game()`,
    `_act(action) -> (frame, raw_reward, game_over, lives)`, `_lives()`."""

    family = ""

    def __init__(self, game: str, mode: str, seed: int, max_episode_steps: int | None):
        if mode not in ("train", "eval"):
            raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")
        self.game, self.mode, self.seed = game, mode, seed
        self.train = mode == "train"
        self.max_episode_steps = max_episode_steps or (TRAIN_MAX_STEPS if self.train else EVAL_MAX_STEPS)
        self.rng = np.random.default_rng(seed)
        self.needs_new_game = True
        self.game_score = 0.0  # raw, unclipped score of the current game
        self.game_steps = 0  # agent steps in the current game
        self.episode_steps = 0  # agent steps in the learner's current episode (one life in train mode)
        self.lives = 0

    @property
    def obs_shape(self) -> tuple[int, int, int]:
        """Shape of the network input: FRAME_STACK frames stacked on the channel axis."""
        c, h, w = self.frame_shape
        return (FRAME_STACK * c, h, w)

    def reset(self) -> np.ndarray:
        """Start the next learner episode: a new game after a game over or a cap, else (train mode, after a lost
        life) the same game goes on."""
        if self.needs_new_game:
            frame = self._new_game()
            self.game_score, self.game_steps = 0.0, 0
            self.needs_new_game = False
        else:
            frame = self._continue_game()
        self.lives = self._lives()
        self.episode_steps = 0
        return frame

    def step(self, action: int):
        frame, raw_reward, game_over, truncated_by_env, lives = self._act(int(action))
        self.game_score += raw_reward
        self.game_steps += 1
        self.episode_steps += 1
        # Only a *decrease* counts as a lost life: some games report 0 lives at reset and more once play starts.
        life_lost = lives < self.lives
        self.lives = lives
        terminated = game_over or (self.train and life_lost)
        truncated = not terminated and (truncated_by_env or self.episode_steps >= self.max_episode_steps)
        reward = float(np.sign(raw_reward)) if self.train else raw_reward
        info = {"raw_reward": raw_reward, "lives": lives, "life_lost": life_lost}
        if game_over or truncated:  # the game itself is over: the next reset starts a new one
            self.needs_new_game = True
            info["episode"] = {"r": self.game_score, "l": self.game_steps}
        return frame, reward, terminated, truncated, info


class AtariEnv(GameEnv):
    """`ALE/<Game>-v5` with frameskip 1, no sticky actions, minimal action set; 1..30 raw no-op frames at every
    new game; action repeat 4 with the max of the last two raw frames; 96x96 RGB (cv2.INTER_AREA)."""

    family = "atari"

    def __init__(self, game: str, mode: str = "train", seed: int = 0, max_episode_steps: int | None = None,
                 noop_max: int = 30, frame_skip: int = 4, size: int = 96, sticky_action_prob: float = 0.0):
        import ale_py
        import gymnasium as gym

        super().__init__(game, mode, seed, max_episode_steps)
        gym.register_envs(ale_py)
        # frameskip=1: we repeat actions ourselves to max-pool the last two frames (flicker in many games).
        self.env = gym.make(f"ALE/{game}-v5", frameskip=1, repeat_action_probability=sticky_action_prob,
                            full_action_space=False, max_num_frames_per_episode=10**9)
        self.ale = self.env.unwrapped.ale
        self.num_actions = int(self.env.action_space.n)
        self.noop_max, self.frame_skip, self.size = noop_max, frame_skip, size
        self.frame_shape = (3, size, size)
        self.first_reset = True

    def _process(self, raw: np.ndarray) -> np.ndarray:
        return cv2.resize(raw, (self.size, self.size), interpolation=cv2.INTER_AREA).transpose(2, 0, 1)

    def _new_game(self) -> np.ndarray:
        # Seed once; later games draw from the same seeded emulator RNG, so a run is reproducible end to end.
        raw, _ = self.env.reset(seed=self.seed if self.first_reset else None)
        self.first_reset = False
        for _ in range(int(self.rng.integers(1, self.noop_max + 1))):  # random start state (DQN's no-op starts)
            raw, _, term, trunc, _ = self.env.step(0)
            if term or trunc:
                raw, _ = self.env.reset()
        return self._process(raw)

    def _continue_game(self) -> np.ndarray:
        # After a lost life the learner's episode restarts in the same game; like the baselines' EpisodicLifeEnv
        # that EfficientZero used, advance past the life-loss screen with one no-op agent step (its reward, if
        # any, still counts towards the raw game score).
        frame, raw_reward, game_over, trunc, _ = self._act(0)
        self.game_score += raw_reward
        self.game_steps += 1
        if game_over or trunc:  # extremely rare: the game ended during that no-op; start a fresh one
            self.needs_new_game = True
            return self.reset()
        return frame

    def _lives(self) -> int:
        return int(self.ale.lives())

    def _act(self, action: int):
        total, last_two = 0.0, []
        terminated = truncated = False
        for _ in range(self.frame_skip):
            raw, r, terminated, truncated, _ = self.env.step(action)
            total += float(r)
            last_two = (last_two + [raw])[-2:]
            if terminated or truncated:
                break
        frame = np.maximum(last_two[0], last_two[-1]) if len(last_two) == 2 else last_two[0]
        return self._process(frame), total, bool(terminated), bool(truncated), int(self.ale.lives())

    def close(self):
        self.env.close()


def _minatar_environment():
    """MinAtar's `Environment`, imported so that a Ctrl-C is not lost: MinAtar wraps its optional matplotlib import
    (most of a second) in a bare `except:`, which would swallow the KeyboardInterrupt and let the run go on. A
    Ctrl-C during the import is held back and delivered once it is done."""
    import signal
    import threading

    if "minatar" in sys.modules or threading.current_thread() is not threading.main_thread():
        from minatar import Environment  # loaded already (or no signals here: only the main thread gets them)
        return Environment
    held: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
    try:
        from minatar import Environment
    finally:
        signal.signal(signal.SIGINT, previous)
    if held:
        signal.raise_signal(signal.SIGINT)  # now handled as the process would have: KeyboardInterrupt, or ignored
    return Environment


class MinAtarEnv(GameEnv):
    """`MinAtar/<Game>-v1`: minimal action set, 10x10xC boolean state -> uint8 [C, 10, 10] planes of 0/255,
    no downsampling and no no-op starts. MinAtar's own protocol keeps sticky actions at 0.1 (Young & Tian 2019);
    it has no lives, so train and eval differ only in reward clipping and the step cap."""

    family = "minatar"

    def __init__(self, game: str, mode: str = "train", seed: int = 0, max_episode_steps: int | None = None,
                 sticky_action_prob: float = 0.1):
        super().__init__(game, mode, seed, max_episode_steps)
        self.env = _minatar_environment()(MINATAR_GAMES[game], sticky_action_prob=sticky_action_prob)
        self.env.seed(seed)
        self.action_set = list(self.env.minimal_action_set())
        self.num_actions = len(self.action_set)
        h, w, c = self.env.state_shape()
        self.frame_shape = (c, h, w)

    def _frame(self) -> np.ndarray:
        return (self.env.state().transpose(2, 0, 1).astype(np.uint8) * 255)

    def _new_game(self) -> np.ndarray:
        self.env.reset()
        return self._frame()

    def _continue_game(self) -> np.ndarray:  # MinAtar has no lives, so every learner episode is a whole game
        return self._new_game()

    def _lives(self) -> int:
        return 0

    def _act(self, action: int):
        reward, done = self.env.act(self.action_set[action])
        return self._frame(), float(reward), bool(done), False, 0

    def close(self):
        pass


class CatchEnv(GameEnv):
    """`Toy/Catch-v0` (bsuite's Catch): a ball falls from a random column of the top row of a 10x5 board, one row
    per step; the paddle on the bottom row moves left / stays / moves right. After 9 steps the episode ends with
    +1 if the paddle is under the ball, else -1. Dynamics are deterministic (only the ball's column is drawn at
    reset), so a learner that works masters it in minutes on a CPU: the environment of the CI learning test.
    Frames: 2 planes (ball, paddle) of 0/255, like MinAtar. `sticky_action_prob` (default 0, used by the
    robustness evaluation): with this probability the previous action is repeated instead of the chosen one."""

    family = "toy"
    ROWS, COLS = 10, 5

    def __init__(self, game: str = "Catch", mode: str = "train", seed: int = 0, max_episode_steps: int | None = None,
                 sticky_action_prob: float = 0.0):
        super().__init__(game, mode, seed, max_episode_steps)
        self.num_actions = 3
        self.frame_shape = (2, self.ROWS, self.COLS)
        self.sticky_action_prob = sticky_action_prob
        self.last_action = 1

    def _frame(self) -> np.ndarray:
        f = np.zeros(self.frame_shape, np.uint8)
        f[0, self.ball_row, self.ball_col] = 255
        f[1, self.ROWS - 1, self.paddle] = 255
        return f

    def _new_game(self) -> np.ndarray:
        self.ball_row, self.ball_col = 0, int(self.rng.integers(self.COLS))
        self.paddle = self.COLS // 2
        self.last_action = 1  # "stay"
        return self._frame()

    def _continue_game(self) -> np.ndarray:
        return self._new_game()

    def _lives(self) -> int:
        return 0

    def _act(self, action: int):
        if self.sticky_action_prob and self.rng.random() < self.sticky_action_prob:
            action = self.last_action
        self.last_action = action
        self.paddle = int(np.clip(self.paddle + action - 1, 0, self.COLS - 1))
        self.ball_row += 1
        done = self.ball_row == self.ROWS - 1
        reward = (1.0 if self.ball_col == self.paddle else -1.0) if done else 0.0
        return self._frame(), reward, done, False, 0

    def close(self):
        pass


def make_env(env_id: str, mode: str = "train", seed: int = 0, **kwargs) -> GameEnv:
    """Build an Atari 100k, MinAtar or toy environment from any accepted name (see `resolve_env_id`)."""
    family, game = resolve_env_id(env_id)
    return {"atari": AtariEnv, "minatar": MinAtarEnv, "toy": CatchEnv}[family](game, mode=mode, seed=seed, **kwargs)
