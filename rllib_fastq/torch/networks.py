"""The building blocks of FAST-Q's networks (docs/algorithm.md §3): trunks, batched heads, GRL, twin critic."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from rllib_fastq.data.schema import ObsLayout


class GradientReversal(torch.autograd.Function):
    """Identity forward; gradient multiplied by ``-lambda`` backward (Ganin & Lempitsky 2015)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, lam: float) -> torch.Tensor:  # noqa: D102
        ctx.lam = lam
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # noqa: D102
        return -ctx.lam * grad, None


def grad_reverse(x: torch.Tensor, lam: float) -> torch.Tensor:
    """``x`` forward, ``-lam * dL/dx`` backward."""
    return GradientReversal.apply(x, lam)


class BatchedLinear(nn.Module):
    """``G`` independent linear layers evaluated in one batched matmul.

    Input ``[B, in]`` (shared by all groups) or ``[B, G, in]``; output ``[B, G, out]``.
    Used for the K expert heads and for the fused twin critic: one kernel instead of a loop.
    ``detach_params=True`` uses the weights without letting gradients reach them (the actor's
    ``Q(s, pi(s))`` must not train the critic).
    """

    def __init__(self, groups: int, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(groups, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(groups, out_features))
        bound = 1.0 / math.sqrt(in_features)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor, detach_params: bool = False) -> torch.Tensor:
        w, b = (self.weight.detach(), self.bias.detach()) if detach_params else (self.weight, self.bias)
        groups, inp, out = w.shape
        if x.dim() == 2:  # shared input: one [B, in] x [in, G*out] matmul
            y = torch.addmm(b.reshape(1, -1), x, w.permute(1, 0, 2).reshape(inp, groups * out))
            return y.reshape(x.shape[0], groups, out)
        # per-group input: one batched matmul over the groups ([G, B, in] x [G, in, out])
        return torch.baddbmm(b[:, None, :], x.transpose(0, 1), w).transpose(0, 1)

    def forward_group(self, x: torch.Tensor, group: int, detach_params: bool = False) -> torch.Tensor:
        """Only group ``group`` on ``x [B, in]`` → ``[B, out]`` (a plain linear layer)."""
        w, b = self.weight[group], self.bias[group]
        if detach_params:
            w, b = w.detach(), b.detach()
        return torch.addmm(b, x, w)


def mlp(in_dim: int, hiddens: Sequence[int], out_dim: int | None = None,
        activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """Linear/activation stack; a final linear to ``out_dim`` when given."""
    layers: list[nn.Module] = []
    for h in hiddens:
        layers += [nn.Linear(in_dim, h), activation()]
        in_dim = h
    if out_dim is not None:
        layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


class _MaskedLSTMUnroll(torch.autograd.Function):
    """The LSTM recurrence with a fixed per-sequence mask on the recurrent input, BPTT by hand.

    ``gates_x [B, T, 4H]`` (the input projection plus both biases), ``h_mask [B, H]``, ``w_hh
    [4H, H]`` → the last hidden state ``[B, H]``. Same maths as an autograd unroll (gate order i,
    f, g, o as ``nn.LSTM``; tests compare both to float64 rounding), about twice as fast on CPU:
    the forward writes into preallocated buffers without building a graph, and the backward is one
    small matmul per step plus one large matmul for ``dW_hh``. No gradient for the (random) mask.
    """

    @staticmethod
    def forward(ctx, gates_x: torch.Tensor, h_mask: torch.Tensor, w_hh: torch.Tensor) -> torch.Tensor:  # noqa: D102
        b, t, g4 = gates_x.shape
        hsz = g4 // 4
        gx = gates_x.transpose(0, 1)
        acts = gates_x.new_empty(t, b, g4)  # the gates after their nonlinearities, per step
        cs = gates_x.new_zeros(t + 1, b, hsz)  # cell states c_0 .. c_T
        hms = gates_x.new_zeros(t, b, hsz)  # h_{s-1} * mask: the recurrent input of step s
        w_t = w_hh.t()
        h = gates_x.new_zeros(b, hsz)
        for s in range(t):
            a = acts[s]
            torch.addmm(gx[s], hms[s], w_t, out=a)
            a[:, : 2 * hsz].sigmoid_()
            a[:, 2 * hsz: 3 * hsz].tanh_()
            a[:, 3 * hsz:].sigmoid_()
            i, f, g, o = a.split(hsz, dim=1)
            torch.addcmul(f * cs[s], i, g, out=cs[s + 1])
            h = o * torch.tanh(cs[s + 1])
            if s + 1 < t:
                torch.mul(h, h_mask, out=hms[s + 1])
        ctx.save_for_backward(acts, cs, hms, h_mask, w_hh)
        return h

    @staticmethod
    def backward(ctx, dh_out: torch.Tensor) -> tuple[torch.Tensor, None, torch.Tensor]:  # noqa: D102
        acts, cs, hms, h_mask, w_hh = ctx.saved_tensors
        t, b, g4 = acts.shape
        hsz = g4 // 4
        da = acts.new_empty(t, b, g4)  # dLoss/d(pre-activation gates), per step
        dh = dh_out.contiguous()
        dc = torch.zeros_like(dh)
        for s in range(t - 1, -1, -1):
            i, f, g, o = acts[s].split(hsz, dim=1)
            tc = torch.tanh(cs[s + 1])
            dc = dc + dh * o * (1 - tc * tc)
            di, df, dg, do = da[s].split(hsz, dim=1)
            torch.mul(dc * g, i * (1 - i), out=di)
            torch.mul(dc * cs[s], f * (1 - f), out=df)
            torch.mul(dc * i, 1 - g * g, out=dg)
            torch.mul(dh * tc, o * (1 - o), out=do)
            dc = dc * f
            if s > 0:
                dh = (da[s] @ w_hh) * h_mask
        dw_hh = da.reshape(-1, g4).t() @ hms.reshape(-1, hsz)
        return da.transpose(0, 1), None, dw_hh


class VariationalLSTM(nn.Module):
    """One-layer LSTM with variational dropout: one mask per sequence on inputs and hidden state.

    At inference (``eval()`` or ``dropout == 0``) it runs cuDNN/oneDNN's fused ``nn.LSTM``;
    in training with dropout it unrolls over time (:class:`_MaskedLSTMUnroll`), because
    per-sequence hidden-state masks cannot be applied inside the fused kernel. Returns the last
    hidden state ``[B, H]``.
    """

    def __init__(self, input_size: int, hidden_size: int, dropout: float):
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden_size, batch_first=True)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.dropout == 0.0:
            return self.lstm(x)[1][0][-1]
        keep = 1.0 - self.dropout
        b, t, f = x.shape
        hsz = self.lstm.hidden_size
        in_mask = torch.bernoulli(x.new_full((b, 1, f), keep)) / keep
        h_mask = torch.bernoulli(x.new_full((b, hsz), keep)) / keep
        x = x * in_mask
        w_ih, w_hh = self.lstm.weight_ih_l0, self.lstm.weight_hh_l0
        bias = self.lstm.bias_ih_l0 + self.lstm.bias_hh_l0
        gates_x = F.linear(x, w_ih, bias)  # all time steps at once: only h @ w_hh is sequential
        return _MaskedLSTMUnroll.apply(gates_x.contiguous(), h_mask, w_hh)


class Trunk(nn.Module):
    """State encoder: an MLP over a flat observation, or LSTM(temporal) ⊕ MLP(static).

    Takes the flat stored observation (``schema.flatten_obs``), already normalised.
    """

    def __init__(self, layout: ObsLayout, *, hiddens: Sequence[int], lstm_hidden: int,
                 static_hidden: int, dropout: float):
        super().__init__()
        self.layout = layout
        if layout.temporal is None:
            self.mlp = mlp(layout.static, hiddens) if hiddens else nn.Identity()
            self.out_dim = hiddens[-1] if hiddens else layout.static
        else:
            _, features = layout.temporal
            self.lstm = VariationalLSTM(features, lstm_hidden, dropout)
            self.static_mlp = mlp(layout.static, [static_hidden])
            self.out_dim = lstm_hidden + static_hidden

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if self.layout.temporal is None:
            return self.mlp(obs)
        t, f = self.layout.temporal
        temporal = obs[:, : t * f].reshape(-1, t, f)
        static = obs[:, t * f:]
        return torch.cat([self.lstm(temporal), self.static_mlp(static)], dim=-1)


class ExpertHeads(nn.Module):
    """K policy experts on the trunk: hidden ``h_k`` (Linear-ReLU stack, BatchNorm) per arm."""

    def __init__(self, num_policies: int, in_dim: int, hiddens: Sequence[int]):
        super().__init__()
        self.num_policies = num_policies
        dims = [in_dim, *hiddens]
        self.layers = nn.ModuleList(BatchedLinear(num_policies, a, b) for a, b in zip(dims, dims[1:]))
        self.norm = nn.BatchNorm1d(num_policies * dims[-1])
        self.out_dim = dims[-1]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``z [B, in]`` → ``h [B, K, hidden]``."""
        h = z
        for layer in self.layers:
            h = F.relu(layer(h))
        b, k, d = h.shape
        return self.norm(h.reshape(b, k * d)).reshape(b, k, d)


class BalancingRepresentation(nn.Module):
    """The BR layer shared by all experts: ``b_k = BatchNorm(ELU(Linear(h_k)))``."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim)
        self.norm = nn.BatchNorm1d(out_dim)
        self.out_dim = out_dim

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """``h [B, K, in]`` → ``b [B, K, out]`` (BatchNorm statistics pooled over arms)."""
        b, k, _ = h.shape
        out = F.elu(self.linear(h)).reshape(b * k, -1)
        return self.norm(out).reshape(b, k, -1)


class TwinCritic(nn.Module):
    """Twin Q networks on ``concat(b, a)``, fused into one batched MLP.

    ``decomposition="softmax"`` (the reference): each twin has a scalar head ``Q`` and a
    decomposition head ``w = softmax(Linear(z))`` with ``num_decomposed + 1`` slots (the last one
    is the residual), both on the last hidden ``z``.

    ``decomposition="bellman"``: each twin has one value head per entry of ``head_weights`` (the
    decomposed reward components' weights, then 1.0 for the rest of the reward when some of it is
    not decomposed), ``Q_j(s, a)``, each trained on its own reward (docs/algorithm.md §4), and
    ``Q = Σ_j head_weights[j] · Q_j`` by construction: whatever reads ``Q`` reads the same sum.
    """

    def __init__(self, in_dim: int, hiddens: Sequence[int], num_decomposed: int,
                 decomposition: str = "softmax", head_weights: Sequence[float] | None = None):
        super().__init__()
        if decomposition not in ("softmax", "bellman"):
            raise ValueError(f"decomposition: expected 'softmax' or 'bellman', got {decomposition!r}.")
        self.decomposition = decomposition
        dims = [in_dim, *hiddens]
        self.layers = nn.ModuleList(BatchedLinear(2, a, b) for a, b in zip(dims, dims[1:]))
        if decomposition == "softmax":
            self.q_head = BatchedLinear(2, dims[-1], 1)
            self.w_head = BatchedLinear(2, dims[-1], num_decomposed + 1)
        else:
            weights = list(head_weights or [])
            if not weights:
                raise ValueError("head_weights: the 'bellman' critic needs one weight per value head.")
            self.component_head = BatchedLinear(2, dims[-1], len(weights))
            # Not persistent: from the config (reward_weights), like the arm values' weights.
            self.register_buffer("head_weights", torch.tensor(weights, dtype=torch.float32), persistent=False)

    def _combine(self, qc: torch.Tensor) -> torch.Tensor:
        """``Σ_j head_weights[j] · qc[..., j]``: the scalar Q of the per-component values (one
        expression everywhere, so the sum is the critic's Q bit for bit)."""
        return (qc * self.head_weights).sum(-1)

    def forward(self, x: torch.Tensor, *, detach_params: bool = False,
                with_weights: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``x [B, in]`` → ``q [B, 2]`` and (None unless ``with_weights``) the decomposition:
        "softmax": the weights ``w [B, 2, D + 1]``; "bellman": the values ``Q_j [B, 2, C]``."""
        z = x
        for layer in self.layers:
            z = F.relu(layer(z, detach_params))
        if self.decomposition == "bellman":
            qc = self.component_head(z, detach_params)
            return self._combine(qc), (qc if with_weights else None)
        q = self.q_head(z, detach_params).squeeze(-1)
        w = torch.softmax(self.w_head(z, detach_params), dim=-1) if with_weights else None
        return q, w

    def q1(self, x: torch.Tensor, *, detach_params: bool = False) -> torch.Tensor:
        """``Q1`` alone, ``x [B, in]`` → ``[B]``: the actor's objective and the arm choice read only
        Q1, and skipping the twin halves the cost of those passes (forward and backward)."""
        z = x
        for layer in self.layers:
            z = F.relu(layer.forward_group(z, 0, detach_params))
        if self.decomposition == "bellman":
            return self._combine(self.component_head.forward_group(z, 0, detach_params))
        return self.q_head.forward_group(z, 0, detach_params).squeeze(-1)


class Actor(nn.Module):
    """Deterministic policy on the balanced representation; tanh scaled to the action bounds."""

    def __init__(self, in_dim: int, hiddens: Sequence[int], action_dim: int,
                 low: torch.Tensor | None, high: torch.Tensor | None):
        super().__init__()
        self.net = mlp(in_dim, hiddens, action_dim)
        self.bounded = low is not None
        if self.bounded:
            self.register_buffer("scale", (high - low) / 2.0)
            self.register_buffer("center", (high + low) / 2.0)

    def forward(self, b: torch.Tensor) -> torch.Tensor:
        out = self.net(b)
        return self.center + self.scale * torch.tanh(out) if self.bounded else out


class EnsembleMLP(nn.Module):
    """``members`` independent ReLU MLPs evaluated together (batched per layer).

    ``x [B, in]`` → ``[B, members, out]``. Used for the arm values: an ensemble whose spread
    says where the logs cannot tell one arm's value from another's.
    """

    def __init__(self, in_dim: int, hiddens: Sequence[int], out_dim: int, members: int):
        super().__init__()
        dims = [in_dim, *hiddens, out_dim]
        self.layers = nn.ModuleList(BatchedLinear(members, a, b) for a, b in zip(dims, dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i + 1 < len(self.layers):
                h = F.relu(h)
        return h
