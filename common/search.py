"""The torch side of the search: batched network calls for `common.mcts.search`.

Latent states and the value-prefix LSTM's (h, c) of every node stay on the device in pools indexed [node, B, ...]
(node 0 = root, node s+1 made by simulation s). Per simulation, one batched `recurrent_inference` reads the parents'
rows, writes the new node's row, and only the value prefix, value and policy logits (B x (2 + A) floats) cross to
numpy. A leaf at a depth divisible by the value-prefix horizon gets its (h, c) zeroed before it is stored: its
children start a new value prefix (SPEC section 5).
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from common.mcts import MCTSConfig, SearchResult, search
from common.networks import EfficientZeroNet, support_to_scalar


def _chunks(n: int, size: int | None):
    size = size or n
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


@torch.inference_mode()
def run_search(net: EfficientZeroNet, obs, cfg: MCTSConfig = MCTSConfig(), rng: np.random.Generator | None = None,
               add_noise: bool = False, noise: np.ndarray | None = None, legal_mask: np.ndarray | None = None,
               deterministic_ties: bool = False, chunk_size: int | None = None, autocast: bool = False
               ) -> SearchResult:
    """Search from B observations (uint8 or float, [B, C, H, W], numpy or torch) with `net` in eval mode.

    chunk_size: run the network on at most this many roots/leaves per call (bounds device memory for the B x 6
        reanalysis searches); results do not depend on it.
    autocast: bfloat16/float16 autocast on CUDA (ignored on CPU); the pools keep the network's dtype.
    """
    device = next(net.parameters()).device
    net.eval()
    obs = torch.as_tensor(obs).to(device, non_blocking=True)
    B = obs.shape[0]
    amp = (torch.autocast("cuda", dtype=torch.float16) if autocast and device.type == "cuda"
           else contextlib.nullcontext())
    S = net.config.support_size
    chunks = _chunks(B, chunk_size)
    with amp:
        outs = [net.initial_inference(obs[c]) for c in chunks]
    latent0 = torch.cat([o.latent for o in outs]).float()
    root_logits = torch.cat([o.policy_logits for o in outs]).float().cpu().numpy()

    num_nodes = cfg.num_simulations + 1
    H = net.config.lstm_hidden
    latent_pool = torch.empty((num_nodes, *latent0.shape), device=device)
    h_pool = torch.zeros((num_nodes, B, H), device=device)
    c_pool = torch.zeros((num_nodes, B, H), device=device)
    latent_pool[0] = latent0
    batch_idx = torch.arange(B, device=device)

    def recurrent_fn(parent: np.ndarray, action: np.ndarray, new: int, reset: np.ndarray):
        p = torch.from_numpy(parent.astype(np.int64)).to(device)
        a = torch.from_numpy(action.astype(np.int64)).to(device)
        keep = torch.from_numpy(~reset).to(device).unsqueeze(1).float()
        rows = []
        for c in chunks:
            with amp:
                out = net.recurrent_inference(latent_pool[p[c], batch_idx[c]],
                                              (h_pool[p[c], batch_idx[c]], c_pool[p[c], batch_idx[c]]), a[c])
            h, cell = out.lstm_state
            latent_pool[new, c] = out.latent.float()
            h_pool[new, c] = h.float() * keep[c]  # a reset leaf starts its children's prefix from zero state
            c_pool[new, c] = cell.float() * keep[c]
            rows.append(torch.cat([support_to_scalar(out.value_prefix_logits, S)[:, None],
                                   support_to_scalar(out.value_logits, S)[:, None],
                                   out.policy_logits.float()], dim=1))
        small = torch.cat(rows).cpu().numpy().astype(np.float64)  # the only device -> host copy per simulation
        return small[:, 0], small[:, 1], small[:, 2:]

    return search(root_logits, recurrent_fn, cfg, rng=rng, add_noise=add_noise, noise=noise,
                  legal_mask=legal_mask, deterministic_ties=deterministic_ties)
