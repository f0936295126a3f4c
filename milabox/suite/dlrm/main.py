"""DLRM training throughput (items/s = samples/s) on synthetic click data, plain torch.

The DLRM architecture (Naumov et al. 2019; facebookresearch/dlrm, which Milabench's dlrm ran): a bottom MLP
over the dense features, one ``nn.EmbeddingBag`` (sum pooling) per sparse feature, the pairwise dot products
of all those vectors (lower triangle, no self-products) concatenated with the bottom MLP's output, a top MLP
to one click logit, binary cross-entropy, SGD (sparse gradients for the tables, as DLRM trains on one device).

Synthetic data (Criteo-like shapes): dense features log-transformed counts, every sparse feature a
multi-hot bag of uniformly random row ids whose length is random in [1, indices_per_lookup] (as
dlrm_s_pytorch's "random" data generation), clicks Bernoulli(click_rate). Batches are made on the device
before timing and cycled.

Config (MILABOX_CONFIG): batch_size, dense_features, bottom_mlp (hidden widths; the embedding dim is
appended), top_mlp (hidden widths; the single logit is appended), embedding_dim, table_rows (one entry per
sparse feature), indices_per_lookup, plus optional sparse_grad (default true), lr (default 0.01),
click_rate (default 0.25), seed (default 0), and warmup/steps/max_seconds. fp32 only.
"""

from __future__ import annotations

import itertools
import math

import milabox_runtime as mr

BATCHES = 3  # distinct synthetic batches, made before timing and cycled


def make_dlrm(torch, dense_in: int, bottom: list[int], top: list[int], dim: int, rows: list[int], sparse: bool):
    """The DLRM module; embeddings and MLP weights initialised as facebookresearch/dlrm does."""
    nn = torch.nn

    def mlp(sizes: list[int], last_act: bool):
        layers = []
        for i, (m, n) in enumerate(itertools.pairwise(sizes)):
            lin = nn.Linear(m, n)
            nn.init.normal_(lin.weight, 0.0, math.sqrt(2.0 / (m + n)))
            nn.init.normal_(lin.bias, 0.0, math.sqrt(1.0 / n))
            layers.append(lin)
            if last_act or i < len(sizes) - 2:
                layers.append(nn.ReLU())
        return nn.Sequential(*layers)

    n_vectors = 1 + len(rows)
    pairs = n_vectors * (n_vectors - 1) // 2

    class DLRM(nn.Module):
        def __init__(self):
            super().__init__()
            self.bottom = mlp([dense_in, *bottom, dim], last_act=True)
            self.tables = nn.ModuleList(nn.EmbeddingBag(r, dim, mode="sum", sparse=sparse) for r in rows)
            for t, r in zip(self.tables, rows):
                nn.init.uniform_(t.weight, -math.sqrt(1.0 / r), math.sqrt(1.0 / r))
            self.top = mlp([dim + pairs, *top, 1], last_act=False)
            li, lj = torch.tril_indices(n_vectors, n_vectors, offset=-1)
            self.register_buffer("li", li, persistent=False)
            self.register_buffer("lj", lj, persistent=False)

        def forward(self, dense, bags):
            x = self.bottom(dense)
            vectors = [x] + [t(idx, off) for t, (idx, off) in zip(self.tables, bags)]
            t = torch.stack(vectors, dim=1)  # (batch, 1 + tables, dim)
            z = torch.bmm(t, t.transpose(1, 2))
            return self.top(torch.cat([x, z[:, self.li, self.lj]], dim=1)).squeeze(-1)

    return DLRM()


def bench(run: mr.Run) -> None:
    """Train DLRM for the run's steps; each step is one batch of ``batch_size`` samples."""
    import torch
    import torch.nn.functional as F

    cfg = run.config
    if run.precision != "fp32":
        raise ValueError(f"dlrm runs fp32, not {run.precision}")
    batch_size, dense_in = int(cfg["batch_size"]), int(cfg["dense_features"])
    dim, max_bag = int(cfg["embedding_dim"]), int(cfg["indices_per_lookup"])
    rows = [int(r) for r in cfg["table_rows"]]
    bottom, top = [int(w) for w in cfg["bottom_mlp"]], [int(w) for w in cfg["top_mlp"]]
    if min([batch_size, dense_in, dim, max_bag, *rows, *bottom, *top]) < 1 or not rows:
        raise ValueError("batch_size, dense_features, embedding_dim, indices_per_lookup, table_rows and MLP "
                         "widths must be >= 1, with at least one table")
    click_rate = float(cfg.get("click_rate", 0.25))
    run.seed(int(cfg.get("seed", 0)))
    dev = run.device

    model = make_dlrm(torch, dense_in, bottom, top, dim, rows, bool(cfg.get("sparse_grad", True))).to(dev).train()
    # Plain SGD, as DLRM: it takes the tables' sparse gradients and keeps no state for 10^7-row tables.
    optimizer = torch.optim.SGD(model.parameters(), lr=float(cfg.get("lr", 0.01)))

    def synthetic_batch():
        dense = torch.log1p(torch.empty(batch_size, dense_in, device=dev).exponential_(0.1))
        bags = []
        for r in rows:
            lengths = torch.randint(1, max_bag + 1, (batch_size,), device=dev)
            offsets = torch.cumsum(lengths, 0) - lengths
            bags.append((torch.randint(0, r, (int(lengths.sum()),), device=dev), offsets))
        clicks = (torch.rand(batch_size, device=dev) < click_rate).float()
        return dense, bags, clicks

    batches = [synthetic_batch() for _ in range(BATCHES)]
    for step in run.steps(items=batch_size):
        dense, bags, clicks = batches[step % BATCHES]
        optimizer.zero_grad(set_to_none=True)
        loss = F.binary_cross_entropy_with_logits(model(dense, bags), clicks)
        loss.backward()
        optimizer.step()
        run.loss(loss)
    run.emit("dlrm", parameters=sum(p.numel() for p in model.parameters()), tables=len(rows),
             lookups_per_batch=sum(int(idx.numel()) for idx, _ in batches[0][1]))


if __name__ == "__main__":
    mr.main(bench, defaults={"unit": "items/s"})
