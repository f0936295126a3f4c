"""Full-size models of the bert, whisper and pna benchmarks, built on the meta device from their benchmark.toml:
parameter counts against the named models' figures (Milabench's bert-*, whisper and pna workloads)."""

from __future__ import annotations

import pytest
from helpers import full_size_workload, within_1_percent

torch = pytest.importorskip("torch")




def _hf_params(build, *args) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in build(*args).parameters())




# BERT-base: 110 M parameters (Devlin et al. 2019, "BERT: Pre-training of Deep Bidirectional Transformers", section
# 3: BERT_BASE L=12, H=768, A=12, total parameters 110M). Milabench's "Bert" is AutoModelForMaskedLM from
# BertConfig() (benchmarks/huggingface/bench/models.py, mila-iqia/milabench@faf3923): BertForMaskedLM, whose MLM
# head replaces the pooler and ties its decoder to the word embeddings (109.5 M).
BERT_BASE_PARAMS = 110_000_000


@pytest.mark.parametrize("row", ["bert-fp32", "bert-tf32-fp16"])
def test_bert_full_size_is_bert_base_at_512_tokens(row):
    pytest.importorskip("transformers")
    main, cfg = full_size_workload(row)
    count = _hf_params(main.build_model, cfg["model"])
    assert within_1_percent(count, BERT_BASE_PARAMS), count
    with torch.device("meta"):
        model = main.build_model(cfg["model"])
    assert type(model).__name__ == "BertForMaskedLM"
    assert cfg["seq_len"] == 512 == model.config.max_position_embeddings and cfg["batch_size"] == 32


def test_bert_wrong_hidden_size_fails_the_count():
    pytest.importorskip("transformers")
    main, cfg = full_size_workload("bert-fp32")
    wrong = {**cfg["model"], "hidden_size": 832, "num_attention_heads": 13}
    assert not within_1_percent(_hf_params(main.build_model, wrong), BERT_BASE_PARAMS)


# openai/whisper-tiny: "37.8M params" on its Hugging Face model page (safetensors metadata; the Whisper paper's
# Table 1 rounds it to 39 M): encoder and decoder with the output layer tied to the token embeddings.
WHISPER_TINY_PARAMS = 37_760_640
# Milabench trains WhisperForAudioClassification (AutoModelForAudioClassification from the whisper-tiny config),
# which has no published count: its closed form for d=384, ffn F=1536, 4 layers, 80 mels, 1500 positions,
# projector 256, 2 labels. Convolutions 80*d*3+d and d*d*3+d, positions 1500*d (a frozen parameter), a layer
# q,v,o with bias and k without 4d^2+3d, two LayerNorms 4d, d*F+F + F*d+d; final LayerNorm 2d; heads.
_D, _FF = 384, 1536
WHISPER_TINY_CLASSIFIER_PARAMS = (80 * _D * 3 + _D + _D * _D * 3 + _D + 1500 * _D
                                  + 4 * (4 * _D * _D + 3 * _D + 4 * _D + _D * _FF + _FF + _FF * _D + _D)
                                  + 2 * _D + _D * 256 + 256 + 256 * 2 + 2)


def _whisper_tiny(model_cfg: dict) -> int:
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    with torch.device("meta"):
        return sum(p.numel() for p in WhisperForConditionalGeneration(WhisperConfig(**model_cfg)).parameters())


@pytest.mark.parametrize("row", ["whisper", "whisper-fp32"])
def test_whisper_full_size_is_whisper_tiny_audio_classification(row):
    pytest.importorskip("transformers")
    main, cfg = full_size_workload(row)
    assert WHISPER_TINY_CLASSIFIER_PARAMS == 8_307_458
    assert _hf_params(main.build_model, cfg["model"]) == WHISPER_TINY_CLASSIFIER_PARAMS
    assert within_1_percent(_whisper_tiny(cfg["model"]), WHISPER_TINY_PARAMS)  # the config is whisper-tiny's
    with torch.device("meta"):
        model = main.build_model(cfg["model"])
    assert type(model).__name__ == "WhisperForAudioClassification"
    assert main.frames(model.config) == 3000 and model.config.num_mel_bins == 80 and cfg["batch_size"] == 64


def test_whisper_wrong_width_fails_the_count():
    pytest.importorskip("transformers")
    main, cfg = full_size_workload("whisper")
    wrong = {**cfg["model"], "d_model": 448, "encoder_attention_heads": 7, "decoder_attention_heads": 7}
    assert not within_1_percent(_hf_params(main.build_model, wrong), WHISPER_TINY_CLASSIFIER_PARAMS)
    assert not within_1_percent(_whisper_tiny(wrong), WHISPER_TINY_PARAMS)


# Milabench's pna is torch_geometric's PNA with the keyword arguments of benchmarks/geo_gnn/bench/models.py
# (mila-iqia/milabench@faf3923) and PCQM4Mv2's 9 atom features; no published count exists for it, so the
# reference is its closed form (PNAConv, towers 1, no edge features: pre Linear(2F_in -> F_in), post
# Linear((4 aggregators x 3 scalers + 1) F_in -> F_out), lin Linear(F_out -> F_out)), checked against the stock model.
MILABENCH_PNA = {"hidden_channels": 64, "num_layers": 64, "out_channels": 1,
                 "aggregators": ["mean", "min", "max", "std"], "scalers": ["identity", "amplification", "attenuation"]}


def _pna_conv(f_in: int, f_out: int) -> int:
    return 2 * f_in * f_in + f_in + 13 * f_in * f_out + f_out + f_out * f_out + f_out


PNA_PARAMS = _pna_conv(9, 64) + 62 * _pna_conv(64, 64) + _pna_conv(64, 1)


def test_pna_full_size_is_milabench_pna():
    pytest.importorskip("torch_geometric")
    from torch_geometric.nn.models import PNA

    main, cfg = full_size_workload("pna")
    deg = torch.tensor([0, 30, 20, 11, 8])
    assert PNA_PARAMS == 4_096_110
    assert _hf_params(main.build_model, cfg["model"], deg) == PNA_PARAMS
    with torch.device("meta"):
        stock = sum(p.numel() for p in PNA(in_channels=9, deg=deg, **MILABENCH_PNA).parameters())
    assert stock == PNA_PARAMS
    assert cfg["batch_size"] == 4096 and cfg["num_samples"] == 100_000 and cfg.get("num_workers", 0) == 0


def test_pna_wrong_width_fails_the_count():
    pytest.importorskip("torch_geometric")
    main, cfg = full_size_workload("pna")
    wrong = {**cfg["model"], "hidden_channels": 72}
    assert not within_1_percent(_hf_params(main.build_model, wrong, torch.tensor([0, 3, 2])), PNA_PARAMS)


def test_pna_dataset_collates_through_the_pyg_loader():
    pytest.importorskip("torch_geometric")
    from torch_geometric.loader import DataLoader
    from torch_geometric.utils import degree

    main, _ = full_size_workload("pna")
    graphs = main.dataset(0, 50, (6, 22), 2)
    assert all(g.is_undirected() and not g.has_self_loops() and g.x.shape == (g.num_nodes, 9) for g in graphs)
    assert all(int(degree(g.edge_index[1], g.num_nodes).max()) <= main.MAX_VALENCE for g in graphs)
    brute = torch.bincount(torch.cat([degree(g.edge_index[1], g.num_nodes, dtype=torch.long) for g in graphs]))
    assert torch.equal(main.degree_histogram(graphs), brute)
    sizes = [b.num_graphs for b in DataLoader(graphs, batch_size=16, shuffle=True)]
    assert sizes == [16, 16, 16, 2]
