"""PNA graph network training throughput (items/s = molecular graphs/s) on synthetic molecules.

As Milabench's pna (benchmarks/geo_gnn): torch_geometric's PNA model (PNAConv layers) regresses one number per
molecule (PCQM4Mv2's HOMO-LUMO gap there): node outputs max-pooled per graph, L1 loss on the standardised target,
Adam. The dataset is ``num_samples`` random molecule-like graphs (torch_geometric ``Data``) made in memory from a
seed before timing, with PCQM4Mv2's fields and shapes: heavy atoms with 9 categorical atom features (OGB's atom
featuriser, int64), a random valence-capped tree of bonds plus a few ring closures (both edge directions), 3
categorical bond features, 3-D positions, atomic numbers, a SMILES-length string and a target that depends on the
graph. Each timed step takes the next batch from a shuffling ``torch_geometric.loader.DataLoader`` (collation in
the main process, as Milabench's pna with its default 0 workers), copies it to the device, casts the atom
features to float, then forward, backward and the optimizer step. The rate counts the graphs of each batch.

Config (MILABOX_CONFIG): batch_size (graphs a step), num_samples (molecules in the dataset), atoms ([min, max]
heavy atoms a molecule), rings (most ring closures a molecule), model (torch_geometric PNA keyword arguments
besides in_channels and deg), num_workers (default 0), lr (default 1e-4), seed (default 0), plus
warmup/steps/max_seconds. fp32 only.
"""

from __future__ import annotations

import milabox_runtime as mr

# OGB's atom featuriser (what PCQM4Mv2's from_smiles gives): number of categories of each of the 9 features.
ATOM_CATEGORIES = (119, 4, 12, 12, 10, 6, 6, 2, 2)
BOND_CATEGORIES = (5, 6, 2)  # bond type, stereo, conjugated
MAX_VALENCE = 4  # no atom gets more bonds than carbon's valence


def bonds_of(rng, n: int, rings: int) -> list[tuple[int, int]]:
    """A random valence-capped tree over ``n`` atoms plus up to ``rings`` ring closures (``rng``: random.Random)."""
    degree = [0] * n
    bonds = []
    for i in range(1, n):  # every atom bonds to an earlier one with a free valence (one always has: a tree)
        j = int(rng.random() * i)
        while degree[j] >= MAX_VALENCE:
            j = int(rng.random() * i)
        bonds.append((j, i))
        degree[i] += 1
        degree[j] += 1
    present = set(bonds)
    for _ in range(rng.randint(0, rings) if n >= 3 else 0):  # ring closures between atoms with free valences
        a, b = sorted(rng.sample(range(n), 2))
        if (a, b) not in present and degree[a] < MAX_VALENCE and degree[b] < MAX_VALENCE:
            bonds.append((a, b))
            present.add((a, b))
            degree[a] += 1
            degree[b] += 1
    return bonds


def dataset(seed: int, count: int, atoms: tuple[int, int], rings: int) -> list:
    """``count`` random molecules from ``seed``, as torch_geometric ``Data`` (undirected: both edge directions).

    Feature arrays are drawn for all molecules at once and cut per molecule (100 000 molecules take seconds).
    """
    import random

    import numpy as np
    import torch
    from torch_geometric.data import Data

    rng, np_rng = random.Random(seed), np.random.default_rng(seed)
    sizes = np_rng.integers(atoms[0], atoms[1] + 1, size=count)
    total = int(sizes.sum())
    x_all = np_rng.integers(0, ATOM_CATEGORIES, size=(total, len(ATOM_CATEGORIES)))
    x_all[:, 0] = np_rng.choice([5, 6, 7, 8, 15, 16, 8, 6, 6, 6], size=total)  # mostly C, N, O like organics
    pos_all = np_rng.standard_normal((total, 3)).astype(np.float32)
    noise = np_rng.standard_normal(count)
    bonds_all = [bonds_of(rng, int(n), rings) for n in sizes]
    bond_all = np_rng.integers(0, BOND_CATEGORIES, size=(sum(map(len, bonds_all)), len(BOND_CATEGORIES)))
    graphs, start, bstart = [], 0, 0
    for k, (n, bonds) in enumerate(zip(sizes.tolist(), bonds_all, strict=True)):
        x = torch.from_numpy(x_all[start:start + n].copy())
        bond = bond_all[bstart:bstart + len(bonds)]
        ends = np.asarray(bonds, dtype=np.int64).reshape(-1, 2).T
        degree = np.bincount(ends.ravel(), minlength=n)
        # A target the network can learn: heavier and more branched molecules get larger values, plus noise.
        y = 0.01 * float(x_all[start:start + n, 0].sum()) / n + 0.1 * int(degree.max()) + 0.05 * float(noise[k])
        graphs.append(Data(x=x, edge_index=torch.from_numpy(np.concatenate([ends, ends[::-1]], axis=1)),
                           edge_attr=torch.from_numpy(np.concatenate([bond, bond])),  # a bond's two directions
                           y=y, pos=torch.from_numpy(pos_all[start:start + n].copy()), z=x[:, 0] + 1,
                           smiles="C" * (2 * n)))
        start, bstart = start + n, bstart + len(bonds)
    return graphs


def degree_histogram(graphs: list):
    """In-degree histogram of every node of the graphs (what PNA's scalers normalise by)."""
    import torch

    dst = torch.cat([g.edge_index[1] for g in graphs])
    nodes = torch.tensor([g.num_nodes for g in graphs])
    offsets = torch.repeat_interleave(torch.cumsum(nodes, 0) - nodes, torch.tensor([g.num_edges for g in graphs]))
    return torch.bincount(torch.bincount(dst + offsets, minlength=int(nodes.sum())))


def build_model(model_cfg: dict, deg):
    """torch_geometric's PNA for the 9 atom features, from its keyword arguments and a degree histogram."""
    from torch_geometric.nn.models import PNA

    return PNA(in_channels=len(ATOM_CATEGORIES), deg=deg, **model_cfg)


def forever(loader):
    """The loader's batches, epoch after epoch (a shuffling loader reshuffles every epoch)."""
    while True:
        yield from loader


def bench(run: mr.Run) -> None:
    """Train PNA for the run's steps; each step collates and trains one batch of ``batch_size`` molecules."""
    import torch
    import torch.nn.functional as F
    from torch_geometric.loader import DataLoader
    from torch_geometric.nn import global_max_pool

    cfg = run.config
    if run.precision != "fp32":
        raise ValueError(f"pna runs fp32, not {run.precision}")
    batch_size, count = int(cfg["batch_size"]), int(cfg["num_samples"])
    atoms = (int(cfg["atoms"][0]), int(cfg["atoms"][1]))
    rings = int(cfg.get("rings", 2))
    if batch_size < 1 or count < batch_size or not 1 <= atoms[0] <= atoms[1] or rings < 0:
        raise ValueError(f"need batch_size >= 1, num_samples >= batch_size, 1 <= atoms[0] <= atoms[1], rings >= 0; "
                         f"got {batch_size}, {count}, {list(atoms)}, {rings}")
    seed = int(cfg.get("seed", 0))
    run.seed(seed)
    dev = run.device

    graphs = dataset(seed, count, atoms, rings)
    deg = degree_histogram(graphs)  # PNA's scalers need the in-degree histogram of the training graphs
    ys = torch.tensor([g.y for g in graphs], dtype=torch.float64)
    mean, std = float(ys.mean()), max(float(ys.std(correction=0)), 1e-6)
    with dev:  # initialise the weights on the device
        model = build_model(dict(cfg["model"]), deg)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=float(cfg.get("lr", 1e-4)), weight_decay=0)
    loader = DataLoader(graphs, batch_size=batch_size, shuffle=True, num_workers=int(cfg.get("num_workers", 0)),
                        generator=torch.Generator().manual_seed(seed))
    batches = forever(loader)

    for _ in run.steps():
        b = next(batches).to(dev)  # collation (and a new epoch's shuffle) inside the timed step
        graphs_in_batch = b.num_graphs
        run.items(graphs_in_batch)
        optimizer.zero_grad(set_to_none=True)
        nodes = model(b.x.float(), b.edge_index, batch=b.batch, batch_size=graphs_in_batch)
        pred = global_max_pool(nodes, b.batch, size=graphs_in_batch).squeeze(-1)
        loss = F.l1_loss(pred, (b.y.float() - mean) / std)
        loss.backward()
        optimizer.step()
        run.loss(loss)
    run.emit("pna", parameters=sum(p.numel() for p in model.parameters()), molecules=count,
             nodes=sum(g.num_nodes for g in graphs) / count, edges=sum(g.num_edges for g in graphs) / count,
             max_degree=len(deg) - 1)


if __name__ == "__main__":
    mr.main(bench, defaults={"unit": "items/s"})
