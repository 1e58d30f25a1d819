"""Replay, targets and learner pieces against hand-built segments and hand-computed numbers (docs/algorithm.md,
'Replay and prioritized sampling' to 'Optimiser and learning rate')."""

import numpy as np
import pytest
import torch

from common.args import TrainArgs
from common.loss import LossConfig, augment, unrolled_loss
from common.networks import EfficientZeroNet, minatar_teacher_config
from common.replay import ReplayBuffer, Segment, TrajectoryRecorder, beta_schedule
from common.selfplay import visit_temperature
from common.targets import gather_batch, make_targets, td_steps_for_age, value_prefix_targets, value_targets
from common.training import learning_rate, loss_config, set_learning_rate
from common.tree import MCTSConfig

A = 3
SHAPE = (1, 2, 2)  # one channel, 2x2 frames; a frame's pixels hold its time so stacks can be read back


def frame(t):
    return np.full(SHAPE, t % 256, np.uint8)


def record(recorder, n, t0=0, reward=lambda t: float(t % 3 == 0)):
    """Feed n transitions (actions t % A, reward(t), root value t / 10, one-hot policies); collect segments."""
    out = []
    for t in range(t0, t0 + n):
        out += recorder.add(t % A, reward(t), t / 10, np.eye(A)[t % A], frame(t + 1))
    return out


def times_of(stack):  # [4C, H, W] -> the 4 frame times (C = 1)
    return [int(f[0, 0]) for f in stack]


# ---------------------------------------------------------------------------------------------------------
# Recording and segments
# ---------------------------------------------------------------------------------------------------------
def test_recorder_cuts_with_real_padding_and_ends():
    rec = TrajectoryRecorder(segment_length=10, pad=3)
    rec.start(frame(0))
    segs = record(rec, 25)
    assert [s.length for s in segs] == [10, 10]
    first, second = segs
    assert first.num_stored == 13 and not first.ended and first.history == 0
    np.testing.assert_array_equal(first.actions, np.arange(13) % A)  # padding = the next segment's real data
    assert first.frames.shape == (14, *SHAPE) and list(first.frames[:, 0, 0, 0]) == list(range(14))
    assert second.history == 3 and times_of(second.stack(0)) == [7, 8, 9, 10]  # real history across the cut
    np.testing.assert_allclose(second.root_values, np.arange(10, 23) / 10, rtol=1e-6)
    last = rec.end()
    assert len(last) == 1 and last[0].length == 5 and last[0].num_stored == 5 and last[0].ended
    assert times_of(last[0].stack(5)) == [22, 23, 24, 25]  # the final observation (time L) is stored


def test_recorder_end_inside_padding_marks_both_segments():
    rec = TrajectoryRecorder(segment_length=10, pad=3)
    rec.start(frame(0))
    assert record(rec, 12) == []  # the first segment waits for its padding
    segs = rec.end()
    assert [(s.length, s.num_stored, s.ended) for s in segs] == [(10, 12, True), (2, 2, True)]


def test_stacks_repeat_the_first_frame_at_a_trajectory_start():
    rec = TrajectoryRecorder(segment_length=50, pad=0)
    rec.start(frame(0))
    record(rec, 6)
    (seg,) = rec.end()
    assert times_of(seg.stack(0)) == [0, 0, 0, 0]
    assert times_of(seg.stack(2)) == [0, 0, 1, 2]
    assert times_of(seg.stack(6)) == [3, 4, 5, 6]
    np.testing.assert_array_equal(seg.stacks(np.array([0, 2, 6])), np.stack([seg.stack(t) for t in (0, 2, 6)]))


def test_segment_save_load_roundtrip(tmp_path):
    rec = TrajectoryRecorder(segment_length=4, pad=2)
    rec.start(frame(0))
    seg = record(rec, 6)[0]
    seg.save(tmp_path / "s.npz")
    back = Segment.load(tmp_path / "s.npz")
    for k in Segment.ARRAYS:
        np.testing.assert_array_equal(getattr(back, k), getattr(seg, k))
    assert (back.history, back.length, back.ended) == (seg.history, seg.length, seg.ended)


# ---------------------------------------------------------------------------------------------------------
# Prioritized replay
# ---------------------------------------------------------------------------------------------------------
def make_segment(length, ended=True, stored=None, rewards=None, history=0):
    stored = stored or length
    r = np.zeros(stored, np.float32) if rewards is None else np.asarray(rewards, np.float32)
    return Segment(frames=np.stack([frame(t) for t in range(-history, stored + 1)]), history=history,
                   actions=np.arange(stored) % A, rewards=r,
                   root_values=np.zeros(stored, np.float32),
                   policies=np.tile(np.eye(A, dtype=np.float32), (stored // A + 1, 1))[:stored],
                   length=length, ended=ended)


def test_per_probabilities_weights_and_max_priority():
    buf = ReplayBuffer(capacity=100, alpha=0.6)
    buf.push(make_segment(4))
    np.testing.assert_array_equal(buf.priorities, np.ones(4))  # first data: priority 1
    buf.update_priorities(np.array([0, 1, 2, 3]), np.array([1.0, 2.0, 4.0, 8.0]))
    buf.push(make_segment(2))
    np.testing.assert_array_equal(buf.priorities[4:], [8.0, 8.0])  # new data at the current maximum
    p = buf.priorities ** 0.6 / (buf.priorities ** 0.6).sum()
    rng = np.random.default_rng(0)
    ids, w = buf.sample(200_000, beta=0.4, rng=rng)
    freq = np.bincount(ids, minlength=6) / len(ids)
    np.testing.assert_allclose(freq, p, atol=0.004)
    expected = (6 * p[ids]) ** -0.4
    np.testing.assert_allclose(w, expected / expected.max())
    assert beta_schedule(0, 100) == 0.4 and beta_schedule(500, 100) == 1
    assert beta_schedule(50, 100) == pytest.approx(0.7)


def test_eviction_keeps_ids_global():
    buf = ReplayBuffer(capacity=5)
    buf.push(make_segment(3))
    buf.push(make_segment(3))  # 6 > 5: the first segment goes
    assert len(buf) == 3 and buf.first_live_id == 3 and buf.total_pushed == 6
    seg, pos = buf.locate(np.array([3, 5]))
    np.testing.assert_array_equal(seg, [0, 0]) and np.testing.assert_array_equal(pos, [0, 2])
    buf.update_priorities(np.array([1, 4]), np.array([7.0, 9.0]))  # id 1 was evicted: skipped
    np.testing.assert_array_equal(buf.priorities, [1.0, 9.0, 1.0])


# ---------------------------------------------------------------------------------------------------------
# Targets
# ---------------------------------------------------------------------------------------------------------
def test_td_steps_shrink_with_age():
    ages = np.array([0, 29_999, 30_000, 59_999, 60_000, 120_000, 10**7])
    np.testing.assert_array_equal(td_steps_for_age(ages), [5, 5, 4, 4, 3, 1, 1])


def test_value_prefix_restarts_every_horizon():
    r = np.array([[1, 2, 3, 4, 5, 6, 7]], np.float32)
    np.testing.assert_array_equal(value_prefix_targets(r, 5, horizon=5), [[1, 3, 6, 10, 15]])
    np.testing.assert_array_equal(value_prefix_targets(r, 5, horizon=2), [[1, 3, 3, 7, 5]])


def test_n_step_values_by_hand():
    g = 0.9
    # one sample, K = 1, n_max = 3; rewards r_t.. = 1, 2, 3, 4 (zero-padded past the data by the caller)
    rewards = np.array([[1, 2, 3, 4]], np.float32)
    boot = np.array([[10.0, 20.0]])
    z = value_targets(rewards, np.array([3]), boot, np.array([[True, True]]), np.array([[True, True]]), g)
    np.testing.assert_allclose(z, [[1 + 2 * g + 3 * g**2 + g**3 * 10, 2 + 3 * g + 4 * g**2 + g**3 * 20]], rtol=1e-6)
    z = value_targets(rewards, np.array([2]), boot, np.array([[True, False]]), np.array([[True, False]]), g)
    np.testing.assert_allclose(z, [[1 + 2 * g + g**2 * 10, 0.0]], rtol=1e-6)


def buffer_with(seg):
    buf = ReplayBuffer(capacity=10_000)
    buf.push(seg)
    return buf


def test_gather_at_an_episode_end():
    # an ended trajectory of 6 transitions, rewards 1..6; sample t = 4: two transitions left
    seg = make_segment(6, ended=True, rewards=np.arange(1, 7))
    raw = gather_batch(buffer_with(seg), np.array([4]), num_unroll_steps=5, td_steps=5, num_actions=A,
                       rng=np.random.default_rng(0))
    np.testing.assert_array_equal(raw.mask[0], [1, 1, 1, 0, 0, 0])  # steps 1, 2 follow real transitions 4, 5
    np.testing.assert_array_equal(raw.inside[0], [1, 1, 0, 0, 0, 0])  # observation 6 is the end: value 0
    np.testing.assert_array_equal(raw.bootstrap_mask[0], [0, 0, 0, 0, 0, 0])  # nothing past the end
    np.testing.assert_array_equal(raw.actions[0, :2], [4 % A, 5 % A])
    np.testing.assert_array_equal(raw.rewards[0], [5, 6, 0, 0, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(raw.stored_policy[0, 2:], 0)
    assert [times_of(s)[-1] for s in raw.obs[0]] == [4, 5, 6, 6, 6, 6]
    z = value_targets(raw.rewards, raw.td_steps, np.zeros((1, 6)), raw.bootstrap_mask, raw.inside, 0.5)
    np.testing.assert_allclose(z[0], [5 + 0.5 * 6, 6, 0, 0, 0, 0])


def test_gather_across_a_segment_cut_uses_the_padding():
    rec = TrajectoryRecorder(segment_length=10, pad=10)
    rec.start(frame(0))
    seg = record(rec, 20, reward=lambda t: float(t))[0]
    buf = buffer_with(seg)
    buf.total_pushed += 30_000  # the sample is 30k transitions old: n = 4
    raw = gather_batch(buf, np.array([9]), num_unroll_steps=5, td_steps=5, num_actions=A,
                       rng=np.random.default_rng(0))
    assert raw.td_steps[0] == 4
    np.testing.assert_array_equal(raw.mask[0], 1)
    np.testing.assert_array_equal(raw.bootstrap_mask[0], 1)
    np.testing.assert_array_equal(raw.actions[0], np.arange(9, 14) % A)
    np.testing.assert_array_equal(raw.rewards[0], np.arange(9, 19))
    assert [times_of(s) for s in raw.bootstrap_obs[0]] == [list(range(t - 3, t + 1)) for t in range(13, 19)]


def test_make_targets_bootstraps_from_the_target_network():
    torch.manual_seed(0)
    cfg = minatar_teacher_config((4, 2, 2), A, support_size=10)
    net = EfficientZeroNet(cfg).eval()
    with torch.no_grad():  # give the value head something non-zero to say
        for p in net.prediction.fc_value[-1].parameters():
            p.normal_(0, 0.5)
    rec = TrajectoryRecorder(segment_length=10, pad=10)
    rec.start(frame(0))
    seg = record(rec, 20)[0]
    raw = gather_batch(buffer_with(seg), np.array([3]), 5, 5, A, np.random.default_rng(0))
    mcts = MCTSConfig(num_simulations=4)
    targets, _ = make_targets(raw, np.ones(1), net, mcts, reanalyse_fraction=0.0,
                              rng=np.random.default_rng(0), device="cpu")
    from common.networks import support_to_scalar
    g = mcts.discount
    for k in range(6):
        with torch.no_grad():
            v = support_to_scalar(net.initial_inference(torch.as_tensor(seg.stack(3 + k + 5)[None])).value_logits,
                                  10).item()
        expected = sum(g**i * seg.rewards[3 + k + i] for i in range(5)) + g**5 * v
        assert targets.value[0, k].item() == pytest.approx(expected, rel=1e-5, abs=1e-5)
    np.testing.assert_array_equal(targets.policy.numpy()[0], seg.policies[3:9])  # fraction 0: stored policies
    fresh, stats = make_targets(raw, np.ones(1), net, mcts, reanalyse_fraction=1.0,
                                rng=np.random.default_rng(0), device="cpu")
    assert stats["reanalyse/roots"] == 6
    np.testing.assert_allclose(fresh.policy.sum(-1).numpy(), 1.0, rtol=1e-6)  # search visit distributions


# ---------------------------------------------------------------------------------------------------------
# Learner pieces
# ---------------------------------------------------------------------------------------------------------
def test_augment_shift_is_a_replicate_padded_crop():
    x = torch.arange(16.0).view(1, 1, 4, 4).repeat(3, 2, 1, 1)
    y = augment(x, pad=1, rng=np.random.default_rng(1))
    assert y.shape == x.shape
    for b in range(3):
        assert torch.equal(y[b, 0], y[b, 1])  # channels of a sample share the shift and the intensity
    xp = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="replicate")
    crops = [xp[0, 0, i:i + 4, j:j + 4] for i in range(3) for j in range(3)]
    y0 = y[0, 0] / (y[0, 0].max() / 15.0)  # undo the intensity (max pixel is 15 in every crop)
    assert any(torch.allclose(y0, c, atol=1e-4) for c in crops)


def test_unrolled_loss_masks_terms_past_the_end():
    torch.manual_seed(0)
    cfg = minatar_teacher_config((4, 2, 2), A, support_size=10)
    net = EfficientZeroNet(cfg).train()
    seg = make_segment(6, ended=True, rewards=np.arange(1, 7))
    raw = gather_batch(buffer_with(seg), np.array([4, 0]), 5, 5, A, np.random.default_rng(0))
    targets, _ = make_targets(raw, np.ones(2), net, MCTSConfig(num_simulations=2),
                              0.0, np.random.default_rng(0), "cpu")
    loss_cfg = LossConfig(augment=False)
    torch.manual_seed(1)
    loss, terms, v0 = unrolled_loss(net, targets, loss_cfg, np.random.default_rng(0))
    assert torch.isfinite(loss) and v0.shape == (2,)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)
    # Changing targets where the mask is 0 (sample 0, steps 3..5) leaves the loss unchanged
    net.zero_grad()
    targets.value[0, 3:] = 7.0
    targets.value_prefix[0, 2:] = -4.0
    targets.policy[0, 3:] = 1.0 / A
    loss2, _, _ = unrolled_loss(net, targets, loss_cfg, np.random.default_rng(0))
    assert loss2.item() == pytest.approx(loss.item(), rel=1e-5)


def test_loss_weight_flags_weigh_their_terms():
    """--value-prefix-weight, --policy-weight, --value-weight and --consistency-weight reach the loss: with unit
    importance weights it is exactly the weighted sum of the (unweighted) per-term means."""
    torch.manual_seed(0)
    net = EfficientZeroNet(minatar_teacher_config((4, 2, 2), A, support_size=10)).train()
    raw = gather_batch(buffer_with(make_segment(6, ended=True, rewards=np.arange(1, 7))), np.array([4, 0, 1]), 5, 5,
                       A, np.random.default_rng(0))
    targets, _ = make_targets(raw, np.ones(3), net, MCTSConfig(num_simulations=2), 0.0, np.random.default_rng(0),
                              "cpu")
    weights = {"value_prefix": 0.3, "policy": 0.7, "value": 1.9, "consistency": 0.05}
    cfg = loss_config(TrainArgs(**{f"{k}_weight": w for k, w in weights.items()}), augment=False)
    torch.manual_seed(1)
    loss, terms, _ = unrolled_loss(net, targets, cfg, np.random.default_rng(0))
    assert all(terms[k].abs() > 1e-3 for k in weights)  # every term counts, so a lost weight would show
    assert loss.item() == pytest.approx(sum(w * terms[k].item() for k, w in weights.items()), rel=1e-5)


def test_schedules():
    assert learning_rate(0) == pytest.approx(0.2 / 1000)
    assert learning_rate(999) == pytest.approx(0.2)
    assert learning_rate(99_999) == pytest.approx(0.2)
    assert learning_rate(100_000) == pytest.approx(0.02)
    # the run's flags set the optimizer's rate: --lr, --lr-warmup, --lr-decay-steps, --lr-decay-rate
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    flags = TrainArgs(lr=0.4, lr_warmup=4, lr_decay_steps=10, lr_decay_rate=0.5)
    assert set_learning_rate(opt, 1, flags) == pytest.approx(0.2)  # warm-up: 0.4 x 2/4
    assert set_learning_rate(opt, 25, flags) == pytest.approx(0.1) == opt.param_groups[0]["lr"]  # 0.4 x 0.5^2
    assert [visit_temperature(u, 100) for u in (0, 49, 50, 74, 75, 120)] == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
