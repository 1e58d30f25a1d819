"""Batched numpy MCTS against the slow one-root-at-a-time reference, invariants, a bandit, and the torch adapter."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from common.networks import EfficientZeroNet, minatar_student_config, minatar_teacher_config, support_to_scalar
from common.search import run_search
from common.tree import MCTSConfig, sample_dirichlet_noise, search, select_action
from tests.reference_mcts import RefConfig, ref_select_action, reference_search

ROOT = Path(__file__).resolve().parent.parent


class FakeModel:
    """Deterministic model: value prefix, value and logits are a fixed function of (root index, action path)."""

    def __init__(self, seed: int, num_actions: int, logit_scale: float = 2.0, value_scale: float = 1.0):
        self.seed, self.A, self.logit_scale, self.value_scale = seed, num_actions, logit_scale, value_scale

    def __call__(self, root: int, path: tuple):
        rng = np.random.default_rng([self.seed, root, len(path), *path])
        value_prefix = float(rng.normal(0, 1.5)) * self.value_scale
        value = float(rng.normal(0, 3)) * self.value_scale
        logits = rng.normal(0, self.logit_scale, self.A)
        return value_prefix, value, logits

    def root_logits(self, batch: int) -> np.ndarray:
        return np.stack([self(b, ())[2] for b in range(batch)])

    def vectorized_fn(self, batch: int):
        """recurrent_fn for common.tree.search: tracks every node's action path per root."""
        paths = [{0: ()} for _ in range(batch)]

        def fn(parent, action, new, reset):
            out = []
            for b in range(batch):
                paths[b][new] = paths[b][int(parent[b])] + (int(action[b]),)
                out.append(self(b, paths[b][new]))
            return (np.array([o[0] for o in out]), np.array([o[1] for o in out]), np.stack([o[2] for o in out]))

        fn.paths = paths
        return fn


def run_both(seed, B, A, sims=50, noise=False, mask=False, horizon=5, logit_scale=2.0, value_scale=1.0):
    model = FakeModel(seed, A, logit_scale, value_scale)
    rng = np.random.default_rng(seed)
    legal = None
    if mask:
        legal = rng.random((B, A)) < 0.6
        legal[np.arange(B), rng.integers(A, size=B)] = True  # at least one legal action
    noise_arr = None
    if noise:
        noise_arr = sample_dirichlet_noise(rng, legal if legal is not None else np.ones((B, A), bool), 0.3)
    cfg = MCTSConfig(num_simulations=sims, value_prefix_horizon=horizon)
    res = search(model.root_logits(B), model.vectorized_fn(B), cfg, noise=noise_arr, legal_mask=legal,
                 deterministic_ties=True)
    refs = []
    for b in range(B):
        ref = reference_search(model(b, ())[2], lambda path, b=b: model(b, path),
                               RefConfig(num_simulations=sims, value_prefix_horizon=horizon),
                               noise=None if noise_arr is None else noise_arr[b],
                               legal_mask=None if legal is None else legal[b])
        refs.append(ref)
    return res, refs, legal


@pytest.mark.parametrize("seed,B,A,noise,mask,horizon", [
    (0, 1, 3, False, False, 5), (1, 7, 3, True, False, 5), (2, 16, 6, False, True, 5), (3, 16, 6, True, True, 2),
    (4, 8, 18, True, False, 5), (5, 8, 18, False, True, 3), (6, 64, 6, True, False, 5), (7, 64, 18, True, True, 5),
])
def test_vectorized_matches_reference(seed, B, A, noise, mask, horizon):
    res, refs, _ = run_both(seed, B, A, noise=noise, mask=mask, horizon=horizon)
    for b, ref in enumerate(refs):
        np.testing.assert_array_equal(res.visit_counts[b], ref.visit_counts, err_msg=f"root {b}")
        assert res.root_value[b] == pytest.approx(ref.root_value, rel=1e-9, abs=1e-9)
        assert res.tree.min_q[b] == pytest.approx(ref.min_max[0]) and res.tree.max_q[b] == pytest.approx(ref.min_max[1])


def test_many_seeds_small_trees():
    for seed in range(20):
        res, refs, _ = run_both(100 + seed, 4, 3 + seed % 4, sims=12 + seed, noise=seed % 2 == 0,
                                mask=seed % 3 == 0, horizon=2 + seed % 4, logit_scale=0.5 + seed % 3)
        for b, ref in enumerate(refs):
            np.testing.assert_array_equal(res.visit_counts[b], ref.visit_counts)
            assert res.root_value[b] == pytest.approx(ref.root_value, rel=1e-9, abs=1e-9)


def test_tiny_values_use_the_min_max_floor():
    res, refs, _ = run_both(12, 8, 6, sims=30, value_scale=2e-4)
    assert (res.tree.max_q - res.tree.min_q < 0.01).all()  # every tree's range is below the 0.01 floor
    for b, ref in enumerate(refs):
        np.testing.assert_array_equal(res.visit_counts[b], ref.visit_counts)
        assert res.root_value[b] == pytest.approx(ref.root_value, rel=1e-9, abs=1e-12)


def test_deep_trees_cross_value_prefix_resets():
    # very peaked priors make the search go deep, through several reset depths
    res, refs, _ = run_both(11, 4, 3, sims=50, logit_scale=8.0, horizon=5)
    assert res.tree.depth.max() >= 10
    assert res.tree.is_reset[res.tree.depth == 10].all() and not res.tree.is_reset[res.tree.depth == 7].any()
    for b, ref in enumerate(refs):
        np.testing.assert_array_equal(res.visit_counts[b], ref.visit_counts)


def test_invariants():
    res, _, legal = run_both(21, 32, 6, sims=40, noise=True, mask=True)
    t = res.tree
    B, N = t.batch, t.num_nodes
    assert (t.root_visits == 41).all() and (res.visit_counts.sum(axis=1) == 40).all()
    visits = t.children_visits  # [B, N, A]
    children = t.children
    for b in range(B):
        for n in range(1, N):  # every non-root node's children visits sum to its visits - 1
            p, a = divmod(int(t.parent_row[b * N + n]), N)[1], int(t.action_from_parent[b * N + n])
            assert children[b, p, a] == n
            assert visits[b, n].sum() == visits[b, p, a] - 1
        assert not visits[b][:, ~legal[b]].any()  # no invalid action is ever visited, at any depth
    np.testing.assert_allclose(res.policy.sum(axis=1), 1.0)
    assert (res.policy[~legal] == 0).all()


def test_temperature_zero_is_argmax_and_sampling_follows_counts():
    counts = np.array([[1, 7, 3], [5, 5, 0], [0, 0, 9]])
    np.testing.assert_array_equal(select_action(counts, 0.0), [1, 0, 2])
    rng = np.random.default_rng(0)
    tied = [select_action(counts[1:2], 0.0, rng)[0] for _ in range(200)]
    assert set(tied) == {0, 1}  # random among equal counts
    draws = np.stack([select_action(counts, 1.0, rng) for _ in range(4000)])
    np.testing.assert_allclose((draws[:, 0:1] == np.arange(3)).mean(0), counts[0] / 11, atol=0.03)
    sharp = np.stack([select_action(counts, 0.25, rng) for _ in range(4000)])
    p = counts[0] ** 4 / (counts[0] ** 4).sum()
    np.testing.assert_allclose((sharp[:, 0:1] == np.arange(3)).mean(0), p, atol=0.03)
    assert (draws[:, 2] == 2).all()
    for c in counts:  # the reference's selection agrees on argmax
        assert ref_select_action(c, 0.0) == select_action(c[None], 0.0)[0]


def test_bandit_concentrates_on_the_best_action():
    # every node's value is 1 if its path starts with `best`, else 0; rewards 0, priors uniform
    A, best, B, sims = 6, 4, 8, 50
    first_action = np.zeros((B, sims + 1), np.int64)
    values = np.zeros((B, sims + 1))

    def tracked(parent, action, new, reset):
        first_action[:, new] = np.where(parent == 0, action, first_action[np.arange(B), parent])
        values[:, new] = (first_action[:, new] == best).astype(float)
        return np.zeros(B), values[:, new], np.zeros((B, A))

    res = search(np.zeros((B, A)), tracked, MCTSConfig(num_simulations=sims), rng=np.random.default_rng(0),
                 add_noise=True)
    assert (res.visit_counts.argmax(axis=1) == best).all()
    assert (res.visit_counts[:, best] >= 0.6 * sims).all()
    assert (res.root_value > 0.5).all()


def test_rng_controls_randomness():
    model = FakeModel(3, 6, logit_scale=0.0)  # all priors equal: many ties

    def go(seed):
        return search(model.root_logits(4), model.vectorized_fn(4), MCTSConfig(num_simulations=20),
                      rng=np.random.default_rng(seed), add_noise=True).visit_counts

    np.testing.assert_array_equal(go(1), go(1))
    assert not np.array_equal(go(1), go(2))
    with pytest.raises(ValueError, match="Generator"):
        search(model.root_logits(1), model.vectorized_fn(1), MCTSConfig(num_simulations=2))


# ----------------------------------------------------------------------------------------------------------
# torch adapter
# ----------------------------------------------------------------------------------------------------------
def _randomised(net):
    """Zero-initialised heads make every output equal; give them random weights so the search has work to do."""
    torch.manual_seed(0)
    for head in (net.prediction.fc_value, net.prediction.fc_policy, net.dynamics.fc):
        torch.nn.init.normal_(head[-1].weight, std=0.5)
    return net.eval()


@pytest.mark.parametrize("make_cfg", [minatar_teacher_config, minatar_student_config])
def test_adapter_same_result_in_one_call_or_chunks(make_cfg):
    torch.manual_seed(0)
    net = _randomised(EfficientZeroNet(make_cfg((16, 10, 10), 4)))
    obs = (np.random.default_rng(0).random((10, 16, 10, 10)) > 0.7).astype(np.uint8) * 255
    cfg = MCTSConfig(num_simulations=12, value_prefix_horizon=2)
    full = run_search(net, obs, cfg, deterministic_ties=True)
    chunked = run_search(net, obs, cfg, deterministic_ties=True, chunk_size=3)
    np.testing.assert_array_equal(full.visit_counts, chunked.visit_counts)
    # float32 only: convolution kernels depend on the batch size (the student's depthwise convs differ by 1.6e-5
    # after 12 simulations on an AVX-512 CPU), so the values agree to float noise, not bit for bit
    np.testing.assert_allclose(full.root_value, chunked.root_value, rtol=1e-4, atol=1e-4)
    assert full.tree.depth.max() >= 2  # the run crossed a reset depth


def test_adapter_matches_reference_with_network_model():
    """The adapter's pools (latents, LSTM states, resets) against the reference driving the same network path by
    path, with the LSTM zeroed below reset depths."""
    torch.manual_seed(1)
    net = _randomised(EfficientZeroNet(minatar_teacher_config((16, 10, 10), 3)))
    obs = (np.random.default_rng(1).random((3, 16, 10, 10)) > 0.7).astype(np.uint8) * 255
    sims, horizon = 15, 2
    res = run_search(net, obs, MCTSConfig(num_simulations=sims, value_prefix_horizon=horizon), deterministic_ties=True)
    S = net.config.support_size
    with torch.inference_mode():
        for b in range(3):
            root = net.initial_inference(torch.as_tensor(obs[b:b + 1]))

            def fn(path):
                latent, state = root.latent, net.initial_lstm_state(1)
                for depth, a in enumerate(path, start=1):
                    out = net.recurrent_inference(latent, state, torch.tensor([a]))
                    latent, state = out.latent, out.lstm_state
                    if depth % horizon == 0:
                        state = (torch.zeros_like(state[0]), torch.zeros_like(state[1]))
                return (support_to_scalar(out.value_prefix_logits, S).item(),
                        support_to_scalar(out.value_logits, S).item(), out.policy_logits[0].numpy())

            ref = reference_search(root.policy_logits[0].numpy(), fn, RefConfig(num_simulations=sims,
                                                                                value_prefix_horizon=horizon))
            np.testing.assert_array_equal(res.visit_counts[b], ref.visit_counts)
            assert res.root_value[b] == pytest.approx(ref.root_value, rel=1e-4, abs=1e-4)


def test_mcts_module_imports_no_torch():
    code = "import sys, common.tree; assert 'torch' not in sys.modules, 'common.tree imported torch'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_benchmark_script_runs(tmp_path):
    out = tmp_path / "speed.json"
    subprocess.run([sys.executable, "benchmarks/mcts_speed.py", "--batch-sizes", "1", "4", "--num-simulations", "5",
                    "--repeats", "1", "--reference-max-batch", "1", "--json-out", str(out)], check=True, cwd=ROOT,
                   capture_output=True)
    result = json.loads(out.read_text())
    assert set(result["vectorized"]) == {"1", "4"} and set(result["reference"]) == {"1"}
