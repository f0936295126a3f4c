"""PNA graph network training throughput (items/s = molecular graphs/s) on synthetic molecules.

torch_geometric's PNA model (PNAConv layers) regresses one number per molecule, as Milabench's pna does on
PCQM4Mv2 (HOMO-LUMO gap): node outputs mean-pooled per graph, L1 loss on the standardised target, Adam.
The molecules are random small graphs with PCQM4Mv2's shapes, made in memory from a seed: heavy atoms with
9 categorical atom features (as OGB's atom featuriser gives, cast to float), a random valence-capped tree
of bonds plus a few ring closures, 3 categorical bond features, and a target that depends on the graph.
Batches are collated with torch_geometric's ``Batch`` before timing and moved to the device once, so the
timed step is the device's forward, backward and optimizer step (no host-side collation).

Config (MILABOX_CONFIG): batch_size (graphs a step), batches (distinct batches, cycled), atoms
([min, max] heavy atoms a molecule), rings (most ring closures a molecule), model (torch_geometric PNA
keyword arguments besides in_channels and deg; with edge_dim set, bond features feed the layers),
lr (default 1e-4), seed (default 0), plus warmup/steps/max_seconds. fp32 only.
"""

from __future__ import annotations

import milabox_runtime as mr

# OGB's atom featuriser (what PCQM4Mv2's from_smiles gives): number of categories of each of the 9 features.
ATOM_CATEGORIES = (119, 4, 12, 12, 10, 6, 6, 2, 2)
BOND_CATEGORIES = (5, 6, 2)  # bond type, stereo, conjugated
MAX_VALENCE = 4  # no atom gets more bonds than carbon's valence


def molecule(np_rng, atoms: tuple[int, int], rings: int):
    """One random molecule-like graph as torch_geometric ``Data`` (undirected: both edge directions)."""
    import numpy as np
    import torch
    from torch_geometric.data import Data

    n = int(np_rng.integers(atoms[0], atoms[1] + 1))
    degree = [0] * n
    bonds = []
    for i in range(1, n):  # a random tree: every atom bonds to an earlier one with a free valence
        free = [j for j in range(i) if degree[j] < MAX_VALENCE]
        j = free[int(np_rng.integers(len(free)))]
        bonds.append((j, i))
        degree[i] += 1
        degree[j] += 1
    present = set(bonds)
    for _ in range(int(np_rng.integers(0, rings + 1))):  # ring closures between two atoms with free valences
        if n < 3:
            break
        a, b = sorted(int(v) for v in np_rng.choice(n, 2, replace=False))
        if (a, b) not in present and degree[a] < MAX_VALENCE and degree[b] < MAX_VALENCE:
            bonds.append((a, b))
            present.add((a, b))
            degree[a] += 1
            degree[b] += 1
    src = [a for a, b in bonds] + [b for a, b in bonds]
    dst = [b for a, b in bonds] + [a for a, b in bonds]
    x = np_rng.integers(0, ATOM_CATEGORIES, size=(n, len(ATOM_CATEGORIES)))
    x[:, 0] = np_rng.choice([5, 6, 7, 8, 15, 16, 8, 6, 6, 6], size=n)  # mostly C, N, O like organic molecules
    bond = np_rng.integers(0, BOND_CATEGORIES, size=(len(bonds), len(BOND_CATEGORIES)))
    edge_attr = np.concatenate([bond, bond])  # edge k and k + len(bonds) are one bond's two directions
    # A target the network can learn: heavier and more branched molecules get larger values, plus noise.
    y = 0.01 * x[:, 0].sum() / n + 0.1 * max(degree) + 0.05 * float(np_rng.standard_normal())
    return Data(x=torch.from_numpy(x).float(), edge_index=torch.tensor([src, dst], dtype=torch.long),
                edge_attr=torch.from_numpy(edge_attr).float(), y=torch.tensor([y], dtype=torch.float))


def bench(run: mr.Run) -> None:
    """Train PNA for the run's steps; each step is one collated batch of ``batch_size`` molecules."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from torch_geometric.data import Batch
    from torch_geometric.nn import global_mean_pool
    from torch_geometric.nn.models import PNA
    from torch_geometric.utils import degree

    cfg = run.config
    if run.precision != "fp32":
        raise ValueError(f"pna runs fp32, not {run.precision}")
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
    # PNA's scalers need the in-degree histogram of the training graphs.
    degrees = torch.cat([degree(b.edge_index[1], num_nodes=b.num_nodes, dtype=torch.long) for b in batches])
    deg = torch.bincount(degrees)
    ys = torch.cat([b.y for b in batches])
    mean, std = ys.mean(), ys.std().clamp_min(1e-6)
    model_cfg = dict(cfg["model"])
    use_edges = model_cfg.get("edge_dim") is not None
    model = PNA(in_channels=len(ATOM_CATEGORIES), deg=deg, **model_cfg).to(dev).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=float(cfg.get("lr", 1e-4)))
    batches = [b.to(dev) for b in batches]
    for b in batches:
        b.y = (b.y - mean.to(dev)) / std.to(dev)

    for step in run.steps(items=batch_size):
        b = batches[step % count]
        optimizer.zero_grad(set_to_none=True)
        nodes = model(b.x, b.edge_index, edge_attr=b.edge_attr if use_edges else None)
        pred = global_mean_pool(nodes, b.batch, size=batch_size).squeeze(-1)
        loss = F.l1_loss(pred, b.y)
        loss.backward()
        optimizer.step()
        run.loss(loss)
    run.emit("pna", parameters=sum(p.numel() for p in model.parameters()),
             nodes_per_batch=sum(b.num_nodes for b in batches) / count,
             edges_per_batch=sum(b.num_edges for b in batches) / count, max_degree=len(deg) - 1)


if __name__ == "__main__":
    mr.main(bench, defaults={"unit": "items/s"})
