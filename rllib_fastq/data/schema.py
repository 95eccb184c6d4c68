"""The one place where FAST-Q's offline data columns are defined (docs/algorithm.md §2).

One row is one transition, in RLlib's columnar offline format plus FAST-Q's extra columns.
Vector-valued columns are stored as flat ``list<float32>`` in parquet and as JSON arrays in
JSON lines; dictionary observations (``{"temporal": [T, F], "static": [F_s]}``) are stored
flattened as ``concat(temporal.ravel(), static)`` and described by an :class:`ObsLayout` kept
in the parquet file's metadata under :data:`METADATA_KEY`.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np

OBS = "obs"
NEW_OBS = "new_obs"
ACTIONS = "actions"
REWARDS = "rewards"
TERMINATEDS = "terminateds"
TRUNCATEDS = "truncateds"
EPS_ID = "eps_id"
T = "t"
POLICY_ID = "policy_id"
REWARD_COMPONENTS = "reward_components"
EXPERT_ACTIONS = "expert_actions"
EXPERT_ACTIONS_MASK = "expert_actions_mask"
#: The router's probability of the logged arm for this player (optional; experiment platforms record it).
POLICY_PROPENSITY = "policy_propensity"

#: Derived by FAST-Q from the episodes for its learners (never read from files): the Monte-Carlo
#: return from each row on, per-ensemble-member bootstrap weights of the arm values, episode starts.
RETURNS_TO_GO = "returns_to_go"
#: Per reward component [N, C] (``arm_value_decomposition``; C = 1 on ``rewards`` without components).
COMPONENT_RETURNS_TO_GO = "component_returns_to_go"
BOOTSTRAP_WEIGHTS = "bootstrap_weights"
EPISODE_START = "episode_start"  # the first logged row of its episode

#: Columns every dataset must have.
REQUIRED_COLUMNS = (OBS, ACTIONS, REWARDS, NEW_OBS, TERMINATEDS)
#: Columns RLlib's columnar format has and FAST-Q fills in when absent.
OPTIONAL_RLLIB_COLUMNS = (TRUNCATEDS, EPS_ID, T)
#: FAST-Q's extra columns. ``policy_id`` defaults to 0 (K = 1, single behaviour policy).
FASTQ_COLUMNS = (POLICY_ID, REWARD_COMPONENTS, EXPERT_ACTIONS, EXPERT_ACTIONS_MASK, POLICY_PROPENSITY)
ALL_COLUMNS = REQUIRED_COLUMNS + OPTIONAL_RLLIB_COLUMNS + FASTQ_COLUMNS

#: Key of the JSON document in a parquet file's key-value metadata.
METADATA_KEY = b"rllib_fastq"


@dataclasses.dataclass(frozen=True)
class ObsLayout:
    """How a flat stored observation maps to the module's input.

    ``temporal`` is ``(T, F)`` for the player-history form, ``None`` for a flat vector;
    ``static`` is the number of static features (the whole vector when flat).
    """

    static: int
    temporal: tuple[int, int] | None = None

    @property
    def flat_dim(self) -> int:
        t = 0 if self.temporal is None else self.temporal[0] * self.temporal[1]
        return t + self.static

    def to_dict(self) -> dict[str, Any]:
        return {"static": self.static, "temporal": list(self.temporal) if self.temporal else None}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ObsLayout:
        temporal = d.get("temporal")
        return cls(static=int(d["static"]), temporal=tuple(temporal) if temporal else None)

    @staticmethod
    def flatten(obs: Any) -> np.ndarray:
        """One observation or a batch of them in the stored form (last axis = features).

        A dict ``{"temporal": [..., T, F], "static": [..., F_s]}`` becomes
        ``concat(temporal.reshape(..., T * F), static)``; an array is returned as float32.
        """
        if isinstance(obs, dict):
            temporal = np.asarray(obs["temporal"], dtype=np.float32)
            static = np.asarray(obs["static"], dtype=np.float32)
            lead = temporal.shape[:-2]
            return np.concatenate([temporal.reshape(*lead, -1), static], axis=-1)
        return np.asarray(obs, dtype=np.float32)

    def unflatten(self, flat: Any) -> dict[str, np.ndarray]:
        """Inverse of :meth:`flatten` for one or a batch of flat observations (numpy)."""
        flat = np.asarray(flat, dtype=np.float32)
        T, F = self.temporal or (0, 0)
        lead = flat.shape[:-1]
        return {"temporal": flat[..., : T * F].reshape(*lead, T, F), "static": flat[..., T * F:]}

    def as_dict(self, obs: Any) -> dict[str, np.ndarray]:
        """The dict form of an observation given in either form."""
        return obs if isinstance(obs, dict) else self.unflatten(obs)

    @classmethod
    def from_space(cls, space: Any) -> ObsLayout:
        """Layout of a gymnasium ``Box`` or ``Dict(temporal=Box[T, F], static=Box[F_s])``."""
        import gymnasium as gym

        if isinstance(space, gym.spaces.Dict):
            keys = set(space.spaces)
            if keys != {"temporal", "static"}:
                raise ValueError(
                    f"observation_space: a Dict space must have exactly the keys 'temporal' "
                    f"[T, F] and 'static' [F_s], found {sorted(keys)}."
                )
            t_shape = space["temporal"].shape
            s_shape = space["static"].shape
            if len(t_shape) != 2 or len(s_shape) != 1:
                raise ValueError(
                    f"observation_space: 'temporal' must be 2-D [T, F] and 'static' 1-D [F_s], "
                    f"found {t_shape} and {s_shape}."
                )
            return cls(static=int(s_shape[0]), temporal=(int(t_shape[0]), int(t_shape[1])))
        if isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
            return cls(static=int(space.shape[0]))
        raise ValueError(
            f"observation_space: FAST-Q takes a 1-D Box or a Dict(temporal, static), found {space}."
        )


#: The ``policy_id`` that asks for the arm the critic values most (at inference, serving, evaluation).
BEST = "best"


def is_arm_or_best(value: Any, num_policies: int) -> bool:
    """Whether ``value`` is an arm index in ``[0, num_policies)`` (an int, not a bool) or ``"best"``."""
    if isinstance(value, str):
        return value == BEST
    return (isinstance(value, (int, np.integer)) and not isinstance(value, bool)
            and 0 <= int(value) < num_policies)


def check_arm_or_best(value: Any, num_policies: int, what: str = "policy_id") -> int | str:
    """``value`` as an arm index or ``"best"``; ``ValueError("<what>: expected ...")`` otherwise."""
    if not is_arm_or_best(value, num_policies):
        raise ValueError(f"{what}: expected an arm in [0, {num_policies}) or '{BEST}', got {value!r}")
    return value if isinstance(value, str) else int(value)


def parse_arm_or_best(text: str) -> int | str:
    """A command-line ``policy_id``: ``"best"`` or an integer (its range is checked where K is known)."""
    if text == BEST:
        return text
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"expected an arm index or '{BEST}', got {text!r}") from None


def flatten_obs(obs: Any) -> np.ndarray:
    """:meth:`ObsLayout.flatten` (kept as a name: many generators and tests call it)."""
    return ObsLayout.flatten(obs)


@dataclasses.dataclass(frozen=True)
class DatasetMeta:
    """What a dataset says about itself (parquet key-value metadata, or a card)."""

    obs_layout: ObsLayout | None = None
    num_policies: int | None = None
    reward_component_names: tuple[str, ...] | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_json(self) -> bytes:
        d = dict(self.extra)
        d["obs_layout"] = self.obs_layout.to_dict() if self.obs_layout else None
        d["num_policies"] = self.num_policies
        d["reward_component_names"] = (
            list(self.reward_component_names) if self.reward_component_names else None
        )
        return json.dumps(d).encode()

    @classmethod
    def from_json(cls, raw: bytes | str | None) -> DatasetMeta:
        if not raw:
            return cls()
        d = json.loads(raw)
        layout = d.pop("obs_layout", None)
        names = d.pop("reward_component_names", None)
        return cls(
            obs_layout=ObsLayout.from_dict(layout) if layout else None,
            num_policies=d.pop("num_policies", None),
            reward_component_names=tuple(names) if names else None,
            extra=d,
        )
