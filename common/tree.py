"""Batched MCTS in numpy with EfficientZero's rules (docs/algorithm.md, 'Search (MCTS)'). Imports no torch.

The tree of every root lives in a few preallocated arrays (DeepMind mctx's layout): node arrays [B, N] and edge
arrays [B, N, A], with N = num_simulations + 1, stored flat with row = b * N + node. Node 0 is the root and
simulation s creates node s + 1, so there are no per-node objects and every step below is vectorised across the
B roots:

    for s in range(num_simulations):
        parent, action = descend(tree)                        # pUCT from the root to an unexpanded edge
        value_prefix, value, logits = recurrent_fn(parent, action, s + 1, reset)   # one batched network call
        expand(tree, s + 1, parent, action, ...)              # the new node's prior, value prefix, reward
        backup(tree, s + 1, value)                            # G = r + gamma * G up to the root

The model is reached only through `recurrent_fn(parent_nodes [B], actions [B], new_node: int, reset [B])`, which
returns numpy arrays (value_prefix [B], value [B], policy_logits [B, A]); `common/search.py` implements it with the
latent and LSTM pools on the device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from common.envs import DISCOUNT


@dataclass(frozen=True)
class MCTSConfig:
    num_simulations: int = 50
    """simulations per search; also the number of nodes each tree adds"""
    discount: float = DISCOUNT
    """gamma per agent step (common/envs.py: 0.997 per frame, 4 frames per step, ~0.98806)"""
    pb_c_base: float = 19652.0
    """pUCT constants of MuZero / EfficientZero"""
    pb_c_init: float = 1.25
    dirichlet_alpha: float = 0.3
    """root noise Dir(alpha) for self-play and reanalysis (never in evaluation)"""
    exploration_fraction: float = 0.25
    """prior = (1 - f) prior + f noise at the root"""
    value_delta_min: float = 0.01
    """floor of the min-max range when normalising Q"""
    value_prefix_horizon: int = 5
    """the LSTM's value prefix restarts at depths divisible by this: `networks.VALUE_PREFIX_HORIZON` (this module
    stays free of torch; tests/test_networks.py checks the two agree)"""
    tie_eps: float = 1e-6
    """scores within this of the best are ties"""


RecurrentFn = Callable[[np.ndarray, np.ndarray, int, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


class Tree:
    """Arrays of B trees with N nodes each, flattened so that row = b * N + node.

    Edge statistics sit on the parent, all four in one array so that one gather fetches them:
    edges[row, k, a] for the child of `row` reached by action a, with k = VISITS, VALUE_SUM, REWARD, PRIOR.
    """

    VISITS, VALUE_SUM, REWARD, PRIOR = 0, 1, 2, 3

    def __init__(self, batch: int, num_actions: int, num_nodes: int):
        B, A, N = batch, num_actions, num_nodes
        self.batch, self.num_actions, self.num_nodes = B, A, N
        self.edges = np.empty((B * N, 4, A), np.float64)
        self.children_index = np.empty((B * N, A), np.int32)  # node index of each child; -1: not expanded
        self.parent_row = np.empty(B * N, np.int64)
        self.action_from_parent = np.empty(B * N, np.int64)
        self.depth = np.empty(B * N, np.int64)
        self.value_prefix = np.empty(B * N, np.float64)
        self.is_reset = np.empty(B * N, bool)
        # per node: number of expanded children and the sum of their visits (= the node's visits - 1, the N of pUCT)
        self.num_expanded = np.empty(B * N, np.int64)
        self.children_visit_total = np.empty(B * N, np.float64)
        self.root_visits = np.empty(B, np.int64)
        self.root_value_sum = np.empty(B, np.float64)
        # Q = r + gamma V of every expanded non-root node (NaN until expanded) and, per tree, their min and max
        # (recomputed after every backup, as EfficientZero's update_tree_q: a range over current values)
        self.node_q = np.empty(B * N, np.float64)
        self.min_q = np.empty(B)
        self.max_q = np.empty(B)
        self.legal = np.empty((B, A), bool)
        self.reset()

    def reset(self) -> None:
        """Empty trees. (np.empty + fill, rather than np.zeros, touches the memory sequentially once instead of
        page-faulting it in scattered across the search: 20% faster at B = 1024.)"""
        for x in (self.edges, self.depth, self.value_prefix, self.is_reset, self.num_expanded,
                  self.children_visit_total, self.root_value_sum):
            x.fill(0)
        for x in (self.children_index, self.parent_row, self.action_from_parent):
            x.fill(-1)
        self.root_visits.fill(1)  # the root starts at 1 visit, 0 value (EfficientZero's prepare)
        self.node_q.fill(np.nan)
        self.min_q.fill(np.nan)
        self.max_q.fill(np.nan)
        self.legal.fill(True)
        self.all_legal = True

    # [B, N, A] / [B, N] views for readers and tests
    def _edge(self, k):
        return self.edges[:, k].reshape(self.batch, self.num_nodes, self.num_actions)

    @property
    def children_visits(self):
        return self._edge(self.VISITS).astype(np.int64)

    @property
    def children_value_sum(self):
        return self._edge(self.VALUE_SUM)

    @property
    def children_reward(self):
        return self._edge(self.REWARD)

    @property
    def prior(self):
        return self._edge(self.PRIOR)

    @property
    def children(self):
        return self.children_index.reshape(self.batch, self.num_nodes, self.num_actions)

    def root_value(self) -> np.ndarray:
        return self.root_value_sum / self.root_visits


@dataclass
class SearchResult:
    visit_counts: np.ndarray  # [B, A] visits of the root's children
    policy: np.ndarray  # [B, A] visit_counts / sum: the policy target
    root_value: np.ndarray  # [B] root value sum / root visits (simulations + 1)
    tree: Tree


def row_sum(x: np.ndarray) -> np.ndarray:
    """Sum over the last axis of [n, A] as a matrix-vector product: several times faster than x.sum(axis=1) for
    short rows (A <= 18)."""
    return x @ np.ones(x.shape[-1])


def row_max(x: np.ndarray) -> np.ndarray:
    """Max over the last axis of [n, A] via argmax (numpy's row-wise max reduction is slow for short rows)."""
    return x[np.arange(x.shape[0]), x.argmax(axis=1)]


def masked_softmax(logits: np.ndarray, legal: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)  # a copy, computed in place below
    if not legal.all():
        x[~legal] = -np.inf
    x -= row_max(x)[:, None]
    np.exp(x, out=x)
    x /= row_sum(x)[:, None]
    return x


def sample_dirichlet_noise(rng: np.random.Generator, legal: np.ndarray, alpha: float) -> np.ndarray:
    """Dir(alpha) over each root's legal actions, 0 elsewhere. [B, A]."""
    g = np.where(legal, rng.gamma(alpha, size=legal.shape), 0.0)
    return g / g.sum(axis=1, keepdims=True)


def _pick(scores: np.ndarray, eps: float, rng: np.random.Generator | None) -> np.ndarray:
    """Index of the best score per row; ties (within eps of the best) broken uniformly by `rng`, or lowest index if
    rng is None. Random numbers are drawn only for the rows that have a tie."""
    ties = scores >= row_max(scores)[:, None] - eps
    choice = ties.argmax(axis=1)
    if rng is not None:
        tied = np.flatnonzero(row_sum(ties.astype(np.float64)) > 1)
        if tied.size:
            choice[tied] = np.where(ties[tied], rng.random((tied.size, scores.shape[1])), -1.0).argmax(axis=1)
    return choice


def _descend(tree: Tree, cfg: MCTSConfig, rng: np.random.Generator | None) -> tuple[np.ndarray, np.ndarray]:
    """pUCT selection from every root down to an edge whose child is not expanded yet. Returns (parent row, action),
    each [B]. Only trees still descending are touched at each depth."""
    B, N = tree.batch, tree.num_nodes
    leaf_row = np.empty(B, np.int64)
    leaf_action = np.empty(B, np.int64)
    # min-max normalisation per tree, fixed during a descent: (q - min) / max(max - min, floor), and q unchanged
    # while the tree has no range yet (max - min <= 0, or NaN before the first backup)
    has_range = tree.max_q - tree.min_q > 0
    offset = np.where(has_range, tree.min_q, 0.0)
    inv_scale = 1.0 / np.where(has_range, np.maximum(tree.max_q - tree.min_q, cfg.value_delta_min), 1.0)
    b = np.arange(B)
    row = b * N  # the roots
    parent_q = np.zeros(B)
    at_root = True
    while b.size:
        e = tree.edges[row]  # one gather: [n, 4, A]
        visits = e[:, Tree.VISITS]
        # Q(s, a) = r + gamma V(child); exactly 0 for a child not expanded yet (its reward and value sum are 0)
        q = e[:, Tree.VALUE_SUM] / np.maximum(visits, 1)
        q *= cfg.discount
        q += e[:, Tree.REWARD]
        n_visited = tree.num_expanded[row]  # expanded == visited: expansion is followed by its backup
        sum_q = row_sum(q)
        # Unvisited children are valued at the parent's mean Q: at the root the mean of the visited children,
        # below it (parent mean Q + sum of visited Q) / (visited + 1).
        if at_root:
            mean_q = np.where(n_visited > 0, sum_q / np.maximum(n_visited, 1), parent_q)
        else:
            mean_q = (parent_q + sum_q) / (n_visited + 1)
        value_score = np.where(visits > 0, q, mean_q[:, None])
        value_score -= offset[b, None]
        value_score *= inv_scale[b, None]
        np.minimum(np.maximum(value_score, 0.0, out=value_score), 1.0, out=value_score)  # clip to [0, 1]
        total = tree.children_visit_total[row]  # N = parent visits - 1 = visits of its children
        pb_c = (np.log((total + cfg.pb_c_base + 1) / cfg.pb_c_base) + cfg.pb_c_init) * np.sqrt(total)
        score = e[:, Tree.PRIOR] / (visits + 1)
        score *= pb_c[:, None]
        score += value_score
        if not tree.all_legal:
            score[~tree.legal[b]] = -np.inf
        action = _pick(score, cfg.tie_eps, rng)
        child = tree.children_index[row, action]
        done = child < 0
        leaf_row[b[done]] = row[done]
        leaf_action[b[done]] = action[done]
        keep = ~done
        b, parent_q = b[keep], mean_q[keep]
        row = b * N + child[keep]
        at_root = False
    return leaf_row, leaf_action


def _expand(tree: Tree, cfg: MCTSConfig, new: int, parent_row: np.ndarray, action: np.ndarray,
            value_prefix: np.ndarray, logits: np.ndarray) -> None:
    row = np.arange(tree.batch) * tree.num_nodes + new
    tree.children_index[parent_row, action] = new
    tree.num_expanded[parent_row] += 1  # one distinct parent row per tree
    tree.parent_row[row] = parent_row
    tree.action_from_parent[row] = action
    tree.depth[row] = tree.depth[parent_row] + 1
    tree.value_prefix[row] = value_prefix
    tree.is_reset[row] = tree.depth[row] % cfg.value_prefix_horizon == 0
    # reward of the new edge: value-prefix difference, or the prefix alone where the parent restarted the LSTM
    parent_prefix = np.where(tree.is_reset[parent_row], 0.0, tree.value_prefix[parent_row])
    tree.edges[parent_row, Tree.REWARD, action] = value_prefix - parent_prefix
    tree.edges[row, Tree.PRIOR] = masked_softmax(logits, tree.legal)


def _backup(tree: Tree, cfg: MCTSConfig, new: int, value: np.ndarray) -> None:
    """G = leaf value; from the leaf up: value_sum += G, visits += 1, G = r + gamma G. Then the min-max range of
    every tree over the current Q of all its expanded non-root nodes (only the nodes on the path changed)."""
    N, A = tree.num_nodes, tree.num_actions
    flat = tree.edges.reshape(-1)
    b = np.arange(tree.batch)
    row = b * N + new
    g = value.astype(np.float64)
    while b.size:
        parent = tree.parent_row[row]
        i_visits = parent * (4 * A) + tree.action_from_parent[row]  # flat index of edge (parent -> row)
        i_sum, i_reward = i_visits + A, i_visits + 2 * A
        flat[i_visits] += 1  # one distinct edge per tree: no duplicate indices
        tree.children_visit_total[parent] += 1
        flat[i_sum] += g
        r = flat[i_reward]
        tree.node_q[row] = r + cfg.discount * flat[i_sum] / flat[i_visits]
        g = r + cfg.discount * g
        at_root = parent % N == 0
        tree.root_visits[b[at_root]] += 1
        tree.root_value_sum[b[at_root]] += g[at_root]
        keep = ~at_root
        b, row, g = b[keep], parent[keep], g[keep]
    q = tree.node_q.reshape(tree.batch, tree.num_nodes)[:, 1:new + 1]  # nodes 1..new: the expanded non-root ones
    tree.min_q = np.fmin.reduce(q, axis=1)  # fmin/fmax skip the NaNs of nodes not expanded yet
    tree.max_q = np.fmax.reduce(q, axis=1)


def search(root_logits: np.ndarray, recurrent_fn: RecurrentFn, cfg: MCTSConfig = MCTSConfig(),
           rng: np.random.Generator | None = None, add_noise: bool = False, noise: np.ndarray | None = None,
           legal_mask: np.ndarray | None = None, deterministic_ties: bool = False) -> SearchResult:
    """Run `cfg.num_simulations` simulations for B roots at once.

    root_logits [B, A]: policy logits of the roots' initial inference.
    add_noise: mix Dirichlet noise into the root priors (self-play, reanalysis), drawn from `rng` unless `noise`
        [B, A] is given. legal_mask [B, A]: allowed actions, applied at every node of that root's tree.
    deterministic_ties: lowest index among tied scores instead of a random choice from `rng`.
    """
    B, A = root_logits.shape
    if rng is None and (not deterministic_ties or (add_noise and noise is None)):
        raise ValueError("pass a numpy Generator `rng` for random ties and for drawing root noise")
    tree = Tree(B, A, cfg.num_simulations + 1)
    if legal_mask is not None:
        tree.legal[:] = legal_mask
        tree.all_legal = bool(tree.legal.all())
        if not tree.legal.any(axis=1).all():
            raise ValueError("every root needs at least one legal action")
    prior = masked_softmax(root_logits, tree.legal)
    if add_noise or noise is not None:
        if noise is None:
            noise = sample_dirichlet_noise(rng, tree.legal, cfg.dirichlet_alpha)
        f = cfg.exploration_fraction
        prior = np.where(tree.legal, (1 - f) * prior + f * noise, 0.0)
    roots = np.arange(B) * tree.num_nodes
    tree.edges[roots, Tree.PRIOR] = prior
    tree.is_reset[roots] = True  # depth 0; the root's value prefix is 0 anyway
    tie_rng = None if deterministic_ties else rng
    for s in range(cfg.num_simulations):
        new = s + 1
        parent_row, action = _descend(tree, cfg, tie_rng)
        reset = (tree.depth[parent_row] + 1) % cfg.value_prefix_horizon == 0
        value_prefix, value, logits = recurrent_fn(parent_row % tree.num_nodes, action, new, reset)
        _expand(tree, cfg, new, parent_row, action, np.asarray(value_prefix, np.float64), np.asarray(logits))
        _backup(tree, cfg, new, np.asarray(value, np.float64))
    visits = tree.edges[roots, Tree.VISITS].astype(np.int64)
    return SearchResult(visits, visits / visits.sum(axis=1, keepdims=True), tree.root_value(), tree)


def select_action(visit_counts: np.ndarray, temperature: float, rng: np.random.Generator | None = None) -> np.ndarray:
    """Per root: sample from counts^(1/T) (T > 0), or argmax (T = 0; random among equal counts from `rng`, lowest
    index when rng is None)."""
    counts = np.asarray(visit_counts, np.float64)
    if temperature == 0:
        return _pick(counts, 0.0, rng)
    if rng is None:
        raise ValueError("sampling with temperature > 0 needs a numpy Generator")
    # counts^(1/T) can overflow for small T: scale by the row max first (the distribution is unchanged)
    p = (counts / counts.max(axis=1, keepdims=True)) ** (1.0 / temperature)
    p /= p.sum(axis=1, keepdims=True)
    u = rng.random((counts.shape[0], 1))
    return np.minimum((p.cumsum(axis=1) < u).sum(axis=1), counts.shape[1] - 1)
