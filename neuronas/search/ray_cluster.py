"""Reaching a Ray cluster for ``neuronas search --backend ray``: the options and flags, the
address check that fails in seconds instead of minutes, joining (or starting) a runtime."""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from neuronas.errors import NeuronasError

__all__ = [
    "ClusterInfo",
    "RayOptions",
    "add_ray_arguments",
    "connect",
    "default_capacity",
    "parse_address",
    "probe_address",
    "ray_options",
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
            raise NeuronasError(
                f"--cpus-per-trial: got {self.cpus_per_trial}, must be a number > 0"
            )
        if not (self.gpus_per_trial >= 0 and math.isfinite(self.gpus_per_trial)):
            raise NeuronasError(
                f"--gpus-per-trial: got {self.gpus_per_trial}, must be a number >= 0 (fractions share a GPU)"
            )
        if self.gpus_per_trial > 1 and self.gpus_per_trial != int(self.gpus_per_trial):
            raise NeuronasError(
                f"--gpus-per-trial: got {self.gpus_per_trial}; above 1 it must be a whole number of GPUs"
            )
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise NeuronasError(
                f"--max-concurrent: got {self.max_concurrent}, must be an integer >= 1"
            )
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
        given = [
            f"--{k.replace('_', '-')}" for k, d in _RAY_FLAGS.items() if getattr(args, k, d) != d
        ]
        if given:
            raise NeuronasError(
                f"{', '.join(given)}: only used with --backend ray (got --backend {backend})"
            )
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
    g.add_argument(
        "--cpus-per-trial",
        type=float,
        default=1.0,
        metavar="N",
        help="CPUs reserved per trial (default 1; torch uses that many threads)",
    )
    g.add_argument(
        "--gpus-per-trial",
        type=float,
        default=0.0,
        metavar="F",
        help="GPUs per trial; fractions share a GPU (default 0: train on CPU)",
    )
    g.add_argument(
        "--max-concurrent",
        type=int,
        default=None,
        metavar="N",
        help="trials running at once (default: as many as the cluster's CPUs/GPUs hold)",
    )
    g.add_argument(
        "--max-retries",
        type=int,
        default=2,
        metavar="N",
        help="re-runs of a trial whose Ray worker or node was lost (default 2)",
    )


# -- connecting ------------------------------------------------------------------------------


def parse_address(address: str) -> tuple[str, int, bool]:
    """``(host, port, client)`` of ``HOST[:PORT]`` or ``ray://HOST[:PORT]``; NeuronasError if malformed."""
    text = address.strip()
    client = text.startswith("ray://")
    rest = text[len("ray://") :] if client else text
    if "://" in rest or not rest or "/" in rest:
        raise NeuronasError(
            f"--address: got {address!r}, expected HOST:PORT (e.g. 10.0.0.5:6379) or ray://HOST:PORT"
        )
    host, sep, port_text = rest.rpartition(":")
    if not sep:
        host, port_text = rest, str(_DEFAULT_PORTS["client" if client else "gcs"])
    host = host.strip("[]")  # [::1]:6379
    if not host:
        raise NeuronasError(f"--address: got {address!r}, the host is missing (expected HOST:PORT)")
    try:
        port = int(port_text)
    except ValueError:
        raise NeuronasError(
            f"--address: got {address!r}, the port {port_text!r} is not a number (expected HOST:PORT)"
        ) from None
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
    started = (
        "`ray start --head` with ray[client] installed (port 10001)"
        if client
        else f"`ray start --head --port {port}`"
    )
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
        raise NeuronasError(
            f"--address {address}: cannot resolve host {host!r} ({exc.strerror or exc})"
        ) from None
    except TimeoutError:
        if not connected:
            raise NeuronasError(
                f"--address {address}: no answer from a {what} within {timeout_s:g} s; {hint}"
            ) from None
    except OSError as exc:
        if connected:  # reset by the peer: not a gRPC server either
            head = b""
        else:
            raise NeuronasError(
                f"--address {address}: cannot reach a {what} ({exc.strerror or exc}); {hint}"
            ) from None
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
        return (
            f"{where}: {self.nodes} node{'s' if self.nodes != 1 else ''}, {self.cpus:g} CPUs{gpus}"
        )


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
            kwargs.update(
                num_cpus=options.local_cpus or os.cpu_count() or 1, include_dashboard=False
            )
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
        short.append(
            f"--cpus-per-trial {options.cpus_per_trial:g} but the largest node has {info.max_node_cpus:g} CPUs"
        )
    if options.gpus_per_trial > info.max_node_gpus:
        short.append(
            f"--gpus-per-trial {options.gpus_per_trial:g} but the largest node has {info.max_node_gpus:g} GPUs"
        )
    if not short:
        return
    message = f"no node of the {info.describe()} can run a trial: " + "; ".join(short)
    if info.local:
        raise NeuronasError(message)
    # an autoscaling cluster (KubeRay, cluster launcher) adds such nodes on demand
    print(
        f"neuronas search: warning: {message}; trials wait until the autoscaler adds such a node",
        file=sys.stderr,
    )


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


def default_capacity(options: RayOptions, info: ClusterInfo) -> int:
    """Trials to keep running: ``--max-concurrent``, else what the cluster's resources hold."""
    if options.max_concurrent is not None:
        return options.max_concurrent
    fits = [int(info.cpus // options.cpus_per_trial)]
    if options.gpus_per_trial > 0:
        fits.append(int(info.gpus // options.gpus_per_trial))
    return max(1, min(fits))
