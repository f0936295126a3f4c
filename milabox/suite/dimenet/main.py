"""DimeNet training throughput (items/s = molecules/s) on synthetic 3-D molecules.

torch_geometric's DimeNet (directional message passing over the angles between bonds; sympy-built spherical
Bessel bases) regresses one number per molecule from atomic numbers and 3-D positions, as Milabench's dimenet
does on PCQM4Mv2 with its SDF conformers (``--use3d``): L1 loss on the standardised target, Adam.

DimeNet's forward pass builds a radius graph with torch_cluster and its angle triplets with torch_sparse,
neither of which is installed (both are compiled extensions). Plain-torch equivalents (:func:`radius_graph`,
:func:`triplets`) replace them in torch_geometric's dimenet module; they run inside the timed step on the
device, as the originals do.

The molecules are random heavy-atom graphs with PCQM4Mv2's sizes, made in memory from a seed: a random
valence-capped tree of bonds plus a few ring closures, each atom 1.2-1.6 Å from the one it bonds to and no closer
than 1.0 Å to any other, mostly C/N/O atomic numbers, and a target that depends on the geometry. Batches are
collated before timing and moved to the device once.

Config (MILABOX_CONFIG): batch_size (molecules a step), batches (distinct batches, cycled), atoms ([min, max]
heavy atoms a molecule), rings (most ring closures a molecule), model (torch_geometric DimeNet keyword arguments,
max_num_neighbors included), lr (default 1e-4), seed (default 0), plus warmup/steps/max_seconds. fp32 only.
"""

from __future__ import annotations

import math

import milabox_runtime as mr

ELEMENTS = (6, 6, 6, 6, 6, 7, 7, 8, 8, 9, 16, 17)  # atomic numbers drawn, mostly carbon like organic molecules
MAX_VALENCE = 4


def radius_graph(pos, r: float, batch=None, max_num_neighbors: int = 32, **_):
    """Edges ``[2, E]`` (source j, target i) between atoms of one molecule within ``r``, no self loops.

    Like torch_cluster's radius_graph: at most ``max_num_neighbors`` sources per target (the nearest here).
    """
    import torch

    n = pos.size(0)
    if batch is None:
        batch = torch.zeros(n, dtype=torch.long, device=pos.device)
    dist = torch.cdist(pos, pos)
    near = (dist <= r) & (batch[:, None] == batch[None, :])
    near.fill_diagonal_(False)
    dist = dist.masked_fill(~near, math.inf)
    k = min(int(max_num_neighbors), n)
    nearest, source = dist.topk(k, dim=1, largest=False)  # per target i, its k nearest candidates
    keep = nearest.isfinite()
    target = torch.arange(n, device=pos.device)[:, None].expand(-1, k)
    return torch.stack([source[keep], target[keep]])


def triplets(edge_index, num_nodes: int):
    """DimeNet's angle triplets k->j->i (k != i) in plain torch, in torch_geometric's return order."""
    import torch

    row, col = edge_index  # edge e: j = row[e] -> i = col[e]
    order = torch.argsort(col, stable=True)  # incoming edges grouped by target
    counts = torch.bincount(col, minlength=num_nodes)
    start = torch.cumsum(counts, 0) - counts
    per_edge = counts[row]  # edges k->j feeding each edge j->i
    idx_ji = torch.repeat_interleave(torch.arange(row.size(0), device=row.device), per_edge)
    offset = torch.arange(idx_ji.size(0), device=row.device) - torch.repeat_interleave(
        torch.cumsum(per_edge, 0) - per_edge, per_edge)
    idx_kj = order[start[row[idx_ji]] + offset]
    idx_i, idx_j, idx_k = col[idx_ji], row[idx_ji], row[idx_kj]
    mask = idx_i != idx_k
    idx_i, idx_j, idx_k, idx_kj, idx_ji = idx_i[mask], idx_j[mask], idx_k[mask], idx_kj[mask], idx_ji[mask]
    return col, row, idx_i, idx_j, idx_k, idx_kj, idx_ji


def build(model: dict):
    """torch_geometric's DimeNet from the config's ``model`` table, its graph helpers made plain torch."""
    from torch_geometric.nn.models import dimenet

    dimenet.radius_graph = radius_graph  # torch_cluster's, otherwise
    dimenet.triplets = triplets  # torch_sparse's SparseTensor, otherwise
    return dimenet.DimeNet(**model)


def molecule(np_rng, atoms: tuple[int, int], rings: int):
    """One random molecule as torch_geometric ``Data`` (z, pos, y)."""
    import numpy as np
    import torch
    from torch_geometric.data import Data

    n = int(np_rng.integers(atoms[0], atoms[1] + 1))
    pos = np.zeros((n, 3))
    degree = [0] * n
    for i in range(1, n):  # a random tree, each atom placed near the earlier atom it bonds to
        free = [j for j in range(i) if degree[j] < MAX_VALENCE]
        j = free[int(np_rng.integers(len(free)))]
        for _ in range(20):  # a direction that keeps clear of the other atoms, if one is found
            step = np_rng.standard_normal(3)
            candidate = pos[j] + step / np.linalg.norm(step) * np_rng.uniform(1.2, 1.6)
            if np.linalg.norm(pos[:i] - candidate, axis=1).min() >= 1.0:
                break
        pos[i] = candidate
        degree[i] += 1
        degree[j] += 1
    for _ in range(int(np_rng.integers(0, rings + 1))):  # ring closures pull two atoms with free valences closer
        a, b = (int(v) for v in np_rng.choice(n, 2, replace=False)) if n >= 3 else (0, 0)
        if a != b and degree[a] < MAX_VALENCE and degree[b] < MAX_VALENCE:
            pos[b] = pos[a] + (pos[b] - pos[a]) * 0.5
            degree[a] += 1
            degree[b] += 1
    z = np_rng.choice(ELEMENTS, size=n)
    # A target the network can learn: larger and more spread-out molecules get larger values, plus noise.
    spread = float(np.linalg.norm(pos - pos.mean(0), axis=1).mean())
    y = 0.02 * z.sum() / n + 0.3 * spread + 0.05 * float(np_rng.standard_normal())
    return Data(z=torch.from_numpy(z).long(), pos=torch.from_numpy(pos).float(), y=torch.tensor([[y]]).float())


def bench(run: mr.Run) -> None:
    """Train DimeNet for the run's steps; each step is one collated batch of ``batch_size`` molecules."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from torch_geometric.data import Batch

    cfg = run.config
    if run.precision != "fp32":
        raise ValueError(f"dimenet runs fp32, not {run.precision}")
    batch_size, count = int(cfg["batch_size"]), int(cfg.get("batches", 2))
    atoms = (int(cfg["atoms"][0]), int(cfg["atoms"][1]))
    rings = int(cfg.get("rings", 2))
    if batch_size < 1 or count < 1 or not 1 <= atoms[0] <= atoms[1] or rings < 0:
        raise ValueError(f"need batch_size >= 1, batches >= 1, 1 <= atoms[0] <= atoms[1], rings >= 0; "
                         f"got {batch_size}, {count}, {list(atoms)}, {rings}")
    seed = int(cfg.get("seed", 0))
    run.seed(seed)
    np_rng = np.random.default_rng(seed)
    dev = run.device

    batches = [Batch.from_data_list([molecule(np_rng, atoms, rings) for _ in range(batch_size)])
               for _ in range(count)]
    ys = torch.cat([b.y for b in batches])
    mean, std = ys.mean(), ys.std().clamp_min(1e-6)
    model = build(dict(cfg["model"])).to(dev).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=float(cfg.get("lr", 1e-4)))
    batches = [b.to(dev) for b in batches]
    for b in batches:
        b.y = (b.y - mean.to(dev)) / std.to(dev)

    for step in run.steps(items=batch_size):
        b = batches[step % count]
        optimizer.zero_grad(set_to_none=True)
        loss = F.l1_loss(model(b.z, b.pos, b.batch), b.y)
        loss.backward()
        optimizer.step()
        run.loss(loss)
    b = batches[0]
    edges = radius_graph(b.pos, model.cutoff, b.batch, model.max_num_neighbors)
    run.emit("dimenet", parameters=sum(p.numel() for p in model.parameters()),
             atoms_per_batch=sum(b.num_nodes for b in batches) / count, edges_per_batch=edges.size(1),
             triplets_per_batch=triplets(edges, b.num_nodes)[2].size(0))


if __name__ == "__main__":
    mr.main(bench, defaults={"unit": "items/s"})
