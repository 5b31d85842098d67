"""The crossbar's training draws, taken one request ahead on a spare core when there is one.

Every training batch draws each noisy crossbar layer's programming noise, stuck-cell uniforms
and read noise from torch's global generator (:func:`neuronas.snn._kernels.drawn_noisy_cells`),
about a third of an MLP trial's time, on the generator's one sequence.  The draws of a request
depend on nothing but the generator's state where it starts and the request itself (the cells'
count, which draws), and the requests of a training loop repeat (layer 1, layer 2, ... then the
next batch's layer 1).  So after each request this module starts the one expected next, on a
background thread, from the state the generator has just been left in, into buffers of its own;
when that request comes it is used **only if** the generator's state then is that same state
(all 624 words and both counters) and the request the same: then its numbers are the very ones
drawing there would give, and the generator is set where drawing would leave it.  Anything else
-- another draw in between (validation's reads, a shuffle), a request not seen before -- and the
speculative draws are dropped and the request is drawn in place, as without this module.

While its thread is not drawing it takes parts of the kernels' work (:meth:`DrawsAhead.share`:
rows of the linear layers' convert-sum forward and of the noisy-cell pass, batch items of the
conv forward, the conv backward's tasks), each part computed as it would be in one pass (the
conv backward's as in its parallel twin's tasks), so the numbers stay the same.

Used only when torch has at least two threads (a core to spare for the background thread; one
thread per process, as search workers run, keeps the draws in place) and
``NEURONAS_DRAWS_AHEAD`` is not ``0``.  The kernels are numba's ``nogil`` ones: the background
thread draws while the training thread computes."""

from __future__ import annotations

import itertools
import os
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

#: a request: (cells, programming noise wanted, stuck uniforms wanted, read noise wanted)
Request = tuple[int, bool, bool, bool]
Buffers = tuple[np.ndarray, np.ndarray, np.ndarray]

#: cell counts whose buffers are kept (the layers of a network; older sizes are let go)
KEEP_SIZES = 8


class DrawsAhead:
    """One process's speculative draws: :meth:`take` a request's draws, then :meth:`start` the
    next one.  Not thread-safe by itself: its caller holds the draws' lock."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._pool: ThreadPoolExecutor | None = None
        # (request, start words, start [left, next], future of (buffers, end words, end pos))
        self._pending: tuple[Request, np.ndarray, np.ndarray, Future[Any]] | None = None
        self._next_of: dict[Request, Request] = {}
        self._last: Request | None = None
        self._free: OrderedDict[int, list[Buffers]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def buffers(self, n: int) -> Buffers:
        """A free set of three float32 buffers of ``n`` (reused: fresh ones cost page faults)."""
        free = self._free.setdefault(n, [])
        self._free.move_to_end(n)
        while len(self._free) > KEEP_SIZES:
            self._free.popitem(last=False)
        if free:
            return free.pop()
        return (np.empty(n, np.float32), np.empty(n, np.float32), np.empty(n, np.float32))

    def release(self, bufs: Buffers) -> None:
        """Give back a set from :meth:`buffers` or :meth:`take` once its draws are used."""
        n = bufs[0].shape[0]
        free = self._free.get(n)
        if free is not None and len(free) < 2:
            free.append(bufs)

    def take(self, request: Request, words: np.ndarray, pos: np.ndarray) -> Buffers | None:
        """The speculative draws of ``request`` if they started from the state ``words`` /
        ``pos`` (the generator's now), with ``words`` / ``pos`` advanced in place to where the
        draws leave the generator; else None (nothing changed).  Also records ``request`` as
        the one that followed the previous request."""
        if os.getpid() != self._pid:  # a forked child: its parent's thread is not here
            self._reset()
        if self._last is not None:
            self._next_of[self._last] = request
        self._last = request
        pending, self._pending = self._pending, None
        if pending is None:
            return None
        req, w0, p0, fut = pending
        bufs, w1, p1 = fut.result()  # always settled before its buffers go back
        if req == request and np.array_equal(w0, words) and np.array_equal(p0, pos):
            words[:] = w1
            pos[:] = p1
            self.hits += 1
            return bufs
        self.misses += 1
        self.release(bufs)
        return None

    def start(self, after: Request, words: np.ndarray, pos: np.ndarray) -> None:
        """Start drawing the request expected after ``after`` (the one that followed it last
        time, if any) from the state ``words`` / ``pos`` (copied: the caller's stay its own)."""
        nxt = self._next_of.get(after)
        if nxt is None:
            return
        from neuronas.snn import _rng_nb

        bufs = self.buffers(nxt[0])
        w, p = words.copy(), pos.copy()

        def draw() -> tuple[Buffers, np.ndarray, np.ndarray]:
            _rng_nb.cell_draws(w, p, nxt[1], nxt[2], nxt[3], *bufs)
            return bufs, w, p

        self._pending = (nxt, words.copy(), pos.copy(), self._spare().submit(draw))

    def _spare(self) -> ThreadPoolExecutor:
        """The background thread (made on first use, one per process)."""
        if os.getpid() != self._pid:
            self._reset()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="neuronas-draws")
        return self._pool

    def share(self, part: Callable[[int], None], n_parts: int) -> None:
        """Run ``part(0)`` .. ``part(n_parts - 1)``, each once, on the calling thread and the
        background one together; returns when all are done.  Each takes the next part not yet
        taken, so a background thread still busy with its draws leaves (nearly) all of them to
        the caller, which then does not wait for those draws.  ``part`` must release the GIL
        for its work (a numba ``nogil`` kernel) and write only what its index owns."""
        if n_parts < 2:
            for i in range(n_parts):
                part(i)
            return
        order = itertools.count()  # next() on it is atomic: each index goes to one thread

        def run() -> None:
            while (i := next(order)) < n_parts:
                part(i)

        helper = self._spare().submit(run)
        try:
            run()
        finally:
            # not started yet (still drawing): nothing left for it, so it never runs; else it
            # is on its last part (or an error), which must end before the outputs are read
            if not helper.cancel():
                helper.result()
