"""Networks: exact parameter counts (docs/algorithm.md, 'Parameter counts and multiply-adds'), student ratios
('Student network'), interface, support transforms ('Value support')."""

import math

import pytest
import torch

from common.envs import DISCOUNT
from common.networks import (VALUE_PREFIX_HORIZON, EfficientZeroNet, FeatureAdapter, InvertedResidual, NetConfig,
                             ResidualBlock, SampleNorm2d, count_acting_params, count_params, default_config,
                             inverse_value_transform, minatar_student_config, minatar_teacher_config, scalar_to_support,
                             student_config, support_to_scalar, teacher_config, value_transform)

ATARI = (12, 96, 96)


@pytest.mark.parametrize("num_actions,total,acting", [(18, 8_350_708, 2_833_908), (4, 8_350_246, 2_833_446)])
def test_teacher_parameter_counts_match_efficientzero(num_actions, total, acting):
    net = EfficientZeroNet(teacher_config(ATARI, num_actions))
    assert count_params(net) == total
    assert count_acting_params(net) == acting


def test_teacher_component_counts():
    # Independent hand sums: a 64-channel ResBlock is 2 * (64*64*9) convs + 2 * 128 BN = 73,984 parameters,
    # the value-prefix LSTM(576 -> 512) is 4*512*(576+512) weights + 2*4*512 biases.
    net = EfficientZeroNet(teacher_config(ATARI, 18))
    assert count_params(ResidualBlock(64, 64)) == 73_984
    assert count_params(net.dynamics.lstm) == 4 * 512 * (576 + 512) + 2 * 4 * 512
    assert count_params(net.projection) + count_params(net.projection_head) == 5_516_800


@pytest.mark.parametrize("num_actions", [4, 18])
def test_default_student_ratios(num_actions):
    t = EfficientZeroNet(teacher_config(ATARI, num_actions))
    s = EfficientZeroNet(student_config(ATARI, num_actions))
    assert abs(count_params(s) / count_params(t) - 0.598) <= 0.02  # the seed paper's 59.8%
    assert count_acting_params(s) <= 0.5 * count_acting_params(t)  # a deployed agent at most half the size
    # every residual block of representation and dynamics is an inverted residual; prediction keeps ResBlocks
    for part in (s.representation, s.dynamics):
        assert not any(isinstance(m, ResidualBlock) for m in part.modules())
        assert any(isinstance(m, InvertedResidual) for m in part.modules())
    assert any(isinstance(m, ResidualBlock) for m in s.prediction.modules())
    n_ir = sum(isinstance(m, InvertedResidual) for m in s.representation.modules())
    n_res = sum(isinstance(m, ResidualBlock) for m in t.representation.modules())
    assert n_ir == n_res == 5


def test_minatar_configs_ratios():
    shape = (16, 10, 10)
    t = EfficientZeroNet(minatar_teacher_config(shape, 3))
    s = EfficientZeroNet(minatar_student_config(shape, 3))
    assert t.config.latent_hw == s.config.latent_hw == (10, 10)
    assert count_params(s) < 0.7 * count_params(t)
    assert count_acting_params(s) <= 0.5 * count_acting_params(t)


def test_inverted_residual_structure():
    blk = InvertedResidual(32, 32, stride=1, expand_ratio=6)
    convs = [m for m in blk.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(1, 1), (3, 3), (1, 1)]
    assert convs[1].groups == 32 * 6  # depthwise
    assert blk.use_skip and not InvertedResidual(32, 64, stride=2).use_skip
    x = torch.randn(2, 32, 24, 24)
    assert InvertedResidual(32, 64, stride=2).eval()(x).shape == (2, 64, 12, 12)


def _nets():
    return [("teacher", EfficientZeroNet(teacher_config(ATARI, 6))),
            ("student", EfficientZeroNet(student_config(ATARI, 6))),
            ("minatar-teacher", EfficientZeroNet(minatar_teacher_config((16, 10, 10), 6))),
            ("minatar-student", EfficientZeroNet(minatar_student_config((16, 10, 10), 6)))]


@pytest.mark.parametrize("name,net", _nets())
def test_interface_shapes_and_zero_init(name, net):
    cfg = net.config
    b = 3
    obs = torch.randint(0, 256, (b, *cfg.obs_shape), dtype=torch.uint8)
    net.eval()
    with torch.no_grad():
        out = net.initial_inference(obs)
        h, w = cfg.latent_hw
        atoms = 2 * cfg.support_size + 1
        assert out.latent.shape == (b, cfg.channels, h, w)
        assert out.policy_logits.shape == (b, cfg.num_actions) and out.value_logits.shape == (b, atoms)
        # zero-initialised last layers: uniform policy and value exactly 0 before training
        assert torch.all(out.policy_logits == 0)
        assert torch.allclose(support_to_scalar(out.value_logits, cfg.support_size), torch.zeros(b), atol=1e-3)
        state = net.initial_lstm_state(b)
        r = net.recurrent_inference(out.latent, state, torch.tensor([0, 1, 5]))
        assert r.latent.shape == out.latent.shape
        assert r.lstm_state[0].shape == r.lstm_state[1].shape == (b, cfg.lstm_hidden)
        assert r.value_prefix_logits.shape == (b, atoms) and r.value_logits.shape == (b, atoms)
        assert torch.all(r.value_prefix_logits == 0)
    net.train()
    p = net.project(out.latent, with_grad=True)
    q = net.project(out.latent, with_grad=False)
    assert p.shape == q.shape == (b, cfg.proj_out)
    assert p.requires_grad and not q.requires_grad


def test_action_plane_changes_dynamics():
    net = EfficientZeroNet(teacher_config(ATARI, 4)).eval()
    latent = torch.rand(2, 64, 6, 6)
    state = net.initial_lstm_state(2)
    with torch.no_grad():
        a = net.recurrent_inference(latent, state, torch.tensor([0, 0])).latent
        b = net.recurrent_inference(latent, state, torch.tensor([0, 3])).latent
    assert torch.equal(a[0], b[0]) and not torch.equal(a[1], b[1])


def test_unroll_is_the_inference_calls_with_the_lstm_restarted_every_horizon():
    """The one unroll (loss, teacher targets, inspection) against the inference calls written out by hand; the
    search and the value-prefix targets restart the LSTM at the same horizon."""
    import inspect

    from common.tree import MCTSConfig
    from common.targets import value_prefix_targets

    torch.manual_seed(0)
    net = EfficientZeroNet(minatar_teacher_config((4, 10, 10), 3, support_size=10)).eval()
    obs, actions = torch.rand(2, 4, 10, 10), torch.randint(0, 3, (2, 7))
    with torch.no_grad():
        u = net.unroll(obs, actions)
        init = net.initial_inference(obs)
        latent, state = init.latent, net.initial_lstm_state(2)
        assert torch.equal(u.latents[0], init.latent) and torch.equal(u.policy_logits[0], init.policy_logits)
        for k in range(1, 8):
            step = net.recurrent_inference(latent, state, actions[:, k - 1])
            for got, want in ((u.latents[k], step.latent), (u.value_prefix_logits[k - 1], step.value_prefix_logits),
                              (u.value_logits[k], step.value_logits), (u.hidden[k - 1], step.lstm_state[0])):
                assert torch.equal(got, want), k
            latent, state = step.latent, step.lstm_state
            if k == 5:  # after step 5 the LSTM starts again from zeros
                state = net.initial_lstm_state(2)
    assert len(u.latents) == 8 and len(u.hidden) == len(u.value_prefix_logits) == 7
    default = inspect.signature(value_prefix_targets).parameters["horizon"].default
    assert VALUE_PREFIX_HORIZON == 5 == MCTSConfig().value_prefix_horizon == default
    assert MCTSConfig().discount == DISCOUNT == 0.997**4  # one discount: the search's and the targets'


@pytest.mark.parametrize("role", ["teacher", "student"])
def test_state_norm_scales_every_hidden_state_to_unit_range(role):
    cfg = default_config(role, "minatar", (16, 10, 10), 3, state_norm=True)
    net = EfficientZeroNet(cfg).eval()
    plain = EfficientZeroNet(default_config(role, "minatar", (16, 10, 10), 3, state_norm=False)).eval()
    plain.load_state_dict(net.state_dict())  # same weights: the option adds no parameters
    obs = (torch.rand(4, 16, 10, 10) > 0.7).to(torch.uint8) * 255
    with torch.no_grad():
        out, ref = net.initial_inference(obs), plain.initial_inference(obs)
        step = net.recurrent_inference(out.latent, net.initial_lstm_state(4), torch.tensor([0, 1, 2, 1]))
    for latent in (out.latent, step.latent):
        flat = latent.flatten(1)
        assert torch.allclose(flat.min(1).values, torch.zeros(4), atol=1e-6)
        assert torch.allclose(flat.max(1).values, torch.ones(4), atol=1e-4)
    lo = ref.latent.flatten(1).min(1).values.view(4, 1, 1, 1)
    hi = ref.latent.flatten(1).max(1).values.view(4, 1, 1, 1)
    assert torch.allclose(out.latent, (ref.latent - lo) / (hi - lo), atol=1e-5)
    assert count_params(net) == count_params(plain)


@pytest.mark.parametrize("family", ["atari", "minatar"])
@pytest.mark.parametrize("role", ["teacher", "student"])
def test_layer_norm_keeps_the_parameter_count(role, family):
    obs, actions = ((12, 96, 96), 18) if family == "atari" else ((16, 10, 10), 3)
    nets = [EfficientZeroNet(default_config(role, family, obs, actions, norm=n)) for n in ("batch", "layer")]
    assert count_params(nets[0]) == count_params(nets[1])
    assert count_acting_params(nets[0]) == count_acting_params(nets[1])
    with pytest.raises(ValueError, match="unknown norm"):
        EfficientZeroNet(default_config(role, family, obs, actions, norm="instance"))


def test_sample_norm_is_group_norm_with_one_group():
    norm, ref = SampleNorm2d(8), torch.nn.GroupNorm(1, 8)
    with torch.no_grad():
        for p in (*norm.parameters(), *ref.parameters()):
            p.copy_(torch.arange(8.0) / 4 - 1)
    x = 3 * torch.randn(5, 8, 10, 10) + 2
    assert torch.allclose(norm(x), ref(x), atol=1e-5)


@pytest.mark.parametrize("norm", ["batch", "layer"])
def test_layer_norm_makes_search_compute_what_training_did(norm):
    """Train the BatchNorm statistics on a few batches that pass the initial inference and 5 unroll steps (as the
    learner does), then compare eval mode (search) with train mode on one new batch, depth by depth. BatchNorm:
    the running statistics mix the depths, so the two modes disagree; 'layer': identical."""
    torch.manual_seed(0)
    net = EfficientZeroNet(default_config("teacher", "minatar", (16, 10, 10), 3, norm=norm))
    with torch.no_grad():
        for p in net.parameters():  # fresh heads are zero-initialised: give every layer something to say
            p.add_(0.1 * torch.randn_like(p))

    def unroll(obs, actions):
        out = net.initial_inference(obs)
        latent, state, prefixes = out.latent, net.initial_lstm_state(len(obs)), [out.value_logits]
        for k in range(actions.shape[1]):
            step = net.recurrent_inference(latent, state, actions[:, k])
            latent, state = step.latent, step.lstm_state
            prefixes.append(step.value_prefix_logits)
        return torch.stack(prefixes)

    def batch():
        return (torch.rand(64, 16, 10, 10) > 0.8).to(torch.uint8) * 255, torch.randint(0, 3, (64, 5))

    net.train()
    with torch.no_grad():
        for _ in range(30):
            unroll(*batch())
        obs, actions = batch()
        trained = unroll(obs, actions)
        net.eval()
        searched = unroll(obs, actions)
    gap = (trained - searched).abs().amax(dim=(1, 2))  # per depth: value logits at 0, value-prefix logits at 1..5
    if norm == "layer":
        assert gap.max() < 1e-4, gap
    else:
        assert gap.min() > 1e-2, gap


def test_uint8_and_float_inputs_agree():
    net = EfficientZeroNet(minatar_teacher_config((16, 10, 10), 6)).eval()
    obs = (torch.rand(2, 16, 10, 10) > 0.5).to(torch.uint8) * 255
    with torch.no_grad():
        a = net.initial_inference(obs).latent
        b = net.initial_inference(obs.float() / 255).latent
    assert torch.allclose(a, b)


def test_config_round_trip():
    cfg = student_config(ATARI, 9, lstm_hidden=200)
    d = cfg.to_dict()
    assert all(isinstance(v, (int, float, str, bool, list)) for v in d.values())  # weights_only-loadable
    assert NetConfig.from_dict(d) == cfg
    with pytest.raises(ValueError, match="unknown network config"):
        NetConfig.from_dict({**d, "bogus": 1})
    with pytest.raises(ValueError, match="unknown block"):
        EfficientZeroNet(NetConfig(obs_shape=ATARI, num_actions=4, block="dense"))


def test_rebuild_from_checkpoint_alone(tmp_path):
    net = EfficientZeroNet(student_config(ATARI, 4)).eval()
    torch.save({"config": net.config.to_dict(), "weights": net.state_dict()}, tmp_path / "m.pt")
    ckpt = torch.load(tmp_path / "m.pt", weights_only=True)
    net2 = EfficientZeroNet(NetConfig.from_dict(ckpt["config"])).eval()
    net2.load_state_dict(ckpt["weights"])
    obs = torch.randint(0, 256, (1, *ATARI), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.equal(net.initial_inference(obs).latent, net2.initial_inference(obs).latent)


def test_adapters_map_student_to_teacher_sizes_and_are_not_counted():
    t_cfg = teacher_config(ATARI, 4)
    s_cfg = student_config(ATARI, 4, channels=32)
    s = EfficientZeroNet(s_cfg)
    before = count_params(s)
    adapter = FeatureAdapter(s_cfg, t_cfg)
    assert count_params(s) == before  # adapters live outside the student
    latent, (h, c) = adapter(torch.randn(2, 32, 6, 6), (torch.randn(2, 256), torch.randn(2, 256)))
    assert latent.shape == (2, 64, 6, 6) and h.shape == c.shape == (2, 512)
    same = FeatureAdapter(t_cfg, t_cfg)
    assert count_params(same) == 0
    with pytest.raises(ValueError, match="spatial"):
        FeatureAdapter(minatar_student_config((16, 10, 10), 4), t_cfg)


# ----------------------------------------------------------------------------------------------------------
# Support transforms (docs/algorithm.md, 'Value support')
# ----------------------------------------------------------------------------------------------------------
def slow_value_transform(x: float) -> float:
    return math.copysign(1, x) * (math.sqrt(abs(x) + 1) - 1) + 0.001 * x if x != 0 else 0.0


def test_value_transform_matches_formula_and_inverts():
    xs = torch.tensor([-1e5, -3000.0, -17.5, -1.0, -1e-3, 0.0, 1e-3, 0.5, 1.0, 42.0, 999.0, 1e5], dtype=torch.float64)
    ys = value_transform(xs)
    for x, y in zip(xs.tolist(), ys.tolist()):
        assert y == pytest.approx(slow_value_transform(x), rel=1e-12, abs=1e-12)
    assert torch.allclose(inverse_value_transform(ys), xs, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("support_size", [300, 50])
def test_support_round_trip(support_size):
    limit = inverse_value_transform(torch.tensor(float(support_size), dtype=torch.float64)).item()
    x = torch.cat([torch.linspace(-limit, limit, 2001, dtype=torch.float64),
                   torch.tensor([0.0, 1.0, -1.0, 0.25, 13.7], dtype=torch.float64)]).float()
    probs = scalar_to_support(x, support_size)
    assert probs.shape == (x.numel(), 2 * support_size + 1)
    assert torch.allclose(probs.sum(-1), torch.ones(x.numel()))
    assert (probs >= 0).all() and ((probs > 0).sum(-1) <= 2).all()  # two-hot
    back = support_to_scalar(torch.log(probs.clamp_min(1e-30)), support_size)  # logits whose softmax == probs
    assert torch.allclose(back, x, atol=1e-4, rtol=1e-4)


def test_two_hot_on_known_value():
    # h(3) = sqrt(4) - 1 + 0.003 = 1.003 -> 0.997 on atom 1, 0.003 on atom 2
    probs = scalar_to_support(torch.tensor([3.0]), 300)[0]
    assert probs[301].item() == pytest.approx(0.997, abs=1e-5)
    assert probs[302].item() == pytest.approx(0.003, abs=1e-5)
    # values beyond the support clip to its end
    assert scalar_to_support(torch.tensor([1e9]), 300)[0, -1].item() == pytest.approx(1.0)


def test_default_config_by_role_and_family():
    assert default_config("teacher", "atari", ATARI, 4) == teacher_config(ATARI, 4)
    assert default_config("student", "minatar", (16, 10, 10), 3) == minatar_student_config((16, 10, 10), 3)
    assert default_config("student", "atari", ATARI, 4, lstm_hidden=64).lstm_hidden == 64
    with pytest.raises(ValueError, match="no default network"):
        default_config("assistant", "atari", ATARI, 4)
