"""Distillation terms (docs/algorithm.md, stage 2): zero for a student that is the teacher, adapters, ensembles,
agreement."""

import copy
import dataclasses
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from common.distill import (WEIGHT_FLAGS, DistillConfig, agreement, distillation_terms, js_divergence, kl_to_student,
                            mse_per_sample, teacher_unroll)
from common.loss import LossConfig, unrolled_loss
from common.networks import EfficientZeroNet, FeatureAdapter, minatar_student_config, minatar_teacher_config
from common.targets import Targets

A, K = 3, 5
OBS = (8, 6, 6)
ALL_TERMS = DistillConfig(response_weight=1.0, tau=2.0, feature_latent_weight=1.0, feature_lstm_weight=1.0,
                          value_weight=1.0)


def batch(B=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(B, K + 1)
    mask[0, 3:] = 0  # one sample ends after two steps
    return Targets(obs=torch.randint(0, 256, (B, K + 1, *OBS), generator=g, dtype=torch.uint8),
                   actions=torch.randint(0, A, (B, K), generator=g), mask=mask,
                   value=torch.randn(B, K + 1, generator=g), value_prefix=torch.randn(B, K, generator=g),
                   policy=torch.softmax(torch.randn(B, K + 1, A, generator=g), -1), weights=torch.ones(B),
                   inside=mask.bool())


def randomise(net, seed):
    torch.manual_seed(seed)
    with torch.no_grad():  # the zero-initialised heads would make every policy uniform
        for m in net.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.normal_(0, 0.1)
    return net


def student_and_teacher_outputs(student, teachers, b, adapter=None):
    loss, terms, v0, obs0, steps = unrolled_loss(student, b, LossConfig(augment=False), np.random.default_rng(0),
                                                 return_steps=True)
    t_steps = teacher_unroll(teachers, obs0, b.actions)
    return loss, steps, t_steps


def test_student_identical_to_teacher_gives_zero_terms_and_zero_gradients():
    teacher = randomise(EfficientZeroNet(minatar_teacher_config(OBS, A, support_size=10)), 0).eval()
    student = copy.deepcopy(teacher).eval()  # eval: identical batch-norm behaviour to the frozen teacher
    b = batch()
    _, steps, t_steps = student_and_teacher_outputs(student, [teacher], b)
    terms = distillation_terms(steps, t_steps, b.mask, DistillConfig(1.0, 1.0, 1.0, 1.0, 0.0), None, 10, 10)
    for name, v in terms.items():
        assert v.abs().max().item() < 1e-6, name
    kd = sum(v.mean() for v in terms.values())
    student.zero_grad()
    kd.backward()
    grads = [p.grad.abs().max().item() for p in student.parameters() if p.grad is not None]
    assert grads and max(grads) < 1e-6
    # tempered response is zero too, for any tau
    terms = distillation_terms(steps, t_steps, b.mask, DistillConfig(1.0, 4.0, 0.0, 0.0, 0.0), None, 10, 10)
    assert terms["response"].abs().max().item() < 1e-5  # float32 rounding of log-softmax, times tau^2 = 16


def test_terms_are_positive_masked_and_only_the_weighted_ones_are_computed():
    teacher = randomise(EfficientZeroNet(minatar_teacher_config(OBS, A, support_size=10)), 0).eval()
    student = randomise(EfficientZeroNet(minatar_teacher_config(OBS, A, support_size=10)), 1).train()
    b = batch()
    _, steps, t_steps = student_and_teacher_outputs(student, [teacher], b)
    terms = distillation_terms(steps, t_steps, b.mask, ALL_TERMS, None, 10, 10)
    assert set(terms) == {"response", "feature_latent", "feature_lstm", "value"} == set(WEIGHT_FLAGS)
    assert all((v > 0).all() for v in terms.values())
    only = distillation_terms(steps, t_steps, b.mask, DistillConfig(1.0, 1.0, 0.0, 0.0, 0.0), None, 10, 10)
    assert set(only) == {"response"}
    # sample 0 is masked from step 3 on: dropping the mask there raises its terms
    full = torch.ones_like(b.mask)
    unmasked = distillation_terms(steps, t_steps, full, ALL_TERMS, None, 10, 10)
    assert unmasked["response"][0] > terms["response"][0]
    torch.testing.assert_close(unmasked["response"][1:], terms["response"][1:])


def test_each_term_is_weighted_by_a_flag_of_02(monkeypatch):
    # 02 weights term k by args.<WEIGHT_FLAGS[k]>, and 03 reads the same names from a student's saved args
    path = Path(__file__).resolve().parents[1] / "02_distill_student.py"
    spec = importlib.util.spec_from_file_location("distill_student", path)
    script = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, script)  # dataclasses look their module up while it executes
    spec.loader.exec_module(script)  # the training loop sits under `if __name__ == "__main__"`
    flags = {f.name: f.default for f in dataclasses.fields(script.Args)}
    assert set(WEIGHT_FLAGS.values()) <= set(flags)
    # 02's defaults, term by term: the paper's response and feature terms on, value distillation (an extra) off;
    # a term mapped to the task loss's `value_weight` (0.25) would show here
    assert {k: flags[f] for k, f in WEIGHT_FLAGS.items()} == {"response": 1.0, "feature_latent": 1.0,
                                                               "feature_lstm": 1.0, "value": 0.0}


def test_adapters_let_a_narrower_student_distil_and_the_loss_falls():
    tcfg = minatar_teacher_config(OBS, A, support_size=10)
    scfg = minatar_student_config(OBS, A, support_size=10, channels=16)  # narrower latent and LSTM
    teacher = randomise(EfficientZeroNet(tcfg), 0).eval()
    student = EfficientZeroNet(scfg).train()
    adapter = FeatureAdapter(scfg, tcfg)
    assert not isinstance(adapter.latent, torch.nn.Identity) and not isinstance(adapter.hidden, torch.nn.Identity)
    opt = torch.optim.Adam(list(student.parameters()) + list(adapter.parameters()), lr=1e-3)
    b = batch(B=16)
    cfg = DistillConfig(1.0, 1.0, 1.0, 1.0, 0.0)
    losses = []
    for _ in range(30):
        _, steps, t_steps = student_and_teacher_outputs(student, [teacher], b)
        kd = sum(v.mean() for v in distillation_terms(steps, t_steps, b.mask, cfg, adapter, 10, 10).values())
        opt.zero_grad()
        kd.backward()
        opt.step()
        losses.append(kd.item())
    assert losses[-1] < 0.5 * losses[0], losses
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in adapter.parameters())


def test_fitnets_adapters_learn_even_where_the_widths_match():
    tcfg = minatar_teacher_config(OBS, A, support_size=10)
    assert all(isinstance(m, torch.nn.Identity) for m in (FeatureAdapter(tcfg, tcfg).latent,
                                                         FeatureAdapter(tcfg, tcfg).hidden))
    fitnets = FeatureAdapter(tcfg, tcfg, always=True)
    assert isinstance(fitnets.latent, torch.nn.Conv2d) and isinstance(fitnets.hidden, torch.nn.Linear)
    assert fitnets.latent.in_channels == fitnets.latent.out_channels == tcfg.channels


def test_normalised_feature_mse_weighs_every_teacher_channel_alike():
    g = torch.Generator().manual_seed(0)
    t = torch.randn(16, 4, 3, 3, generator=g)
    s = t + 0.1 * torch.randn(16, 4, 3, 3, generator=g)
    assert torch.equal(mse_per_sample(t, t, normalise=True), torch.zeros(16))
    # scaling a channel (in both) changes the plain MSE but not the normalised one: the units are the teacher's
    scale = torch.tensor([1.0, 100.0, 0.01, 5.0]).view(1, 4, 1, 1)
    plain, norm = mse_per_sample(s, t), mse_per_sample(s, t, normalise=True)
    assert not torch.allclose(mse_per_sample(s * scale, t * scale), plain)
    assert torch.allclose(mse_per_sample(s * scale, t * scale, normalise=True), norm, rtol=1e-4, atol=1e-6)
    # ... which is the plain MSE of both standardised by the teacher's per-channel batch statistics
    mu, sd = t.mean((0, 2, 3), keepdim=True), t.std((0, 2, 3), keepdim=True)
    assert torch.allclose(norm, mse_per_sample((s - mu) / sd, (t - mu) / sd), rtol=1e-5)
    # LSTM states [B, H]: per unit over the batch
    h = torch.randn(16, 6, generator=g)
    assert torch.allclose(mse_per_sample(2 * h, h, normalise=True), (h / h.std(0)).pow(2).mean(1), rtol=1e-5)


def test_ensemble_of_identical_teachers_equals_one_teacher():
    teacher = randomise(EfficientZeroNet(minatar_teacher_config(OBS, A, support_size=10)), 0).eval()
    student = randomise(EfficientZeroNet(minatar_teacher_config(OBS, A, support_size=10)), 1).eval()
    b = batch()
    _, steps, t1 = student_and_teacher_outputs(student, [teacher], b)
    t2 = teacher_unroll([teacher, copy.deepcopy(teacher)], b.obs[:, 0].float() / 255, b.actions)
    one = distillation_terms(steps, t1, b.mask, ALL_TERMS, None, 10, 10)
    two = distillation_terms(steps, t2, b.mask, ALL_TERMS, None, 10, 10)
    for k in one:
        torch.testing.assert_close(one[k], two[k], rtol=1e-5, atol=1e-6)


def test_search_policy_target_and_agreement_metrics():
    p = torch.softmax(torch.randn(5, A), -1)
    assert kl_to_student(p, torch.log(p), 1.0).abs().max() < 1e-6
    assert js_divergence(p, p).abs().max() < 1e-7
    q = torch.tensor([[1.0, 0.0, 0.0]])
    assert js_divergence(q, torch.tensor([[0.0, 1.0, 0.0]])).item() == pytest.approx(np.log(2), rel=1e-5)
    teacher = randomise(EfficientZeroNet(minatar_teacher_config(OBS, A, support_size=10)), 0).eval()
    b = batch()
    _, steps, t_steps = student_and_teacher_outputs(copy.deepcopy(teacher).eval(), [teacher], b)
    agree, jsd = agreement(steps, t_steps)
    assert agree == 1.0 and jsd < 1e-7
    search = torch.zeros(8, K + 1, A)
    search[..., 1] = 1.0
    search[:, 4:] = 0.0  # past the end: no search target
    terms = distillation_terms(steps, t_steps, torch.ones(8, K + 1), DistillConfig(1.0, 1.0, 0.0, 0.0, 0.0),
                               None, 10, 10, search_policy=search)
    expected = sum(-torch.log_softmax(steps.policy_logits[k], -1)[:, 1] for k in range(4))
    torch.testing.assert_close(terms["response"], expected.detach() + 0 * terms["response"], rtol=1e-5, atol=1e-5)


def test_temperature_fade_and_kd_alpha_schedules():
    """--tau/--tau-end, --fade-distillation and --kd-alpha, as 02 applies them to every update's loss."""
    from common.distill import combine_losses, fade_factor, temperature

    assert temperature(0, 100, 4.0, None) == temperature(99, 100, 4.0, None) == 4.0
    assert temperature(0, 101, 4.0, 1.0) == 4.0 and temperature(50, 101, 4.0, 1.0) == 2.5
    assert temperature(100, 101, 4.0, 1.0) == 1.0 == temperature(500, 101, 4.0, 1.0)
    assert fade_factor([], 10.0) == 1.0 and fade_factor([1.0], None) == 1.0
    assert fade_factor([2.0, 4.0], 10.0) == pytest.approx(0.7) and fade_factor([12.0], 10.0) == 0.0
    task, kd = torch.tensor(3.0), torch.tensor(5.0)
    assert combine_losses(task, kd, None).item() == 8.0 and combine_losses(task, kd, None, 0.5).item() == 5.5
    assert combine_losses(task, kd, 0.25).item() == pytest.approx(0.25 * 5 + 0.75 * 3)
    assert combine_losses(task, kd, 0.25, fade=0.0).item() == pytest.approx(0.75 * 3)
