"""Start a single-machine Ray session that talks over loopback only."""

from __future__ import annotations

import os
from typing import Any

import ray

from rllib_fastq import _rllib_compat as compat


def init_local_ray(num_cpus: int = 2, **kwargs: Any) -> None:
    """``ray.init`` on 127.0.0.1, no dashboard; a no-op when Ray is already running.

    Ray replaces a loopback ``_node_ip_address`` with the machine's network address unless its
    cluster mode is off (``ray._private.services.get_node_ip_address``); a local session needs
    no cluster, so it is switched off here (the environment variable reaches Ray's workers).
    Serve's proxy gets 60 s to start (``RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S``; set it to override).
    For a real cluster, call ``ray.init(address=...)`` yourself instead.
    """
    if ray.is_initialized():
        return
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    compat.disable_cluster_mode()
    # Serve kills a proxy that is not up within 5 s; on a busy 2-core machine importing the HTTP
    # stack takes longer, so the first requests died with ActorDiedError. Workers inherit this.
    os.environ.setdefault("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", "60")
    kwargs.setdefault("include_dashboard", False)
    ray.init(num_cpus=num_cpus, _node_ip_address="127.0.0.1", **kwargs)
