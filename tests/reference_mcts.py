"""A slow, obviously-correct MCTS with EfficientZero's rules: one root at a time, one Python object per node.

It exists to check `common/mcts.py` (the batched numpy search) and shares no code with it. The rules are SPEC
section 5, written out step by step in `reference_search`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass
class RefConfig:
    num_simulations: int = 50
    discount: float = 0.997**4
    pb_c_base: float = 19652.0
    pb_c_init: float = 1.25
    exploration_fraction: float = 0.25
    value_delta_min: float = 0.01
    value_prefix_horizon: int = 5
    tie_eps: float = 1e-6


@dataclass
class RefNode:
    prior: float
    depth: int = 0
    parent: "RefNode | None" = None
    visit_count: int = 0
    value_sum: float = 0.0
    value_prefix: float = 0.0
    is_reset: bool = False
    child_priors: list = field(default_factory=list)  # prior of each action, set when the node is expanded
    children: dict = field(default_factory=dict)  # action -> RefNode, only for expanded children

    def value(self) -> float:
        return self.value_sum / self.visit_count if self.visit_count else 0.0


@dataclass
class RefResult:
    visit_counts: np.ndarray
    root_value: float
    root: RefNode
    min_max: tuple


def _softmax(logits, legal):
    m = max(logits[a] for a in range(len(logits)) if legal[a])
    exps = [math.exp(logits[a] - m) if legal[a] else 0.0 for a in range(len(logits))]
    total = sum(exps)
    return [e / total for e in exps]


def _reward(child: RefNode, parent: RefNode) -> float:
    """Reward on the edge parent -> child from the value prefixes; a reset parent restarted the prefix at 0."""
    return child.value_prefix if parent.is_reset else child.value_prefix - parent.value_prefix


def _all_nodes(root: RefNode):
    stack, out = [root], []
    while stack:
        node = stack.pop()
        out.append(node)
        stack.extend(node.children.values())
    return out


def reference_search(root_logits, recurrent_fn, config: RefConfig = RefConfig(), noise=None, legal_mask=None,
                     rng=None) -> RefResult:
    """recurrent_fn(path) -> (value_prefix, value, logits) for the node reached by the action tuple `path`.
    noise: Dirichlet noise for the root (length A) or None. legal_mask: allowed actions at every node.
    rng: None for lowest-index ties, else a numpy Generator choosing uniformly among tied actions."""
    A = len(root_logits)
    legal = [True] * A if legal_mask is None else [bool(x) for x in legal_mask]
    lo, hi = math.inf, -math.inf  # min and max of r + gamma V over the tree's non-root nodes, after each backup

    root = RefNode(prior=1.0, depth=0, is_reset=True, visit_count=1)  # starts at 1 visit, value sum 0
    root.child_priors = _softmax(list(root_logits), legal)
    if noise is not None:
        f = config.exploration_fraction
        root.child_priors = [(1 - f) * p + f * float(noise[a]) if legal[a] else 0.0
                             for a, p in enumerate(root.child_priors)]

    def normalise(q):
        if hi - lo > 0:
            return (q - lo) / max(hi - lo, config.value_delta_min)
        return q

    for _ in range(config.num_simulations):
        # 1. selection
        node, path, parent_q, is_root = root, [], 0.0, True
        while True:
            visited_q = [_reward(c, node) + config.discount * c.value() for c in node.children.values()
                         if c.visit_count > 0]
            if is_root and visited_q:
                mean_q = sum(visited_q) / len(visited_q)
            else:
                mean_q = (parent_q + sum(visited_q)) / (len(visited_q) + 1)
            n = node.visit_count - 1
            scores = {}
            for a in range(A):
                if not legal[a]:
                    continue
                child = node.children.get(a)
                child_visits = child.visit_count if child else 0
                pb_c = (math.log((n + config.pb_c_base + 1) / config.pb_c_base) + config.pb_c_init)
                prior_score = pb_c * math.sqrt(n) / (child_visits + 1) * node.child_priors[a]
                if child is not None and child.visit_count > 0:
                    q = _reward(child, node) + config.discount * child.value()
                else:
                    q = mean_q
                scores[a] = prior_score + min(max(normalise(q), 0.0), 1.0)
            best = max(scores.values())
            tied = [a for a in sorted(scores) if scores[a] >= best - config.tie_eps]
            action = tied[0] if rng is None else tied[int(rng.integers(len(tied)))]
            path.append(action)
            parent_q, is_root = mean_q, False
            if action not in node.children:
                break
            node = node.children[action]

        # 2. expansion of the new leaf below `node`
        value_prefix, value, logits = recurrent_fn(tuple(path))
        leaf = RefNode(prior=node.child_priors[action], depth=node.depth + 1, parent=node,
                       value_prefix=float(value_prefix))
        leaf.is_reset = leaf.depth % config.value_prefix_horizon == 0
        leaf.child_priors = _softmax(list(logits), legal)
        node.children[action] = leaf

        # 3. backup
        g = float(value)
        current = leaf
        while current is not None:
            current.value_sum += g
            current.visit_count += 1
            if current.parent is not None:
                g = _reward(current, current.parent) + config.discount * g
            current = current.parent
        # the range over the current Q of every expanded non-root node, each against its own parent
        qs = [_reward(n, n.parent) + config.discount * n.value() for n in _all_nodes(root) if n is not root]
        lo, hi = min(qs), max(qs)

    visits = np.array([root.children[a].visit_count if a in root.children else 0 for a in range(A)])
    return RefResult(visits, root.value(), root, (lo, hi))


def ref_select_action(visit_counts, temperature: float, rng=None) -> int:
    counts = [float(c) for c in visit_counts]
    if temperature == 0:
        best = max(counts)
        tied = [a for a, c in enumerate(counts) if c == best]
        return tied[0] if rng is None else tied[int(rng.integers(len(tied)))]
    weights = [c ** (1.0 / temperature) for c in counts]
    u, acc = rng.random() * sum(weights), 0.0
    for a, w in enumerate(weights):
        acc += w
        if u < acc:
            return a
    return len(counts) - 1
