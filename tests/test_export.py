"""ONNX export (common/export.py): valid files with a dynamic batch, onnxruntime equal to torch, a check that can fail,
and latency measured for both backends (behaviour only, never speed)."""

import copy
import json
import warnings

import onnx
import pytest
import torch

from common.export import (INITIAL_OUTPUTS, RECURRENT_OUTPUTS, _export_one, check_onnx, export_onnx, make_session,
                           time_decisions)
from common.networks import EfficientZeroNet, InvertedResidual, ResidualBlock, default_config

CONFIGS = {
    "minatar-teacher": ("teacher", "minatar", (16, 10, 10), 3),
    "minatar-student": ("student", "minatar", (16, 10, 10), 3),
    "atari-teacher": ("teacher", "atari", (12, 96, 96), 18),  # stride-2 stem + pooling path, 601-atom support
    "atari-student": ("student", "atari", (12, 96, 96), 18),
    "minatar-student-layer": ("student", "minatar", (16, 10, 10), 3, {"norm": "layer"}),  # GroupNorm + LayerNorm
}
TOL = 1e-4
OUTPUT_KEYS = {f"initial/{n}" for n in INITIAL_OUTPUTS} | {f"recurrent/{n}" for n in RECURRENT_OUTPUTS}


def perturb_(net: EfficientZeroNet, seed: int, scale: float = 0.05) -> EfficientZeroNet:
    """Random weights everywhere: fresh heads end in zero-initialised Linears (their outputs would be identically 0
    in both backends, so agreement would prove nothing) and fresh BatchNorms are identities (mean 0, var 1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
        for name, b in net.named_buffers():
            if name.endswith("running_mean"):
                b.add_(0.1 * torch.randn(b.shape, generator=g))
            elif name.endswith("running_var"):
                b.mul_(torch.empty(b.shape).uniform_(0.5, 1.5, generator=g))
    return net.eval()


def make_net(key: str, seed: int = 0) -> EfficientZeroNet:
    torch.manual_seed(seed)
    role, family, obs_shape, num_actions, *kw = CONFIGS[key]
    return perturb_(EfficientZeroNet(default_config(role, family, obs_shape, num_actions, **(kw[0] if kw else {}))),
                    seed + 1)


@pytest.fixture(scope="module", params=list(CONFIGS))
def exported(request, tmp_path_factory):
    """(net, export result) per config, exported once for the tests that only read them."""
    net = make_net(request.param)
    return request.param, net, export_onnx(net, tmp_path_factory.mktemp(request.param))


def test_configs_cover_both_block_types():
    blocks = {key: {type(m) for m in make_net(key).representation.modules()} for key in CONFIGS}
    assert ResidualBlock in blocks["minatar-teacher"] and InvertedResidual not in blocks["minatar-teacher"]
    assert InvertedResidual in blocks["minatar-student"] and ResidualBlock not in blocks["minatar-student"]
    assert InvertedResidual in blocks["atari-student"]


def test_exported_files_are_valid_and_batch_is_dynamic(exported):
    key, net, files = exported
    for part in ("initial", "recurrent"):
        path = files[f"{part}_onnx"]
        onnx.checker.check_model(path, full_check=True)
        model = onnx.load(path)
        for v in [*model.graph.input, *model.graph.output]:
            dim0 = v.type.tensor_type.shape.dim[0]
            assert dim0.dim_param == "batch" and not dim0.HasField("dim_value"), (part, v.name)
        assert files[f"{part}_onnx_mb"] > 0
    assert files["onnx_mb"] == pytest.approx(files["initial_onnx_mb"] + files["recurrent_onnx_mb"])
    assert files["exporter"] == "torchscript" and files["opset"] >= 17
    initial = onnx.load(files["initial_onnx"])
    recurrent = onnx.load(files["recurrent_onnx"])
    assert [i.name for i in initial.graph.input] == ["obs"]
    assert initial.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8  # frames as the env emits
    assert [o.name for o in initial.graph.output] == list(INITIAL_OUTPUTS)
    assert [i.name for i in recurrent.graph.input] == ["latent", "h", "c", "action"]
    assert recurrent.graph.input[3].type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert [o.name for o in recurrent.graph.output] == list(RECURRENT_OUTPUTS)
    # only the acting part is exported: the SimSiam projection (most of an Atari teacher) is not in the files
    acting_mb = sum(p.numel() for m in net.acting_modules() for p in m.parameters()) * 4 / 2**20
    assert files["onnx_mb"] < 1.5 * acting_mb


def test_onnxruntime_matches_torch_at_two_batch_sizes(exported):
    key, net, files = exported
    check = check_onnx(net, files, batch_sizes=(1, 5))
    assert set(check["max_abs_diff_per_output"]) == OUTPUT_KEYS
    # every compared output is really non-zero, so the agreement below is not that of two all-zero heads
    for name, biggest in check["torch_abs_max_per_output"].items():
        assert biggest > 1e-2, name
    assert check["max_abs_diff"] < TOL, check["max_abs_diff_per_output"]
    assert check["max_abs_diff"] == max(check["initial_max_abs_diff"], check["recurrent_max_abs_diff"])
    assert check["check_batch_sizes"] == [1, 5]


def test_fresh_network_has_zero_heads_which_the_check_reports(tmp_path):
    # Why the tests perturb: unperturbed, the heads are identically zero and would "agree" whatever the export did.
    net = EfficientZeroNet(default_config(*CONFIGS["minatar-student"])).eval()
    check = check_onnx(net, export_onnx(net, tmp_path))
    scale = check["torch_abs_max_per_output"]
    assert scale["initial/policy_logits"] == 0 and scale["recurrent/value_prefix_logits"] == 0
    assert scale["initial/latent"] > 0


@pytest.mark.parametrize("key", ["minatar-teacher", "minatar-student"])
def test_check_fails_when_torch_weights_change_after_export(key, tmp_path):
    net = make_net(key)
    files = export_onnx(net, tmp_path)
    assert check_onnx(net, files)["max_abs_diff"] < TOL
    changed = copy.deepcopy(net)
    with torch.no_grad():
        changed.representation.body[0].weight.mul_(1.5)  # stem conv: initial inference only
        changed.dynamics.conv.weight.mul_(1.5)  # action-conditioned conv: recurrent inference only
    bad = check_onnx(changed, files)
    assert bad["initial_max_abs_diff"] > 100 * TOL and bad["recurrent_max_abs_diff"] > 100 * TOL
    assert bad["max_abs_diff_per_output"]["initial/policy_logits"] > 10 * TOL


def test_export_leaves_the_network_alone_and_passes_with_warnings_as_errors(tmp_path):
    net = make_net("minatar-student").train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no stray warning of ours or of the exporter
        files = export_onnx(net, tmp_path)
    assert net.training  # exported from a copy in eval mode
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    # the export is of the eval-mode network (BatchNorm on running statistics), so it matches net.eval()
    assert check_onnx(net, files)["max_abs_diff"] < TOL


class _BakesTheBatch(torch.nn.Module):
    def forward(self, x):
        return x.reshape(int(x.shape[0]) * 2, -1)  # int() freezes the traced batch size into the graph


def test_export_refuses_a_trace_that_bakes_in_the_batch_size(tmp_path):
    # the TracerWarning is raised as an error inside torch's int(), which surfaces as a SystemError
    with pytest.raises((torch.jit.TracerWarning, SystemError)):
        _export_one(_BakesTheBatch(), (torch.zeros(2, 4),), tmp_path / "bad.onnx", ["x"], ["y"], None)


def test_session_threads_follow_torch(tmp_path):
    files = export_onnx(make_net("minatar-teacher"), tmp_path)
    sess = make_session(files["recurrent_onnx"])
    assert sess.get_providers() == ["CPUExecutionProvider"]
    assert sess.get_session_options().intra_op_num_threads == torch.get_num_threads()


@pytest.mark.parametrize("key", ["minatar-teacher", "minatar-student"])
def test_time_decisions_measures_both_backends(key, tmp_path):
    net = make_net(key)
    files = export_onnx(net, tmp_path)
    check = check_onnx(net, files)
    threads = torch.get_num_threads()
    timing = time_decisions(net, files, num_simulations=3, repeats=4, warmup=1)
    assert torch.get_num_threads() == threads
    for backend in ("torch", "ort"):
        q1, q3 = timing[f"{backend}_ms_quartiles"]
        assert 0 < q1 <= timing[f"{backend}_ms"] <= q3
        assert len(timing[f"{backend}_ms_all"]) == 4
    assert timing["ort_over_torch"] > 0
    assert timing["timing_num_simulations"] == 3 and timing["timing_threads"] == threads
    # 03_evaluate.py merges the three results into one JSON record: keys must be disjoint and values plain
    assert not (set(files) & set(check)) and not (set(files) & set(timing)) and not (set(check) & set(timing))
    json.dumps({**files, **check, **timing})
