"""GFlowNet training throughput (nodes/s) of a fragment-based molecule generator, trajectory balance.

As recursionpharma/gflownet's seh_frag task (what Milabench's recursiongfn trains): molecules are built one
fragment at a time, each new fragment bonded to a free attachment point of one already placed, until the policy
stops or ``max_frags`` are placed; a graph-transformer policy scores every legal action of a state; trajectory
balance trains it with a learned log Z (a function of the conditioning), on rewards raised to a constant
inverse temperature ``beta`` (the conditioning, as a thermometer encoding). A step samples ``batch_size``
trajectories with a sampling copy of the policy (an EMA of it, ``sampling_tau``), scores their final molecules,
then runs the policy on every state of every trajectory in one batch, and takes the TB loss, clips the gradient
norm, and steps Adam for the policy and for log Z.

Everything is plain torch on the run's device: a synthetic fragment library (``fragments`` types with 1 to 4
attachment points each, from a seed), the environment as batched tensors, and a synthetic reward (a fixed random
per-fragment and per-bond score squashed into (0, 1]) in place of the sEH binding proxy. The rate counts nodes as
Milabench does: the fragments of every state graph of the step's trajectories (an empty graph counts one node,
as gflownet's featurisation gives it).

Config (MILABOX_CONFIG): batch_size (trajectories a step), fragments, max_frags, model = {num_emb, num_layers,
num_heads}, beta, thermometer (conditioning dims), lr, z_lr, weight_decay, clip_grad, sampling_tau, seed
(default 0), plus the runtime's warmup/steps/max_seconds. fp32 only.
"""

from __future__ import annotations

import copy

import milabox_runtime as mr

MAX_STEMS = 4  # attachment points a fragment may have


def _modules():
    import torch
    import torch.nn.functional as F
    from torch import nn

    def mlp(n_in: int, hidden: int, n_out: int) -> nn.Module:
        return nn.Sequential(nn.Linear(n_in, hidden), nn.LeakyReLU(), nn.Linear(hidden, hidden), nn.LeakyReLU(),
                             nn.Linear(hidden, n_out))

    class Layer(nn.Module):
        """Pre-norm transformer layer whose attention logits get a learned bias per head on bonded pairs."""

        def __init__(self, dim: int, heads: int) -> None:
            super().__init__()
            self.heads = heads
            self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
            self.qkv, self.out = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
            self.bond = nn.Parameter(torch.zeros(heads))
            self.ffn = nn.Sequential(nn.Linear(dim, 4 * dim), nn.LeakyReLU(), nn.Linear(4 * dim, dim))

        def forward(self, x, adj, key_ok):
            s, n, d = x.shape
            q, k, v = self.qkv(self.norm1(x)).view(s, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
            bias = adj[:, None].float() * self.bond[None, :, None, None]
            bias = bias.masked_fill(~key_ok[:, None, None, :], float("-inf"))
            x = x + self.out(F.scaled_dot_product_attention(q, k, v, attn_mask=bias).transpose(1, 2).reshape(s, n, d))
            return x + self.ffn(self.norm2(x))

    class Policy(nn.Module):
        """Graph transformer over a state's fragments plus one conditioning (virtual) token.

        Logits of a state: [stop, first fragment x F (empty graph only), node u x fragment f to bond to it].
        """

        def __init__(self, fragments: int, max_frags: int, cond_dim: int, num_emb: int, num_layers: int,
                     num_heads: int) -> None:
            super().__init__()
            self.fragments, self.max_frags = fragments, max_frags
            self.frag = nn.Embedding(fragments, num_emb)
            self.free = nn.Embedding(MAX_STEMS + 1, num_emb)
            self.cond = mlp(cond_dim, num_emb, num_emb)
            self.layers = nn.ModuleList(Layer(num_emb, num_heads) for _ in range(num_layers))
            self.norm = nn.LayerNorm(num_emb)
            self.stop = mlp(2 * num_emb, num_emb, 1)
            self.first = mlp(num_emb, num_emb, fragments)
            self.add = mlp(2 * num_emb, num_emb, fragments)
            self.log_z = mlp(cond_dim, 2 * num_emb, 1)

        def forward(self, types, adj, free, n, cond):
            s = types.size(0)
            node_ok = torch.arange(self.max_frags, device=types.device)[None] < n[:, None]
            x = torch.cat([self.cond(cond)[:, None], self.frag(types.clamp_min(0)) + self.free(free)], dim=1)
            full_adj = torch.zeros(s, self.max_frags + 1, self.max_frags + 1, dtype=torch.bool, device=adj.device)
            full_adj[:, 1:, 1:] = adj
            key_ok = torch.cat([torch.ones(s, 1, dtype=torch.bool, device=types.device), node_ok], dim=1)
            for layer in self.layers:
                x = layer(x, full_adj, key_ok)
            x = self.norm(x)
            virtual, nodes = x[:, 0], x[:, 1:]
            pooled = (nodes * node_ok[..., None]).sum(1) / n.clamp_min(1)[:, None]
            add = self.add(torch.cat([nodes, virtual[:, None].expand_as(nodes)], dim=-1)).flatten(1)
            logits = torch.cat([self.stop(torch.cat([virtual, pooled], dim=-1)), self.first(virtual), add], dim=1)
            legal = torch.cat([(n >= 1)[:, None], (n == 0)[:, None].expand(-1, self.fragments),
                               ((free > 0) & node_ok & (n < self.max_frags)[:, None]).repeat_interleave(
                                   self.fragments, dim=1)], dim=1)
            return logits.masked_fill(~legal, float("-inf"))

    return Policy


def build(cfg: dict):
    """The policy (with its log Z head) from a size's config."""
    m = cfg["model"]
    return _modules()(int(cfg["fragments"]), int(cfg["max_frags"]), int(cfg.get("thermometer", 32)),
                      int(m["num_emb"]), int(m["num_layers"]), int(m.get("num_heads", 2)))


def thermometer(torch, value, dims: int, lo: float, hi: float):
    """gflownet's thermometer encoding of a scalar: ``dims`` soft steps between lo and hi."""
    bins = torch.linspace(lo, hi, dims, device=value.device)
    gap = (hi - lo) / max(dims - 1, 1)
    return ((value[:, None] - bins[None]) / gap).clamp(0, 1)


def rollout(torch, sampler, cond, stems, max_frags: int):
    """Roll out one trajectory a row of ``cond`` with the policy ``sampler`` (no gradients).

    Returns:
        (visited, types, adj, free, n): one (rows, types, adj, free, n, action) tuple a step for the rows still
        going at that step, then the final graphs: fragment types [B, max_frags] (-1 past n), bonds [B, max_frags,
        max_frags], free attachment points [B, max_frags] and fragment counts [B].
    """
    batch, nf, dev = cond.size(0), stems.numel(), cond.device
    types = torch.full((batch, max_frags), -1, dtype=torch.long, device=dev)
    adj = torch.zeros(batch, max_frags, max_frags, dtype=torch.bool, device=dev)
    free = torch.zeros(batch, max_frags, dtype=torch.long, device=dev)
    n = torch.zeros(batch, dtype=torch.long, device=dev)
    done = torch.zeros(batch, dtype=torch.bool, device=dev)
    visited = []
    with torch.no_grad():
        for _ in range(max_frags + 1):  # at most max_frags additions, then a stop
            act = (~done).nonzero().flatten()
            if act.numel() == 0:
                break
            t, a, f, k = types[act], adj[act], free[act], n[act]
            action = torch.multinomial(sampler(t, a, f, k, cond[act]).softmax(-1), 1).flatten()
            visited.append((act, t, a, f, k, action))
            stop = action == 0
            frag = (action - 1) % nf  # fragment type of an addition
            node = (action - 1 - nf).div(nf, rounding_mode="floor")  # -1: the first fragment
            grow = act[~stop]
            g_node, g_frag, g_n = node[~stop], frag[~stop], n[grow]
            attached = g_node >= 0
            types[grow, g_n] = g_frag
            free[grow, g_n] = stems[g_frag] - attached.long()
            src = grow[attached]
            free[src, g_node[attached]] -= 1
            adj[src, g_node[attached], g_n[attached]] = True
            adj[src, g_n[attached], g_node[attached]] = True
            n[grow] += 1
            done[act[stop]] = True
    return visited, types, adj, free, n


def bench(run: mr.Run) -> None:
    """Sample and train for the run's steps; each step is ``batch_size`` trajectories."""
    import torch

    cfg = run.config
    if run.precision != "fp32":
        raise ValueError(f"recursiongfn runs fp32, not {run.precision}")
    batch, nf, mf = int(cfg["batch_size"]), int(cfg["fragments"]), int(cfg["max_frags"])
    beta, tau, clip = float(cfg.get("beta", 64.0)), float(cfg.get("sampling_tau", 0.9)), float(cfg.get("clip_grad", 10))
    if batch < 1 or nf < 1 or mf < 1:
        raise ValueError("need batch_size, fragments and max_frags >= 1")
    run.seed(int(cfg.get("seed", 0)))
    dev = run.device
    # The synthetic fragment library and reward: attachment points and scores per fragment, scores per bond.
    stems = torch.randint(1, MAX_STEMS + 1, (nf,), device=dev)
    frag_score = torch.randn(nf, device=dev)
    bond_score = torch.randn(nf, nf, device=dev)
    bond_score = (bond_score + bond_score.T) / 2

    model = build(cfg).to(dev).train()
    sampler = copy.deepcopy(model).eval().requires_grad_(False)
    z_params = list(model.log_z.parameters())
    z_ids = {id(p) for p in z_params}
    other = [p for p in model.parameters() if id(p) not in z_ids]
    opt = torch.optim.Adam(other, lr=float(cfg.get("lr", 1e-4)), betas=(0.9, 0.999),
                           weight_decay=float(cfg.get("weight_decay", 1e-8)))
    opt_z = torch.optim.Adam(z_params, lr=float(cfg.get("z_lr", 1e-4)), betas=(0.9, 0.999))
    cond = thermometer(torch, torch.full((batch,), beta, device=dev), int(cfg.get("thermometer", 32)), 0.0, beta)

    def log_reward(types, adj, n):
        valid = types >= 0
        per_frag = (frag_score[types.clamp_min(0)] * valid).sum(1) / n.clamp_min(1)
        pair = bond_score[types.clamp_min(0)[:, :, None], types.clamp_min(0)[:, None, :]] * adj
        per_bond = pair.sum((1, 2)) / (2 * (n - 1).clamp_min(1))
        reward = torch.sigmoid(per_frag + per_bond).clamp(1e-4, 100)
        return beta * reward.log()  # R ** beta, as seh_frag's temperature conditioning

    params = list(model.parameters())
    for step in run.steps():
        visited, types, adj, _, n = rollout(torch, sampler, cond, stems, mf)
        traj = torch.cat([v[0] for v in visited])
        s_types, s_adj, s_free, s_n = (torch.cat([v[i] for v in visited]) for i in (1, 2, 3, 4))
        actions = torch.cat([v[5] for v in visited])
        # Uniform backward policy: undoing an addition removes one of the new state's leaf fragments.
        leaves = []
        for _, _, a, _, k, action in visited:
            grew = action != 0
            deg = a.sum(-1)
            # Leaves of the state after the action: its placed nodes of degree <= 1.
            new_deg = deg.clone()
            node = (action - 1 - nf).div(nf, rounding_mode="floor")
            attached = grew & (node >= 0)
            new_deg[attached.nonzero().flatten(), node[attached]] += 1
            placed = torch.arange(mf, device=dev)[None] < k[:, None]
            count = ((new_deg <= 1) & placed).sum(1) + grew.long()  # the new fragment is a leaf
            leaves.append(torch.where(grew, count.clamp_min(1), torch.ones_like(count)))
        log_pb = -torch.cat(leaves).float().log()
        logits = model(s_types, s_adj, s_free, s_n, cond[traj])
        log_pf = logits.log_softmax(-1).gather(1, actions[:, None]).squeeze(1)
        sum_pf = torch.zeros(batch, device=dev).index_add_(0, traj, log_pf)
        sum_pb = torch.zeros(batch, device=dev).index_add_(0, traj, log_pb)
        log_z = model.log_z(cond).squeeze(1)
        loss = (log_z + sum_pf - log_reward(types, adj, n) - sum_pb).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        opt_z.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, clip)
        opt.step()
        opt_z.step()
        with torch.no_grad():  # the sampling policy follows the trained one (gflownet's sampling_tau)
            torch._foreach_lerp_(list(sampler.parameters()), params, 1.0 - tau)
        run.items(float(s_n.clamp_min(1).sum()))
        run.loss(loss)
    run.emit("gflownet", parameters=sum(p.numel() for p in params), states=int(traj.numel()),
             mean_fragments=float(n.float().mean()))


if __name__ == "__main__":
    mr.main(bench, defaults={"unit": "nodes/s"})
