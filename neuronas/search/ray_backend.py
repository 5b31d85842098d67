"""The same search on a Ray cluster (``neuronas search --backend ray``).

Design (why not Ray Tune's ``OptunaSearch``): Tune's searcher can write into an existing Optuna
storage (``storage=``, ``study_name=``) and handles several objectives, but it only ``tell``s
values: it records none of what a neuronas trial carries (the architecture, costs, budget
margins via ``set_constraint``, the failure reason), and every candidate it proposes becomes a
Tune trial on a worker, so an over-budget candidate would still occupy a worker slot.  So the
driver (this process) keeps the run's single Optuna study in the run's own storage and drives
it with ask/tell, exactly as a local search does:

* each asked candidate is sampled and **priced in the driver** (microseconds); one that breaks
  a hard budget (or cannot be built on the chip) is recorded at once and never leaves the driver;
* a feasible candidate is sent to the cluster as one Ray task running
  :func:`neuronas.search.objective.evaluate` with the trial's resources
  (``--cpus-per-trial``, ``--gpus-per-trial``); at most ``--max-concurrent`` run at once;
* a task whose worker process or node is lost is re-run by Ray (``--max-retries``); after the
  last retry, or when the objective itself raised, the trial is recorded as FAIL with the reason;
* what the task returns -- the result dict plus the files the trainer wrote (weights,
  ``metrics.json``) -- is written by the driver into the run folder and the storage, so
  ``show``/``export`` read a Ray run exactly like a local one, and running the same command
  again resumes it.

Nothing here needs a shared filesystem between the nodes: the chip travels as a plain dict and
the trained weights travel back in the task's return value.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import os
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neuronas.errors import NeuronasError, SearchError

__all__ = [
    "RayOptions",
    "add_ray_arguments",
    "ray_options",
    "connect",
    "parse_address",
    "probe_address",
    "run_ray_search",
]

#: seconds to wait for a TCP connection to the cluster's GCS port before giving up; Ray's own
#: connect loop can otherwise wait for minutes before saying anything useful
PROBE_TIMEOUT_S = 3.0

#: attempts (about a second each) Ray makes to reach the GCS when joining a cluster
GCS_CONNECT_ATTEMPTS = 5

#: default GCS port of ``ray start --head`` and of the Ray Client server
_DEFAULT_PORTS = {"gcs": 6379, "client": 10001}


# -- options ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RayOptions:
    """How a search uses Ray.  ``address`` None starts a local Ray runtime in this process."""

    address: str | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    #: trials running at once; None = as many as the cluster's CPUs (and GPUs) allow
    max_concurrent: int | None = None
    #: re-runs of a trial whose worker process or node was lost
    max_retries: int = 2
    #: CPUs of the local runtime when ``address`` is None (None = every core)
    local_cpus: int | None = None

    def __post_init__(self) -> None:
        if not (self.cpus_per_trial > 0 and math.isfinite(self.cpus_per_trial)):
            raise NeuronasError(f"--cpus-per-trial: got {self.cpus_per_trial}, must be a number > 0")
        if not (self.gpus_per_trial >= 0 and math.isfinite(self.gpus_per_trial)):
            raise NeuronasError(f"--gpus-per-trial: got {self.gpus_per_trial}, must be a number >= 0 (fractions share a GPU)")
        if self.gpus_per_trial > 1 and self.gpus_per_trial != int(self.gpus_per_trial):
            raise NeuronasError(f"--gpus-per-trial: got {self.gpus_per_trial}; above 1 it must be a whole number of GPUs")
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise NeuronasError(f"--max-concurrent: got {self.max_concurrent}, must be an integer >= 1")
        if self.max_retries < 0:
            raise NeuronasError(f"--max-retries: got {self.max_retries}, must be an integer >= 0")
        if self.local_cpus is not None and self.local_cpus < 1:
            raise NeuronasError(f"local Ray CPUs: got {self.local_cpus}, must be an integer >= 1")
        if self.address is not None:
            parse_address(self.address)  # fail on a malformed address before anything starts

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> RayOptions:
        """The options given by :func:`add_ray_arguments`'s flags (validated, not probed)."""
        return cls(
            address=getattr(args, "address", None) or None,
            cpus_per_trial=float(getattr(args, "cpus_per_trial", 1.0)),
            gpus_per_trial=float(getattr(args, "gpus_per_trial", 0.0)),
            max_concurrent=getattr(args, "max_concurrent", None),
            max_retries=int(getattr(args, "max_retries", 2)),
        )


#: flag -> its default; any other value given with ``--backend local`` is a mistake
_RAY_FLAGS: dict[str, Any] = {
    "address": None,
    "cpus_per_trial": 1.0,
    "gpus_per_trial": 0.0,
    "max_concurrent": None,
    "max_retries": 2,
}


def ray_options(args: argparse.Namespace) -> RayOptions | None:
    """The Ray options of a ``neuronas search`` command line, or None for the local backend.

    Call it before the run is created: it rejects Ray flags given without ``--backend ray``
    and ``--workers`` given with it, validates the values, and probes ``--address`` (a
    one-line NeuronasError within seconds when nothing answers there).
    """
    backend = getattr(args, "backend", "local")
    if backend != "ray":
        given = [f"--{k.replace('_', '-')}" for k, d in _RAY_FLAGS.items() if getattr(args, k, d) != d]
        if given:
            raise NeuronasError(f"{', '.join(given)}: only used with --backend ray (got --backend {backend})")
        return None
    if getattr(args, "workers", 1) not in (None, 1):
        raise NeuronasError(
            f"--workers {args.workers}: local worker processes are for --backend local; with --backend ray "
            "use --max-concurrent (trials at once) and --cpus-per-trial"
        )
    options = RayOptions.from_args(args)
    if options.address is not None:
        probe_address(options.address)
    return options


def add_ray_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--backend`` and the Ray flags to ``neuronas search``'s parser.

    ``--backend`` is added only when the parser does not define it already.
    """
    if "--backend" not in parser._option_string_actions:  # noqa: SLF001 - argparse has no public query
        parser.add_argument(
            "--backend",
            choices=("local", "ray"),
            default="local",
            help="where trials run: 'local' (this machine, --workers processes) or 'ray' "
            "(Ray tasks on a local Ray runtime, or on the cluster given by --address)",
        )
    g = parser.add_argument_group("Ray backend (--backend ray)")
    g.add_argument(
        "--address",
        metavar="HOST:PORT",
        default=None,
        help="an existing Ray cluster: the head's GCS address (HOST:PORT, port 6379 by default) "
        "when this command runs on a node of the cluster, or ray://HOST:PORT (Ray Client, port "
        "10001) from outside it; omitted: start a local Ray runtime",
    )
    g.add_argument("--cpus-per-trial", type=float, default=1.0, metavar="N", help="CPUs reserved per trial (default 1; torch uses that many threads)")
    g.add_argument("--gpus-per-trial", type=float, default=0.0, metavar="F", help="GPUs per trial; fractions share a GPU (default 0: train on CPU)")
    g.add_argument(
        "--max-concurrent",
        type=int,
        default=None,
        metavar="N",
        help="trials running at once (default: as many as the cluster's CPUs/GPUs hold)",
    )
    g.add_argument("--max-retries", type=int, default=2, metavar="N", help="re-runs of a trial whose Ray worker or node was lost (default 2)")


# -- connecting ------------------------------------------------------------------------------


def parse_address(address: str) -> tuple[str, int, bool]:
    """``(host, port, client)`` of ``HOST[:PORT]`` or ``ray://HOST[:PORT]``; NeuronasError if malformed."""
    text = address.strip()
    client = text.startswith("ray://")
    rest = text[len("ray://") :] if client else text
    if "://" in rest or not rest or "/" in rest:
        raise NeuronasError(f"--address: got {address!r}, expected HOST:PORT (e.g. 10.0.0.5:6379) or ray://HOST:PORT")
    host, sep, port_text = rest.rpartition(":")
    if not sep:
        host, port_text = rest, str(_DEFAULT_PORTS["client" if client else "gcs"])
    host = host.strip("[]")  # [::1]:6379
    if not host:
        raise NeuronasError(f"--address: got {address!r}, the host is missing (expected HOST:PORT)")
    try:
        port = int(port_text)
    except ValueError:
        raise NeuronasError(f"--address: got {address!r}, the port {port_text!r} is not a number (expected HOST:PORT)") from None
    if not 0 < port < 65536:
        raise NeuronasError(f"--address: got {address!r}, the port must be in 1..65535")
    return host, port, client


#: the client's HTTP/2 connection preface and an empty SETTINGS frame (RFC 9113, section 3.4);
#: every gRPC server -- Ray's GCS and its Client server are gRPC -- answers with a SETTINGS frame
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
_H2_SETTINGS = 0x04


def probe_address(address: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Raise a one-line NeuronasError unless a gRPC server answers at ``address`` within seconds.

    Two steps, each bounded by ``timeout_s``: a TCP connect, then the HTTP/2 preface.  The
    second one matters because ``ray.init`` pointed at a port where something else listens
    (a database, a web server) waits for minutes; a Ray head answers the preface at once.
    Skipped for the second step when Ray's TLS is on (``RAY_USE_TLS``): the preface is then
    encrypted and ``ray.init`` reports failures itself.
    """
    host, port, client = parse_address(address)
    what = "Ray Client server" if client else "Ray head (GCS)"
    started = "`ray start --head` with ray[client] installed (port 10001)" if client else f"`ray start --head --port {port}`"
    hint = f"is the cluster up ({started}) and the port reachable from here?"
    connected = False
    head = b""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            connected = True
            if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
                return
            sock.settimeout(timeout_s)
            sock.sendall(_H2_PREFACE)
            while len(head) < 9:
                chunk = sock.recv(9 - len(head))
                if not chunk:
                    break
                head += chunk
    except socket.gaierror as exc:
        raise NeuronasError(f"--address {address}: cannot resolve host {host!r} ({exc.strerror or exc})") from None
    except TimeoutError:
        if not connected:
            raise NeuronasError(f"--address {address}: no answer from a {what} within {timeout_s:g} s; {hint}") from None
    except OSError as exc:
        if connected:  # reset by the peer: not a gRPC server either
            head = b""
        else:
            raise NeuronasError(f"--address {address}: cannot reach a {what} ({exc.strerror or exc}); {hint}") from None
    if len(head) < 9 or head[3] != _H2_SETTINGS:
        raise NeuronasError(
            f"--address {address}: something listens there but it is not a {what} (no gRPC answer); "
            f"give the head's GCS port (6379 unless `ray start --head --port` said otherwise)"
        )


@dataclass(frozen=True)
class ClusterInfo:
    """What the driver learned about the Ray runtime it joined."""

    address: str | None
    local: bool
    cpus: float
    gpus: float
    nodes: int
    #: the most CPUs / GPUs one alive node offers (a trial cannot span nodes)
    max_node_cpus: float
    max_node_gpus: float

    def describe(self) -> str:
        where = "local Ray runtime" if self.local else f"Ray cluster at {self.address}"
        gpus = f", {self.gpus:g} GPUs" if self.gpus else ""
        return f"{where}: {self.nodes} node{'s' if self.nodes != 1 else ''}, {self.cpus:g} CPUs{gpus}"


def _cluster_info(address: str | None) -> ClusterInfo:
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    res = [n.get("Resources", {}) for n in nodes]
    total = ray.cluster_resources()
    return ClusterInfo(
        address=address,
        local=address is None,
        cpus=float(total.get("CPU", 0.0)),
        gpus=float(total.get("GPU", 0.0)),
        nodes=len(nodes),
        max_node_cpus=max((float(r.get("CPU", 0.0)) for r in res), default=0.0),
        max_node_gpus=max((float(r.get("GPU", 0.0)) for r in res), default=0.0),
    )


@contextlib.contextmanager
def connect(options: RayOptions) -> Iterator[ClusterInfo]:
    """Join the cluster at ``options.address`` (probed first) or start a local runtime; shut down after.

    Raises a one-line NeuronasError when the address cannot be reached, the cluster refuses
    the connection, or no node could ever run one trial with the requested resources (a local
    runtime; on a cluster an autoscaler may still add such a node, so it is only a warning).
    """
    if options.address is not None:
        probe_address(options.address)

    import ray

    if ray.is_initialized():  # a caller (a notebook, a test) already joined a runtime: use it
        own = False
    else:
        own = True
        kwargs: dict[str, Any] = {
            "log_to_driver": False,  # trial output would tear the progress line; failures come back as exceptions
            "logging_level": "ERROR",
            "configure_logging": True,
        }
        if options.address is None:
            kwargs.update(num_cpus=options.local_cpus or os.cpu_count() or 1, include_dashboard=False)
        # joining a cluster, Ray retries the GCS for ~20 s by default; the probe has already seen
        # a gRPC server answer there, so a few attempts tell a Ray head from something else
        # (a proxy, another gRPC service) quickly.  A user's own setting wins.
        wait_var = "RAY_gcs_server_port_wait_time_s"
        set_wait = options.address is not None and wait_var not in os.environ
        if set_wait:
            os.environ[wait_var] = str(GCS_CONNECT_ATTEMPTS)
        try:
            with _quiet_stderr_fd():
                # "local": a fresh runtime of our own, never a cluster `ray start` left running here
                ray.init(address=options.address or "local", **kwargs)
        except Exception as exc:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, AuthenticationError...
            raise NeuronasError(_connect_failure(options.address, exc)) from None
        finally:
            if set_wait:
                os.environ.pop(wait_var, None)
    try:
        info = _cluster_info(options.address)
        _check_fits(options, info)
        yield info
    finally:
        if own:
            with contextlib.suppress(Exception):
                ray.shutdown()


def _connect_failure(address: str | None, exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    chained = " ".join(str(exc.__cause__ or "").split())
    if "auth" in (text + chained).lower():
        return (
            f"--address {address}: the Ray cluster refused the connection (token authentication); "
            "set RAY_AUTH_MODE=token and the cluster's token in RAY_AUTH_TOKEN (or ~/.ray/auth_token)"
        )
    if address is None:
        return f"cannot start a local Ray runtime: {text[:300]}"
    return f"--address {address}: the port answers but Ray could not join the cluster there: {text[:300]}"


def _check_fits(options: RayOptions, info: ClusterInfo) -> None:
    short = []
    if options.cpus_per_trial > info.max_node_cpus:
        short.append(f"--cpus-per-trial {options.cpus_per_trial:g} but the largest node has {info.max_node_cpus:g} CPUs")
    if options.gpus_per_trial > info.max_node_gpus:
        short.append(f"--gpus-per-trial {options.gpus_per_trial:g} but the largest node has {info.max_node_gpus:g} GPUs")
    if not short:
        return
    message = f"no node of the {info.describe()} can run a trial: " + "; ".join(short)
    if info.local:
        raise NeuronasError(message)
    # an autoscaling cluster (KubeRay, cluster launcher) adds such nodes on demand
    print(f"neuronas search: warning: {message}; trials wait until the autoscaler adds such a node", file=sys.stderr)


@contextlib.contextmanager
def _quiet_stderr_fd() -> Iterator[None]:
    """Silence the C++ core's connection chatter on fd 2 while ``ray.init`` runs."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            sys.stderr.flush()
            os.dup2(devnull.fileno(), 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
    finally:
        os.close(saved)


# -- the worker side -------------------------------------------------------------------------


def evaluate_on_worker(arch_dict: dict[str, Any], chip_ref: Any, settings: dict[str, Any], threads: int) -> dict[str, Any]:
    """Run :func:`~neuronas.search.objective.evaluate` on a Ray worker and bring its files back.

    The trainer writes into a private temporary folder on the worker's node; the files come
    back in the return value (bytes) so the driver can put them into the run folder -- the
    worker's disk may be another machine's.  Returns ``{"result", "files", "worker"}``.
    """
    import torch

    from neuronas.search.objective import evaluate

    # the trainer reads this too (neuronas.train.set_threads): one trial, its own cores only
    os.environ["NEURONAS_NUM_THREADS"] = str(max(1, threads))
    torch.set_num_threads(max(1, threads))
    settings = dict(settings)
    with tempfile.TemporaryDirectory(prefix="neuronas-trial-") as tmp:
        settings["out_dir"] = tmp
        result = evaluate(arch_dict, chip_ref, settings)
        files: dict[str, bytes] = {}
        for path in sorted(Path(tmp).rglob("*")):
            if path.is_file():
                files[path.relative_to(tmp).as_posix()] = path.read_bytes()
    return {
        "result": result,
        "files": files,
        "worker": {"pid": os.getpid(), "host": socket.gethostname(), "tmp_dir": tmp},
    }


def place_files(payload: dict[str, Any], out_dir: Path | None) -> dict[str, Any]:
    """Write a worker's files under ``out_dir`` and point the result's paths there.

    Returns a copy of the result in which every string naming a path in the worker's
    temporary folder (the checkpoint, ...) names the same file under ``out_dir`` instead;
    with ``out_dir`` None the files are dropped and such paths become None.
    """
    files: dict[str, bytes] = payload.get("files") or {}
    tmp = str(payload.get("worker", {}).get("tmp_dir") or "")
    if out_dir is not None and files:
        out_dir.mkdir(parents=True, exist_ok=True)
        for rel, data in files.items():
            dest = out_dir / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)

    def moved(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: moved(v) for k, v in value.items()}
        if isinstance(value, list):
            return [moved(v) for v in value]
        if tmp and isinstance(value, str) and (value == tmp or value.startswith(tmp + "/")):
            return None if out_dir is None else str(out_dir / Path(value).relative_to(tmp))
        return value

    return moved(dict(payload["result"]))  # type: ignore[no-any-return]


# -- dispatching -----------------------------------------------------------------------------


@dataclass
class _Running:
    trial: Any
    started: float


def failure_reason(exc: BaseException, retries: int) -> tuple[str, str | None]:
    """``(one-line reason, remote traceback or None)`` for a failed ``ray.get`` of a trial."""
    import ray.exceptions as rex

    if isinstance(exc, rex.RayTaskError):
        cause = exc.cause if getattr(exc, "cause", None) is not None else exc
        if isinstance(cause, NeuronasError):
            return str(cause), str(exc)
        return f"{type(cause).__name__}: {' '.join(str(cause).split())[:300]}", str(exc)
    labels = (
        (rex.WorkerCrashedError, "its Ray worker process died"),
        (rex.NodeDiedError, "its Ray node died"),
        (rex.TaskCancelledError, "it was cancelled"),
    )
    label = next((text for cls, text in labels if isinstance(exc, cls)), f"Ray error {type(exc).__name__}")
    detail = " ".join(str(exc).split())[:200]
    return f"lost: {label} on each of {1 + retries} attempt{'s' if retries else ''} ({detail})", None


def dispatch(
    propose: Callable[[], tuple[Any, dict[str, Any], dict[str, Any]] | None],
    finish: Callable[[Any, dict[str, Any] | None, BaseException | None], None],
    abandon: Callable[[Any], None],
    chip_ref: Any,
    options: RayOptions,
    capacity: int,
    *,
    poll_s: float = 0.5,
    on_tick: Callable[[], None] | None = None,
) -> None:
    """Keep up to ``capacity`` trials running as Ray tasks until ``propose`` has no more.

    ``propose()`` returns ``(trial, arch_dict, settings)`` for a candidate to train, or None
    when no further trial should start (it records untrained candidates itself).
    ``finish(trial, payload, error)`` is called once per task that ended, with the worker's
    payload or with the exception ``ray.get`` raised.  When this function is left early (an
    exception, Ctrl-C) the tasks still running are cancelled and ``abandon(trial)`` is called
    for each.
    """
    import ray

    remote = ray.remote(evaluate_on_worker)
    task_options: dict[str, Any] = {
        "num_cpus": options.cpus_per_trial,
        "num_gpus": options.gpus_per_trial,
        # Ray re-runs a task whose worker process or node died; an exception raised by the
        # objective itself is a result (recorded as FAIL), never retried
        "max_retries": options.max_retries,
        "retry_exceptions": False,
    }
    threads = max(1, int(options.cpus_per_trial))
    running: dict[Any, _Running] = {}
    exhausted = False
    try:
        while True:
            while not exhausted and len(running) < capacity:
                nxt = propose()
                if nxt is None:
                    exhausted = True
                    break
                trial, arch_dict, settings = nxt
                # the name shows in `ray list tasks`, the dashboard and the worker's process
                # title (ray::neuronas_trial_12), so an operator can tell which trial runs where
                name = f"neuronas_trial_{getattr(trial, 'number', len(running))}"
                ref = remote.options(name=name, **task_options).remote(arch_dict, chip_ref, settings, threads)
                running[ref] = _Running(trial, time.monotonic())
            if not running:
                return
            ready, _ = ray.wait(list(running), num_returns=1, timeout=poll_s)
            for ref in ready:
                job = running.pop(ref)
                try:
                    payload = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - every failure of a task is recorded
                    finish(job.trial, None, exc)
                    continue
                finish(job.trial, payload, None)
            if ready and on_tick is not None:
                on_tick()
    finally:
        for ref, job in list(running.items()):
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
            with contextlib.suppress(Exception):
                abandon(job.trial)


def default_capacity(options: RayOptions, info: ClusterInfo) -> int:
    """Trials to keep running: ``--max-concurrent``, else what the cluster's resources hold."""
    if options.max_concurrent is not None:
        return options.max_concurrent
    fits = [int(info.cpus // options.cpus_per_trial)]
    if options.gpus_per_trial > 0:
        fits.append(int(info.gpus // options.gpus_per_trial))
    return max(1, min(fits))


# -- the search ------------------------------------------------------------------------------


def _failed_result(reason: str, trained: bool) -> dict[str, Any]:
    return {
        "status": "failed", "trained": trained, "reason": reason, "prior": {}, "measured": None, "train": None,
        "accuracy_mean": None, "accuracy_std": None, "seconds": {},
    }


class _RayStudyDriver:
    """The driver's side of a Ray search: ask, price, record; one study, the run's storage."""

    def __init__(
        self, run: Any, options: RayOptions, bar: Any, max_consecutive_crashes: int = 5, deadline: float | None = None
    ) -> None:
        self.run = run
        self.deadline = deadline
        self.options = options
        self.bar = bar
        self.max_consecutive_crashes = max_consecutive_crashes
        self.crashes = 0
        self.device = "cuda" if options.gpus_per_trial > 0 else "cpu"
        self.stats = {"dispatched": 0, "untrained": 0, "lost": 0}
        self.started: dict[int, float] = {}

    # progress ------------------------------------------------------------------------------
    def tick(self) -> None:
        from neuronas.search.study import progress_line

        cfg = self.run.config
        self.bar.update(progress_line(self.run.study, self.run.target, cfg.objectives))

    # proposing -----------------------------------------------------------------------------
    def propose(self) -> tuple[Any, dict[str, Any], dict[str, Any]] | None:
        """The next candidate to train; untrained ones are recorded here without leaving the driver."""
        from optuna.trial import TrialState

        from neuronas.errors import SpecError
        from neuronas.search import study as st
        from neuronas.search.objective import evaluate, price

        run, cfg = self.run, self.run.config
        while True:
            if self.deadline is not None and time.time() >= self.deadline:
                return None
            trial = st.ask_next(run)
            if trial is None:
                return None
            trial.set_user_attr("backend", "ray")
            t0 = time.perf_counter()
            try:
                arch = run.space.sample(trial, run.chip, input_shape=cfg.input_shape, num_outputs=cfg.num_outputs)
            except SpecError as exc:
                trial.set_user_attr("status", "invalid")
                trial.set_user_attr("reason", f"the space produced an invalid architecture: {exc}")
                run.study.tell(trial, state=TrialState.FAIL)
                self.tick()
                continue
            arch_dict = arch.to_dict()
            trial.set_user_attr("arch", arch_dict)
            trial.set_user_attr("arch_key", arch.key)
            # a re-proposed architecture: its result is reused and, within the allowance, the
            # trial does not use up the budget (as in a local search)
            st._free_duplicate(run, trial, arch.key)  # noqa: SLF001
            cached = st._find_cached(run.study, arch.key, trial.number)  # noqa: SLF001 - shared duplicate cache
            if cached is not None:
                result = st._result_from_trial(cached)  # noqa: SLF001
            else:
                prior = price(arch_dict, cfg.chip_ref(), cfg.activity_prior)
                if prior["compatible"] and prior["feasible"]:
                    settings = cfg.train_settings(None)
                    settings["device"] = self.device
                    if getattr(cfg, "proxy_quantile", None) is not None:
                        # the training-free filter runs on the worker (it needs torch), against
                        # the scores of the candidates trained so far, as in a local search
                        settings["proxy_reference"] = st.proxy_reference(run.study)
                    self.stats["dispatched"] += 1
                    self.started[trial.number] = t0
                    return trial, arch_dict, settings
                # over a hard budget (or not buildable): evaluate() returns at its pricing
                # step without training, so it runs here, in the driver, in microseconds
                result = evaluate(arch_dict, cfg.chip_ref(), cfg.train_settings(None))
                assert not result["trained"], "an infeasible candidate must never be trained"
                self.stats["untrained"] += 1
            result.setdefault("seconds", {})["wall"] = time.perf_counter() - t0
            st.record_result(run.study, trial, result, cfg.objectives)
            self.tick()

    # finishing -----------------------------------------------------------------------------
    def finish(self, trial: Any, payload: dict[str, Any] | None, error: BaseException | None) -> None:
        from optuna.trial import TrialState

        from neuronas.search import study as st

        run, cfg = self.run, self.run.config
        if payload is not None:
            out_dir = st.trial_dir(run, trial.number)
            result = place_files(payload, out_dir)
            worker = payload.get("worker", {})
            trial.set_user_attr("ray_worker", {"host": worker.get("host"), "pid": worker.get("pid")})
            if result.get("trained"):
                trial.set_user_attr("trial_dir", str(out_dir.relative_to(run.run_dir)))
            self.crashes = 0
        else:
            assert error is not None
            reason, remote_tb = failure_reason(error, self.options.max_retries)
            cause = getattr(error, "cause", None)
            if isinstance(cause, NeuronasError):
                # the same input fails every trial (a dataset missing on a node, ...): stop
                trial.set_user_attr("status", "failed")
                trial.set_user_attr("reason", reason)
                run.study.tell(trial, state=TrialState.FAIL)
                raise type(cause)(str(cause)) from None
            result = _failed_result(reason, trained=remote_tb is not None)
            if remote_tb is not None:
                trial.set_user_attr("traceback", remote_tb[-4000:])
                self.crashes += 1
            else:
                self.stats["lost"] += 1
        # wall: from sampling in the driver to the result back (queueing and retries included)
        result.setdefault("seconds", {})["wall"] = time.perf_counter() - self.started.pop(trial.number, time.perf_counter())
        st.record_result(run.study, trial, result, cfg.objectives)
        self.tick()
        if self.crashes >= self.max_consecutive_crashes:
            raise SearchError(
                f"{self.crashes} trials in a row crashed on Ray workers ({result['reason']}); stopping -- "
                f"see `neuronas show {run.run_dir}` for the tracebacks"
            )

    def abandon(self, trial: Any) -> None:
        """A trial cut off by the driver stopping: interrupted, its parameters queued again."""
        from optuna.trial import TrialState

        study = self.run.study
        trial.set_user_attr("status", "interrupted")
        trial.set_user_attr("reason", "the search stopped while the trial ran on Ray; re-enqueued")
        study.tell(trial, state=TrialState.FAIL)
        if trial.params:
            study.enqueue_trial(dict(trial.params), user_attrs={"retry_of": trial.number})


def run_ray_search(
    run: Any, options: RayOptions, *, progress: bool = True, prescreen_n: int = 300, timeout_s: float | None = None
) -> dict[str, Any]:
    """Run (or resume) ``run``'s search with its trials as Ray tasks; the counterpart of
    :func:`neuronas.search.study.run_search`, with the same return value (plus ``ray``).

    ``timeout_s``: start no new trial after this many seconds (trials under way finish); the
    same command later resumes towards ``run.target``.

    ``run`` is a :class:`neuronas.search.study.Run` (from ``create_or_resume``).  The study
    ends with ``run.target`` finished trials, recorded in the run's storage exactly as a local
    search records them, plus ``ray_worker`` (host, pid) on each trained trial.
    """
    from neuronas.search import study as st

    cfg = run.config
    deadline = time.time() + timeout_s if timeout_s is not None else None
    screen = run.study.user_attrs.get("prescreen")
    if not screen:
        screen = st.prescreen(run.space, run.chip, n=prescreen_n, seed=cfg.seed, input_shape=cfg.input_shape,
                              num_outputs=cfg.num_outputs, activity=cfg.activity_prior)
        run.study.set_user_attr("prescreen", st._jsonable(screen))  # noqa: SLF001
    bar = st._Progress(enabled=progress)  # noqa: SLF001 - the local search's progress line
    with connect(options) as info:
        capacity = default_capacity(options, info)
        if progress:
            sys.stderr.write(
                f"neuronas search: run {run.run_dir} | space {run.space.name} on chip {run.chip.name}, dataset {cfg.dataset} | "
                f"sampler {cfg.sampler}, objectives {', '.join(cfg.objectives)} | "
                f"{100 * screen['feasible_share']:.0f}% of {screen['buildable']} random candidates fit the hard budgets\n"
                f"neuronas search: {info.describe()} | up to {capacity} trials at once, "
                f"{options.cpus_per_trial:g} CPU{'s' if options.cpus_per_trial != 1 else ''}"
                f"{f', {options.gpus_per_trial:g} GPU' if options.gpus_per_trial else ''} each | "
                f"lost workers retried {options.max_retries}x\n"
            )
            sys.stderr.flush()
        n_existing = len(run.study.get_trials(deepcopy=False))
        # several trials are in flight at once: the sampler must know (TPE's constant liar)
        run.study.sampler = st.make_sampler(run, workers=capacity, n_existing=n_existing)
        driver = _RayStudyDriver(run, options, bar, deadline=deadline)
        if progress:
            driver.tick()
        try:
            dispatch(driver.propose, driver.finish, driver.abandon, cfg.chip_ref(), options, capacity, on_tick=driver.tick)
        finally:
            bar.close()
    trials = run.study.get_trials(deepcopy=False)
    c = st.count_trials(run.study, trials)
    return {
        "counts": dataclasses.asdict(c),
        "front": [t.number for t in st.front_trials(run.study, cfg.objectives, trials)],
        "prescreen": screen,
        "ray": {"cluster": info.describe(), "capacity": capacity, **driver.stats},
    }
