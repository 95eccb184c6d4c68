"""Off-policy evaluation (rllib_fastq.evaluation.ope) on tiny problems with known answers, and
``fastq evaluate CHECKPOINT --data LOGS --json`` on a smoke-size checkpoint."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from rllib_fastq.data import schema
from rllib_fastq.data.transitions import Transitions
from rllib_fastq.evaluation import ope


def bandit(n: int, seed: int = 0):
    """Arm-level bandit: context x ~ U(0, 1); true value q(x, k) = (k + 1) x + k; a router that
    prefers arm 0 for x < 0.5 and arm 2 otherwise, 30 % uniformly randomised; noisy returns."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=n)
    pref = np.where(x < 0.5, 0, 2)
    mu = np.full((n, 3), 0.1)
    mu[np.arange(n), pref] += 0.7
    arm = np.array([rng.choice(3, p=p) for p in mu])
    q = (np.arange(3)[None] + 1) * x[:, None] + np.arange(3)[None]
    g = q[np.arange(n), arm] + rng.normal(scale=1.0, size=n)
    return x, arm, mu, q, g


def test_dr_on_a_bandit_with_known_truth():
    x, arm, mu, q, g = bandit(4000)
    prop = mu[np.arange(len(x)), arm]
    target = (x > 0.3).astype(int)  # arm 1 above 0.3, else arm 0: true value E[q(x, π(x))]
    truth = 0.3 * 0.15 + 0.7 * (2 * 0.65 + 1)  # ∫_0^.3 x dx / .3 · .3 + ∫_.3^1 (2x + 1) dx
    # a biased q̂ (the ridge model on a wrong feature: constant per arm) -- DR corrects it
    q_hat = ope.fit_ridge_arm_values(np.zeros((len(x), 1)), arm, g, 3)(np.zeros((len(x), 1)))
    res = ope.arm_choice_dr(q_hat, arm, g, prop, target, n_boot=500)
    assert abs(res["estimate"] - truth) < 0.08
    assert res["ci"][0] <= truth <= res["ci"][1]
    assert abs(res["direct_method"] - truth) > 0.1  # the DM alone is biased here
    # with a good q̂ (ridge on x) the estimate is tighter and still covers
    good = ope.fit_ridge_arm_values(x[:, None], arm, g, 3)(x[:, None])
    res2 = ope.arm_choice_dr(good, arm, g, prop, target, n_boot=500)
    assert res2["ci"][0] <= truth <= res2["ci"][1]
    assert res2["ci"][1] - res2["ci"][0] < res["ci"][1] - res["ci"][0]


def test_perfect_q_hat_gives_zero_mean_correction_and_zero_q_hat_gives_ipw():
    x, arm, mu, q, g = bandit(20000, seed=1)
    prop = mu[np.arange(len(x)), arm]
    t = ope.dr_terms(q, arm, g, prop, 2)
    corr = t["dr"] - t["dm"]
    assert abs(corr.mean()) < 3 * corr.std() / np.sqrt(len(corr))  # zero mean within noise
    # hand-computed, 4 episodes, q̂ = 0: DR = IPW = mean(1[p = π] / μ · G)
    arm4, g4 = np.array([0, 1, 1, 2]), np.array([2.0, 4.0, -1.0, 3.0])
    prop4 = np.array([0.5, 0.25, 0.5, 0.2])
    res = ope.arm_choice_dr(np.zeros((4, 3)), arm4, g4, prop4, 1, n_boot=50)
    assert res["estimate"] == pytest.approx((4.0 / 0.25 + -1.0 / 0.5) / 4)  # 3.5
    assert res["ipw"] == pytest.approx(3.5) and res["direct_method"] == 0.0
    # balanced weights with one logger are the plain DR
    q_hat = np.arange(12.0).reshape(4, 3)
    mu4 = np.full((1, 4, 3), 0.0)
    mu4[0, np.arange(4), arm4] = prop4
    assert ope.balanced_dr(q_hat, arm4, g4, 1, mu4, [4], n_boot=50)["estimate"] == pytest.approx(
        ope.arm_choice_dr(q_hat, arm4, g4, prop4, 1, n_boot=50)["estimate"])


def test_balanced_weights_pool_two_loggers():
    """Two routers with different propensities, pooled: the balanced DR with q̂ = 0 is unbiased."""
    rng = np.random.default_rng(2)
    parts = []
    for p in ((0.8, 0.1, 0.1), (0.1, 0.1, 0.8)):
        x, n = rng.uniform(size=3000), 3000
        arm = rng.choice(3, size=n, p=p)
        parts.append((x, arm, (np.arange(3)[arm] + 1) * x + np.arange(3)[arm] + rng.normal(size=n)))
    x, arm, g = (np.concatenate(v) for v in zip(*parts))
    mu = np.stack([np.tile(p, (6000, 1)) for p in ((0.8, 0.1, 0.1), (0.1, 0.1, 0.8))])
    res = ope.balanced_dr(np.zeros((6000, 3)), arm, g, 2, mu, [3000, 3000], n_boot=300)
    assert res["ci"][0] <= 3 * 0.5 + 2 <= res["ci"][1]


def test_logged_routing_value_is_the_mean_episode_return():
    # two episodes (rows out of time order), returns 1 + 2 + 3 = 6 and -1 + 0.5 = -0.5
    tr = Transitions(
        obs=np.arange(10, dtype=np.float32).reshape(5, 2), actions=np.zeros((5, 1), np.float32),
        rewards=np.array([2.0, 1.0, -1.0, 3.0, 0.5], np.float32), new_obs=np.zeros((5, 2), np.float32),
        terminateds=np.array([0, 0, 0, 1, 1], bool), truncateds=np.zeros(5, bool),
        eps_id=np.array(["a", "a", "b", "a", "b"]), t=np.array([1, 0, 0, 2, 1]),
        policy_id=np.array([1, 1, 0, 1, 0]), policy_propensity=np.array([0.3, 0.3, 0.6, 0.3, 0.6], np.float32),
        reward_components=np.array([[1, 1], [1, 0], [-1, 0], [2, 1], [0, 0.5]], np.float32),
        meta=schema.DatasetMeta(reward_component_names=("x", "y")))
    ep = ope.episodes_from_transitions(tr)
    np.testing.assert_allclose(ep.returns, [6.0, -0.5])
    np.testing.assert_allclose(ep.first_obs, [[2, 3], [4, 5]])  # the t = 0 rows
    np.testing.assert_allclose(ep.components, [[4, 2], [-1, 0.5]])
    assert list(ep.arm) == [1, 0] and list(ep.propensity) == pytest.approx([0.3, 0.6])
    res = ope.logged_value(ep.returns, n_boot=200)
    assert res["estimate"] == pytest.approx(2.75) and res["ci"][0] >= -0.5 and res["ci"][1] <= 6.0
    np.testing.assert_allclose(ope.episodes_from_transitions(tr, reward_weights=[1.0, 0.0]).returns, [4.0, -1.0])
    np.testing.assert_allclose(ope.discounted_returns(tr, ep, tr.rewards, 0.5), [1 + 0.5 * 2 + 0.25 * 3, -1 + 0.25])


def test_fqe_on_a_chain_with_known_value():
    """Episodes of 3 steps, reward = action; the policy acts 1.0: value 3 (gamma 1), 1 + .9 + .81."""
    rng = np.random.default_rng(0)
    n_ep = 300
    t = np.tile(np.arange(3), n_ep)
    obs = np.stack([t / 2.0, np.ones_like(t, float)], 1).astype(np.float32)
    new_obs = np.stack([(t + 1) / 2.0, np.ones_like(t, float)], 1).astype(np.float32)
    a = rng.uniform(-1, 1, size=(len(t), 1)).astype(np.float32)
    first = obs[t == 0]
    policy = lambda x: np.ones((len(x), 1), np.float32)  # noqa: E731
    for gamma, truth in ((1.0, 3.0), (0.9, 2.71)):
        res = ope.fqe(obs, a, a[:, 0], new_obs, t == 2, first, policy, gamma=gamma, steps=1500, n_boot=50)
        assert res["values"][0] == pytest.approx(truth, abs=0.3) and res["discounted"] == (gamma < 1)


def chain(n_ep: int = 200, seed: int = 0) -> Transitions:
    """A 2-step deterministic chain: s_0 = (0, 1) → s_1 = (1, 1) → end (truncated at the time limit);
    reward = the action's first coordinate + 1 (logged actions uniform in [-1, 1]); components
    (reward, 2 · reward). A policy acting a ≡ 1 earns 2 + 2 = 4 undiscounted, 2 + 0.9 · 2 = 3.8 at 0.9."""
    rng = np.random.default_rng(seed)
    t = np.tile(np.arange(2), n_ep)
    obs = np.stack([t.astype(float), np.ones(len(t))], 1).astype(np.float32)
    new_obs = np.stack([t + 1.0, np.ones(len(t))], 1).astype(np.float32)
    a = rng.uniform(-1, 1, size=(len(t), 1)).astype(np.float32)
    r = a[:, 0] + 1.0
    return Transitions(obs=obs, actions=a, rewards=r.astype(np.float32), new_obs=new_obs,
                       terminateds=np.zeros(len(t), bool), truncateds=t == 1, eps_id=np.repeat(np.arange(n_ep), 2),
                       t=t, policy_id=np.zeros(len(t), np.int64), policy_propensity=np.ones(len(t), np.float32),
                       reward_components=np.stack([r, 2 * r], 1).astype(np.float32),
                       meta=schema.DatasetMeta(reward_component_names=("x", "y")))


def test_undiscounted_fqe_on_a_two_step_chain_equals_the_hand_computed_return():
    tr = chain()
    policy = lambda x: np.ones((len(x), 1), np.float32)  # noqa: E731
    res = ope.fqe_from_logs(tr, policy, steps=1500, n_boot=50)  # gamma 1: the undiscounted return
    assert res["gamma"] == 1.0 and not res["discounted"] and res["time_feature"]
    assert res["values"][0] == pytest.approx(4.0, abs=0.2)
    assert res["values"][1] == pytest.approx(4.0, abs=0.2) and res["values"][2] == pytest.approx(8.0, abs=0.4)
    ep = ope.episodes_from_transitions(tr)
    assert res["logged_return"] == pytest.approx(ep.returns.mean())  # the behaviour's own value, ~2
    disc = ope.fqe_from_logs(tr, policy, gamma=0.9, steps=1500, n_boot=50)
    assert disc["discounted"] and not disc["time_feature"]
    assert disc["values"][0] == pytest.approx(3.8, abs=0.2)


def test_fqe_bootstrap_ensemble_averages_its_members_and_widens_the_interval():
    tr = chain(n_ep=100, seed=1)
    policy = lambda x: np.ones((len(x), 1), np.float32)  # noqa: E731
    one = ope.fqe_from_logs(tr, policy, steps=1000, n_boot=200, components=False)
    ens = ope.fqe_from_logs(tr, policy, steps=1000, n_boot=200, components=False, ensemble=3)
    assert ens["ensemble"] == 3 and len(ens["member_values"]) == 3
    assert ens["values"][0] == pytest.approx(np.mean(ens["member_values"])) == pytest.approx(4.0, abs=0.3)
    assert ens["cis"][0][0] - 0.1 <= 4.0 <= ens["cis"][0][1] + 0.1  # the fit's bias stays outside it
    # one network's interval over identical first states is a point; the members' spread widens it
    assert one["cis"][0][1] - one["cis"][0][0] < 1e-4 < ens["cis"][0][1] - ens["cis"][0][0]
    assert ens["action_shift"] == pytest.approx(np.sqrt(3), rel=0.15)  # E|1 - a| / std(a), a ~ U(-1, 1)
    with pytest.raises(ValueError, match="groups"):
        ope.fqe(tr.obs, tr.actions, tr.rewards, tr.new_obs, tr.truncateds, tr.obs[:2], policy, gamma=1.0,
                steps=1, ensemble=2)


class _ActorModule:
    """The parts of a FAST-Q module :func:`ope.estimate_policy_value` reads: one arm, a flat
    observation, an actor that serves a ≡ 1 (``serve_action="actor"``: FQE)."""

    num_policies, serve_action = 1, "actor"
    layout = schema.ObsLayout(static=2)

    def arm_value_estimates(self, obs):
        import torch

        return torch.zeros(len(obs), 1, 1), torch.ones(len(obs), 1)

    def choose_arms(self, obs, policy_id=None):
        import torch

        return {"policy_id": torch.zeros(len(obs), dtype=torch.long)}

    def forward_inference(self, batch):
        import torch

        return {"actions": torch.ones(len(batch["obs"]), 1)}


def test_estimate_policy_value_is_undiscounted_unless_asked():
    """What `fastq evaluate --data` reports (the checkpoint's gamma passed, as the CLI does) is the
    undiscounted episode return, the quantity `--env` measures; ``discounted=True`` keeps the old one."""
    tr = chain()
    res = ope.estimate_policy_value(_ActorModule(), tr, method="auto", gamma=0.9, fqe_steps=1500, n_boot=50)
    assert res["method"] == "fqe" and res["fqe"]["gamma"] == 1.0
    assert res["estimate"] == pytest.approx(4.0, abs=0.2) and res["ci"][0] <= res["estimate"] <= res["ci"][1]
    assert res["components"]["y"] == pytest.approx(8.0, abs=0.4)
    assert res["logged_routing"] == pytest.approx(ope.episodes_from_transitions(tr).returns.mean())
    disc = ope.estimate_policy_value(_ActorModule(), tr, gamma=0.9, discounted=True, fqe_steps=1500, n_boot=50)
    assert disc["fqe"]["discounted"] and disc["estimate"] == pytest.approx(3.8, abs=0.2)
    assert "discounted" in disc["method"] and "logged_discounted" in disc["fqe"]
    assert "discounted" in ope.format_report(disc) and "discounted" not in ope.format_report(res)


def test_fqe_estimate_far_from_the_logged_actions_is_flagged():
    """The policy always acts 1 where the logged actions are uniform on [-1, 1]: per logged state the
    RMS over action dimensions of (1 − a) / std(a), averaged over states, ~1.6 logged standard
    deviations, above the threshold (the reference preset's actor sat at 1.2–1.8 on the suite, BC at 0.3)."""
    tr = chain()
    a = np.asarray(tr.actions, np.float64)
    assert len(a) <= 4096  # FQE measures the shift on up to 4096 logged states: here, all of them
    expected = np.sqrt((((1.0 - a) / (a.std(0) + 1e-6)) ** 2).mean(1)).mean()
    res = ope.estimate_policy_value(_ActorModule(), tr, method="fqe", fqe_steps=300, n_boot=20)
    assert res["fqe"]["action_shift"] == pytest.approx(expected, rel=1e-2) and expected > 1.3
    assert res["extrapolation_warning"] is True
    assert f"warning: the policy acts {res['fqe']['action_shift']:.2f} standard deviations" in ope.format_report(res)
    near = {**res, "fqe": {**res["fqe"], "action_shift": 0.3}}
    assert "warning" not in ope.format_report(near)


@pytest.fixture(scope="module")
def tiny_checkpoint(ray_session, tmp_path_factory):
    from tests.test_cli import smoke_train

    out = str(tmp_path_factory.mktemp("ope") / "ckpt")
    smoke_train(out)
    return out


def test_cli_evaluate_data_writes_the_ope_keys(tiny_checkpoint, capsys):
    from rllib_fastq.cli import main
    from tests.test_cli import HELDOUT

    path = os.path.join(os.path.dirname(tiny_checkpoint), "ope.json")
    assert main(["evaluate", tiny_checkpoint, "--data", HELDOUT, "--json", path]) == 0
    res = json.loads(open(path).read())
    assert {"estimate", "ci", "logged_routing", "logged_routing_ci", "components", "method",
            "propensities"} <= set(res)
    assert res["propensities"] == "logged" and res["ci"][0] <= res["estimate"] <= res["ci"][1]
    assert set(res["components"]) == {"revenue", "engagement", "cost", "dwell"}
    assert res["offline"]["rows"] == 5000  # the TD metrics stay
    text = capsys.readouterr().out
    assert "off-policy estimate" in text and "logged routing (what you run now)" in text and "TD RMSE" in text


def test_cli_explain_writes_a_png(tiny_checkpoint, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from rllib_fastq.cli import main
    from rllib_fastq.data.io import read_transitions
    from tests.test_cli import HELDOUT

    obs = read_transitions(HELDOUT).obs[0]
    png = str(tmp_path / "ex.png")
    assert main(["explain", tiny_checkpoint, "--obs", json.dumps(obs.tolist()), "--png", png]) == 0
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    text = capsys.readouterr().out
    assert "chosen arm" in text and "routed arm" in text and f"png: {png}" in text
    assert main(["explain", tiny_checkpoint, "--obs", "[1, 2]"]) == 2  # wrong size: one-line error
    assert "expected" in capsys.readouterr().err


def test_validation_summaries_judge_rules_against_their_truth_as_logged():
    from benchmarks.ope_validation import summaries

    def row(policy, est, truth, as_logged=None, kind="rule"):
        r = {"regime": "r", "seed": 0, "policy": policy, "estimate": est, "ci": [est - 0.5, est + 0.5],
             "truth": truth, "truth_se": 0.1, "kind": kind}
        if as_logged is not None:
            r.update(truth_as_logged=as_logged, truth_as_logged_se=0.1)
        return r

    rows = [row("arm a", 9.0, 10.0, 9.0), row("arm b", 4.4, 5.0, 4.4), row("learned", 8.0, 10.0, kind="learned")]
    served, logged = summaries(rows)["all"], summaries(rows, "truth_as_logged")["all"]
    assert served["mean_relative_error"] == pytest.approx((0.1 + 0.12 + 0.2) / 3)
    assert logged["mean_relative_error"] == pytest.approx((0.0 + 0.0 + 0.2) / 3)  # the learned row keeps its truth
    assert served["coverage"] == pytest.approx(0.0) and logged["coverage"] == pytest.approx(2 / 3)
