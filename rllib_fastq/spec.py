"""The run spec: what a ``tune_configs/*.yaml`` file says, typed and checked section by section.

A spec has the sections ``name``, ``data``, ``env``, ``env_config``, ``card``, ``config`` (any
:class:`FastQConfig` attribute), ``learners``, ``evaluation``, ``run``, ``search`` and ``tune``
(documented in ``tune_configs/README.md``). Each section with fixed keys is a dataclass below; an
unknown key in any of them is a one-line error naming it and the known ones.

The main job (``fastq train`` without arguments) is ``tune_configs/player_platform.yaml``: its
settings are written there once, and read here, by the examples and by the benchmarks. What a
Tune search runs differently sits in that file's ``tune.overrides`` (applied by ``fastq tune`` only).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from rllib_fastq.data.io import check_readable, infer_num_policies

ROOT = Path(__file__).resolve().parents[1]
PLAYER_PLATFORM_DIR = ROOT / "offline_data" / "player_platform"
PLAYER_PLATFORM_ENV = "rllib_fastq/PlayerPlatform-v0"
#: The main job's settings, shipped inside the package (``tune_configs/player_platform.yaml`` in a
#: checkout is a link to this one file), so an installed package runs ``fastq train`` too.
MAIN_JOB_YAML = Path(__file__).resolve().parent / "configs" / "player_platform.yaml"
EVAL_KEY = "evaluation/env_runners/episode_return_mean"


def echo(message: str) -> None:
    """Default progress output. A module-level function, not ``print`` itself: Tune pickles its
    callbacks, and Ray Data's progress bars replace ``builtins.print`` (it then no longer pickles)."""
    print(message, flush=True)


# -- sections -----------------------------------------------------------------------------------

@dataclasses.dataclass
class Learners:
    """``learners:`` — passed to ``FastQConfig.learners`` (only the keys given)."""

    num_learners: int | None = None
    num_cpus_per_learner: float | None = None
    num_gpus_per_learner: float | None = None

    def given(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclasses.dataclass
class Evaluation:
    """``evaluation:`` — RLlib's evaluation during training (``interval`` 0: none)."""

    interval: int = 0
    episodes: int = 10


@dataclasses.dataclass
class Run:
    """``run:`` — ``fastq train``'s budget, final evaluation and checkpoints."""

    iterations: int = 10
    final_eval_episodes: int = 20
    out: str = "checkpoints/fastq"
    checkpoint_every: int = 2  # iterations between checkpoints into `out` (0: only at the end)


@dataclasses.dataclass
class Tune:
    """``tune:`` — the search's settings; None means the default :mod:`rllib_fastq.tuning` derives."""

    metric: str | None = None
    mode: str | None = None
    num_samples: int = 1
    max_concurrent_trials: int = 1  # 2 CPUs: one trial at a time (a trial holds a driver and a learner)
    scheduler: dict | None = dataclasses.field(default_factory=lambda: {"type": "asha"})
    stop: dict | None = None
    max_failures: int = 1
    checkpoint_frequency: int = 1
    num_to_keep: int = 2
    storage_path: str = "ray_results"
    overrides: dict = dataclasses.field(default_factory=dict)  # KEY: VALUE the search runs with


SECTION_TYPES: dict[str, type] = {"learners": Learners, "evaluation": Evaluation, "run": Run, "tune": Tune}
SECTIONS = ("name", "data", "env", "env_config", "card", "config", "learners", "evaluation", "run",
            "search", "tune")
LEARNER_KEYS = tuple(f.name for f in dataclasses.fields(Learners))


def _coerce(value: Any, typ: str, where: str) -> Any:
    """``value`` as the dataclass field's type (a string annotation), or a one-line ValueError."""
    if value is None:
        if "None" in typ:
            return None
        raise ValueError(f"{where}: expected a value, got null")
    if typ.startswith("int"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise ValueError(f"{where}: expected an integer, got {value!r}")
        return int(value)
    if typ.startswith("float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where}: expected a number, got {value!r}")
        return value
    if typ.startswith("str") and not isinstance(value, str):
        raise ValueError(f"{where}: expected a string, got {value!r}")
    if typ.startswith("dict") and not isinstance(value, dict):
        raise ValueError(f"{where}: expected a mapping, got {value!r}")
    return value


def _section(cls: type, value: Any, name: str) -> Any:
    if value is None:
        return cls()
    if not isinstance(value, dict):
        raise ValueError(f"{name}: expected a mapping of {sorted(f.name for f in dataclasses.fields(cls))}, "
                         f"got {value!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(value) - set(fields), key=str)
    if unknown:
        raise ValueError(f"{name}: unknown key(s) {unknown}; known: {sorted(fields)}")
    return cls(**{k: _coerce(v, str(fields[k].type), f"{name}.{k}") for k, v in value.items()})


@dataclasses.dataclass
class RunSpec:
    """A checked run spec. ``config`` (FastQConfig attributes), ``env_config`` and ``search`` stay
    mappings: their keys are checked against FastQConfig when the config is built."""

    name: str = "fastq"
    data: list[str] = dataclasses.field(default_factory=list)
    env: str | None = None
    env_config: dict = dataclasses.field(default_factory=dict)
    card: str | None = None
    config: dict = dataclasses.field(default_factory=dict)
    learners: Learners = dataclasses.field(default_factory=Learners)
    evaluation: Evaluation = dataclasses.field(default_factory=Evaluation)
    run: Run = dataclasses.field(default_factory=Run)
    search: dict = dataclasses.field(default_factory=dict)
    tune: Tune = dataclasses.field(default_factory=Tune)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "spec") -> RunSpec:
        """Check every section; an unknown key anywhere is a ValueError naming it and the known ones."""
        if not isinstance(d, dict):
            raise ValueError(f"{where}: expected a mapping of sections {list(SECTIONS)}")
        unknown = sorted(set(d) - set(SECTIONS), key=str)
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown}; known sections: {list(SECTIONS)}")
        data = d.get("data") or []
        for key in ("env_config", "config", "search"):
            if d.get(key) is not None and not isinstance(d[key], dict):
                raise ValueError(f"{key}: expected a mapping, got {d[key]!r}")
        return cls(name=str(d.get("name") or "fastq"), data=[data] if isinstance(data, str) else list(data),
                   env=d.get("env"), env_config=dict(d.get("env_config") or {}), card=d.get("card"),
                   config=dict(d.get("config") or {}),
                   **{k: _section(t, d.get(k), k) for k, t in SECTION_TYPES.items()},
                   search=dict(d.get("search") or {}))

    def to_dict(self) -> dict[str, Any]:
        """The plain form (written to ``fastq_run.json`` / ``fastq_spec.json``)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for key in SECTION_TYPES:
            out[key] = dataclasses.asdict(out[key])
        out["learners"] = self.learners.given()
        return copy.deepcopy(out)


# -- loading ------------------------------------------------------------------------------------

class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads ``1e-4`` (no dot) as a string; learning rates are written that way."""


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
                              list("-+0123456789."))


def resolve_path(p: str, what: str) -> str:
    """Absolute path of ``p`` (relative to the working directory, else to the repository);
    absolute because Tune runs trials in their own directories."""
    for base in (Path.cwd(), ROOT):
        cand = (base / os.path.expanduser(p)).resolve()
        if cand.exists():
            return str(cand)
    raise FileNotFoundError(f"{what}: {p} does not exist")


def parse_overrides(overrides: Sequence[str]) -> list[tuple[list[str], Any]]:
    """``["alpha=2.5", "tune.num_samples=4"]`` → ``[(path, value), ...]``; a bare key names a
    ``config`` entry (or a top-level section such as ``env``); values are YAML (``[1, 2]``,
    ``{choice: [..]}``) and replace what the path held."""
    out = []
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set/--override {item!r}: expected key=value (e.g. alpha=2.5 or tune.num_samples=4)")
        out.append((_key_path(key.strip(), item), yaml.load(value, Loader=_Loader)))
    return out


def _key_path(key: str, item: str) -> list[str]:
    parts = key.split(".")
    if len(parts) == 1 and parts[0] not in SECTIONS:
        parts = ["config", parts[0]]
    if parts[0] not in SECTIONS:
        raise ValueError(f"--set/--override {item!r}: unknown section {parts[0]!r}; known: {list(SECTIONS)}")
    return parts


def apply_overrides(spec: dict[str, Any], overrides: Sequence[tuple[list[str], Any]]) -> None:
    for parts, value in overrides:
        node = spec
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                node[p] = {}
            node = node[p]
        node[parts[-1]] = value


def read_yaml(path: str) -> dict[str, Any]:
    """A spec file's mapping (one-line errors for a missing file, bad YAML, not a mapping)."""
    path = resolve_path(path, "--config")
    with open(path) as f:
        try:
            spec = yaml.load(f, Loader=_Loader) or {}
        except yaml.YAMLError as e:
            raise ValueError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(spec, dict):
        raise ValueError(f"{path}: expected a mapping of sections {SECTIONS}")
    RunSpec.from_dict(spec, where=path)  # unknown sections named with the file
    return spec


def player_platform_cache_dir() -> Path:
    """Where an installed package (no checkout beside it) keeps its player-platform data:
    ``$RLLIB_FASTQ_DATA`` or ``$XDG_CACHE_HOME/rllib_fastq`` (default ``~/.cache/rllib_fastq``)."""
    root = os.environ.get("RLLIB_FASTQ_DATA") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "rllib_fastq")
    return Path(root) / "player_platform"


def player_platform_dir(log: Callable[[str], None] | None = None) -> Path:
    """The shipped player-platform dataset: the checkout's ``offline_data/player_platform`` when
    present; else (an installed package) the user cache, generated there on first use with the
    defaults of ``fastq data player-platform`` (1000 players, seed 0), as the shipped files were."""
    if (PLAYER_PLATFORM_DIR / "train.parquet").is_file():
        return PLAYER_PLATFORM_DIR
    cache = player_platform_cache_dir()
    if not (cache / "card.json").is_file():
        from rllib_fastq.datasets.player_platform import generate_player_platform_dataset

        (log or echo)(f"no shipped player-platform data beside the package: generating it into {cache} "
                      "(once; `fastq data player-platform` defaults)")
        generate_player_platform_dataset(cache, overwrite=True)
    return cache


def main_job() -> dict[str, Any]:
    """The main job's spec (``tune_configs/player_platform.yaml``) as a mapping, its data and card
    pointing at :func:`player_platform_dir` (the checkout's files, else the user cache)."""
    if not MAIN_JOB_YAML.is_file():
        raise FileNotFoundError(f"{MAIN_JOB_YAML} (the main job's settings) is missing; pass --config YAML "
                                "or --data PATH")
    spec = read_yaml(str(MAIN_JOB_YAML))
    spec.pop("search", None)  # `fastq train` ignores the search; its tune section stays for --config use
    shipped = player_platform_dir()
    spec["data"], spec["card"] = [str(shipped / "train.parquet")], str(shipped / "card.json")
    return spec


def _player_platform_data(data: Sequence[str] | None) -> bool:
    """True when the first data path sits beside a player-platform dataset card."""
    card = Path(data[0]).resolve().parent / "card.json" if data else None
    return card is not None and card.is_file() and json.loads(card.read_text()).get("name") == "player-platform"


GENERIC: dict[str, Any] = {"name": "fastq", "config": {"seed": 0}, "learners": {"num_learners": 0},
                           "evaluation": {"interval": 0, "episodes": 10},
                           "run": {"iterations": 10, "final_eval_episodes": 20, "out": "checkpoints/fastq"}}


def load_spec(path: str | None = None, overrides: Sequence[str] = (), data: Sequence[str] | None = None,
              env: str | None = None, *, for_tune: bool = False) -> RunSpec:
    """The run spec: a YAML file (or the defaults) with ``overrides``, ``data`` and ``env`` applied.

    Without a file: the main job when no data is given or the data sit beside a player-platform
    ``card.json``, else FastQConfig's defaults with K read off the data. ``for_tune``: the file's
    ``tune.overrides`` are applied first (``overrides`` still win).
    """
    if path is not None:
        spec = read_yaml(path)
    elif not data or _player_platform_data(data):
        spec = main_job()
    else:
        spec = copy.deepcopy(GENERIC)
    parsed = parse_overrides(overrides)
    tune_over = (spec.get("tune") or {}).get("overrides") or {}
    if for_tune:
        if not isinstance(tune_over, dict):
            raise ValueError(f"tune.overrides: expected a mapping of KEY: VALUE, got {tune_over!r}")
        parsed = [(_key_path(str(k), f"tune.overrides.{k}"), v) for k, v in tune_over.items()] + parsed
    apply_overrides(spec, parsed)
    if data:
        spec["data"] = list(data)
        if path is None and not _player_platform_data(data):
            spec.pop("card", None)
    if env is not None:
        spec["env"] = env
    rs = RunSpec.from_dict(spec)
    if for_tune:
        rs.tune.overrides = {}  # applied
    if not rs.data:
        raise ValueError("no data: give --data PATH or a config with a `data:` list")
    rs.data = [resolve_path(p, "data") for p in rs.data]
    if rs.card:
        rs.card = resolve_path(rs.card, "card")
    if "num_policies" not in rs.config:
        rs.config["num_policies"] = infer_num_policies(rs.data)
    else:
        check_readable(rs.data)
    return rs


def build_config(spec: RunSpec) -> Any:
    """The FastQConfig a spec describes (validated, so bad values fail before Ray starts)."""
    from rllib_fastq.fastq import FastQConfig

    cfg = FastQConfig()
    for key in spec.config:
        if not hasattr(cfg, key) or key.startswith("_"):
            raise ValueError(f"config: unknown FastQConfig setting {key!r}")
    cfg.update_from_dict(dict(spec.config))
    cfg.offline_data(input_=list(spec.data))
    cfg.learners(**spec.learners.given())
    ev = spec.evaluation
    if spec.env and ev.interval:  # else the env only serves the final evaluation
        cfg.environment(env=spec.env, env_config=dict(spec.env_config))
        cfg.evaluation(evaluation_interval=int(ev.interval), evaluation_num_env_runners=0,
                       evaluation_duration=int(ev.episodes), evaluation_duration_unit="episodes")
    cfg.validate()
    return cfg


def config_from_yaml(path: str | None, overrides: Sequence[str] = ()) -> tuple[Any, RunSpec]:
    """``(FastQConfig, spec)`` of a ``tune_configs`` YAML file (None: the main job)."""
    spec = load_spec(path, overrides)
    return build_config(spec), spec


def ensure_ray() -> None:
    """A local loopback Ray session (2 CPUs at most) unless one is running."""
    from rllib_fastq.local_ray import init_local_ray

    init_local_ray(num_cpus=min(2, os.cpu_count() or 1), log_to_driver=False, configure_logging=False)
