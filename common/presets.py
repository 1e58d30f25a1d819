"""Presets of the sweep (`04_sweep.py`): the flags of every stage, per game, so that a results table is one command.

A cell of the table is one (game, seed): a teacher (stage 1), the students distilled from it (stage 2, one run per
variant) and the evaluation of all of them together (stage 3). A preset says which games and seeds a table has by
default, the training budget per game (teacher and students share it), what every student adds, and how stage 3
plays. Flags given to the sweep come after the preset's, so they win (tyro keeps the last value of a flag).
"""

from dataclasses import dataclass

from common.envs import ATARI_100K_GAMES, MINATAR_GAMES
from common.scores import load_paper_table1

# The paper's L = L_RL + L_response + L_feature, with terms switched off by weight 0 (stage 2's flags).
VARIANTS: dict[str, list[str]] = {
    "none": ["--response-weight", "0", "--feature-latent-weight", "0", "--feature-lstm-weight", "0"],
    "response": ["--feature-latent-weight", "0", "--feature-lstm-weight", "0"],
    "feature": ["--response-weight", "0"],
    "both": [],
}


@dataclass(frozen=True)
class Preset:
    name: str
    family: str                  # "toy", "minatar" or "atari": how a game name becomes an --env-id
    games: tuple[str, ...]       # the table's games when --games is not given
    seeds: tuple[int, ...]
    variants: tuple[str, ...]    # the students of every cell (names of VARIANTS)
    budget: dict[str, list[str]]  # game -> flags of stages 1 and 2 ("*": every other game)
    student: tuple[str, ...]     # flags every student adds
    evaluate: tuple[str, ...]    # flags of the cell's stage 3
    about: str

    def env_id(self, game: str) -> str:
        return {"toy": f"Toy/{game}-v0", "minatar": f"MinAtar/{game}-v1", "atari": game}[self.family]

    def train_flags(self, game: str) -> list[str]:
        return list(self.budget.get(game, self.budget["*"]))


def _minatar_budget(steps: int, updates: int, eval_every: int) -> list[str]:
    # The CPU-scale preset of results/minatar/ (its README explains each choice). Networks: the MinAtar defaults
    # of common/networks.py (teacher 32 channels, LSTM 128; student inverted residuals, LSTM 48).
    return ["--total-env-steps", str(steps), "--random-transitions", "2000", "--train-updates", str(updates),
            "--extra-updates", "0", "--batch-size", "64", "--num-simulations", "20", "--segment-length", "200",
            "--reanalyse-fraction", "0", "--lr-warmup", "200", "--eval-interval", str(eval_every),
            "--eval-episodes", "16", "--final-eval-episodes", "32", "--checkpoint-interval", "500"]


def paper_games() -> tuple[str, ...]:
    """The 14 games of the seed paper's Table 1."""
    return tuple(load_paper_table1()[0])


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset(
        name="toy", family="toy", games=("Catch",), seeds=(1, 2), variants=("both",),
        # `make demo` and the CI learning tests: the smallest budget at which a teacher clearly learns Catch (4-13
        # minutes per run on 2 cores). 1,000 random transitions, then 1,000 agent steps of a 20-simulation search
        # while 1,500 updates of batch 32 run, then 500 more updates; no reanalysis (stored search policies).
        budget={"*": ["--total-env-steps", "2000", "--random-transitions", "1000", "--train-updates", "1500",
                      "--extra-updates", "500", "--batch-size", "32", "--num-simulations", "20", "--segment-length",
                      "50", "--channels", "16", "--lstm-hidden", "32", "--reanalyse-fraction", "0", "--lr-warmup",
                      "50", "--target-update-interval", "50", "--eval-interval", "500", "--eval-episodes", "16",
                      "--final-eval-episodes", "128"]},
        # the teacher's search as the response target: this small teacher's raw policy is nearly flat (max
        # probability ~0.4). A teacher search on every batch triples an update's cost, so the student gets the
        # teacher's environment budget but 1,000 updates instead of 2,000.
        student=("--response-target", "search", "--teacher-eval-episodes", "32", "--train-updates", "1000",
                 "--extra-updates", "0"),
        evaluate=("--num-simulations", "20", "--export-onnx"),
        about="Toy/Catch-v0 at the smallest budget where its teacher learns (make demo; 4-13 minutes per run)"),
    Preset(
        name="minatar", family="minatar", games=("Breakout", "SpaceInvaders", "Asterix"), seeds=(1, 2),
        variants=("none", "response", "feature", "both"),
        # The one per-game exception. Asterix rewards 0.6% of transitions (Breakout 5%): a teacher at the preset
        # stays at random play's level, one at twice the data and updates leaves it after 6,000 updates.
        budget={"*": _minatar_budget(20_000, 4_000, 1_000), "Asterix": _minatar_budget(40_000, 8_000, 2_000)},
        student=("--teacher-eval-episodes", "16"),
        evaluate=("--episodes", "32", "--num-simulations", "20", "--export-onnx"),
        about="the CPU-scale table of results/minatar/ (12-40 minutes per run on 2 CPU cores)"),
    Preset(
        name="atari-cpu", family="atari", games=("Breakout",), seeds=(1,), variants=(),
        # The Atari sanity run of results/minatar/: the largest budget that fits in about an hour of a 2-core CPU,
        # far below Atari 100k's. Episodes are capped at 3,000 agent steps, the cap of a training episode.
        budget={"*": ["--total-env-steps", "8000", "--random-transitions", "2000", "--train-updates", "1000",
                      "--extra-updates", "0", "--batch-size", "64", "--num-simulations", "20", "--segment-length",
                      "200", "--reanalyse-fraction", "0", "--lr-warmup", "100", "--eval-interval", "250",
                      "--eval-episodes", "4", "--final-eval-episodes", "8", "--eval-max-steps", "3000",
                      "--checkpoint-interval", "100"]},
        student=(),
        evaluate=("--episodes", "16", "--num-simulations", "20", "--max-steps", "3000", "--no-robustness",
                  "--export-onnx"),
        about="Atari at a CPU budget (the sanity run of results/minatar/): a teacher, no students by default"),
    Preset(
        name="atari100k", family="atari", games=paper_games(), seeds=(1, 2, 3), variants=("none", "both"),
        # The paper setting is every stage's default: 100k agent steps, 120k updates of batch 256, 50
        # simulations, 99% reanalysis; stage 3 plays the protocol (32 episodes, 27,000-step cap).
        budget={"*": []}, student=(), evaluate=("--export-onnx",),
        about="the paper's setting (stage defaults) on the seed paper's 14 games; --games all for all 26"),
)}

GAME_SETS = {"atari": {"paper": paper_games, "all": lambda: ATARI_100K_GAMES},
             "minatar": {"all": lambda: tuple(MINATAR_GAMES)}, "toy": {"all": lambda: ("Catch",)}}


def expand_games(preset: Preset, names: list[str]) -> list[str]:
    """Game names as the user typed them -> the list of games (`paper`, `all` expand); raises ValueError."""
    out: list[str] = []
    for name in names or list(preset.games):
        group = GAME_SETS[preset.family].get(name.lower())
        out += list(group()) if group else [name]
    return list(dict.fromkeys(out))  # once each, in order


# A plumbing check of the toy preset (the sweep's tests and its overhead benchmark): every stage runs, in about a
# minute per cell on one core, and nothing learns. Given to 04_sweep.py as --train-flags, --student-flags and
# --evaluate-flags, which come after the preset's.
SMOKE = {"train": "--total-env-steps 300 --random-transitions 100 --train-updates 20 --extra-updates 0 --batch-size 16 "
                  "--num-simulations 4 --segment-length 20 --channels 8 --lstm-hidden 16 --eval-interval 0 "
                  "--final-eval-episodes 8 --eval-max-steps 200 --checkpoint-interval 10",
         "student": "--train-updates 20 --teacher-eval-episodes 4 --response-target policy",
         "evaluate": "--episodes 8 --num-simulations 4 --max-steps 200 --latency-repeats 5 --agreement-states 64 "
                     "--no-robustness --no-cost --no-curves"}


def stage_flags(preset: str, stage: str, game: str | None = None) -> list[str]:
    """The flags a preset gives one stage (`teacher`, `student`: its first variant, or `evaluate`) of one game, as
    the sweep composes them, without the sweep's own (--run-dir, --threads, --seed, --teacher, --checkpoints)."""
    p = PRESETS[preset]
    game = game or p.games[0]
    train = ["--env-id", p.env_id(game), *p.train_flags(game)]
    return {"teacher": train, "student": [*train, *p.student, *VARIANTS[p.variants[0]]],
            "evaluate": list(p.evaluate)}[stage]


if __name__ == "__main__":  # `python -m common.presets toy teacher`: what `make demo` gives stage 1
    import sys

    print(" ".join(stage_flags(*sys.argv[1:])))
