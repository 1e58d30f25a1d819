"""What a model costs to deploy: parameters, multiply-adds, CPU decision latency, checkpoint size.

    python -m common.profile --num-actions 18 --json-out results/profile_atari.json

A "decision" is what one MCTS move costs the network: one initial inference plus 50 recurrent inferences at
batch 1 (the tree work itself is excluded). Multiply-adds are counted by `torch.utils.flop_counter` (FLOPs / 2 of
every convolution, matmul and LSTM gate product), not by hand formulas; BatchNorm and activations are not counted.
"""

from __future__ import annotations

import io
import statistics
import time
from dataclasses import dataclass
from typing import Literal

import torch
from torch.utils.flop_counter import FlopCounterMode

from common.args import at_least, parse_args, usage_error
from common.envs import FRAME_STACK
from common.networks import EfficientZeroNet, NetConfig, count_acting_params, count_params, default_config
from common.runs import save_json


def count_macs(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() // 2  # the counter reports 2 FLOPs per multiply-add


@torch.inference_mode()
def decision(net: EfficientZeroNet, obs: torch.Tensor, num_simulations: int) -> None:
    """One search's worth of network calls at batch 1: initial inference, then a chain of recurrent ones."""
    out = net.initial_inference(obs)
    latent, state = out.latent, net.initial_lstm_state(obs.shape[0], obs.device)
    action = torch.zeros(obs.shape[0], dtype=torch.long, device=obs.device)
    for _ in range(num_simulations):
        r = net.recurrent_inference(latent, state, action)
        latent, state = r.latent, r.lstm_state


def decision_latencies(nets: dict[str, EfficientZeroNet], obs: dict[str, torch.Tensor], num_simulations: int,
                       repeats: int, warmup: int, device: str = "cpu") -> dict[str, list[float]]:
    """Milliseconds per decision of each model on `device`, in interleaved rounds (one decision of every model
    per round) so that machine noise hits all models alike and their ratio is fair. On CUDA the clock stops after
    a synchronize: kernel launches are asynchronous."""
    nets = {name: net.to(device) for name, net in nets.items()}
    obs = {name: o.to(device) for name, o in obs.items()}
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    times: dict[str, list[float]] = {name: [] for name in nets}
    for i in range(warmup + repeats):
        for name, net in nets.items():
            sync()
            t0 = time.perf_counter()
            decision(net, obs[name], num_simulations)
            sync()
            if i >= warmup:
                times[name].append((time.perf_counter() - t0) * 1000)
    for net in nets.values():
        net.to("cpu")
    return times


def profile_models(cfgs: dict[str, NetConfig], num_simulations: int = 50, repeats: int = 30,
                   warmup: int = 5, cuda: bool = False) -> dict[str, dict]:
    """Static costs of each model, then CPU latency per decision at batch 1 (and CUDA latency when `cuda` and a
    GPU is present). Costs do not depend on the weights, so fresh networks of each config are measured."""
    nets = {name: EfficientZeroNet(cfg).eval() for name, cfg in cfgs.items()}
    result, obs = {}, {}
    for name, net in nets.items():
        cfg = net.config
        obs[name] = torch.randint(0, 256, (1, *cfg.obs_shape), dtype=torch.uint8)
        with torch.inference_mode():
            init = net.initial_inference(obs[name])
            state = net.initial_lstm_state(1)
            action = torch.zeros(1, dtype=torch.long)
            macs_initial = count_macs(lambda: net.initial_inference(obs[name]))
            macs_recurrent = count_macs(lambda: net.recurrent_inference(init.latent, state, action))
        buf = io.BytesIO()
        torch.save(net.state_dict(), buf)
        result[name] = {
            "config": cfg.to_dict(),
            "params_total": count_params(net),
            "params_acting": count_acting_params(net),
            "macs_initial": macs_initial,
            "macs_recurrent": macs_recurrent,
            "macs_decision": macs_initial + num_simulations * macs_recurrent,
            "checkpoint_mb": buf.getbuffer().nbytes / 2**20,
        }
    devices = ["cpu"] + (["cuda"] if cuda and torch.cuda.is_available() else [])
    for device in devices:
        for name, ts in decision_latencies(nets, obs, num_simulations, repeats, warmup, device).items():
            q = statistics.quantiles(ts, n=4)
            result[name].update({f"latency_ms_decision_{device}": statistics.median(ts),
                                 f"latency_ms_decision_{device}_quartiles": [q[0], q[2]]})
    for name in nets:
        result[name].update({"num_simulations": num_simulations, "torch_threads": torch.get_num_threads(),
                             "cuda_device": torch.cuda.get_device_name() if "cuda" in devices else None})
    return result


@dataclass
class Args:
    num_actions: int = 18
    """action count of the game (18 = full Atari set; Breakout has 4)"""
    scale: Literal["atari", "minatar"] = "atari"
    """'atari' (12x96x96 input, the paper's networks) or 'minatar' (the CPU-sized networks on 10x10 input)"""
    minatar_channels: int = 4
    """channels of one MinAtar frame (Breakout 4, Asterix 4, Freeway 7, Seaquest 10, SpaceInvaders 6)"""
    num_simulations: int = 50
    """recurrent inferences per decision"""
    repeats: int = 30
    """timed decisions per model, interleaved across models (median and quartiles reported; at least 2)"""
    threads: int = 0
    """torch CPU threads (0 = torch's default for this machine)"""
    cuda: bool = True
    """also time decisions on the GPU when one is present"""
    json_out: str | None = None
    """write the measurements here as JSON {"teacher": {...}, "student": {...}}"""


def main(args: Args) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    shapes = {"atari": (FRAME_STACK * 3, 96, 96), "minatar": (FRAME_STACK * args.minatar_channels, 10, 10)}
    cfgs = {role: default_config(role, args.scale, shapes[args.scale], args.num_actions)
            for role in ("teacher", "student")}
    result = profile_models(cfgs, args.num_simulations, args.repeats, cuda=args.cuda)

    t, s = result["teacher"], result["student"]
    rows = [("params_total", "{:,}"), ("params_acting", "{:,}"), ("macs_initial", "{:,}"),
            ("macs_recurrent", "{:,}"), ("macs_decision", "{:,}"), ("latency_ms_decision_cpu", "{:.1f}"),
            ("checkpoint_mb", "{:.2f}")]
    if "latency_ms_decision_cuda" in t:
        rows.insert(6, ("latency_ms_decision_cuda", "{:.2f}"))
    print(f"{args.scale} networks, {args.num_actions} actions, decision = 1 initial + {args.num_simulations} "
          f"recurrent inferences at batch 1, {torch.get_num_threads()} CPU threads")
    print(f"{'':26s}{'teacher':>16s}{'student':>16s}{'student/teacher':>17s}")
    for key, fmt in rows:
        print(f"{key:26s}{fmt.format(t[key]):>16s}{fmt.format(s[key]):>16s}{s[key] / t[key]:>17.3f}")
    if args.json_out:
        save_json(args.json_out, result)
    return result


if __name__ == "__main__":
    args = parse_args(Args, __doc__)  # tyro; a usage error is one line, exit code 2
    problems = at_least(args, 1, "num_actions", "minatar_channels", "num_simulations")
    problems += at_least(args, 2, "repeats") + at_least(args, 0, "threads")  # quartiles need two timings
    if problems:
        usage_error(problems)
    main(args)
