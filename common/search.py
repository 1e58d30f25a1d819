"""The torch side of the search: batched network calls for `common.tree.search`.

Latent states and the value-prefix LSTM's (h, c) of every node stay on the device in pools indexed [node, B, ...]
(node 0 = root, node s+1 made by simulation s). Per simulation, `RecurrentStep` sends the parents' node indices,
the actions and the reset flags to the device in one copy, runs one batched `recurrent_inference` that reads the
parents' rows and writes the new node's row, and brings back only the value prefix, value and policy logits
(B x (2 + A) floats). A leaf at a depth divisible by the value-prefix horizon gets its (h, c) zeroed before it is
stored: its children start a new value prefix (docs/algorithm.md, 'Value prefix').

On CUDA the step can be recorded once as a CUDA graph and replayed for every later simulation (`cuda_graph=True`):
the ~100 kernel launches of a recurrent inference become one, which matters because each simulation's call is
small and the search makes 50 of them in a row. The graph reads and writes fixed buffers, so the step is kept per
(network, batch size) and reused across searches, and it sees weight updates made in place (`load_state_dict`).
Before it is used, the graph's output is checked against the eager step on the same inputs; any capture failure
or mismatch falls back to eager calls with one warning.
"""

from __future__ import annotations

import time
import warnings
import weakref

import numpy as np
import torch

from common.networks import EfficientZeroNet, amp_context, support_to_scalar
from common.tree import MCTSConfig, SearchResult, search


def _chunks(n: int, size: int | None):
    size = size or n
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


class RecurrentStep:
    """The network side of one simulation for up to `size` trees, with every tensor it touches preallocated.

    Rows past the trees in use (a search of B < size roots) compute on whatever their pool rows hold and are never
    read back: that is what lets one captured graph serve searches of different B (reanalysis pads to B x 6)."""

    def __init__(self, net: EfficientZeroNet, size: int, num_nodes: int, chunk_size: int | None, autocast: bool,
                 graph: bool = False):
        cfg = net.config
        self.net, self.size, self.support = net, size, cfg.support_size
        self.device = next(net.parameters()).device
        h, w = cfg.latent_hw
        self.latent = torch.zeros((num_nodes, size, cfg.channels, h, w), device=self.device)
        self.h = torch.zeros((num_nodes, size, cfg.lstm_hidden), device=self.device)
        self.c = torch.zeros((num_nodes, size, cfg.lstm_hidden), device=self.device)
        # inputs[0] parent node, [1] action, [2] keep (1) or reset (0) the LSTM state, [3] the new node (all equal)
        self.inputs = torch.zeros((4, size), dtype=torch.int64, device=self.device)
        self.host_inputs = torch.zeros((4, size), dtype=torch.int64, pin_memory=self.device.type == "cuda")
        self.out = torch.zeros((size, 2 + cfg.num_actions), device=self.device)
        self.batch_idx = torch.arange(size, device=self.device)
        self.chunks = _chunks(size, chunk_size)
        self.autocast = autocast
        self.want_graph = graph and self.device.type == "cuda"
        self.graph: torch.cuda.CUDAGraph | None = None
        self.capture_failed: str | None = None

    def start(self, latent0: torch.Tensor) -> None:
        """New search: the roots' latents in node row 0 (their LSTM state is the zero state, never overwritten)."""
        self.latent[0, :len(latent0)] = latent0

    def compute(self) -> None:
        """Read the parents' rows, write the new node's row and `out` = [value prefix, value, policy logits]."""
        parent, action, keep, new = self.inputs[0], self.inputs[1], self.inputs[2:3].T.float(), self.inputs[3, :1]
        for c in self.chunks:
            p, b = parent[c], self.batch_idx[c]
            with amp_context(self.device, self.autocast, cache=False):
                out = self.net.recurrent_inference(self.latent[p, b], (self.h[p, b], self.c[p, b]), action[c])
            h, cell = out.lstm_state
            self.latent[:, c].index_copy_(0, new, out.latent.float()[None])
            self.h[:, c].index_copy_(0, new, (h.float() * keep[c])[None])  # a reset leaf: children start from 0
            self.c[:, c].index_copy_(0, new, (cell.float() * keep[c])[None])
            self.out[c, 0] = support_to_scalar(out.value_prefix_logits, self.support)
            self.out[c, 1] = support_to_scalar(out.value_logits, self.support)
            self.out[c, 2:] = out.policy_logits.float()

    def __call__(self, parent: np.ndarray, action: np.ndarray, new: int, reset: np.ndarray):
        B = len(parent)
        host = self.host_inputs.numpy()
        host[0, :B], host[1, :B], host[2, :B], host[3] = parent, action, ~reset, new
        host[:3, B:] = 0  # padding rows: the root, action 0
        self.inputs.copy_(self.host_inputs, non_blocking=True)  # the one host -> device copy per simulation
        if self.want_graph and self.graph is None and self.capture_failed is None:
            self.capture()  # on the first call: the graph is recorded on real inputs
        if self.graph is not None:
            self.graph.replay()
        else:
            self.compute()
        small = self.out[:B].cpu().numpy().astype(np.float64)  # the one device -> host copy per simulation
        return small[:, 0], small[:, 1], small[:, 2:]

    def capture(self) -> None:
        """Record `compute` as a CUDA graph on the current inputs, and keep it only if it reproduces the eager
        result. Replaying it is idempotent (it rewrites the same row from the same parents)."""
        try:
            self.compute()
            eager = self.out.clone()
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):  # warm-up on a side stream, as torch.cuda.graph requires
                for _ in range(2):
                    self.compute()
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self.compute()
            graph.replay()
            torch.cuda.synchronize()
            err = (self.out - eager).abs().max().item()
            if not torch.allclose(self.out, eager, rtol=1e-3, atol=1e-3):
                raise RuntimeError(f"the captured step differs from the eager one by up to {err:.3g}")
            self.graph = graph
        except Exception as e:  # noqa: BLE001 - any failure to capture means: run eagerly
            self.capture_failed = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            warnings.warn(f"CUDA graph capture of the search step failed ({self.capture_failed}); "
                          "running the search eagerly", RuntimeWarning, stacklevel=3)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.compute()  # make sure the new row and `out` hold eager results


# Captured steps per network and shape, reused across searches (a capture costs far more than a search step).
_CAPTURED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def captured_step(net: EfficientZeroNet, size: int, num_nodes: int, chunk_size: int | None,
                  autocast: bool) -> RecurrentStep:
    steps = _CAPTURED.setdefault(net, {})
    key = (size, num_nodes, chunk_size, autocast)
    if key not in steps:
        steps[key] = RecurrentStep(net, size, num_nodes, chunk_size, autocast, graph=True)
    return steps[key]


def graph_status() -> list[str]:
    """One line per captured step of this process: its batch size and whether its graph is in use."""
    return [f"{key[0]} trees: " + ("captured" if step.graph is not None else
                                   f"eager ({step.capture_failed or 'not captured yet'})")
            for steps in _CAPTURED.values() for key, step in steps.items()]


@torch.inference_mode()
def run_search(net: EfficientZeroNet, obs, cfg: MCTSConfig = MCTSConfig(), rng: np.random.Generator | None = None,
               add_noise: bool = False, noise: np.ndarray | None = None, legal_mask: np.ndarray | None = None,
               deterministic_ties: bool = False, chunk_size: int | None = None, autocast: bool = False,
               cuda_graph: bool = False, pad_to: int | None = None, timing: dict | None = None) -> SearchResult:
    """Search from B observations (uint8 or float, [B, C, H, W], numpy or torch) with `net` in eval mode.

    chunk_size: run the network on at most this many roots/leaves per call (bounds device memory for the B x 6
        reanalysis searches); results do not depend on it.
    autocast: float16 autocast on CUDA (ignored on CPU); the pools keep the network's dtype.
    cuda_graph: keep the per-simulation step for `pad_to` (default B) trees and reuse it across searches, and on
        CUDA replay a captured graph of it (see the module docstring). Callers with varying B pass their largest B
        to share one graph. Results equal the eager ones (on the CPU the same code runs, without the graph).
    timing: if given, adds the seconds spent in network calls ("search_net", including the host <-> device copies)
        and in the numpy tree ("search_tree").
    """
    t_start = time.perf_counter()
    device = next(net.parameters()).device
    net.eval()
    obs = torch.as_tensor(obs).to(device, non_blocking=True)
    B = obs.shape[0]
    chunks = _chunks(B, chunk_size)
    with amp_context(device, autocast, cache=False):
        outs = [net.initial_inference(obs[c]) for c in chunks]
    latent0 = torch.cat([o.latent for o in outs]).float()
    root_logits = torch.cat([o.policy_logits for o in outs]).float().cpu().numpy()

    num_nodes = cfg.num_simulations + 1
    if cuda_graph:
        step = captured_step(net, max(B, pad_to or B), num_nodes, chunk_size, autocast)
    else:
        step = RecurrentStep(net, B, num_nodes, chunk_size, autocast)
    step.start(latent0)
    net_seconds = [time.perf_counter() - t_start]

    def recurrent_fn(parent: np.ndarray, action: np.ndarray, new: int, reset: np.ndarray):
        t0 = time.perf_counter()
        out = step(parent, action, new, reset)
        net_seconds.append(time.perf_counter() - t0)
        return out

    res = search(root_logits, recurrent_fn, cfg, rng=rng, add_noise=add_noise, noise=noise, legal_mask=legal_mask,
                 deterministic_ties=deterministic_ties)
    if timing is not None:
        total, net_total = time.perf_counter() - t_start, sum(net_seconds)
        timing["search_net"] = timing.get("search_net", 0.0) + net_total
        timing["search_tree"] = timing.get("search_tree", 0.0) + total - net_total
    return res
