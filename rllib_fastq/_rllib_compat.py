"""The only place that touches RLlib's or Ray's private API (written for Ray 2.60.x).

Every use is a function here (or, for private hooks that FAST-Q overrides, an entry of
:data:`OVERRIDDEN_HOOKS`), so a Ray upgrade means reading this file and running
``tests/test_rllib_compat.py``, which names each use and fails loudly when one has moved.

Uses, and why each is needed:

- ``LearnerGroup._learner`` (:func:`local_learner`): the learner of a local learner group; RLlib
  has no public accessor, and the trained module lives there when ``num_learners=0``.
- ``LearnerGroup._get_results`` (:func:`learner_results`): unpacks ``foreach_learner`` results
  (local values or remote call results) and raises the first remote error.
- ``Learner._optimizer_parameters`` (:func:`optimizers`): the registered optimizers, stepped
  directly by ``FastQTorchLearner.apply_gradients`` (one fused step per optimizer).
- ``ray._private.ray_constants.ENABLE_RAY_CLUSTER`` (:func:`disable_cluster_mode`): keeps a local
  session on 127.0.0.1 (see :func:`rllib_fastq.local_ray.init_local_ray`).
- ``AlgorithmConfig._is_frozen`` (:func:`config_is_frozen`): whether a config refuses writes
  (RLlib has ``freeze()`` but no public reader); ``FastQConfig.validate`` then validates a copy.
- ``AlgorithmConfig._learner_connector`` (:func:`custom_learner_connector`): whether the user added
  a learner connector (RLlib has a setter but no reader); the columnar streaming pre-learner runs
  no connector, so FAST-Q keeps RLlib's stock ``OfflinePreLearner`` for such configs.
- Overridden private hooks of ``TorchLearner`` (:data:`OVERRIDDEN_HOOKS`): ``_update`` (one
  gradient step on an in-memory batch) and ``_make_modules_ddp_if_necessary`` (no DDP wrapper:
  FAST-Q all-reduces its own gradients).
"""

from __future__ import annotations

from typing import Any

#: Ray versions (major.minor) this module was written and tested for.
SUPPORTED_RAY = ("2.60",)

#: Private hooks of RLlib's ``TorchLearner`` that ``FastQTorchLearner`` overrides, with the
#: parameter names RLlib's own definition has. If RLlib renames or drops one, the override would
#: silently stop being called: ``tests/test_rllib_compat.py`` checks them.
OVERRIDDEN_HOOKS: dict[str, tuple[str, ...]] = {
    "_update": ("self", "batch"),
    "_make_modules_ddp_if_necessary": ("self",),
}


def ray_version_supported(version: str | None = None) -> bool:
    """Whether ``version`` (default: the installed Ray's) is one this module was written for."""
    if version is None:
        import ray

        version = ray.__version__
    return ".".join(version.split(".")[:2]) in SUPPORTED_RAY


def local_learner(learner_group: Any) -> Any:
    """The ``Learner`` of a local learner group (``num_learners=0``); None for a remote one."""
    return learner_group._learner


def learner_results(learner_group: Any, results: Any) -> list[Any]:
    """The values of ``learner_group.foreach_learner(...)`` (remote errors raised)."""
    return learner_group._get_results(results)


def optimizers(learner: Any) -> list[Any]:
    """The optimizers registered on ``learner``, in registration order."""
    return list(learner._optimizer_parameters)


def disable_cluster_mode() -> None:
    """Stop Ray from replacing a loopback node address by the machine's network address."""
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False


def config_is_frozen(config: Any) -> bool:
    """Whether ``config`` (an ``AlgorithmConfig``) is frozen, i.e. refuses attribute writes."""
    return bool(config._is_frozen)


def custom_learner_connector(config: Any) -> Any:
    """The user's ``config.learners(learner_connector=...)`` callable, or None when none was set."""
    return config._learner_connector
