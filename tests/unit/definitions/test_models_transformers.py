"""Full-size transformers models of the suite, built on the meta device from their benchmark.toml: parameter
counts against the named models' figures (no weights are allocated, so 7 B parameters cost nothing)."""

from __future__ import annotations

import pytest
from helpers import full_size_workload, within_1_percent

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")




def _count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _meta_count(build, *args) -> int:
    with torch.device("meta"):
        return _count(build(*args))




# Milabench's Reformer is transformers' ReformerConfig() defaults (num_buckets 128), a configuration with no
# published checkpoint, so the reference is its closed-form count from those defaults (hidden H=256,
# 12 heads x 64 = A=768, feed-forward F=512, vocab V=320, 3 local + 3 LSH layers, axial [64, 64] x [64, 192]):
# embeddings V*H + axial 64*64 + 64*192; a local layer q,k,v,o 4*H*A, an LSH layer shared qk, v, o 3*H*A,
# each with a LayerNorm 2H; a feed-forward LayerNorm 2H, H*F+F, F*H+H; final LayerNorm over 2H (reversible
# halves concatenated) 4H; LM head 2H*V+V.
_H, _A, _F, _V = 256, 768, 512, 320
REFORMER_PARAMS = (_V * _H + 64 * 64 + 64 * 192 + 3 * (4 * _H * _A + 2 * _H) + 3 * (3 * _H * _A + 2 * _H)
                   + 6 * (2 * _H + _H * _F + _F + _F * _H + _H) + 4 * _H + 2 * _H * _V + _V)


def test_reformer_full_size_is_milabench_reformer_config():
    main, cfg = full_size_workload("reformer")
    count = _meta_count(main.build_model, cfg["model"])
    assert REFORMER_PARAMS == 5_975_872
    assert within_1_percent(count, REFORMER_PARAMS), count
    assert cfg["batch_size"] == 32 and cfg["seq_len"] == 4096
    with torch.device("meta"):
        main.check_lengths(main.build_model(cfg["model"]).config, cfg["seq_len"])


def test_reformer_wrong_hidden_size_fails_the_count():
    main, cfg = full_size_workload("reformer")
    wrong = {**cfg["model"], "hidden_size": 320, "axial_pos_embds_dim": [64, 256]}
    assert not within_1_percent(_meta_count(main.build_model, wrong), REFORMER_PARAMS)


# llava-hf/llava-1.5-7b-hf: "7.06B params" on its Hugging Face model page (safetensors metadata); by parts,
# Vicuna-7B/Llama-2-7B with 32064 vocabulary rows 6.74 B, CLIP ViT-L/14-336 vision model 0.30 B, projector 0.02 B.
LLAVA_15_7B_PARAMS = 7_060_000_000


def test_llava_full_size_is_llava_1_5_7b():
    main, cfg = full_size_workload("llava-single")
    with torch.device("meta"):
        model = main.build_model(cfg["model"], dtype=torch.bfloat16)
    assert within_1_percent(_count(model), LLAVA_15_7B_PARAMS), _count(model)
    assert main.image_tokens(model.config) == 576 and cfg["batch_size"] == 1


def test_llava_wrong_hidden_size_fails_the_count():
    main, cfg = full_size_workload("llava-single")
    wrong = {**cfg["model"], "text_config": {**cfg["model"]["text_config"], "hidden_size": 4160}}
    assert not within_1_percent(_meta_count(main.build_model, wrong), LLAVA_15_7B_PARAMS)


# EleutherAI/pythia README (github.com/EleutherAI/pythia, models table): Pythia-1B has 1,011,781,632 parameters,
# 805,736,448 of them non-embedding (the input embedding and the untied output layer, 50304 x 2048 each).
PYTHIA_1B_PARAMS = 1_011_781_632
PYTHIA_1B_NON_EMBEDDING = 805_736_448


def test_rlhf_full_size_policy_is_pythia_1b():
    main, cfg = full_size_workload("rlhf-single")
    assert within_1_percent(_meta_count(main.build_policy, cfg["model"]), PYTHIA_1B_PARAMS)
    # The value and reward models: the backbone without the output layer, plus a one-output score head.
    scorer = _meta_count(main.build_scorer, cfg["model"])
    assert within_1_percent(scorer, PYTHIA_1B_NON_EMBEDDING + 50304 * 2048), scorer
    assert cfg["batch_size"] == 64 and cfg["response_len"] == 53 and cfg["ppo_epochs"] == 4


def test_rlhf_wrong_hidden_size_fails_the_count():
    main, cfg = full_size_workload("rlhf-single")
    wrong = {**cfg["model"], "hidden_size": 2112}
    assert not within_1_percent(_meta_count(main.build_policy, wrong), PYTHIA_1B_PARAMS)
