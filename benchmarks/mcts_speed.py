"""Time one 50-simulation search (tree work only) for the vectorised numpy MCTS and the slow reference.

    python benchmarks/mcts_speed.py --json-out results/mcts_speed.json

The fake model's outputs (value prefixes, values, 18-action logits for every simulation and root) are generated
before timing, so only selection, expansion and backup are measured. Medians over repeats after a warm-up.
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tyro

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere: common/ and tests/ importable
from common.runs import save_json  # noqa: E402
from common.tree import MCTSConfig, search  # noqa: E402
from tests.reference_mcts import RefConfig, reference_search  # noqa: E402

# On a 2-core CPU (issue #3): EfficientZero's C++ tree, LightZero's C++ tree, and this project's targets, in ms.
EFFICIENTZERO_CTREE = {1: 0.34, 8: 1.8, 64: 13, 256: 88, 1024: 534}
LIGHTZERO_CTREE = {1: 0.30, 8: 1.2, 64: 12, 256: 57, 1024: 285}
TARGETS = {1: 10, 8: 15, 64: 25, 256: 50, 1024: 150}


@dataclass
class Args:
    batch_sizes: list[int] = field(default_factory=lambda: [1, 8, 64, 256, 1024, 1536])
    """numbers of roots searched together"""
    reference_max_batch: int = 256
    """time the one-root-at-a-time reference only up to this batch size"""
    num_actions: int = 18
    num_simulations: int = 50
    repeats: int = 7
    """timed searches per batch size (median reported)"""
    seed: int = 0
    json_out: str | None = None
    """write {"vectorized": {B: ms}, "reference": {B: ms}} here"""


def fake_outputs(rng, sims, batch, actions):
    return (rng.normal(0, 1, (sims, batch)), rng.normal(0, 1, (sims, batch)), rng.normal(0, 1, (sims, batch, actions)))


def time_vectorized(outs, cfg, seed):
    prefix, value, logits = outs
    root_logits = logits[0]

    def recurrent_fn(parent, action, new, reset):
        return prefix[new - 1], value[new - 1], logits[new - 1]

    t0 = time.perf_counter()
    search(root_logits, recurrent_fn, cfg, rng=np.random.default_rng(seed), add_noise=True)
    return (time.perf_counter() - t0) * 1000


def time_reference(outs, cfg, seed):
    prefix, value, logits = outs
    ref_cfg = RefConfig(num_simulations=cfg.num_simulations)
    rng = np.random.default_rng(seed)
    noise = rng.dirichlet([cfg.dirichlet_alpha] * logits.shape[2], size=logits.shape[1])
    t0 = time.perf_counter()
    for b in range(logits.shape[1]):
        calls = iter(range(cfg.num_simulations))

        def recurrent_fn(path, b=b, calls=calls):
            s = next(calls)
            return prefix[s, b], value[s, b], logits[s, b]

        reference_search(logits[0, b], recurrent_fn, ref_cfg, noise=noise[b], rng=rng)
    return (time.perf_counter() - t0) * 1000


def main(args: Args) -> dict:
    cfg = MCTSConfig(num_simulations=args.num_simulations)
    rng = np.random.default_rng(args.seed)
    result = {"vectorized": {}, "reference": {}}
    for B in args.batch_sizes:
        outs = fake_outputs(rng, args.num_simulations, B, args.num_actions)
        for i in range(2):  # warm-up
            time_vectorized(outs, cfg, i)
        result["vectorized"][str(B)] = statistics.median(time_vectorized(outs, cfg, i) for i in range(args.repeats))
        if B <= args.reference_max_batch:
            time_reference(outs, cfg, 0)
            reps = max(1, min(args.repeats, 3 if B >= 64 else args.repeats))
            result["reference"][str(B)] = statistics.median(time_reference(outs, cfg, i) for i in range(reps))
    print(f"one {args.num_simulations}-simulation search, {args.num_actions} actions, tree work only (ms, median)")
    print(f"{'B':>6s}{'numpy':>10s}{'reference':>11s}{'EZ C++':>9s}{'LZ C++':>9s}{'target':>8s}")
    for B in args.batch_sizes:
        ref = result["reference"].get(str(B))
        cells = [f"{result['vectorized'][str(B)]:10.1f}", f"{ref:11.1f}" if ref else f"{'-':>11s}"]
        for table, width in ((EFFICIENTZERO_CTREE, 9), (LIGHTZERO_CTREE, 9), (TARGETS, 8)):
            cells.append(f"{table.get(B, '-'):>{width}}")
        print(f"{B:>6d}" + "".join(cells))
    if args.json_out:
        save_json(args.json_out, result)
    return result


if __name__ == "__main__":
    main(tyro.cli(Args, description=__doc__))
