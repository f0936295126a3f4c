"""Full-size Llama models of the llm rows (llm-lora, llama), built on the meta device from their benchmark.toml:
parameter counts against the named models' published figures (no weights are allocated, so 70 B costs nothing)."""

from __future__ import annotations

import pytest
from helpers import full_size_workload, within_1_percent

from milabox.definitions.benchmarks import all_benchmarks

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

# meta-llama/Llama-3.1-8B: "8.03B params" on its Hugging Face model page (safetensors metadata: 8,030,261,248).
LLAMA31_8B_PARAMS = 8_030_261_248
# meta-llama/Llama-3.1-70B: "70.6B params" on its Hugging Face model page (safetensors metadata: 70,553,706,496).
LLAMA31_70B_PARAMS = 70_553_706_496
# meta-llama/Llama-2-7b-chat-hf: "6.74B params" on its Hugging Face model page (safetensors metadata: 6,738,415,616).
LLAMA2_7B_PARAMS = 6_738_415_616






def _llm_counts(row: str, model_override: dict | None = None) -> tuple[int, int]:
    """(total, trainable) parameters of the row's full-size model, LoRA adapters included where it has them."""
    main, cfg = full_size_workload(row)
    lora = cfg["lora"] if cfg.get("finetune", "lora") == "lora" else None
    with torch.device("meta"):
        model = main.build_model({**cfg["model"], **(model_override or {})}, lora, torch.bfloat16,
                                 cfg.get("gradient_checkpointing", False))
    params = list(model.parameters())
    assert all(p.is_meta for p in params)
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


def _lora_adapter_params(h: int, inter: int, layers: int, kv: int, r: int) -> int:
    """LoRA on q, v, o (attention) and gate, up, down (MLP): r x (in + out) a module, every layer."""
    q, v, o = h + h, h + kv, h + h
    mlp = 3 * (h + inter)
    return layers * r * (q + v + o + mlp)


@pytest.mark.parametrize("row", ["llm-lora-single", "llm-lora-ddp-gpus", "llm-lora-ddp-nodes"])
def test_llm_lora_8b_rows_are_llama31_8b_with_torchtune_adapters(row):
    total, trainable = _llm_counts(row)
    base = total - trainable
    assert within_1_percent(base, LLAMA31_8B_PARAMS), base
    # Rank 8 on q, v, output_proj and the MLP (torchtune's llama3_8B_lora.yaml): 4096 wide, 1024 for k/v, 32 layers.
    assert trainable == _lora_adapter_params(4096, 14336, 32, 1024, 8)


@pytest.mark.parametrize("row", ["llm-lora-mp-gpus", "llm-full-mp-gpus", "llm-full-mp-nodes"])
def test_llm_70b_rows_are_llama31_70b(row):
    total, trainable = _llm_counts(row)
    if row.startswith("llm-full"):
        assert trainable == total and within_1_percent(total, LLAMA31_70B_PARAMS), total
    else:
        assert within_1_percent(total - trainable, LLAMA31_70B_PARAMS), total - trainable
        # Rank 16 (llama3_70B_lora.yaml): 8192 wide, 1024 for k/v, 80 layers.
        assert trainable == _lora_adapter_params(8192, 28672, 80, 1024, 16)


def test_llm_rows_match_milabench_batches_and_accumulation():
    rows = {r: all_benchmarks()[r] for r in ("llm-lora-single", "llm-lora-ddp-gpus", "llm-lora-mp-gpus",
                                              "llm-full-mp-gpus")}
    full = {r: b.config("full") for r, b in rows.items()}
    assert [full[r]["batch_size"] for r in rows] == [8, 8, 8, 2]
    assert [full[r]["gradient_accumulation"] for r in rows] == [8, 8, 1, 1]
    assert rows["llm-lora-mp-gpus"].min_devices == rows["llm-full-mp-gpus"].min_devices == 2
    assert all(all_benchmarks()[r].min_nodes == 2 for r in ("llm-lora-ddp-nodes", "llm-full-mp-nodes"))


def test_llm_wrong_hidden_size_fails_the_count():
    total, trainable = _llm_counts("llm-lora-single", {"hidden_size": 3584})
    assert not within_1_percent(total - trainable, LLAMA31_8B_PARAMS)
    total, _ = _llm_counts("llm-full-mp-gpus", {"hidden_size": 7168})
    assert not within_1_percent(total, LLAMA31_70B_PARAMS)


def test_llama_inference_full_size_is_llama2_7b():
    main, cfg = full_size_workload("llama")
    with torch.device("meta"):
        model = main.build_model(cfg["model"], torch.bfloat16)
    count = sum(p.numel() for p in model.parameters())
    assert within_1_percent(count, LLAMA2_7B_PARAMS), count
    with torch.device("meta"):
        wrong = main.build_model({**cfg["model"], "intermediate_size": 8192}, torch.bfloat16)
    assert not within_1_percent(sum(p.numel() for p in wrong.parameters()), LLAMA2_7B_PARAMS)
    assert cfg["new_tokens"] == 256 and cfg["top_k"] == 10
