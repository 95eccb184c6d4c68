"""Every use of RLlib/Ray private API (all in ``rllib_fastq/_rllib_compat.py``) still exists.

A failure here means the installed Ray differs from the one the compat module was written for:
read ``rllib_fastq/_rllib_compat.py`` and adapt the one use named in the message.
"""

from __future__ import annotations

import inspect

import pytest
import ray
from ray.rllib.core.learner.learner import Learner
from ray.rllib.core.learner.learner_group import LearnerGroup
from ray.rllib.core.learner.torch.torch_learner import TorchLearner

from rllib_fastq import _rllib_compat as compat
from rllib_fastq.torch.fastq_torch_learner import FastQTorchLearner


def test_ray_version_is_one_the_compat_module_was_written_for():
    assert compat.ray_version_supported(), (
        f"Ray {ray.__version__} is installed, but rllib_fastq/_rllib_compat.py was written for Ray "
        f"{', '.join(v + '.x' for v in compat.SUPPORTED_RAY)}: check each private-API use listed there, "
        "then add the version to SUPPORTED_RAY.")
    assert compat.ray_version_supported("2.60.3") and not compat.ray_version_supported("2.61.0")


def test_learner_group_private_attributes():
    """``LearnerGroup._learner`` (local_learner) and ``LearnerGroup._get_results`` (learner_results)."""
    src = inspect.getsource(LearnerGroup.__init__)
    assert "self._learner" in src, "LearnerGroup._learner is gone: update compat.local_learner"
    assert callable(getattr(LearnerGroup, "_get_results", None)), (
        "LearnerGroup._get_results is gone: update compat.learner_results")
    params = list(inspect.signature(LearnerGroup._get_results).parameters)
    assert params[:2] == ["self", "results"], f"LearnerGroup._get_results{params}: update compat.learner_results"


def test_learner_optimizer_parameters():
    """``Learner._optimizer_parameters`` (compat.optimizers): a dict keyed by optimizer."""
    src = inspect.getsource(Learner)
    assert "self._optimizer_parameters: Dict[Optimizer" in src, (
        "Learner._optimizer_parameters changed: update compat.optimizers")


def test_algorithm_config_frozen_flag():
    """``AlgorithmConfig._is_frozen`` (compat.config_is_frozen)."""
    from ray.rllib.algorithms.algorithm_config import AlgorithmConfig

    config = AlgorithmConfig()
    assert compat.config_is_frozen(config) is False
    config.freeze()
    assert compat.config_is_frozen(config) is True, "AlgorithmConfig._is_frozen changed: update compat.config_is_frozen"


def test_algorithm_config_learner_connector():
    """``AlgorithmConfig._learner_connector`` (compat.custom_learner_connector)."""
    from ray.rllib.algorithms.algorithm_config import AlgorithmConfig

    config = AlgorithmConfig()
    assert compat.custom_learner_connector(config) is None, (
        "AlgorithmConfig._learner_connector changed: update compat.custom_learner_connector")

    def connector(obs_space, act_space):
        return []

    config.learners(learner_connector=connector)
    assert compat.custom_learner_connector(config) is connector, (
        "AlgorithmConfig.learners(learner_connector=...) no longer sets _learner_connector: "
        "update compat.custom_learner_connector")


def test_ray_private_cluster_flag():
    """``ray._private.ray_constants.ENABLE_RAY_CLUSTER`` (compat.disable_cluster_mode)."""
    from ray._private import ray_constants

    assert hasattr(ray_constants, "ENABLE_RAY_CLUSTER"), (
        "ray._private.ray_constants.ENABLE_RAY_CLUSTER is gone: update compat.disable_cluster_mode")


@pytest.mark.parametrize("name", sorted(compat.OVERRIDDEN_HOOKS))
def test_overridden_private_hooks_still_exist(name):
    """FAST-Q overrides these private TorchLearner hooks; RLlib must still define and call them."""
    assert name in vars(FastQTorchLearner), f"FastQTorchLearner no longer overrides {name}: update OVERRIDDEN_HOOKS"
    base = getattr(TorchLearner, name, None)
    assert base is not None, f"TorchLearner.{name} is gone: FastQTorchLearner's override is never called"
    params = tuple(inspect.signature(base).parameters)
    assert params == compat.OVERRIDDEN_HOOKS[name], (
        f"TorchLearner.{name}{params} differs from {compat.OVERRIDDEN_HOOKS[name]}: check the override")


def test_no_private_api_outside_the_compat_module():
    """The private names above appear in the package only in _rllib_compat.py (and the overrides)."""
    import pathlib
    import re

    pkg = pathlib.Path(compat.__file__).parent
    pattern = re.compile(r"\._is_frozen\b|\._learner\b|\._get_results\b|_optimizer_parameters|\._learner_connector\b"
                         r"|ray\._private|from ray\._private")
    offenders = []
    for path in pkg.rglob("*.py"):
        if path.name == "_rllib_compat.py":
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#")[0]
            if pattern.search(code) and "``" not in code:
                offenders.append(f"{path.relative_to(pkg.parent)}:{i}: {line.strip()}")
    assert not offenders, "private RLlib/Ray API outside _rllib_compat.py:\n" + "\n".join(offenders)
