"""Starting or joining Ray: an embedded local Ray by default, a cluster when an address is given."""
from __future__ import annotations

import logging
import os
from typing import Optional

from raynas.errors import ConfigError


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
