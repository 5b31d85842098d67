"""A training-free score for spiking candidates (after SNASNet's sparsity-aware Hamming distance).

SNASNet (Kim et al., ECCV 2022) ranks untrained SNNs by how differently their spike patterns
respond to different inputs: at initialisation, a mini-batch of N samples goes through the
network; for every spiking layer l and timestep t, each sample's binary spike vector c_i gives
a kernel entry that counts agreements between samples i and j, ones weighted by 1/r and zeros by
1/(1 - r), with r the layer's firing rate (so a sparse layer's rare coincident spikes weigh
more than its many coincident silences: the *sparsity-aware* part)::

    K[i, j] = sum_{l,t} ( c_i . c_j / r  +  (1 - c_i) . (1 - c_j) / (1 - r) ) / n_l

and the score is ``log |det K|``: large when the network maps different inputs to distinct
spike patterns.  Here each layer's term is divided by its neuron count n_l so that wide layers
do not drown narrow ones, and a small ridge (1e-3 x the mean diagonal) keeps the determinant
finite when samples share a spike pattern.

:func:`sahd_score` computes it for an :class:`~neuronas.spec.ArchSpec` on real samples (torch;
imported lazily).  The search uses it, when asked (``--proxy-quantile q``), as a filter: a
budget-feasible candidate whose score is below the q-quantile of the scores of the candidates
already trained is not trained (a PRUNED trial, ``status proxy_rejected``).
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["sahd_kernel", "sahd_score"]


def sahd_kernel(spikes: list[Any]) -> Any:
    """The N x N kernel from a list of spike tensors ``[T, N, ...]`` (one per spiking layer)."""
    import torch

    k = None
    for s in spikes:
        t, n = s.shape[0], s.shape[1]
        c = s.reshape(t, n, -1).to(torch.float64)
        width = c.shape[-1]
        for step in range(t):
            ci = c[step]
            r = float(ci.mean())
            r = min(max(r, 1e-6), 1.0 - 1e-6)
            term = (ci @ ci.T) / r + ((1.0 - ci) @ (1.0 - ci).T) / (1.0 - r)
            term = term / width
            k = term if k is None else k + term
    if k is None:
        raise ValueError("no spiking layer: the score needs at least one hidden spiking layer")
    return k


def sahd_score(arch: Any, x: Any, *, chip: Any = None, seed: int = 0) -> float:
    """``log |det K|`` of the SAHD kernel of ``arch`` at initialisation on inputs ``x``
    (``[T, N, *input.shape]``, N >= 2 samples).  Deterministic for ``seed``.

    Candidates without a hidden spiking layer (a lone readout) score ``-inf``.
    """
    import torch

    from neuronas.snn import build

    torch.manual_seed(seed)
    model = build(arch, chip)
    model.eval()
    captured: list[Any] = []
    hooks = [
        n.register_forward_hook(lambda _m, _i, out: captured.append(out.detach()))
        for n in model.neurons
    ]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    if not captured:
        return -math.inf
    k = sahd_kernel(captured)
    # samples with identical spike patterns make K singular (log det = -inf), which would tie
    # every small network at -inf; a ridge of 1e-3 x the mean self-similarity keeps such
    # candidates comparable (each duplicated pattern costs about log(1e-3))
    k = k + 1e-3 * k.diagonal().mean() * torch.eye(k.shape[0], dtype=k.dtype)
    sign, logdet = torch.linalg.slogdet(k)
    return float(logdet) if float(sign) > 0.0 else -math.inf
