"""A slow, obviously-correct MCTS with EfficientZero's rules: one root, one Python object per node, plain loops.

It is the independent reference for `common/mcts.py` (the batched numpy search) and shares no code with it.
The rules (docs/algorithm.md, 'Search (MCTS)') are written out step by step in `reference_search`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass
class RefConfig:
    num_simulations: int = 50
    discount: float = 0.997 ** 4
    pb_c_base: float = 19652.0
    pb_c_init: float = 1.25
    exploration_fraction: float = 0.25  # weight of the root's Dirichlet noise
    value_delta_min: float = 0.01  # floor of (max - min) when normalising Q
    value_prefix_horizon: int = 5  # a leaf at a depth divisible by this is a reset node
    tie_eps: float = 1e-6


@dataclass(eq=False)
class RefNode:
    """One expanded node. `child_priors[a]` is this node's prior for action a (its policy); `children` holds only
    the children that have been expanded, each with `prior` = its parent's child_priors[action]."""
    prior: float
    depth: int = 0
    parent: RefNode | None = None
    visit_count: int = 0
    value_sum: float = 0.0
    value_prefix: float = 0.0
    is_reset: bool = False
    child_priors: list = field(default_factory=list)
    children: dict = field(default_factory=dict)


@dataclass
class RefResult:
    visit_counts: np.ndarray  # int, [A]: visits of the root's children
    root_value: float  # root value_sum / root visit_count (num_simulations + 1 visits)
    root: RefNode
    min_max: tuple  # (min, max) of the tree's Q statistics at the end; (inf, -inf) if never updated


def _softmax(logits, legal):
    """Softmax over the legal actions (max subtracted first); illegal actions get 0."""
    top = max(float(logits[a]) for a in range(len(legal)) if legal[a])
    exps = [math.exp(float(logits[a]) - top) if legal[a] else 0.0 for a in range(len(legal))]
    total = sum(exps)
    return [e / total for e in exps]


def _reward(child: RefNode, parent: RefNode) -> float:
    """Reward on the edge parent -> child: the prefix difference, or the child's prefix if the parent was reset."""
    return child.value_prefix if parent.is_reset else child.value_prefix - parent.value_prefix


def _q(child: RefNode, parent: RefNode, discount: float) -> float:
    """Q(parent, action) = r + discount * (child value_sum / child visits); only for visited children."""
    return _reward(child, parent) + discount * child.value_sum / child.visit_count


def reference_search(root_logits, recurrent_fn, config: RefConfig = RefConfig(), noise=None, legal_mask=None,
                     rng=None) -> RefResult:
    """Run `config.num_simulations` simulations from one root.

    recurrent_fn(path) -> (value_prefix, value, logits) evaluates the node reached from the root by the action
    tuple `path` (len >= 1); it is called once per simulation, for the new leaf. noise: Dirichlet noise for the
    root (length A; illegal entries ignored) or None. legal_mask: actions allowed at every node, or None for all.
    rng: None breaks score ties by lowest action index, a numpy Generator picks uniformly among tied actions.
    """
    cfg, A = config, len(root_logits)
    legal = [True] * A if legal_mask is None else [bool(x) for x in legal_mask]
    stats = [math.inf, -math.inf]  # the tree's [min, max] of r + discount * V over non-root nodes

    def normalise(q):
        delta = stats[1] - stats[0]
        return (q - stats[0]) / max(delta, cfg.value_delta_min) if delta > 0 else q

    root = RefNode(prior=1.0, depth=0, is_reset=True, visit_count=1, value_sum=0.0, value_prefix=0.0)
    root.child_priors = _softmax(root_logits, legal)
    if noise is not None:
        f = cfg.exploration_fraction
        root.child_priors = [(1 - f) * p + f * float(noise[a]) if legal[a] else 0.0
                             for a, p in enumerate(root.child_priors)]

    for _ in range(cfg.num_simulations):
        # 1. Selection: descend until the chosen action has no child yet.
        node, path, parent_q = root, [], 0.0
        while True:
            visited = [_q(c, node, cfg.discount) for c in node.children.values() if c.visit_count > 0]
            if node is root and visited:
                mean_q = sum(visited) / len(visited)
            else:
                mean_q = (parent_q + sum(visited)) / (len(visited) + 1)
            n = node.visit_count - 1
            scores = {}
            for a in range(A):
                if not legal[a]:
                    continue
                child = node.children.get(a)
                child_visits = child.visit_count if child is not None else 0
                pb_c = (math.log((n + cfg.pb_c_base + 1) / cfg.pb_c_base) + cfg.pb_c_init) * math.sqrt(n)
                prior_score = pb_c / (child_visits + 1) * node.child_priors[a]
                q = _q(child, node, cfg.discount) if child_visits > 0 else mean_q
                scores[a] = prior_score + min(max(normalise(q), 0.0), 1.0)
            best = max(scores.values())
            tied = [a for a in sorted(scores) if scores[a] >= best - cfg.tie_eps]
            action = tied[0] if rng is None else tied[int(rng.integers(len(tied)))]
            path.append(action)
            parent_q = mean_q
            if action not in node.children:
                break
            node = node.children[action]

        # 2. Expansion: the new leaf hangs below `node` at `action`.
        value_prefix, value, logits = recurrent_fn(tuple(path))
        leaf = RefNode(prior=node.child_priors[action], depth=node.depth + 1, parent=node,
                       value_prefix=float(value_prefix))
        leaf.is_reset = leaf.depth % cfg.value_prefix_horizon == 0
        leaf.child_priors = _softmax(logits, legal)
        node.children[action] = leaf

        # 3. Backup of G = leaf value from the leaf to the root; the root is never fed to the min/max.
        g, current = float(value), leaf
        while current is not None:
            current.value_sum += g
            current.visit_count += 1
            if current.parent is not None:
                g = _reward(current, current.parent) + cfg.discount * g
            current = current.parent
        # 4. The min/max is rebuilt from the current r + discount * V of every expanded non-root node, each against
        # its true parent (EfficientZero's update_tree_q, without its popped-node-as-parent slip).
        stats[0], stats[1] = math.inf, -math.inf
        stack = [root]
        while stack:
            parent = stack.pop()
            for child in parent.children.values():
                q_now = _q(child, parent, cfg.discount)
                stats[0], stats[1] = min(stats[0], q_now), max(stats[1], q_now)
                stack.append(child)

    counts = np.array([root.children[a].visit_count if a in root.children else 0 for a in range(A)], np.int64)
    return RefResult(counts, root.value_sum / root.visit_count, root, (float(stats[0]), float(stats[1])))


def ref_select_action(visit_counts, temperature: float, rng=None) -> int:
    """Temperature 0: the most visited action (lowest index on ties without rng, else uniform among the maxima).
    Temperature T > 0: sample from counts ** (1 / T), normalised, with one rng.random() against the cumulative sum
    (the first action whose cumulative probability exceeds the draw)."""
    counts = [float(c) for c in visit_counts]
    if temperature == 0:
        top = max(counts)
        tied = [a for a, c in enumerate(counts) if c == top]
        return tied[0] if rng is None else tied[int(rng.integers(len(tied)))]
    if rng is None:
        raise ValueError("sampling with temperature > 0 needs an rng")
    weights = [c ** (1.0 / temperature) for c in counts]
    total = sum(weights)
    u, cumulative = rng.random(), 0.0
    for a, w in enumerate(weights):
        cumulative += w / total
        if u < cumulative:
            return a
    return max(a for a, w in enumerate(weights) if w > 0)  # u beyond a cumulative sum that rounded below 1
