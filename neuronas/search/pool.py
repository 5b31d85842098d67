"""The cost-guided sampler's candidate pool: drawn, priced and described, here or one trial ahead.

Every proposal of :class:`~neuronas.search.guided.CostGuidedSampler` starts from a pool of
random candidates of the space, priced by the cost model and described by
:func:`arch_features` (:func:`candidate_pool`).  The pool of trial ``n`` depends on the space,
the chip, the sampler's seed and ``n`` only; which of its members are new (not trained, not
running, not proposed by another worker) is decided when trial ``n`` is proposed
(:func:`new_candidates`).  Drawing and pricing the ~300 candidates is most of a proposal's time
(~90 of ~130 ms on the 2-core CI machine: ``space.sample`` builds and checks each
architecture in Python), and Optuna counts the proposal inside every trial.  So, when the
machine has a core the trial leaves idle part of the time, :class:`PoolAhead` draws the next
trial's pool in a helper process at the lowest scheduling priority while this trial trains,
and the proposal only takes it: the same pool, the same proposals (benchmarks/RESULTS.md,
"The next proposal's pool, drawn ahead").

This module imports neither optuna nor torch: the helper process (``python -m
neuronas.search.pool``) needs the space, the hardware model and NumPy only.
"""

from __future__ import annotations

import contextlib
import math
import os
import pickle
import select
import struct
import subprocess
import sys
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from neuronas.search.draw import draw_priced

__all__ = [
    "UNCERTAIN",
    "PoolAhead",
    "arch_features",
    "candidate_pool",
    "lowest_priority",
    "new_candidates",
    "spare_cores",
]

#: objectives whose value is known only after training (a classifier's accuracy, a flow
#: network's AEE); everything else is priced before it
UNCERTAIN = ("accuracy", "aee")

_NEURON_MODELS = ("lif", "ld_lif", "if")
_ADC_KINDS = ("sa", "sar", "flash", "digital")


def arch_features(arch: Any) -> list[float]:
    """Numbers that describe an architecture for the accuracy model (plain floats).

    Chosen for what moves accuracy on a crossbar: capacity (weights, neurons, depth), the input
    the network sees (timesteps, resolution after the first pooling), operand precision (weight
    bits; ADC bits and kind, bits per cell, rows summed per conversion) and the neuron model.
    """
    weighted = arch.resolved()  # the weighted layers, with per-layer precision made concrete
    weights = sum(lay.weights for lay in weighted)
    # plain Python, not NumPy: this runs for every candidate of every proposal (~300); the
    # values are NumPy's (integer products; the bit widths are whole numbers, so their sums
    # are exact in any order and the means the same division: tests/test_guided.py)
    neurons = sum(int(math.prod(lay.out_shape)) for lay in weighted)
    convs = sum(1 for lay in weighted if lay.kind != "fc")
    # input elements reaching the first weighted layer (pooling in front lowers the resolution)
    first_in = int(math.prod(weighted[0].in_shape)) if weighted else 1
    bits = [float(lay.weight_bits) for lay in weighted] or [float(arch.precision.weight_bits)]
    adc_bits = [16.0 if lay.adc_kind == "digital" else float(lay.adc_bits) for lay in weighted] or [
        1.0
    ]
    m = arch.mapping
    model = arch.neuron.model
    return [
        math.log2(max(weights, 1)),
        math.log2(max(neurons, 1)),
        float(len(weighted)),
        convs / max(len(weighted), 1),
        float(arch.input.timesteps),
        math.log2(max(first_in, 1)),
        sum(bits) / len(bits),
        float(min(bits)),
        sum(adc_bits) / len(adc_bits),
        float(m.bits_per_cell),
        math.log2(m.rows),
        float(m.signed_scheme == "differential"),
        *(float(model == k) for k in _NEURON_MODELS),
        *(float(m.adc_kind == k) for k in _ADC_KINDS),
    ]


def candidate_pool(
    space: Any,
    chip: Any,
    *,
    objectives: Sequence[str],
    seed: int,
    number: int,
    n_candidates: int,
    input_shape: Sequence[int] | None = None,
    num_outputs: int | None = None,
    activity: Any = None,
) -> list[dict[str, Any]]:
    """Trial ``number``'s pool: ``n_candidates`` random architectures of ``space`` drawn with the
    generator ``default_rng([seed, number])``, each kept once (its first draw) if the chip can
    build it within its hard budgets.  Plain values, in draw order: ``params`` (replayable
    through an Optuna trial), ``key`` (:attr:`ArchSpec.key`), ``costs`` (the priced
    ``objectives`` in natural units, 0.0 for those in :data:`UNCERTAIN`) and ``features``
    (:func:`arch_features`)."""
    rng = np.random.default_rng([seed, number])
    drawn: set[str] = set()

    def again(arch: Any) -> bool:
        # a repeat is what its first draw was (the same architecture, the same price): skipped
        # before pricing, and drawing uses the generator alike either way
        if arch.key in drawn:
            return True
        drawn.add(arch.key)
        return False

    out: list[dict[str, Any]] = []
    for d in draw_priced(
        space,
        chip,
        rng,
        n_candidates,
        input_shape=input_shape,
        num_outputs=num_outputs,
        activity=activity,
        skip=again,
    ):
        if not d.report.feasible:
            continue
        out.append(
            {
                "params": d.params,
                "key": d.arch.key,
                "costs": [0.0 if o in UNCERTAIN else float(d.report.metric(o)) for o in objectives],
                "features": arch_features(d.arch),
            }
        )
    return out


def new_candidates(pool: Sequence[dict[str, Any]], seen: set[str]) -> list[dict[str, Any]]:
    """The members of ``pool`` whose architecture is not in ``seen``, in the pool's order."""
    return [c for c in pool if c["key"] not in seen]


def spare_cores() -> int:
    """CPU cores this process may run on, less the one a trial trains on (0 on one core)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(0, cores - 1)


# --------------------------------------------------------------------------------------------
# the helper process: one request at a time over its stdin / stdout, length-prefixed pickles

_HEADER = struct.Struct("<Q")


def _send(stream: IO[bytes], value: Any) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _receive(stream: IO[bytes]) -> Any:
    head = stream.read(_HEADER.size)
    if len(head) < _HEADER.size:
        raise EOFError("the pool helper's pipe closed")
    size = _HEADER.unpack(head)[0]
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("the pool helper's pipe closed")
    return pickle.loads(data)  # noqa: S301 -- our own child process, over a private pipe


class PoolAhead:
    """Draws trial ``n + 1``'s :func:`candidate_pool` in a helper process while trial ``n`` trains.

    ``settings``: :func:`candidate_pool`'s keyword arguments but ``number`` (plain, picklable
    values; the space and the chip are frozen specs).  The helper runs at the lowest priority
    (:func:`lowest_priority`), so it takes the cycles the trial leaves idle and little else
    (measured: the overlapped trial ~1-2 % slower, under this machine's noise; the proposal
    ~75-120 ms faster: benchmarks/RESULTS.md, "The next proposal's pool, drawn ahead"); it
    exits when its pipe closes (this process ending, killed or not).  :meth:`take` returns a
    pool asked for with :meth:`ask` if the helper has finished it, and None otherwise (not
    asked, not finished yet -- a trial shorter than the drawing, a machine too busy to give the
    helper time -- or the helper gone): the caller then draws it itself, the same pool, and
    never waits for the helper."""

    #: requests the helper may have queued; while it is this far behind, nothing more is
    #: asked (its late answers are read and dropped as they come)
    MAX_QUEUED = 2

    def __init__(self, settings: dict[str, Any]) -> None:
        root = str(Path(__file__).resolve().parents[2])  # the folder holding neuronas/
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        env["OMP_NUM_THREADS"] = "1"  # NumPy's draws only; no thread pools in the helper
        self._queued: deque[int] = deque()  # trial numbers asked for, oldest first
        self.taken = 0  # pools the helper drew that a proposal used (tests, benchmarks)
        self._proc: subprocess.Popen[bytes] | None = None
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "neuronas.search.pool"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
            )
            assert self._proc.stdin is not None
            _send(self._proc.stdin, settings)
        except (OSError, pickle.PicklingError, TypeError, AttributeError):
            # no interpreter to start, or a space that cannot be sent (one built in code with
            # closures): every pool is drawn in this process
            self.close()

    def ask(self, number: int) -> None:
        """Start drawing trial ``number``'s pool (queued behind any the helper is drawing)."""
        if self._proc is None or len(self._queued) >= self.MAX_QUEUED:
            return
        try:
            assert self._proc.stdin is not None
            _send(self._proc.stdin, number)
            self._queued.append(number)
        except OSError:
            self.close()

    def take(self, number: int) -> list[dict[str, Any]] | None:
        """Trial ``number``'s pool if the helper has finished drawing it, else None (answers to
        earlier requests that arrive first are dropped)."""
        while self._proc is not None and self._queued and self.ready():
            try:
                assert self._proc.stdout is not None
                got = _receive(self._proc.stdout)
            except (OSError, EOFError, pickle.UnpicklingError):
                self.close()
                return None
            if self._queued.popleft() == number:
                self.taken += 1
                return got
        return None

    def ready(self, timeout_s: float = 0.0) -> bool:
        """Whether the helper's next answer has begun to arrive (it writes an answer only once
        it is whole), waiting up to ``timeout_s``; False without a request or a helper."""
        if self._proc is None or self._proc.stdout is None or not self._queued:
            return False
        try:
            return bool(select.select([self._proc.stdout], [], [], timeout_s)[0])
        except (OSError, ValueError):
            return False

    def close(self) -> None:
        """Stop the helper (its pipe closes; it exits)."""
        proc, self._proc = self._proc, None
        self._queued.clear()
        if proc is None:
            return
        proc.kill()  # it holds nothing but the pool it may be drawing
        for stream in (proc.stdin, proc.stdout):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()
        proc.wait()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


def lowest_priority() -> None:
    """Put this process at the lowest CPU priority there is: Linux's ``SCHED_IDLE`` (it runs only
    on a core nothing else wants, and a waking thread takes the core back at once), else
    ``nice 19``."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        with contextlib.suppress(AttributeError, OSError):
            os.nice(19)


def _helper_main() -> None:
    """``python -m neuronas.search.pool``: read the settings, then answer each trial number
    with its pool until stdin closes."""
    lowest_priority()
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing else may write into the answers' pipe
    try:
        settings = _receive(stdin)
        while True:
            number = _receive(stdin)
            _send(stdout, candidate_pool(**settings, number=number))
    except (EOFError, BrokenPipeError, KeyboardInterrupt):
        return


if __name__ == "__main__":
    _helper_main()
