"""Ray Serve deployment (rllib_fastq.serve): round trips, batching across arms, bad requests.

One Serve instance on 127.0.0.1 hosts two apps: a player-platform model (dict observations,
built from an Algorithm checkpoint) under /pp and a Pendulum model (flat observations, built
from a bare RLModule checkpoint) under /flat. Models are tiny and barely trained: the tests
check serving, not learning.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import socket

import httpx
import numpy as np
import pytest
import torch

from rllib_fastq.data import schema
from rllib_fastq.data.io import write_transitions
from rllib_fastq.serve import add_cli_arguments, build_app, resolve_module_checkpoint, run_cli
from tests.pendulum_data import make_pendulum_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PP_DATA = os.path.join(ROOT, "offline_data", "player_platform", "train.parquet")
NAMES = ["revenue", "engagement", "cost", "dwell"]
TINY = dict(lstm_dropout=0.0, lstm_hidden=8, static_hidden=8, expert_hiddens=[16], br_dim=8,
            adversary_hiddens=[8], actor_hiddens=[16], critic_hiddens=[16], pretrain_steps=20,
            train_batch_size_per_learner=32)
MAX_REQUEST = 8


def _train_and_save(input_path: str, out: str, **training) -> str:
    from rllib_fastq import FastQConfig

    cfg = FastQConfig().offline_data(input_=[input_path], dataset_num_iters_per_learner=25) \
        .training(**TINY, **training)
    algo = cfg.build_algo()
    algo.train()
    algo.train()  # 50 gradient steps: both phases
    algo.save_to_path(out)
    algo.stop()
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(ray_session, tmp_path_factory):
    """Base URL, the two checkpoints and the modules loaded in-process (the reference)."""
    from ray import serve
    from ray.rllib.core.rl_module.rl_module import RLModule

    tmp = tmp_path_factory.mktemp("serve")
    pp = _train_and_save(PP_DATA, str(tmp / "pp"), num_policies=3, gamma=0.9,
                         reward_weights=[0.25, 0.25, -0.25, 0.25], reward_component_names=NAMES)
    pend = str(tmp / "pendulum.parquet")
    write_transitions(make_pendulum_dataset(episodes=4), pend)
    flat = _train_and_save(pend, str(tmp / "flat"), num_policies=2, gamma=0.9)
    flat_module_dir = resolve_module_checkpoint(flat)
    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    # Both apps at once: their replicas start (import RLlib, load) in parallel.
    serve.run_many([serve.RunTarget(build_app(pp, max_request_size=MAX_REQUEST), name="pp", route_prefix="/pp"),
                    serve.RunTarget(build_app(flat_module_dir), name="flat", route_prefix="/flat")])
    modules = {"pp": RLModule.from_checkpoint(resolve_module_checkpoint(pp)).eval(),
               "flat": RLModule.from_checkpoint(flat_module_dir).eval()}
    try:
        yield {"url": f"http://127.0.0.1:{port}", "modules": modules, "pp": pp, "flat": flat}
    finally:
        serve.shutdown()


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server["url"], timeout=30.0) as c:
        yield c


def _pp_obs(n: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"temporal": rng.normal(size=(30, 9)).round(4).tolist(),
             "static": rng.normal(size=7).round(4).tolist()} for _ in range(n)]


def _flat_obs(n: int, seed: int = 0) -> list[list[float]]:
    return np.random.default_rng(seed).normal(size=(n, 3)).round(4).tolist()


def _reference(module, obs: list, policy_id) -> dict:
    """The module's own answer for the same observations (dict tensors when dict obs)."""
    if isinstance(obs[0], dict):
        t = {k: torch.tensor(np.array([o[k] for o in obs], np.float32)) for k in ("temporal", "static")}
    else:
        t = torch.tensor(np.array(obs, np.float32))
    pid = policy_id if isinstance(policy_id, str) else torch.full((len(obs),), policy_id)
    return {k: v.numpy() for k, v in module.forward_inference({"obs": t, "policy_id": pid}).items()}


@pytest.mark.parametrize("app", ["pp", "flat"])
def test_round_trip_matches_forward_inference(server, client, app):
    module = server["modules"][app]
    obs = _pp_obs(5) if app == "pp" else _flat_obs(5)
    arms = list(range(module.num_policies)) + ["best"]
    for arm in arms:
        ref = _reference(module, obs, arm)
        r = client.post(f"/{app}/act", json={"obs": obs, "policy_id": arm})
        assert r.status_code == 200, r.text
        np.testing.assert_allclose(r.json()["actions"], ref["actions"], atol=1e-5)
        assert r.json()["policy_id"] == ref["policy_id"].tolist()
        if arm != "best":
            assert r.json()["policy_id"] == [arm] * 5
        one = client.post(f"/{app}/act", json={"obs": obs[2], "policy_id": arm}).json()
        assert np.shape(one["actions"]) == (module.action_dim,) and isinstance(one["policy_id"], int)
        np.testing.assert_allclose(one["actions"], ref["actions"][2], atol=1e-5)
    # No policy_id: the module's default ("best" for K > 1).
    default = client.post(f"/{app}/act", json={"obs": obs}).json()
    np.testing.assert_allclose(default["actions"], _reference(module, obs, "best")["actions"], atol=1e-5)


def test_flattened_dict_observation_is_accepted(server, client):
    obs = _pp_obs(2)
    flat = schema.flatten_obs({k: np.array([o[k] for o in obs]) for k in ("temporal", "static")})
    a = client.post("/pp/act", json={"obs": obs, "policy_id": 1}).json()
    b = client.post("/pp/act", json={"obs": flat.tolist(), "policy_id": 1}).json()
    np.testing.assert_allclose(a["actions"], b["actions"], atol=1e-6)


def test_explain_components_sum_to_q(server, client, tmp_path):
    obs = _pp_obs(4, seed=1)
    r = client.post("/pp/act", json={"obs": obs, "policy_id": "best", "explain": True}).json()
    assert len(r["q"]) == 4 and len(r["components"]) == 4
    for q, comps in zip(r["q"], r["components"]):
        assert set(comps) == set(NAMES) | {"residual"}
        assert sum(comps.values()) == pytest.approx(q, abs=1e-5)
    ref = server["modules"]["pp"].explain(
        {k: torch.tensor(np.array([o[k] for o in obs], np.float32)) for k in ("temporal", "static")}, "best")
    np.testing.assert_allclose(r["q"], ref["q"].numpy(), atol=1e-5)
    one = client.post("/pp/act", json={"obs": obs[0], "explain": True}).json()
    assert isinstance(one["q"], float) and sum(one["components"].values()) == pytest.approx(one["q"], abs=1e-5)
    # The arm choice's evidence comes with it, and the client draws the PNG from the answer alone.
    np.testing.assert_allclose(r["arm_values"], ref["arm_values"].numpy(), atol=1e-5)
    np.testing.assert_allclose(r["routing_probabilities"], ref["routing_probabilities"].numpy(), atol=1e-5)
    assert len(one["arm_values"]) == server["modules"]["pp"].num_policies
    from rllib_fastq.evaluation.explain_plot import write_answer_png

    for answer, name in ((r, "batch.png"), (one, "one.png")):
        path = write_answer_png(answer, str(tmp_path / name), row=0)
        assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="arm_values"):
        write_answer_png({"policy_id": [0], "components": [{}], "routing_probabilities": [[1.0]]},
                         str(tmp_path / "x.png"))


def test_concurrent_requests_with_different_arms_are_answered_per_row(server, client):
    """Requests naming different arms land in shared batches; each gets its own arm's action."""
    module, url = server["modules"]["pp"], server["url"]
    obs = _pp_obs(3, seed=2)
    jobs = [(obs[i % 3], [0, 1, 2, "best"][i % 4], i % 5 == 0) for i in range(24)]

    def call(job):
        o, arm, explain = job
        with httpx.Client(base_url=url, timeout=30.0) as c:
            return c.post("/pp/act", json={"obs": o, "policy_id": arm, "explain": explain})

    with cf.ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(call, jobs))
    for (o, arm, explain), r in zip(jobs, answers):
        assert r.status_code == 200, r.text
        ref = _reference(module, [o], arm)
        np.testing.assert_allclose(r.json()["actions"], ref["actions"][0], atol=1e-5)
        assert r.json()["policy_id"] == int(ref["policy_id"][0])
        assert ("q" in r.json()) == explain


def test_healthz_and_openapi(client):
    h = client.get("/pp/healthz").json()
    assert h == {"status": "ok", "num_policies": 3, "observation": {"temporal": [30, 9], "static": [7]},
                 "action_dim": 3, "reward_components": NAMES, "default_policy": "best"}
    f = client.get("/flat/healthz").json()
    assert f["observation"] == [3] and f["action_dim"] == 1 and f["num_policies"] == 2
    spec = client.get("/pp/openapi.json")
    assert spec.status_code == 200 and "/healthz" in spec.json()["paths"]
    body = spec.json()["paths"]["/act"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["obs"] and set(body["properties"]) == {"obs", "policy_id", "explain"}


def _good_pp() -> dict:
    return {"obs": _pp_obs(1)[0]}


def _bad(o_mutator) -> dict:
    obs = _pp_obs(2)
    o_mutator(obs)
    return {"obs": obs}


PP_BAD = [
    # (body or raw string, status, text that must appear in the message)
    (_bad(lambda o: o[1]["static"].pop()), 422, "obs[1].static: expected 7 numbers, got 6"),
    (_bad(lambda o: o[0]["temporal"][5].append(1.0)), 422, "obs[0].temporal[5]: expected 9 numbers, got 10"),
    (_bad(lambda o: o[0]["temporal"].pop()), 422, "obs[0].temporal: expected 30 rows"),
    (_bad(lambda o: o[1]["static"].__setitem__(2, "x")), 422, "obs[1].static[2]: expected a number, got string"),
    (_bad(lambda o: o[1]["static"].__setitem__(2, True)), 422, "obs[1].static[2]: expected a number, got boolean"),
    (_bad(lambda o: o[0].pop("static")), 422, "obs[0].static: missing"),
    (_bad(lambda o: o[0].__setitem__("extra", 1)), 422, "obs[0].extra: unknown key"),
    (_bad(lambda o: o.__setitem__(1, 5)), 422, "obs[1]: expected an object"),
    ({"obs": []}, 422, "obs: empty list"),
    ({"obs": "abc"}, 422, "obs: expected an object"),
    ({"obs": _pp_obs(MAX_REQUEST + 1)}, 413, "obs: 9 observations exceed the limit of 8"),
    ({**_good_pp(), "policy_id": 3}, 422, "policy_id: expected an arm in [0, 3) or 'best', got 3"),
    ({**_good_pp(), "policy_id": -1}, 422, "policy_id"),
    ({**_good_pp(), "policy_id": "worst"}, 422, "policy_id"),
    ({**_good_pp(), "policy_id": True}, 422, "policy_id"),
    ({**_good_pp(), "policy_id": 1.0}, 422, "policy_id"),
    ({**_good_pp(), "explain": "yes"}, 422, "explain: expected true or false"),
    ({"policy_id": 0}, 422, "obs: missing"),
    ([1, 2, 3], 422, "body: expected a JSON object"),
    ({**_good_pp(), "polciy_id": 1}, 422, "polciy_id: unknown field"),
    (json.dumps(_good_pp()) + " " * 200_000, 413, "bytes exceed the limit of 138496"),
    ('{"obs": [1, 2', 400, "body: invalid JSON"),
    # json.dumps writes NaN / Infinity tokens, which Python's JSON parser (the server's) reads.
    (json.dumps(_bad(lambda o: o[1]["temporal"][2].__setitem__(4, float("nan")))), 422,
     "obs[1].temporal[2][4]: expected a finite number, got nan"),
    (json.dumps(_bad(lambda o: o[0]["static"].__setitem__(6, float("-inf")))), 422,
     "obs[0].static[6]: expected a finite number, got -inf"),
    (json.dumps(_bad(lambda o: o[0]["static"].__setitem__(0, 1e39))), 422,
     "obs[0].static[0]: expected a finite number, got 1e+39 (beyond float32)"),
]


@pytest.mark.parametrize("body,status,text", PP_BAD, ids=[str(i) for i in range(len(PP_BAD))])
def test_bad_requests_get_4xx_naming_the_field_and_server_keeps_serving(client, body, status, text):
    if isinstance(body, str):
        r = client.post("/pp/act", content=body, headers={"content-type": "application/json"})
    else:
        r = client.post("/pp/act", json=body)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str) and r.json()["field"] in detail
    if text is not None:
        assert text in detail, detail
    assert client.post("/pp/act", json=_good_pp()).status_code == 200


def test_streamed_body_beyond_the_limit_is_cut_off(client):
    r = client.post("/pp/act", content=iter([b'{"obs": [' + b" " * 100_000] + [b" " * 100_000] * 3),
                    headers={"content-type": "application/json"})  # chunked: no content-length
    assert r.status_code == 413 and r.json()["detail"] == "body: more than 138496 bytes"
    assert client.post("/pp/act", json=_good_pp()).status_code == 200


def test_flat_bad_requests(client):
    obs = _flat_obs(5)
    obs[3] = obs[3][:2]
    r = client.post("/flat/act", json={"obs": obs})
    assert r.status_code == 422 and r.json()["detail"] == "obs[3]: expected 3 numbers, got 2"
    r = client.post("/flat/act", json={"obs": [0.1, 0.2]})
    assert r.status_code == 422 and r.json()["detail"] == "obs: expected 3 numbers, got 2"
    r = client.post("/flat/act", json={"obs": [[0.1, 0.2, 0.3], {"static": [1]}]})
    assert r.status_code == 422 and r.json()["field"] == "obs[1]"
    assert client.post("/flat/act", json={"obs": [0.1, 0.2, 0.3]}).status_code == 200


def test_checkpoint_resolution_and_cli(server, tmp_path):
    algo_dir = server["pp"]
    module_dir = resolve_module_checkpoint(algo_dir)
    assert module_dir.endswith(os.path.join("learner_group", "learner", "rl_module", "default_policy"))
    assert resolve_module_checkpoint(module_dir) == module_dir
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        resolve_module_checkpoint(str(tmp_path))
    parser = argparse.ArgumentParser()
    add_cli_arguments(parser)
    args = parser.parse_args([str(tmp_path / "missing"), "--port", "0", "--num-replicas", "2"])
    assert (args.host, args.port, args.num_replicas, args.max_batch_size) == ("127.0.0.1", 0, 2, 64)
    with pytest.raises(FileNotFoundError, match="no such directory"):
        run_cli(args)  # fails before touching Ray or Serve


DEEP = 1000  # levels: Python's json parser (recursion limit 1000) gives up around here


@pytest.mark.parametrize("body,field", [
    ("[" * DEEP + "]" * DEEP, "body"),
    ('{"obs": ' + "[" * DEEP + "]" * DEEP + "}", "body"),
    ('{"obs": ' + "[" * 900 + "]" * 900 + "}", "obs"),
    ('{"obs": [0, 0, 0], "policy_id": ' + "[" * 900 + "]" * 900 + "}", "policy_id"),
    ('{"obs": [0, 0, 0], "explain": ' + '{"a": ' * 900 + "1" + "}" * 900 + "}", "explain"),
    ('{"obs": [0, 0, 0], "\\ud800": 1}', "\\ud800"),  # a lone surrogate key, echoed ASCII-escaped
    ('{"obs": [0, 0, 0], "policy_id": "\\udfff\\u00e9"}', "policy_id"),
    ('{"obs": {"\\ud800": 1, "temporal": [], "static": []}}', "obs"),
])
def test_malformed_bodies_get_4xx_ascii_never_500(client, body, field):
    """Issue 37: deep nesting raised RecursionError and a lone-surrogate key failed to encode: 500."""
    r = client.post("/flat/act", content=body.encode(), headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500, r.text
    assert r.content.isascii() and field in r.json()["field"], r.text
    assert client.post("/flat/act", json={"obs": [0.1, 0.2, 0.3]}).status_code == 200


def _fuzzed(rng: np.random.Generator) -> bytes:
    """One mutated request: a good body with a random key, value, nesting or byte damage."""
    good = json.dumps({"obs": _flat_obs(int(rng.integers(1, 4)), int(rng.integers(1000)))[0]
                       if rng.random() < 0.5 else _flat_obs(2), "policy_id": "best"})
    values = [None, True, -1, 2**70, 1e308, "best", "\ud800", "é", [], {}, [[[]]], "x" * 1000,
              float("nan"), [0.1] * 50, {"temporal": [[1]], "static": 3}]
    kind = int(rng.integers(6))
    if kind == 0:  # a random field value
        body = {"obs": [0.1, 0.2, 0.3]}
        key = str(rng.choice(["obs", "policy_id", "explain", "extra", "\udcff"]))
        body[key] = values[int(rng.integers(len(values)))]
        return json.dumps(body).encode("utf-8", "surrogatepass")
    if kind == 1:  # deep nesting in a random field
        n = int(rng.integers(10, 3000))
        key = str(rng.choice(["obs", "policy_id", "explain"]))
        return f'{{"{key}": {"[" * n}{"]" * n}}}'.encode()
    if kind == 2:  # truncated
        return good[: int(rng.integers(len(good)))].encode()
    if kind == 3:  # random bytes flipped
        b = bytearray(good.encode())
        for _ in range(int(rng.integers(1, 5))):
            b[int(rng.integers(len(b)))] = int(rng.integers(256))
        return bytes(b)
    if kind == 4:  # a random top-level value
        return json.dumps(values[int(rng.integers(len(values)))]).encode("utf-8", "surrogatepass")
    return good.encode()


def test_fuzzed_requests_never_get_5xx(client):
    """200 mutated requests (at most 30 s, loopback): no 5xx, every 4xx ASCII, healthy afterwards."""
    import time

    rng = np.random.default_rng(37)
    start, codes = time.monotonic(), []
    for _ in range(200):
        if time.monotonic() - start > 30:
            break
        r = client.post("/flat/act", content=_fuzzed(rng), headers={"content-type": "application/json"})
        codes.append(r.status_code)
        assert r.status_code < 500, r.text
        assert r.content.isascii() or r.status_code == 200
    assert len(codes) >= 50 and any(c == 200 for c in codes) and any(400 <= c < 500 for c in codes)
    assert client.get("/flat/healthz").json()["status"] == "ok"


def test_torn_checkpoint_is_one_line_naming_the_file(server, tmp_path):
    """Issue 37: a torn module_state.pkl gave a 178-line Ray traceback from `fastq serve`."""
    import shutil

    torn = tmp_path / "torn"
    shutil.copytree(resolve_module_checkpoint(server["flat"]), torn)
    state = torn / "module_state.pkl"
    state.write_bytes(state.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"module_state.pkl: torn or corrupt checkpoint file") as e:
        build_app(str(torn))
    assert "\n" not in str(e.value)
