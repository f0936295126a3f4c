"""milabox has a row for each of Milabench's weighted benchmarks, under Milabench's name and weight, and no other."""

from __future__ import annotations

from milabox.definitions.benchmarks import all_benchmarks

#: Every row that Milabench's config/all.yaml (mila-iqia/milabench@faf3923) weighs 1.0: 25 rows.
MILABENCH_WEIGHTED = (
    "resnet50", "convnext_large-tf32-fp16", "regnet_y_128gf", "bert-tf32-fp16", "reformer", "brax",
    "diffusion-gpus", "diffusion-nodes", "lightning-gpus", "dinov2-giant-gpus", "llm-lora-single",
    "llm-lora-ddp-gpus", "llm-lora-ddp-nodes", "llm-lora-mp-gpus", "llm-full-mp-gpus", "llm-full-mp-nodes", "ppo",
    "dimenet", "pna", "recursiongfn", "llava-single", "rlhf-single", "vjepa-single", "vjepa-gpus", "llama",
)


def test_every_milabench_weighted_row_is_here_with_its_weight_and_nothing_else_weighs():
    rows = all_benchmarks()
    assert len(MILABENCH_WEIGHTED) == len(set(MILABENCH_WEIGHTED)) == 25
    assert [name for name in MILABENCH_WEIGHTED if name not in rows] == []
    assert {name: rows[name].weight for name in MILABENCH_WEIGHTED} == dict.fromkeys(MILABENCH_WEIGHTED, 1.0)
    assert sorted(name for name, bench in rows.items() if bench.weight > 0) == sorted(MILABENCH_WEIGHTED)


def test_rows_spanning_nodes_need_two_nodes_and_sharded_rows_two_devices():
    rows = all_benchmarks()
    assert {n for n, b in rows.items() if b.min_nodes > 1} == {n for n in MILABENCH_WEIGHTED if n.endswith("-nodes")}
    assert all(rows[n].min_nodes == 2 and rows[n].plan == "all_devices" for n in MILABENCH_WEIGHTED if n.endswith("-nodes"))
    assert rows["llm-lora-mp-gpus"].min_devices == rows["llm-full-mp-gpus"].min_devices == 2
