"""FastQConfig (every hyper-parameter of docs/algorithm.md §3–§4, validated) and FastQ (the two phases).

Why this module is long: RLlib's pattern keeps an algorithm's config (every hyper-parameter with
its documentation and validation) beside the algorithm that reads it.
"""

from __future__ import annotations

import copy
import logging
import pathlib
from typing import Any

import numpy as np
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig, NotProvided
from ray.rllib.connectors.common.add_observations_from_episodes_to_batch import (
    AddObservationsFromEpisodesToBatch,
)
from ray.rllib.connectors.learner.add_next_observations_from_episodes_to_train_batch import (
    AddNextObservationsFromEpisodesToTrainBatch,
)
from ray.rllib.core import COMPONENT_EVAL_ENV_RUNNER, COMPONENT_LEARNER_GROUP, DEFAULT_MODULE_ID
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.utils.checkpoints import Checkpointable
from ray.rllib.utils.metrics import (
    LEARNER_RESULTS,
    LEARNER_UPDATE_TIMER,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    OFFLINE_SAMPLING_TIMER,
    TIMERS,
)
from ray.rllib.utils.typing import ResultDict

from rllib_fastq import _rllib_compat as compat
from rllib_fastq.counterfactual import ARM_CHOICE_TIMES, ARM_CHOICES, SERVE_ACTIONS
from rllib_fastq.counterfactual.ridge_values import ARM_VALUE_MODELS
from rllib_fastq.data import schema
from rllib_fastq.data.columnar import configure_streaming
from rllib_fastq.data_setup import InMemoryOfflineData, infer_spaces, prepare_offline_data
from rllib_fastq.defaults import MODEL_DEFAULTS
from rllib_fastq.fastq_learner import ADVERSARY_TARGETS, EXPERT_LOSSES, POLICY_SAMPLING
from rllib_fastq.torch.eval_loss import offline_eval_loss

logger = logging.getLogger(__name__)

# Fields whose value changes the networks: auto-included into `model_config`.
_MODEL_FIELDS = tuple(MODEL_DEFAULTS)


class FastQConfig(AlgorithmConfig):
    """Configuration of FAST-Q (arXiv 2504.21383) on RLlib's new API stack.

    .. code-block:: python

        config = (
            FastQConfig()
            .offline_data(input_=["offline_data/player_platform/train.parquet"])
            .training(num_policies=3, reward_weights=[0.25, 0.25, -0.25, 0.25])
        )
        algo = config.build_algo()
        algo.train()

    Defaults follow the D4RL setting of the spec (γ = 0.99, batch 256); the reference values of
    the gaming setting are given per field where they differ.
    """

    def __init__(self, algo_class: type | None = None):
        super().__init__(algo_class=algo_class or FastQ)

        # fmt: off
        # -- networks (docs/algorithm.md §3) --
        #: MLP widths of the trunk for flat observations; [] feeds the normalised state to the experts.
        self.trunk_hiddens: list[int] = copy.deepcopy(MODEL_DEFAULTS["trunk_hiddens"])
        #: LSTM width of the trunk for dict observations (temporal window). Reference: 64.
        self.lstm_hidden = MODEL_DEFAULTS["lstm_hidden"]
        #: Width of the static-feature MLP joined with the LSTM. Reference: 32.
        self.static_hidden = MODEL_DEFAULTS["static_hidden"]
        #: Variational dropout of the LSTM (inputs and hidden state, one mask per sequence).
        #: Default 0: the fused LSTM kernel; with dropout the LSTM must be unrolled step by step,
        #: which made phase 1 several times slower on CPU. Reference: 0.1 (`.reference()`).
        self.lstm_dropout = MODEL_DEFAULTS["lstm_dropout"]
        #: Hidden widths of each policy expert; the last is h_k. Reference: [256, 128].
        self.expert_hiddens: list[int] = copy.deepcopy(MODEL_DEFAULTS["expert_hiddens"])
        #: Width of the balancing representation b_k (the actor's and critic's input). None = "auto":
        #: min(256, 2 × the state width) for flat states (the reference's single-policy variant),
        #: 256 for dict states. Reference (gaming): 256.
        self.br_dim: int | None = MODEL_DEFAULTS["br_dim"]
        #: Hidden widths of the adversary classifier (outputs K logits). Reference: [512, 256].
        self.adversary_hiddens: list[int] = copy.deepcopy(MODEL_DEFAULTS["adversary_hiddens"])
        #: Hidden widths of the actor. Reference: [256, 256] (D4RL), [512, 256] (gaming).
        self.actor_hiddens: list[int] = copy.deepcopy(MODEL_DEFAULTS["actor_hiddens"])
        #: Hidden widths of each twin critic.
        self.critic_hiddens: list[int] = copy.deepcopy(MODEL_DEFAULTS["critic_hiddens"])
        #: Expert action heads read b_k instead of h_k, so BC also trains the BR. None: only for K = 1.
        self.bc_through_balancer: bool | None = MODEL_DEFAULTS["bc_through_balancer"]

        # -- arms and phase 1 (docs/algorithm.md §4) --
        #: K, the number of logging policies (arms); `policy_id` must lie in [0, K). 1 = plain offline RL.
        self.num_policies = MODEL_DEFAULTS["num_policies"]
        #: Gradient steps of phase 1 (experts + balancing) before phase 2. Reference: 100 epochs.
        #: "auto": 10 passes' worth of batches over the data, clipped to [1,000, 10,000] (what the
        #: experts, the balancing and the arm values need; phase 2 then starts within a short run).
        self.pretrain_steps: int | str = "auto"
        #: λ of the gradient-reversal layer. Reference: 0.1. Default 0: the reversed gradient reaches
        #: the shared trunk the arms' clones read, and at 0.1 it tripled their action error and cost
        #: 0.8 return on misaligned logs (docs/algorithm.md §8); the adversary still trains and its
        #: accuracy (`adversary_accuracy`) still reports how well b_k(s) tells the arms apart.
        self.grl_lambda = MODEL_DEFAULTS["grl_lambda"]
        #: Adversary label: "expert_index" (b_k → k, reference) or "logged_policy" (b_k → policy_id).
        self.adversary_target = "expert_index"
        #: Phase-1 batch balance: "inverse_frequency" (arms equally likely), "uniform" (rows equally
        #: likely) or "prediction_histogram" (arms the adversary predicts least drawn most; reference).
        self.policy_sampling = "inverse_frequency"

        # -- phase 2: TD3+BC with counterfactual exploration (docs/algorithm.md §4) --
        #: Polyak rate of both targets, applied after every actor step. Reference: 0.005.
        self.tau = 0.005
        #: Std of the target-policy smoothing noise, in units of the action bound. Reference: 0.2.
        self.policy_noise = 0.2
        #: Clip of that noise, in units of the action bound. Reference: 0.5.
        self.noise_clip = 0.5
        #: Actor (and target) update every `policy_freq` phase-2 gradient steps. Reference: 2.
        self.policy_freq = 2
        #: TD3+BC's α: λ = α / mean|Q|. Reference: 2.5.
        self.alpha = 2.5
        #: Final exploration probability ε of the counterfactual branch. Reference: 0.6.
        self.max_exploration = 0.6
        #: Phase-2 gradient steps over which ε ramps linearly from 0 to `max_exploration`.
        self.exploration_ramp_steps = 100_000

        # -- reward and its decomposition --
        #: Weights of `reward_components` giving the scalar reward; None uses the `rewards` column.
        #: Reference (gaming): 0.25 · [1, 1, -1, 1].
        self.reward_weights: list[float] | None = None
        #: Indices of the components the critic decomposes Q over; None = all. Reference: [0, 1, 3].
        self.decomposed_components: list[int] | None = None
        #: Names of the reward components (for metrics and explanations); None = "c0", "c1", ...
        self.reward_component_names: list[str] | None = None
        #: Weight of the TD loss in the critic loss. Reference: 0.75.
        self.td_weight = 0.75
        #: Weight of the (per-component averaged) decomposition loss. Reference: 0.25.
        self.decomposition_weight = 0.25
        #: True: the decomposition only explains (Q detached in its loss); False (reference): it shapes Q.
        self.decomposition_detach_q = False
        #: How the critic decomposes Q over the decomposed components (issue 36, item 1).
        #: "softmax" (reference): a softmax head ``w`` with ``w_j · Q`` regressed on the one-step
        #: ``r_j`` (L_dec above). "bellman": each twin has one value ``Q_j(s, a)`` per decomposed
        #: component (plus one for the rest of the reward when `decomposed_components` leaves some
        #: out), each trained on its own Bellman target ``r_j + γ (1 − done) Q'_j(s', π'(s'))``, and
        #: ``Q = Σ_j w_j Q_j`` (w = `reward_weights`) by construction; `decomposition_weight` and
        #: `decomposition_detach_q` are then unused. `.reference()` keeps "softmax". Default
        #: "bellman": on misaligned logs (seed 0) its per-component error against Monte-Carlo truth
        #: was 42–50 % of the value against 86–100 % for "softmax", the served policy unchanged
        #: (9.96 both; benchmarks/results/decomposition_critic.md).
        self.critic_decomposition = MODEL_DEFAULTS["critic_decomposition"]

        # -- optimisation --
        #: Learning rate of the trunk and expert heads ("experts" optimizer). 1e-3: the arms' clones
        #: are what is served, and phase 1 is short (docs/algorithm.md §8 (n)); reference 3e-4.
        self.expert_lr = 1e-3
        #: How the experts clone their arm's logged actions: "mse" (the conditional mean) or "l1"
        #: (the conditional median: with symmetric logging noise clipped at the action bounds, the
        #: arm's own action, where the mean is pulled inwards by the clip). losses.expert_loss.
        self.expert_loss = "mse"
        #: Learning rate of the BR layer and the adversary ("balancer" optimizer).
        self.balancer_lr = 3e-4
        #: Learning rate of the twin critic ("critic" optimizer).
        self.critic_lr = 3e-4
        #: Learning rate of the actor ("actor" optimizer).
        self.actor_lr = 3e-4
        #: Adam weight decay of every optimizer. Reference (gaming): 1e-5; D4RL: 0.
        self.weight_decay = 0.0
        self.lr = None  # one learning rate per part instead (above)

        # -- states, data and inference --
        #: Normalise states by the dataset's mean/std (inside the module, so serving sees raw states).
        self.normalize_states = True
        #: ε added to the std when normalising. Reference: 1e-3.
        self.state_norm_eps = 1e-3
        #: True: load the dataset into the learners' memory and sample there (starts in seconds);
        #: False: stream through Ray Data (for data beyond memory), with FAST-Q's columnar
        #: pre-learner (rllib_fastq.data.columnar) unless `offline_data(prelearner_class=...)` is set.
        self.in_memory_data = True
        #: Phase 2 caches b_k(s), b_p(s') and â_k(s) of every transition (experts and BR are frozen),
        #: so a phase-2 step costs what TD3+BC costs. In-memory data only.
        self.cache_representations = True
        #: Arm used at inference when a request names none: an arm index or "best" (docs/algorithm.md §5).
        self.default_policy: int | str = MODEL_DEFAULTS["default_policy"]
        #: Intra-op torch threads per learner; None = `num_cpus_per_learner` (1 when "auto"). Left to
        #: torch's default, learners and Ray workers oversubscribe small machines (a 3 s iteration
        #: took 56–152 s on 2 cores).
        self.torch_num_threads: int | None = None

        # -- counterfactual arm values and the arm choice (rllib_fastq.counterfactual) --
        #: How the "best" arm is chosen: "safe" (the best arm the router supports here; with
        #: `arm_choice_pessimism` > 0, pessimistic with a fallback to its likeliest arm), "greedy"
        #: (argmax of the mean arm value) or "critic" (reference: argmax_k Q1(b_k(s), π(b_k(s))),
        #: which ranked arms at chance in our measurements).
        self.arm_choice = MODEL_DEFAULTS["arm_choice"]
        #: Hidden widths of each arm-value ensemble member (and the routing model's first width).
        self.arm_value_hiddens: list[int] = copy.deepcopy(MODEL_DEFAULTS["arm_value_hiddens"])
        #: Ensemble members of the arm values; their spread is the arm choice's uncertainty.
        self.arm_value_ensemble = MODEL_DEFAULTS["arm_value_ensemble"]
        #: β: the "safe" choice ranks arms by mean − β · std over the ensemble, with `arm_choice_check`
        #: until the logs confirm that the choice at β = 0 beats the one at β. A fixed β did not carry
        #: across arm counts and overlaps (β = 0 lost 0.27 with four arms, β = 1 up to 1.18 with 5 %
        #: overlap); with the check it is 1 until the logs say otherwise (docs/algorithm.md §8 (n)).
        self.arm_choice_pessimism = MODEL_DEFAULTS["arm_choice_pessimism"]
        #: With β > 0: after the arm values train, estimate from the logs (doubly robust: the
        #: logged propensities, or the routing model's, and out-of-bag arm values) how much the
        #: choice at β = 0 improves on the choice at β, paired per player; if the one-sided lower
        #: confidence bound (`arm_choice_check_confidence`) is above zero, drop the pessimism.
        #: On by default since §8 (n). rllib_fastq.counterfactual.policy_check.
        self.arm_choice_check = True
        #: 0.5: the paired estimate itself must be positive. With 5 % randomised players the
        #: inverse-propensity terms (weights up to ~60) leave it a standard error of ~2; at 0.8 the
        #: check kept the pessimism on 3 of 5 low-overlap seeds (mean 9.67 against 9.81 at 0.5), at
        #: 0.95 it failed where the estimates were +3 (docs §8 (k), (n)).
        self.arm_choice_check_confidence = 0.5
        #: Arms the routing model gives less probability than this here are not chosen ("safe"):
        #: the data's support. Mid-episode, the history tells which arm served the player and the
        #: other arms' values there are extrapolations; this keeps the player on their arm (0
        #: switched arms ~4 times per episode and lost up to 10 % on the aligned regime). Low enough
        #: for routers that randomise 5 % of players over 3 arms (1.7 % per arm).
        self.arm_choice_min_propensity = MODEL_DEFAULTS["arm_choice_min_propensity"]
        #: When the "best" arm is chosen: "arrival" (default) on the player's arrival observation
        #: (the same static features, an empty history), so a player stays on one arm for the whole
        #: stay, as in the logs; "every_step" (reference) afresh at every step. Flat observations
        #: carry no history: every step is then an arrival.
        self.arm_choice_at = MODEL_DEFAULTS["arm_choice_at"]
        #: True: one arm value per reward component, V_{e,k,j}(s), each regressed on that component's
        #: own return-to-go, and the arm value V_{e,k}(s) = Σ_j w_j V_{e,k,j}(s) by construction, so
        #: `explain()` decomposes the value of what is served (`arm_value_components`). Without
        #: `reward_weights`, one component: the reward (the same values as False).
        self.arm_value_decomposition = MODEL_DEFAULTS["arm_value_decomposition"]
        #: Which model the arm values come from: "network" (the ensemble MLP), "ridge" (per-arm
        #: ridge regressions of the episode return on the arrival observation, an ensemble on the
        #: same bootstrap) or "auto" (the one with the smaller importance-weighted out-of-bag
        #: error, refitted whenever the arm values train). rllib_fastq.counterfactual.ridge_values.
        self.arm_value_model = "auto"
        #: Discount of the Monte-Carlo returns the arm values regress on (1: the whole stay).
        self.arm_value_gamma = 1.0
        #: Learning rate of the arm values and the routing model ("arm_values" optimizer).
        self.arm_value_lr = 1e-3
        #: Keep training the arm values and the routing model in phase 2 (a phase-1-style draw of
        #: `train_batch_size_per_learner` rows per step beside the critic's batch), so they use the
        #: whole run, not only phase 1; where nothing reads them (`.reference()`) they stop after
        #: phase 1 either way. Off by default: measured with `arm_choice_check` only (§8 (k)).
        self.arm_values_train_in_phase2 = False
        #: The counterfactual (exploration) branch of the actor moves towards: "value" (the arm the
        #: "safe" choice picks for this state: fast-track exploration) or "uniform" (reference).
        self.exploration_arm = "value"
        #: The action served for the chosen arm: "auto" (default: "expert" with several arms, "actor"
        #: with one, where there is no arm to choose), "expert" (â_k(s), the arm's cloned behaviour),
        #: "actor" (π(b_k(s)), TD3+BC's actor; the reference) or "supported" (the actor where the
        #: chosen arm is the one the logs' router most likely used here, the clone elsewhere). On
        #: the routing regimes the actor scored below the clone of the arm it acts for (BENCHMARKS.md).
        self.serve_action = MODEL_DEFAULTS["serve_action"]

        # -- RLlib settings with FAST-Q defaults --
        self._is_online = False  # env runners only evaluate
        self.gamma = 0.99
        self.train_batch_size_per_learner = 256
        self.dataset_num_iters_per_learner = 1000
        # The actor outputs actions already scaled to the bounds.
        self.normalize_actions = False
        self.clip_actions = True
        # Streaming path: one pre-learner actor (RLlib's default of two, plus the read tasks,
        # deadlocks a 2-CPU machine). Raise `concurrency` on a cluster.
        self.map_batches_kwargs = {"concurrency": 1, "num_cpus": 1}
        # Offline evaluation ("eval_loss"): a phase-independent loss the evaluation runner can
        # compute (the training loss needs the learner's phase; rllib_fastq.torch.eval_loss).
        self.offline_loss_for_module_fn = offline_eval_loss
        # fmt: on

    def training(
        self,
        *,
        trunk_hiddens: list[int] | None = NotProvided,
        lstm_hidden: int | None = NotProvided,
        static_hidden: int | None = NotProvided,
        lstm_dropout: float | None = NotProvided,
        expert_hiddens: list[int] | None = NotProvided,
        br_dim: int | None = NotProvided,
        adversary_hiddens: list[int] | None = NotProvided,
        actor_hiddens: list[int] | None = NotProvided,
        critic_hiddens: list[int] | None = NotProvided,
        bc_through_balancer: bool | None = NotProvided,
        num_policies: int | None = NotProvided,
        pretrain_steps: int | str | None = NotProvided,
        grl_lambda: float | None = NotProvided,
        adversary_target: str | None = NotProvided,
        policy_sampling: str | None = NotProvided,
        tau: float | None = NotProvided,
        policy_noise: float | None = NotProvided,
        noise_clip: float | None = NotProvided,
        policy_freq: int | None = NotProvided,
        alpha: float | None = NotProvided,
        max_exploration: float | None = NotProvided,
        exploration_ramp_steps: int | None = NotProvided,
        reward_weights: list[float] | None = NotProvided,
        decomposed_components: list[int] | None = NotProvided,
        reward_component_names: list[str] | None = NotProvided,
        td_weight: float | None = NotProvided,
        decomposition_weight: float | None = NotProvided,
        decomposition_detach_q: bool | None = NotProvided,
        critic_decomposition: str | None = NotProvided,
        expert_lr: float | None = NotProvided,
        expert_loss: str | None = NotProvided,
        balancer_lr: float | None = NotProvided,
        critic_lr: float | None = NotProvided,
        actor_lr: float | None = NotProvided,
        weight_decay: float | None = NotProvided,
        normalize_states: bool | None = NotProvided,
        state_norm_eps: float | None = NotProvided,
        in_memory_data: bool | None = NotProvided,
        cache_representations: bool | None = NotProvided,
        default_policy: int | str | None = NotProvided,
        torch_num_threads: int | None = NotProvided,
        arm_choice: str | None = NotProvided,
        arm_value_hiddens: list[int] | None = NotProvided,
        arm_value_ensemble: int | None = NotProvided,
        arm_value_decomposition: bool | None = NotProvided,
        arm_choice_pessimism: float | None = NotProvided,
        arm_choice_check: bool | None = NotProvided,
        arm_choice_check_confidence: float | None = NotProvided,
        arm_choice_min_propensity: float | None = NotProvided,
        arm_choice_at: str | None = NotProvided,
        arm_value_gamma: float | None = NotProvided,
        arm_value_lr: float | None = NotProvided,
        arm_values_train_in_phase2: bool | None = NotProvided,
        arm_value_model: str | None = NotProvided,
        exploration_arm: str | None = NotProvided,
        serve_action: str | None = NotProvided,
        **kwargs: Any,
    ) -> FastQConfig:
        """Sets FAST-Q's training settings; each argument is documented on its attribute."""
        super().training(**kwargs)
        for name, value in list(locals().items()):
            if name not in ("self", "kwargs", "__class__") and value is not NotProvided:
                setattr(self, name, value)
        return self

    def reference(self) -> FastQConfig:
        """The reference-faithful FAST-Q (docs/algorithm.md §3–§5): the "best" arm by the critic,
        ``argmax_k Q1(b_k(s), π(b_k(s)))``, and counterfactual exploration towards a uniformly
        drawn arm. Our defaults replace both (§8): the critic ranked arms at chance, and a uniform
        arm makes the actor's exploration target the average of the arms. It also restores the
        reference's LSTM dropout (0.1; our default 0 keeps the fused LSTM kernel) and the balancing
        adversary's gradient reversal (λ = 0.1; our default 0: it degraded the arms' clones), and
        chooses the arm at every step (ours: on arrival, then the player stays on it), with the
        paper's learning rate for the experts (3e-4; ours 1e-3)."""
        return self.training(arm_choice="critic", exploration_arm="uniform", serve_action="actor",
                             lstm_dropout=0.1, grl_lambda=0.1, arm_choice_at="every_step",
                             critic_decomposition="softmax", expert_lr=3e-4)

    # -- RLlib hooks ------------------------------------------------------------------------

    def get_default_learner_class(self) -> type:
        from rllib_fastq.torch.fastq_torch_learner import FastQTorchLearner

        return FastQTorchLearner

    def get_default_rl_module_spec(self) -> RLModuleSpec:
        from rllib_fastq.torch.fastq_torch_rl_module import FastQTorchRLModule

        return RLModuleSpec(module_class=FastQTorchRLModule)

    @property
    def _model_config_auto_includes(self) -> dict[str, Any]:
        return super()._model_config_auto_includes | {f: getattr(self, f) for f in _MODEL_FIELDS} | {
            "num_decomposed": len(self.decomposed_indices()),
            "decomposed_names": [self.component_names()[j] for j in self.decomposed_indices()],
            "decomposed_indices": self.decomposed_indices(),
            "reward_weights": [float(w) for w in self.reward_weights or []],
            "component_names": self.component_names(),
        }

    def build_learner_connector(self, input_observation_space, input_action_space, device=None):
        pipeline = super().build_learner_connector(
            input_observation_space=input_observation_space,
            input_action_space=input_action_space,
            device=device,
        )
        # The Ray Data path needs s' in the batch (as RLlib's CQL/IQL do).
        pipeline.insert_after(AddObservationsFromEpisodesToBatch, AddNextObservationsFromEpisodesToTrainBatch())
        return pipeline

    # -- derived values ---------------------------------------------------------------------

    def component_names(self) -> list[str]:
        """Names of the reward components (given, or "c0", "c1", ...)."""
        if self.reward_component_names is not None:
            return list(self.reward_component_names)
        return [f"c{j}" for j in range(len(self.reward_weights or []))]

    def decomposed_indices(self) -> list[int]:
        """The components Q is decomposed over (all by default; none without components)."""
        if self.reward_weights is None:
            return []
        if self.decomposed_components is None:
            return list(range(len(self.reward_weights)))
        return list(self.decomposed_components)

    # -- validation -------------------------------------------------------------------------

    def validate(self) -> None:
        if compat.config_is_frozen(self):
            # Validation fills in the spaces and the offline data class (below); a frozen config
            # refuses writes, so validate an unfrozen copy instead (what RLlib's `copy` is for).
            return self.copy(copy_frozen=False).validate()
        if self.lr is not None:
            self._value_error(
                f"`lr` ({self.lr!r}) is not used by FAST-Q: it has one learning rate per part; set "
                "`training(expert_lr=..., balancer_lr=..., critic_lr=..., actor_lr=..., arm_value_lr=...)` "
                "(for a Tune search, sample those) and leave `lr` at None.")
        if self.input_read_method not in ("read_parquet", "read_json") or self.input_read_sample_batches:
            self._value_error(
                "FAST-Q reads parquet or JSON-lines files (`input_read_method` 'read_parquet' or "
                "'read_json', chosen per file by its suffix) in its own columns or RLlib's recorded "
                f"episodes (`input_read_episodes=True`); got input_read_method={self.input_read_method!r}"
                f"{', input_read_sample_batches=True' if self.input_read_sample_batches else ''}. Convert "
                "the data (rllib_fastq.data.convert) or record it with `output_write_episodes=True`.")
        if self.input_ and (self.observation_space is None or self.action_space is None) and not self.env:
            obs_space, act_space = infer_spaces(self)
            self.observation_space = self.observation_space or obs_space
            self.action_space = self.action_space or act_space
        if self.in_memory_data and self.offline_data_class is None:
            self.offline_data_class = InMemoryOfflineData
        if not self.in_memory_data:  # columnar pre-learner, unless the user chose their own
            configure_streaming(self)
        super().validate()
        err = self._value_error

        def positive_int(name: str, minimum: int = 1) -> None:
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < minimum:
                err(f"`{name}` must be an integer >= {minimum}, got {v!r}.")

        positive_int("num_policies")
        if self.br_dim is not None:
            positive_int("br_dim")
        if self.pretrain_steps != "auto":
            positive_int("pretrain_steps", 0)
        positive_int("policy_freq")
        positive_int("exploration_ramp_steps")
        positive_int("arm_value_ensemble")
        if self.arm_choice not in ARM_CHOICES:
            err(f"`arm_choice` must be one of {ARM_CHOICES}, got {self.arm_choice!r}.")
        if self.arm_choice_at not in ARM_CHOICE_TIMES:
            err(f"`arm_choice_at` must be one of {ARM_CHOICE_TIMES}, got {self.arm_choice_at!r}.")
        if self.exploration_arm not in ("value", "uniform"):
            err(f"`exploration_arm` must be 'value' or 'uniform', got {self.exploration_arm!r}.")
        if self.serve_action not in SERVE_ACTIONS:
            err(f"`serve_action` must be one of {SERVE_ACTIONS}, got {self.serve_action!r}.")
        if not self.in_memory_data and (self.arm_choice != "critic" or self.exploration_arm == "value"):
            err("`in_memory_data=False` (streaming) cannot train the arm values (they regress on whole "
                "episodes' returns); use in_memory_data=True, or `.reference()` (arm_choice='critic', "
                "exploration_arm='uniform') to stream.")
        for name in ("arm_choice_pessimism", "arm_choice_min_propensity"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or v < 0:
                err(f"`{name}` must be a number >= 0, got {v!r}.")
        if self.expert_loss not in EXPERT_LOSSES:
            err(f"`expert_loss` must be one of {EXPERT_LOSSES}, got {self.expert_loss!r}.")
        if self.arm_value_model not in ARM_VALUE_MODELS:
            err(f"`arm_value_model` must be one of {ARM_VALUE_MODELS}, got {self.arm_value_model!r}.")
        if self.arm_value_model == "ridge" and self.arm_choice_at != "arrival":
            err("`arm_value_model='ridge'` regresses each player's whole-stay return on their arrival "
                "observation, so it needs `arm_choice_at='arrival'`; use 'network' or 'auto' (which "
                f"keeps the network) with arm_choice_at={self.arm_choice_at!r}.")
        if not isinstance(self.arm_values_train_in_phase2, (bool, np.bool_)):
            err(f"`arm_values_train_in_phase2` must be True or False, got {self.arm_values_train_in_phase2!r}.")
        if not isinstance(self.arm_choice_check, (bool, np.bool_)):
            err(f"`arm_choice_check` must be True or False, got {self.arm_choice_check!r}.")
        if not isinstance(self.arm_choice_check_confidence, (int, float)) or not \
                0.5 <= self.arm_choice_check_confidence < 1.0:
            err(f"`arm_choice_check_confidence` must lie in [0.5, 1), got {self.arm_choice_check_confidence!r}.")
        if self.critic_decomposition not in ("softmax", "bellman"):
            err("`critic_decomposition` must be 'softmax' (reference: a softmax head regressed on the "
                "one-step reward components) or 'bellman' (one Q_j per component on its own Bellman "
                f"target), got {self.critic_decomposition!r}.")
        if not isinstance(self.arm_value_decomposition, (bool, np.bool_)):
            err(f"`arm_value_decomposition` must be True or False, got {self.arm_value_decomposition!r}.")
        if not 0.0 <= self.arm_value_gamma <= 1.0:
            err(f"`arm_value_gamma` must lie in [0, 1], got {self.arm_value_gamma!r}.")
        for name in ("tau", "max_exploration"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                err(f"`{name}` must lie in [0, 1], got {v!r}.")
        for name in ("grl_lambda", "policy_noise", "noise_clip", "alpha", "td_weight",
                     "decomposition_weight", "weight_decay", "state_norm_eps"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or v < 0:
                err(f"`{name}` must be a number >= 0, got {v!r}.")
        for name in ("expert_lr", "balancer_lr", "critic_lr", "actor_lr", "arm_value_lr"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or v <= 0:
                err(f"`{name}` must be a learning rate > 0, got {v!r}.")
        if not 0.0 <= self.gamma <= 1.0:
            err(f"`gamma` must lie in [0, 1], got {self.gamma!r}.")
        if self.adversary_target not in ADVERSARY_TARGETS:
            err(f"`adversary_target` must be one of {ADVERSARY_TARGETS}, got {self.adversary_target!r}.")
        if self.policy_sampling not in POLICY_SAMPLING:
            err(f"`policy_sampling` must be one of {POLICY_SAMPLING}, got {self.policy_sampling!r}.")
        dp = self.default_policy
        if not schema.is_arm_or_best(dp, self.num_policies):
            err(f"`default_policy` must be 'best' or an arm in [0, {self.num_policies}), got {dp!r}.")
        if self.reward_weights is not None:
            r = len(self.reward_weights)
            if r == 0:
                err("`reward_weights` must have one weight per reward component, got [].")
            names = self.reward_component_names
            if names is not None and len(names) != r:
                err(f"`reward_component_names` has {len(names)} names but `reward_weights` has {r} "
                    "weights; give one name per reward component.")
            for j in self.decomposed_components or []:
                if not (isinstance(j, int) and 0 <= j < r):
                    err(f"`decomposed_components` entries must be component indices in [0, {r}), got {j!r}.")
        elif self.decomposed_components:
            err("`decomposed_components` needs `reward_weights` (the data's reward components).")


class FastQ(Algorithm):
    """FAST-Q: phase 1 (experts + adversarial balancing) then phase 2 (TD3+BC actor-critic
    with counterfactual exploration and Q decomposition), on offline multi-policy data.

    The learner decides the phase per gradient step from its own counter, so an iteration may
    straddle the switch and a restored checkpoint continues in the right phase.
    """

    @classmethod
    def get_default_config(cls) -> FastQConfig:
        return FastQConfig()

    def setup(self, config: AlgorithmConfig) -> None:
        super().setup(config)
        self.dataset_info = prepare_offline_data(self)

    def get_module(self, module_id: str = DEFAULT_MODULE_ID) -> Any:
        """The trained RLModule (FAST-Q has no training env runners to ask)."""
        if self.learner_group.is_local:
            return compat.local_learner(self.learner_group).module[module_id]
        if self.eval_env_runner is not None:
            return self.eval_env_runner.module
        state = self.learner_group.get_state(components=f"learner/rl_module/{module_id}")
        module = self.module_spec().build()
        module.set_state(state["learner"]["rl_module"][module_id])
        return module

    def module_spec(self, inference_only: bool = False) -> RLModuleSpec:
        """Spec of this algorithm's RLModule (spaces and model config filled in)."""
        cfg = self.config
        return RLModuleSpec(module_class=cfg.rl_module_spec.module_class, observation_space=cfg.observation_space,
                            action_space=cfg.action_space, model_config=cfg.model_config,
                            inference_only=inference_only)

    def save_to_path(self, path: Any = None, *, overwrite: bool = False, **kwargs: Any) -> str:
        """Save a checkpoint; refuses to write over an existing one unless ``overwrite=True``."""
        if path is not None and not overwrite:
            existing = pathlib.Path(path) / "rllib_checkpoint.json"
            if existing.exists():
                raise FileExistsError(
                    f"{path} already holds a checkpoint; pass overwrite=True (CLI: --overwrite) to replace it, "
                    "or choose another directory."
                )
        return super().save_to_path(path, **kwargs)

    def restore_from_path(self, path: Any, *args: Any, **kwargs: Any) -> None:
        """Restore, then sync evaluation env runners (RLlib's version assumes training env
        runners, which an offline algorithm does not have)."""
        Checkpointable.restore_from_path(self, path, *args, **kwargs)
        if self.eval_env_runner_group is not None:
            self.eval_env_runner_group.sync_weights(from_worker_or_learner_group=self.learner_group,
                                                    inference_only=True, timeout_seconds=None)

    def set_state(self, state: dict[str, Any]) -> None:
        """RLlib's version syncs training env runners (FAST-Q has none) and gives evaluation env
        runners the training runner's state (``KeyError: 'env_runner'``); here: the learners, then
        the evaluation runners' own state and weights, then RLlib's version for the rest (metrics,
        iteration)."""
        rest = {k: v for k, v in state.items() if k not in (COMPONENT_LEARNER_GROUP, COMPONENT_EVAL_ENV_RUNNER)}
        super().set_state(rest)
        if COMPONENT_LEARNER_GROUP in state:
            self.learner_group.set_state(state[COMPONENT_LEARNER_GROUP])
        if self.eval_env_runner_group is not None:
            if self.eval_env_runner is not None and COMPONENT_EVAL_ENV_RUNNER in state:
                self.eval_env_runner.set_state(state[COMPONENT_EVAL_ENV_RUNNER])
            if COMPONENT_LEARNER_GROUP in state:
                self.eval_env_runner_group.sync_weights(from_worker_or_learner_group=self.learner_group,
                                                        inference_only=True, timeout_seconds=None)

    def training_step(self) -> ResultDict | None:
        cfg = self.config
        steps = cfg.dataset_num_iters_per_learner
        timesteps = {NUM_ENV_STEPS_SAMPLED_LIFETIME: self.metrics.peek(NUM_ENV_STEPS_SAMPLED_LIFETIME, default=0)}
        if cfg.in_memory_data:
            with self.metrics.log_time((TIMERS, LEARNER_UPDATE_TIMER)):
                results = self.learner_group.foreach_learner(
                    lambda learner, n=steps, ts=timesteps: learner.update_from_memory(num_steps=n, timesteps=ts)
                )
                learner_results = compat.learner_results(self.learner_group, results)
        else:
            from ray.rllib.core.learner.training_data import TrainingData

            with self.metrics.log_time((TIMERS, OFFLINE_SAMPLING_TIMER)):
                iterators = self.offline_data.sample(
                    num_samples=cfg.train_batch_size_per_learner,
                    num_shards=cfg.num_learners,
                    return_iterator=True,
                )
            with self.metrics.log_time((TIMERS, LEARNER_UPDATE_TIMER)):
                learner_results = self.learner_group.update(
                    training_data=TrainingData(data_iterators=iterators),
                    minibatch_size=cfg.train_batch_size_per_learner,
                    num_iters=steps,
                    timesteps=timesteps,
                    **self.offline_data.iter_batches_kwargs,
                )
        self.metrics.log_value(
            NUM_ENV_STEPS_SAMPLED_LIFETIME,
            steps * cfg.train_batch_size_per_learner * max(1, cfg.num_learners),
            reduce="lifetime_sum",
        )
        self.metrics.aggregate(learner_results, key=LEARNER_RESULTS)
        return None
