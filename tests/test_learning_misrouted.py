"""Learning test (issue 34): on a small misrouted dataset, FAST-Q's served policy (its default arm
choice) beats the routing that produced the logs, and is not below the best single arm."""

from __future__ import annotations

import numpy as np
import torch

from rllib_fastq import FastQConfig
from rllib_fastq.data.io import write_transitions
from rllib_fastq.datasets.player_platform import collect_episodes
from rllib_fastq.envs import ArmPolicy, PlayerPlatformConfig, Router, RoutingPolicy, evaluate_policy

ENV = {"window": 8, "horizon": 20}
EVAL_PLAYERS, EVAL_SEED = 150, 50_000


def test_served_policy_beats_the_misaligned_routing_that_logged_the_data(ray_session, tmp_path):
    router = Router("misaligned", num_arms=3)
    path = tmp_path / "misrouted.parquet"
    write_transitions(collect_episodes(400, seed=3, env_config=ENV, router=router), path)
    config = (FastQConfig()
              .offline_data(input_=[str(path)], dataset_num_iters_per_learner=300)
              .training(num_policies=3, gamma=0.9, reward_weights=[0.25, 0.25, -0.25, 0.25],
                        expert_hiddens=[64, 32], br_dim=32, adversary_hiddens=[64], actor_hiddens=[64],
                        critic_hiddens=[64], arm_value_hiddens=[64, 64], lstm_hidden=32, static_hidden=16)
              .debugging(seed=0))
    algo = config.build_algo()
    for _ in range(4):  # 1,200 steps: the default "auto" phase 1 (1,000) and a little of phase 2
        algo.train()
    module = algo.get_module()
    module.eval()

    def served(obs):
        with torch.no_grad():
            out = module.forward_inference({"obs": {k: torch.as_tensor(v)[None] for k, v in obs.items()}})
        return out["actions"][0].numpy()

    layout = PlayerPlatformConfig.from_any(ENV).obs_layout
    fastq = evaluate_policy(served, ENV, EVAL_PLAYERS, EVAL_SEED)["mean_return"]
    routing = evaluate_policy(RoutingPolicy(router, layout, seed=1), ENV, EVAL_PLAYERS, EVAL_SEED)["mean_return"]
    arms = [evaluate_policy(ArmPolicy(k, layout), ENV, EVAL_PLAYERS, EVAL_SEED)["mean_return"] for k in range(3)]
    algo.stop()
    print(f"served {fastq:.2f}, logged routing {routing:.2f}, arms {np.round(arms, 2).tolist()}")
    assert fastq > 1.3 * routing
    assert fastq >= 0.97 * max(arms)
