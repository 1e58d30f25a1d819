"""ONNX export of the acting networks, a check of onnxruntime against torch, and per-decision CPU latency of both.

A deployed agent runs only the acting part of `EfficientZeroNet` (representation, dynamics, prediction), through
two entry points: `initial_inference` once per move and `recurrent_inference` once per simulation. Each becomes
its own ONNX graph with a dynamic batch dimension on every input and output, so one file serves batch-1 play and
batched search alike:

    initial_inference.onnx    obs uint8 [B, C, H, W]
                              -> latent [B, c, h, w], value_logits [B, 2S+1], policy_logits [B, A]
    recurrent_inference.onnx  latent float32 [B, c, h, w], h, c float32 [B, lstm_hidden], action int64 [B]
                              -> next_latent, next_h, next_c, value_prefix_logits, value_logits, policy_logits

Exporter: the TorchScript (tracing) exporter, `torch.onnx.export(..., dynamo=False)`. The torch.export-based
exporter that torch >= 2.9 uses by default imports `onnxscript`, which is not among the pinned requirements; the
TorchScript one needs nothing beyond torch and `onnx`, and these networks (no data-dependent control flow) trace
exactly. Tracing bakes in any Python value read from a tensor; such a read raises a `TracerWarning`, which the
export turns into an error so that a graph silently specialised to the example batch cannot be written.

    files = export_onnx(net, "out/onnx")            # paths, sizes, opset
    check = check_onnx(net, files)                  # max |onnxruntime - torch| over all outputs
    timing = time_decisions(net, files)             # ms per 50-simulation decision, torch vs onnxruntime

The three result dicts use distinct keys, so a caller can merge them into one record (03_evaluate.py does).
"""

from __future__ import annotations

import copy
import statistics
import time
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn

from common.networks import EfficientZeroNet
from common.profile import decision

INITIAL_FILE = "initial_inference.onnx"
RECURRENT_FILE = "recurrent_inference.onnx"
INITIAL_INPUTS = ("obs",)
INITIAL_OUTPUTS = ("latent", "value_logits", "policy_logits")
RECURRENT_INPUTS = ("latent", "h", "c", "action")
# ONNX names must be unique within a graph, hence next_* for the outputs that share a meaning with an input
RECURRENT_OUTPUTS = ("next_latent", "next_h", "next_c", "value_prefix_logits", "value_logits", "policy_logits")
EXPORT_BATCH = 2  # batch of the tracing inputs: not 1, so that no size-1 dimension can be mistaken for a constant


class InitialInference(nn.Module):
    """`net.initial_inference` as a plain tuple-returning module, the form the exporter traces.

    Input: uint8 observations [B, C, H, W] exactly as the environments emit them and `run_search` passes them
    (Atari pixels, MinAtar 0/255 planes). The network's own `prepare_obs` (cast to float, divide by 255) is traced
    into the graph, so an ONNX caller cannot forget or repeat the scaling, and the input is a quarter of the bytes
    of a float one. Returns (latent, value_logits, policy_logits); note the order differs from `InitialOutput`
    (latent, policy_logits, value_logits): the ONNX outputs are named, see INITIAL_OUTPUTS.
    The wrapped network must be in eval mode (BatchNorm on running statistics); `export_onnx` sees to it.
    """

    def __init__(self, net: EfficientZeroNet):
        super().__init__()
        self.net = net

    def forward(self, obs: torch.Tensor):
        out = self.net.initial_inference(obs)
        return out.latent, out.value_logits, out.policy_logits


class RecurrentInference(nn.Module):
    """`net.recurrent_inference` with the LSTM state split into two tensors (ONNX has no tuple inputs).

    Inputs: latent float32 [B, c, h, w], h and c float32 [B, lstm_hidden], action int64 [B].
    Returns (next_latent, next_h, next_c, value_prefix_logits, value_logits, policy_logits).
    The wrapped network must be in eval mode; `export_onnx` sees to it.
    """

    def __init__(self, net: EfficientZeroNet):
        super().__init__()
        self.net = net

    def forward(self, latent: torch.Tensor, h: torch.Tensor, c: torch.Tensor, action: torch.Tensor):
        out = self.net.recurrent_inference(latent, (h, c), action)
        next_h, next_c = out.lstm_state
        return out.latent, next_h, next_c, out.value_prefix_logits, out.value_logits, out.policy_logits


def _eval_copy(net: EfficientZeroNet) -> EfficientZeroNet:
    """A CPU copy in eval mode: the caller's network keeps its device and train/eval mode."""
    return copy.deepcopy(net).cpu().eval()


def _example_inputs(net: EfficientZeroNet, batch: int, gen: torch.Generator):
    """Random inputs of both graphs at `batch`: uint8 frames over the full 0..255 range, the latent the network
    itself makes of them (so its magnitude is realistic), an LSTM state with entries of either sign, and random
    action indices."""
    cfg = net.config
    obs = torch.randint(0, 256, (batch, *cfg.obs_shape), dtype=torch.uint8, generator=gen)
    with torch.inference_mode():
        latent = net.initial_inference(obs).latent.clone()
    h = 0.5 * torch.randn(batch, cfg.lstm_hidden, generator=gen)
    c = torch.randn(batch, cfg.lstm_hidden, generator=gen)
    action = torch.randint(0, cfg.num_actions, (batch,), dtype=torch.int64, generator=gen)
    return obs, (latent, h, c, action)


def _export_one(module: nn.Module, args: tuple, path: Path, inputs, outputs, opset: int | None) -> None:
    dynamic_axes = {name: {0: "batch"} for name in (*inputs, *outputs)}
    with warnings.catch_warnings():
        # The legacy exporter announces its own deprecation (and that of a logging helper it calls); both are
        # about torch's roadmap, not this graph, and must not fail a run under `-W error`.
        warnings.filterwarnings("ignore", message="You are using the legacy TorchScript-based ONNX export",
                                category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
        # A TracerWarning means a tensor value became a Python constant in the trace (e.g. a batch size): the
        # graph would be wrong at other shapes, so refuse to write it.
        warnings.filterwarnings("error", category=torch.jit.TracerWarning)
        torch.onnx.export(module, args, str(path), input_names=list(inputs), output_names=list(outputs),
                          dynamic_axes=dynamic_axes, opset_version=opset, do_constant_folding=True, dynamo=False)


def export_onnx(net: EfficientZeroNet, out_dir: str | Path, opset: int | None = None) -> dict:
    """Write `initial_inference.onnx` and `recurrent_inference.onnx` of `net` (a copy in eval mode, on the CPU)
    into `out_dir`, both with a dynamic batch dimension, and validate them with `onnx.checker` (full check,
    including shape inference).

    opset: ONNX opset to target; None = the exporter's default (recorded in the result).
    Returns (JSON-serialisable) {"initial_onnx", "recurrent_onnx": file paths as str, "initial_onnx_mb",
    "recurrent_onnx_mb", "onnx_mb": file sizes in MiB (the prediction head is stored in both files),
    "opset": int, "exporter": "torchscript", "obs_dtype": "uint8"}.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    net = _eval_copy(net)
    obs, rec_args = _example_inputs(net, EXPORT_BATCH, torch.Generator().manual_seed(0))
    paths = {"initial_onnx": out_dir / INITIAL_FILE, "recurrent_onnx": out_dir / RECURRENT_FILE}
    _export_one(InitialInference(net), (obs,), paths["initial_onnx"], INITIAL_INPUTS, INITIAL_OUTPUTS, opset)
    _export_one(RecurrentInference(net), rec_args, paths["recurrent_onnx"], RECURRENT_INPUTS, RECURRENT_OUTPUTS,
                opset)
    opsets = set()
    for p in paths.values():
        onnx.checker.check_model(str(p), full_check=True)  # by path: also works past protobuf's 2 GB limit
        model = onnx.load(str(p), load_external_data=False)
        opsets |= {o.version for o in model.opset_import if o.domain in ("", "ai.onnx")}
    mb = {f"{k}_mb": p.stat().st_size / 2**20 for k, p in paths.items()}
    return {**{k: str(p) for k, p in paths.items()}, **mb, "onnx_mb": sum(mb.values()),
            "opset": max(opsets), "exporter": "torchscript", "obs_dtype": "uint8"}


def make_session(path: str | Path, threads: int | None = None, spinning: bool = False) -> ort.InferenceSession:
    """An onnxruntime CPU session set up for a fair comparison with torch on the same machine.

    intra_op threads = torch's thread count (default), so both backends parallelise each operator over the same
    cores; one inter-op thread with sequential execution, as torch runs these graphs (a chain of small operators,
    nothing to gain from running branches concurrently at batch 1); every graph optimisation on (constant
    folding, Conv+BN / Conv+activation fusion), which is what a deployment would use.

    spinning: False (default) turns off the busy-waiting of onnxruntime's intra-op worker threads between
    operators and runs. Those spinning threads keep the cores busy after a run and steal them from whatever runs
    next on the machine: with them on, a torch decision interleaved with onnxruntime ones took 187 ms instead of
    64 ms (MinAtar teacher, 2 cores), so the comparison measured the interference, not torch. On that loaded
    2-core machine onnxruntime itself was also faster without spinning (26 vs 33 ms per decision).
    """
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or torch.get_num_threads()
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    opts.log_severity_level = 3  # errors only: ORT warns about e.g. initializers it folded away, which is expected
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def _sessions(paths: Mapping, threads: int | None = None) -> tuple[ort.InferenceSession, ort.InferenceSession]:
    return make_session(paths["initial_onnx"], threads), make_session(paths["recurrent_onnx"], threads)


def check_onnx(net: EfficientZeroNet, paths: Mapping, batch_sizes=(1, 7), seed: int = 0) -> dict:
    """Run both ONNX graphs in onnxruntime (CPU) and the torch network (eval mode) on the same random inputs at
    every batch size in `batch_sizes` (more than one proves the dynamic batch dimension), and compare all outputs.

    paths: the result of `export_onnx` (keys "initial_onnx", "recurrent_onnx").
    Returns {"max_abs_diff": over everything, "initial_max_abs_diff", "recurrent_max_abs_diff",
    "max_abs_diff_per_output": {"initial/<name>" | "recurrent/<name>": float},
    "torch_abs_max_per_output": the same keys, the largest |torch output| (a zero there, e.g. a zero-initialised
    head of a fresh network, makes that output's agreement vacuous), "check_batch_sizes", "check_seed"}.
    """
    net = _eval_copy(net)
    sess_init, sess_rec = _sessions(paths)
    gen = torch.Generator().manual_seed(seed)
    diff: dict[str, float] = {}
    scale: dict[str, float] = {}

    def record(key: str, ref: torch.Tensor, got: np.ndarray) -> None:
        if tuple(got.shape) != tuple(ref.shape):
            raise AssertionError(f"{key}: onnxruntime shape {tuple(got.shape)} != torch shape {tuple(ref.shape)}")
        d = float(np.max(np.abs(got.astype(np.float64) - ref.double().numpy()))) if ref.numel() else 0.0
        diff[key] = max(diff.get(key, 0.0), d)
        scale[key] = max(scale.get(key, 0.0), float(ref.abs().max()) if ref.numel() else 0.0)

    for b in batch_sizes:
        obs, (latent, h, c, action) = _example_inputs(net, b, gen)
        with torch.inference_mode():
            ref_init = InitialInference(net)(obs)
            ref_rec = RecurrentInference(net)(latent, h, c, action)
        got_init = sess_init.run(list(INITIAL_OUTPUTS), {"obs": obs.numpy()})
        got_rec = sess_rec.run(list(RECURRENT_OUTPUTS), {"latent": latent.numpy(), "h": h.numpy(),
                                                         "c": c.numpy(), "action": action.numpy()})
        for name, ref, got in zip(INITIAL_OUTPUTS, ref_init, got_init):
            record(f"initial/{name}", ref, got)
        for name, ref, got in zip(RECURRENT_OUTPUTS, ref_rec, got_rec):
            record(f"recurrent/{name}", ref, got)

    def worst(prefix: str) -> float:
        return max(v for k, v in diff.items() if k.startswith(prefix))

    return {"max_abs_diff": max(diff.values()), "initial_max_abs_diff": worst("initial/"),
            "recurrent_max_abs_diff": worst("recurrent/"), "max_abs_diff_per_output": diff,
            "torch_abs_max_per_output": scale, "check_batch_sizes": [int(b) for b in batch_sizes],
            "check_seed": seed}


def ort_decision(sess_init: ort.InferenceSession, sess_rec: ort.InferenceSession, obs: np.ndarray,
                 lstm_hidden: int, num_simulations: int) -> None:
    """onnxruntime's counterpart of `common.profile.decision`: one initial inference, then `num_simulations`
    recurrent ones, each fed the previous one's latent and LSTM state (action 0), as numpy arrays."""
    latent, _, _ = sess_init.run(list(INITIAL_OUTPUTS), {"obs": obs})
    b = obs.shape[0]
    h = np.zeros((b, lstm_hidden), np.float32)
    c = np.zeros((b, lstm_hidden), np.float32)
    action = np.zeros(b, np.int64)
    wanted = ["next_latent", "next_h", "next_c"]  # all the chain needs; ORT still computes the heads
    for _ in range(num_simulations):
        latent, h, c = sess_rec.run(wanted, {"latent": latent, "h": h, "c": c, "action": action})


def time_decisions(net: EfficientZeroNet, paths: Mapping, num_simulations: int = 50, repeats: int = 30,
                   warmup: int = 5, threads: int | None = None) -> dict:
    """CPU milliseconds of one decision (1 initial + `num_simulations` chained recurrent inferences at batch 1,
    tree work excluded) with torch (`common.profile.decision`, inference mode) and with onnxruntime.

    Measured interleaved, one torch decision then one onnxruntime decision per round, after `warmup` untimed
    rounds, so that load from other processes and frequency changes hit both backends alike; the paired
    per-round ratio is therefore steadier than the ratio of the two medians. Both use `threads` CPU threads
    (default: torch.get_num_threads(); torch's setting is restored afterwards).

    paths: the result of `export_onnx`.
    Returns {"torch_ms", "ort_ms": medians, "torch_ms_quartiles", "ort_ms_quartiles": [q1, q3],
    "ort_over_torch": median over rounds of ort / torch, "torch_ms_all", "ort_ms_all": every timed decision,
    "timing_num_simulations", "timing_repeats", "timing_warmup", "timing_threads"}.
    """
    if repeats < 2:
        raise ValueError("repeats must be at least 2 (quartiles need two timings)")
    threads = threads or torch.get_num_threads()
    net = _eval_copy(net)
    sess_init, sess_rec = _sessions(paths, threads)
    obs = torch.randint(0, 256, (1, *net.config.obs_shape), dtype=torch.uint8,
                        generator=torch.Generator().manual_seed(0))
    obs_np = obs.numpy()
    lstm_hidden = net.config.lstm_hidden
    torch_ms: list[float] = []
    ort_ms: list[float] = []
    saved_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for i in range(warmup + repeats):
            t0 = time.perf_counter()
            decision(net, obs, num_simulations)
            t1 = time.perf_counter()
            ort_decision(sess_init, sess_rec, obs_np, lstm_hidden, num_simulations)
            t2 = time.perf_counter()
            if i >= warmup:
                torch_ms.append((t1 - t0) * 1000)
                ort_ms.append((t2 - t1) * 1000)
    finally:
        torch.set_num_threads(saved_threads)

    def quartiles(ts: list[float]) -> list[float]:
        q = statistics.quantiles(ts, n=4)
        return [q[0], q[2]]

    return {"torch_ms": statistics.median(torch_ms), "ort_ms": statistics.median(ort_ms),
            "torch_ms_quartiles": quartiles(torch_ms), "ort_ms_quartiles": quartiles(ort_ms),
            "ort_over_torch": statistics.median([o / t for o, t in zip(ort_ms, torch_ms)]),
            "torch_ms_all": torch_ms, "ort_ms_all": ort_ms, "timing_num_simulations": num_simulations,
            "timing_repeats": repeats, "timing_warmup": warmup, "timing_threads": threads}
