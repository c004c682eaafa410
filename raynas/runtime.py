"""Starting or joining Ray: an embedded local Ray by default, a cluster when an address is given."""
from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Iterator, Optional

from raynas.errors import ConfigError

#: where experiments go without --output / storage_path (relative to the working directory)
DEFAULT_STORAGE = "raynas_results"


def ensure_ray(address: Optional[str] = None, num_cpus: Optional[int] = None,
               num_gpus: Optional[int] = None, quiet: bool = True) -> None:
    """Make sure Ray is initialised.

    ``address`` (or ``RAY_ADDRESS``) joins an existing cluster, e.g. ``"auto"`` on a cluster node
    or ``"ray://head:10001"``; without one an embedded local Ray starts (``address="local"``, so a
    stale cluster file left by an earlier run is never joined by accident).
    """
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    kwargs = dict(logging_level=logging.ERROR if quiet else logging.INFO, log_to_driver=not quiet)
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    if address and address != "local":
        if num_cpus is not None or num_gpus is not None:
            raise ConfigError("num_cpus/num_gpus describe a new local Ray; they cannot be set when "
                              f"joining the cluster at '{address}'")
        try:
            ray.init(address=address, **kwargs)
        except ConnectionError as exc:
            # recent Ray starts clusters with token authentication, and a client whose
            # RAY_AUTH_MODE is unset sends no token: the most common cause on one machine
            auth = "" if os.environ.get("RAY_AUTH_MODE") else \
                " (a cluster with token authentication also needs RAY_AUTH_MODE=token here)"
            raise ConfigError(f"could not connect to a Ray cluster at '{address}': {exc}. Start one with "
                              f"'ray start --head' or drop --address to run on this machine{auth}") from exc
        return
    ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=None, **kwargs)


@contextlib.contextmanager
def tune_environment(loggers: bool = False, sigint_handler: bool = True) -> Iterator[None]:
    """Tune's settings for a raynas run, restored afterwards. Tune reads them when a run starts:
    its loggers cost file writes per trial (wanted only for dashboards: ``loggers``), and its
    console tables would drown raynas' progress. ``sigint_handler=False`` turns its SIGINT
    handler off: Tune would end the run "gracefully" and return as if it had finished, where
    raynas wants Ctrl+C to raise KeyboardInterrupt (the journal is then exactly as a kill
    would leave it)."""
    env = {"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "0" if loggers else "1", "RAY_AIR_NEW_OUTPUT": "0"}
    if not sigint_handler:
        env["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    previous = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def check_trial_gpus(gpus_per_trial: float, address: Optional[str] = None) -> None:
    """Refuse trials that ask for more GPUs than the Ray cluster has: Tune would wait forever to
    place them. On a local Ray that is final (ConfigError); a cluster joined by address may
    still add GPU nodes (an autoscaler), so there it is said once and the run goes on."""
    import ray

    if gpus_per_trial <= 0:
        return
    have = float(ray.cluster_resources().get("GPU", 0.0))
    if have >= gpus_per_trial:
        return
    message = (f"each trial asks for {gpus_per_trial:g} GPU but the Ray cluster has {have:g}: no trial could "
               "start; pass gpus_per_trial=0 (--gpus-per-trial 0) to train on CPU, or run where GPUs are")
    if (address or os.environ.get("RAY_ADDRESS") or "local") == "local":
        raise ConfigError(message)
    print(f"warning: {message} (waiting, in case the cluster adds GPU nodes)", file=sys.stderr, flush=True)
