"""Ray Serve deployment of a trained FAST-Q module (docs/algorithm.md §5): ``POST /act`` and ``GET /healthz``.

.. code-block:: python

    from ray import serve
    from rllib_fastq.serve import build_app

    serve.start(http_options={"host": "127.0.0.1", "port": 8000})
    serve.run(build_app("/path/to/checkpoint"), route_prefix="/")
    # curl -X POST 127.0.0.1:8000/act -d '{"obs": [0.1, 0.2, 0.3], "explain": true}'

Every request is validated in the ingress, before it joins a batch, so one bad request gets its
own 4xx and never fails the requests batched with it. Valid requests from different clients
are combined by ``@serve.batch`` into one forward pass; each row carries its own arm (``-1`` =
"best"), so requests naming different ``policy_id`` values share a batch.
"""

# No `from __future__ import annotations`: FastAPI resolves the handlers' annotations (Request)
# through Serve's ingress wrapper, which does not see this module's globals.
import argparse
import asyncio
import json
import signal
import time
from typing import Any

import numpy as np
import torch
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from ray import serve

from rllib_fastq.checkpoints import check_module_files, resolve_module_checkpoint
from rllib_fastq.data import schema
from rllib_fastq.local_ray import init_local_ray


def _ascii(text: str, limit: int = 300) -> str:
    """``text`` safe to send back: ASCII (other characters, lone surrogates included, escaped)
    and at most ``limit`` characters."""
    out = text.encode("ascii", "backslashreplace").decode("ascii")
    return out if len(out) <= limit else out[:limit] + "..."


def _show(v: Any) -> str:
    """A client's value for an error message: scalars as they were sent, containers by type only
    (a repr of a deeply nested value could itself exceed the recursion limit)."""
    if isinstance(v, (dict, list)):
        return f"{_json_type(v)} of {len(v)}"
    return _ascii(repr(v), 80)


class BadRequest(Exception):
    """A client error: HTTP ``status`` with a message that starts with the offending field."""

    def __init__(self, field: str, message: str, status: int = 422):
        field = _ascii(str(field), 80)
        super().__init__(_ascii(f"{field}: {message}"))
        self.field, self.status = field, status


class ActRequest(BaseModel):
    """Body of ``POST /act``. Field types are checked by hand (see :class:`ObsValidator`) so
    error messages name the exact element; the annotations here document the API."""

    obs: Any = Field(..., description="One observation or a list of them: a list of numbers "
                     "(flat spaces) or {'temporal': [[...]], 'static': [...]} (dict spaces).")
    policy_id: Any = Field(None, description="Arm in [0, K) or 'best'; default: the module's.",
                           json_schema_extra={"anyOf": [{"type": "integer"}, {"const": "best"}]})
    explain: Any = Field(False, description="Also return Q and its decomposition per component.",
                         json_schema_extra={"type": "boolean"})


# Exact types: JSON true/false parse to bool, a subclass of int, and are not observations.
_NUMBER_TYPES = frozenset((float, int))


def _is_number(v: Any) -> bool:
    return type(v) in _NUMBER_TYPES


def _json_type(v: Any) -> str:
    """The JSON name of a parsed value's type, for error messages."""
    names = {bool: "boolean", str: "string", type(None): "null", dict: "object", list: "array"}
    return names.get(type(v), "number")


class ObsValidator:
    """Turns the JSON ``obs`` of a request into a float32 array [N, flat_dim], or raises
    :class:`BadRequest` naming the first offending element."""

    def __init__(self, layout: schema.ObsLayout, max_request_size: int):
        self.layout, self.max_request_size = layout, max_request_size

    def describe(self) -> Any:
        """Shape of one observation, as the ``/healthz`` endpoint reports it."""
        if self.layout.temporal is None:
            return [self.layout.static]
        return {"temporal": list(self.layout.temporal), "static": [self.layout.static]}

    def _vector(self, v: Any, n: int, where: str) -> list:
        if not isinstance(v, list):
            raise BadRequest(where, f"expected an array of {n} numbers, got {_json_type(v)}")
        if len(v) != n:
            raise BadRequest(where, f"expected {n} numbers, got {len(v)}")
        if not _NUMBER_TYPES.issuperset(map(type, v)):  # C-level loop: ~2x a generator
            i = next(i for i, x in enumerate(v) if not _is_number(x))
            raise BadRequest(f"{where}[{i}]", f"expected a number, got {_json_type(v[i])}")
        return v

    def _one(self, o: Any, where: str) -> list:
        """One observation as a flat list of numbers (the stored order: temporal, then static)."""
        lay = self.layout
        if lay.temporal is None or isinstance(o, list):
            # Dict spaces also take the flattened form that datasets store.
            return self._vector(o, lay.flat_dim, where)
        if not isinstance(o, dict):
            raise BadRequest(where, f"expected an object with 'temporal' {list(lay.temporal)} and "
                             f"'static' [{lay.static}] (or {lay.flat_dim} numbers), got "
                             f"{_json_type(o)}")
        for key in ("temporal", "static"):
            if key not in o:
                raise BadRequest(f"{where}.{key}", "missing")
        extra = sorted(set(o) - {"temporal", "static"})
        if extra:
            raise BadRequest(f"{where}.{extra[0]}", "unknown key (expected 'temporal' and 'static')")
        steps, feats = lay.temporal
        t = o["temporal"]
        if not isinstance(t, list) or len(t) != steps:
            got = len(t) if isinstance(t, list) else _json_type(t)
            raise BadRequest(f"{where}.temporal", f"expected {steps} rows of {feats} numbers, got {got}")
        flat: list = []
        for i, row in enumerate(t):
            flat += self._vector(row, feats, f"{where}.temporal[{i}]")
        return flat + self._vector(o["static"], lay.static, f"{where}.static")

    def __call__(self, obs: Any) -> tuple[np.ndarray, bool]:
        """``(array [N, flat_dim], single)``; ``single`` when the request sent one observation."""
        single = isinstance(obs, dict) or (isinstance(obs, list) and bool(obs)
                                           and not isinstance(obs[0], (list, dict)))
        if isinstance(obs, list) and not single:
            if not obs:
                raise BadRequest("obs", "empty list; send one observation or a non-empty list")
            if len(obs) > self.max_request_size:
                raise BadRequest("obs", f"{len(obs)} observations exceed the limit of "
                                 f"{self.max_request_size} per request", status=413)
            rows = [self._one(o, f"obs[{i}]") for i, o in enumerate(obs)]
        else:  # one observation (or something else, which _one rejects)
            single = True
            rows = [self._one(obs, "obs")]
        try:
            arr = np.asarray(rows, dtype=np.float32)
        except OverflowError:  # JSON integers beyond float range
            arr = np.full((len(rows), self.layout.flat_dim), np.inf, np.float32)
        finite = np.isfinite(arr)
        if not finite.all():
            r, c = np.argwhere(~finite)[0]
            v = rows[r][c]
            got = repr(v) if type(v) is float and not np.isfinite(v) else f"{v:.3g} (beyond float32)"
            raise BadRequest(self._locate(int(r), int(c), single), f"expected a finite number, got {got}")
        return arr, single

    def _locate(self, row: int, col: int, single: bool) -> str:
        """The JSON path of flat element ``col`` of observation ``row`` (dict form)."""
        where = "obs" if single else f"obs[{row}]"
        lay = self.layout
        if lay.temporal is None:
            return f"{where}[{col}]"
        steps, feats = lay.temporal
        if col < steps * feats:
            return f"{where}.temporal[{col // feats}][{col % feats}]"
        return f"{where}.static[{col - steps * feats}]"


def _check_policy_id(policy_id: Any, num_policies: int, default: Any) -> int:
    """Arm id for the batch tensor: an arm in [0, K), or -1 for "best"."""
    if policy_id is None:
        policy_id = default
    if not schema.is_arm_or_best(policy_id, num_policies):
        raise BadRequest("policy_id", f"expected an arm in [0, {num_policies}) or 'best', got {_show(policy_id)}")
    return -1 if policy_id == schema.BEST else int(policy_id)


app = FastAPI(title="FAST-Q policy server",
              description="Actions (and their Q decomposition) of a trained FAST-Q module.")


@app.exception_handler(BadRequest)
async def _bad_request(_: Request, exc: BadRequest) -> JSONResponse:
    return JSONResponse({"detail": str(exc), "field": exc.field}, status_code=exc.status)


@app.exception_handler(RecursionError)
async def _too_deep(_: Request, exc: RecursionError) -> JSONResponse:
    # A body nested deeper than Python's recursion limit, wherever it was walked.
    return JSONResponse({"detail": "body: nested too deeply", "field": "body"}, status_code=400)


@serve.deployment(ray_actor_options={"num_cpus": 1})
@serve.ingress(app)
class FastQServer:
    """One replica: loads the RLModule once, validates in the ingress, batches forward passes."""

    def __init__(self, module_path: str, max_batch_size: int = 64, batch_wait_timeout_s: float = 0.005,
                 max_request_size: int = 1024, torch_threads: int = 1):
        from ray.rllib.core.rl_module.rl_module import RLModule

        # Replicas scale by count; one intra-op thread each keeps them from fighting over cores.
        torch.set_num_threads(torch_threads)
        self.module = RLModule.from_checkpoint(module_path)
        self.module.eval()
        self.validate = ObsValidator(schema.ObsLayout.from_space(self.module.observation_space),
                                     max_request_size)
        self.default_policy = self.module.default_policy
        # A generous bound (32 bytes per number, plus slack for keys and whitespace): rejects
        # absurd bodies before buffering them, never a valid request of max_request_size rows.
        self.max_body_bytes = max_request_size * (32 * self.validate.layout.flat_dim + 256) + 65536
        self._infer.set_max_batch_size(max_batch_size)
        self._infer.set_batch_wait_timeout_s(batch_wait_timeout_s)

    @app.get("/healthz")
    async def healthz(self) -> dict[str, Any]:
        """Liveness plus what the model expects and returns."""
        m = self.module
        return {"status": "ok", "num_policies": m.num_policies, "observation": self.validate.describe(),
                "action_dim": m.action_dim, "reward_components": list(m.decomposed_names),
                "default_policy": self.default_policy}

    # The body is read and parsed here, not by FastAPI, so that its size is bounded before it
    # is buffered and every error (invalid JSON included) gets this module's message format.
    @app.post("/act", openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": ActRequest.model_json_schema()}}}})
    async def act(self, request: Request) -> dict[str, Any]:
        """Actions for one observation (scalars per field) or a list (lists per field)."""
        data = await self._read_json(request)
        if not isinstance(data, dict):
            raise BadRequest("body", f"expected a JSON object with 'obs', got {_json_type(data)}")
        if "obs" not in data:
            raise BadRequest("obs", "missing")
        unknown = sorted(set(data) - set(ActRequest.model_fields))
        if unknown:
            raise BadRequest(unknown[0], f"unknown field (expected {sorted(ActRequest.model_fields)})")
        body = ActRequest.model_validate(data)
        if not isinstance(body.explain, bool):
            raise BadRequest("explain", f"expected true or false, got {_show(body.explain)}")
        arm = _check_policy_id(body.policy_id, self.module.num_policies, self.default_policy)
        obs, single = self.validate(body.obs)
        out = await self._infer((obs, arm, body.explain))
        if single:
            out = {k: v[0] for k, v in out.items()}
        return out

    async def _read_json(self, request: Request) -> Any:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise BadRequest("body", f"{declared} bytes exceed the limit of {self.max_body_bytes}", 413)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body_bytes:
                raise BadRequest("body", f"more than {self.max_body_bytes} bytes", 413)
            chunks.append(chunk)
        try:
            return json.loads(b"".join(chunks))
        except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
            raise BadRequest("body", f"invalid JSON ({e})", 400) from None
        except RecursionError:
            raise BadRequest("body", "JSON nested too deeply", 400) from None

    def _forward(self, obs: torch.Tensor, arms: torch.Tensor, explain: bool) -> dict[str, Any]:
        with torch.no_grad():
            if explain:
                return self.module.explain(obs, arms)
            return self.module.forward_inference({"obs": obs, schema.POLICY_ID: arms})

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.005)
    async def _infer(self, items: list[tuple[np.ndarray, int, bool]]) -> list[dict[str, list]]:
        """One forward pass over every observation of every request in the batch."""
        obs = torch.from_numpy(np.concatenate([o for o, _, _ in items]))
        arms = torch.cat([torch.full((len(o),), a, dtype=torch.long) for o, a, _ in items])
        explain = any(e for _, _, e in items)  # explain() also returns the actions: one pass
        # In a worker thread: torch releases the GIL, so the event loop keeps reading and
        # validating the next requests (the next batch) while this one computes.
        res = await asyncio.to_thread(self._forward, obs, arms, explain)
        actions = res["actions"].tolist()
        chosen = res[schema.POLICY_ID].tolist()
        if "q" in res:
            q = res["q"].tolist()
            comps = {n: c.tolist() for n, c in res["components"].items()}
            # The arm choice's evidence, per row: every arm's value and routing probability (and,
            # with arm_value_decomposition, every arm's value per component) — what
            # explain_plot.write_answer_png draws.
            evidence = {k: res[k].tolist() for k in ("arm_values", "routing_probabilities") if k in res}
            arm_comps = {n: c.tolist() for n, c in res.get("arm_value_components", {}).items()}
        outs, start = [], 0
        for o, _, explain in items:
            stop = start + len(o)
            out: dict[str, list] = {"actions": actions[start:stop], "policy_id": chosen[start:stop]}
            if explain:
                out["q"] = q[start:stop]
                out["components"] = [{n: c[i] for n, c in comps.items()} for i in range(start, stop)]
                out.update({k: v[start:stop] for k, v in evidence.items()})
                if arm_comps:
                    out["arm_value_components"] = [{n: c[i] for n, c in arm_comps.items()}
                                                   for i in range(start, stop)]
            outs.append(out)
            start = stop
        return outs


def build_app(checkpoint: str, *, max_batch_size: int = 64, batch_wait_timeout_s: float = 0.005,
              max_request_size: int = 1024, num_replicas: int = 1,
              num_cpus_per_replica: float = 1.0) -> serve.Application:
    """A Serve application answering ``POST /act`` and ``GET /healthz`` for ``checkpoint``.

    ``checkpoint`` is an Algorithm checkpoint dir (``algo.save_to_path``) or an RLModule
    checkpoint dir. ``max_batch_size`` counts requests per forward pass; ``max_request_size``
    bounds the observations of one request (beyond it: 413). Run with
    ``serve.run(app, route_prefix="/")``.
    """
    if max_batch_size < 1 or max_request_size < 1 or batch_wait_timeout_s < 0 or num_replicas < 1:
        raise ValueError("build_app: max_batch_size, max_request_size and num_replicas must be >= 1 "
                         "and batch_wait_timeout_s >= 0.")
    path = resolve_module_checkpoint(checkpoint)
    check_module_files(path)  # a torn checkpoint: one line naming the file, not a replica's traceback
    # Serve's default of 5 ongoing requests per replica would cap batches at 5 and make the
    # router back off (seconds of latency at 32 clients): admit two full batches instead.
    deployment = FastQServer.options(num_replicas=num_replicas, max_ongoing_requests=2 * max_batch_size,
                                     ray_actor_options={"num_cpus": num_cpus_per_replica})
    return deployment.bind(path, max_batch_size, batch_wait_timeout_s, max_request_size)


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``fastq serve CHECKPOINT``."""
    parser.add_argument("checkpoint", help="Algorithm or RLModule checkpoint directory")
    parser.add_argument("--host", default="127.0.0.1", help="HTTP bind address (default: loopback)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--num-replicas", type=int, default=1)
    parser.add_argument("--max-batch-size", type=int, default=64, help="requests per forward pass")
    parser.add_argument("--batch-wait-timeout-s", type=float, default=0.005)
    parser.add_argument("--max-request-size", type=int, default=1024, help="observations per request")
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs for a local Ray (default: all)")


def run_cli(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C. Starts a local Ray session on 127.0.0.1 unless one is running."""

    app_ = build_app(args.checkpoint, max_batch_size=args.max_batch_size,
                     batch_wait_timeout_s=args.batch_wait_timeout_s,
                     max_request_size=args.max_request_size, num_replicas=args.num_replicas)
    init_local_ray(num_cpus=args.num_cpus, configure_logging=False)
    serve.start(http_options={"host": args.host, "port": args.port})
    serve.run(app_, name="fastq", route_prefix="/")
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"FAST-Q serving {args.checkpoint} at http://{host}:{args.port}/act "
          f"(docs: /docs, health: /healthz); Ctrl-C to stop.", flush=True)
    # SIGTERM (docker stop, systemd) and SIGINT (even when started in the background, where
    # the shell ignores it) both end the loop below, so Serve shuts down cleanly.
    def _stop(*_: Any) -> None:
        raise KeyboardInterrupt

    old = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("stopping ...", flush=True)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        serve.shutdown()
    return 0


# Exported for tests and scripts that build requests.
__all__ = ["ActRequest", "BadRequest", "FastQServer", "ObsValidator", "add_cli_arguments", "build_app",
           "resolve_module_checkpoint", "run_cli"]
