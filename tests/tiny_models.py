"""Tiny randomly initialised stand-ins for models whose weights a test machine may lack.

Each is saved the way the real weights are (save_pretrained folders, SavedModels, converted
state dicts, torch weight files), so that the registry loads it through its real code path.
Shared by the family tests and the registry-wide contract test.
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Iterator

import numpy as np

from embedders import hf

SR = 16000


# --------------------------------------------------------------------------- hf (transformers)


def seeded_transformers():
    """transformers (torchaudio guard first), with torch seeded: tiny models are reproducible."""
    hf._guard_broken_torchaudio()
    import torch
    import transformers

    torch.manual_seed(0)
    return transformers


def ssl_kwargs() -> dict:
    # conv strides multiply to 320 samples: 20 ms frames at 16 kHz, like the real models
    return dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
                conv_dim=(16, 16, 16), conv_stride=(5, 8, 8), conv_kernel=(10, 8, 8),
                num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, vocab_size=12)


def save_wav2vec2(root: Path) -> Path:
    tr = seeded_transformers()
    d = root / "wav2vec2"
    tr.Wav2Vec2Model(tr.Wav2Vec2Config(**ssl_kwargs())).save_pretrained(d)
    tr.Wav2Vec2FeatureExtractor(sampling_rate=SR, do_normalize=True).save_pretrained(d)
    return d


def save_hubert(root: Path) -> Path:
    tr = seeded_transformers()
    d = root / "hubert"
    tr.HubertModel(tr.HubertConfig(**ssl_kwargs())).save_pretrained(d)
    tr.Wav2Vec2FeatureExtractor(sampling_rate=SR, do_normalize=False).save_pretrained(d)
    return d


# A stand-in for MERT's Hub remote code (configuration_MERT.py / modeling_MERT.py, fetched with
# trust_remote_code): same structure: a config class with model_type "mert_model" and MERT's extra
# options, a HubertModel subclass with its own feature projection (layer norm + linear), its own
# undecorated forward, and a "deepnorm" variant with scaled residuals that HuBERT cannot express.
MERT_CONFIG_PY = '''
from transformers import HubertConfig


class MERTConfig(HubertConfig):
    model_type = "mert_model"

    def __init__(self, feature_extractor_cqt=False, feature_extractor_cqt_bins=336,
                 deepnorm=False, attention_relax=-1.0, sample_rate=24000, **kwargs):
        super().__init__(**kwargs)
        self.feature_extractor_cqt = feature_extractor_cqt
        self.feature_extractor_cqt_bins = feature_extractor_cqt_bins
        self.deepnorm = deepnorm
        self.attention_relax = attention_relax
        self.sample_rate = sample_rate
'''

MERT_MODELING_PY = '''
import math

import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutput
from transformers.models.hubert.modeling_hubert import (
    HubertEncoder, HubertEncoderLayer, HubertFeatureEncoder, HubertModel)

from .configuration_MERT import MERTConfig


class MERTFeatureProjection(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.feat_proj_layer_norm = config.feat_proj_layer_norm
        if self.feat_proj_layer_norm:
            self.layer_norm = nn.LayerNorm(config.conv_dim[-1], eps=config.layer_norm_eps)
        self.projection = nn.Linear(config.conv_dim[-1], config.hidden_size)
        self.dropout = nn.Dropout(config.feat_proj_dropout)

    def forward(self, x):
        if self.feat_proj_layer_norm:
            x = self.layer_norm(x)
        return self.dropout(self.projection(x))


class DeepNormLayer(HubertEncoderLayer):
    def __init__(self, config):
        super().__init__(config)
        self.alpha = math.pow(2.0 * config.num_hidden_layers, 0.25)

    def forward(self, hidden_states, attention_mask=None, **kwargs):
        attn = self.attention(hidden_states, attention_mask=attention_mask)[0]
        hidden_states = self.layer_norm(hidden_states * self.alpha + self.dropout(attn))
        ff = self.feed_forward(hidden_states)
        return self.final_layer_norm(hidden_states * self.alpha + ff)


class MERTModel(HubertModel):
    config_class = MERTConfig
    base_model_prefix = "mert_model"

    def __init__(self, config):
        super(HubertModel, self).__init__(config)
        self.config = config
        self.feature_extractor = HubertFeatureEncoder(config)
        self.feature_projection = MERTFeatureProjection(config)
        if config.mask_time_prob > 0.0 or config.mask_feature_prob > 0.0:
            self.masked_spec_embed = nn.Parameter(torch.FloatTensor(config.hidden_size).uniform_())
        self.encoder = HubertEncoder(config)
        if config.deepnorm:
            self.encoder.layers = nn.ModuleList(
                [DeepNormLayer(config) for _ in range(config.num_hidden_layers)])
        self.post_init()

    def forward(self, input_values, attention_mask=None, output_hidden_states=None,
                return_dict=None, **kwargs):
        features = self.feature_extractor(input_values).transpose(1, 2)
        hidden = self.feature_projection(features)
        out = self.encoder(hidden, attention_mask=None)
        return BaseModelOutput(last_hidden_state=out[0],
                               hidden_states=getattr(out, "hidden_states", None))
'''


def save_mert(root: Path, *, deepnorm: bool) -> Path:
    """A MERT-format folder: config.json with auto_map, the remote code, weights saved by it."""
    tr = seeded_transformers()
    d = root / ("mert-deepnorm" if deepnorm else "mert")
    d.mkdir()
    (d / "configuration_MERT.py").write_text(MERT_CONFIG_PY)
    (d / "modeling_MERT.py").write_text(MERT_MODELING_PY)
    cfg = dict(ssl_kwargs(), model_type="mert_model", feat_proj_layer_norm=True,
               feature_extractor_cqt=False, deepnorm=deepnorm, attention_relax=-1.0,
               sample_rate=24000, auto_map={"AutoConfig": "configuration_MERT.MERTConfig",
                                            "AutoModel": "modeling_MERT.MERTModel"})
    (d / "config.json").write_text(json.dumps(cfg))
    config = tr.AutoConfig.from_pretrained(d, trust_remote_code=True)
    model = tr.AutoModel.from_config(config, trust_remote_code=True)
    with __import__("torch").no_grad():  # make the feature-projection layer norm non-trivial
        model.feature_projection.layer_norm.weight.uniform_(0.5, 1.5)
        model.feature_projection.layer_norm.bias.uniform_(-0.5, 0.5)
    model.save_pretrained(d)
    if not deepnorm:  # like MERT's Hub checkpoint: pytorch_model.bin, legacy weight-norm names
        import torch
        from safetensors.torch import load_file

        state = load_file(d / "model.safetensors")
        legacy = {k.replace("parametrizations.weight.original0", "weight_g")
                  .replace("parametrizations.weight.original1", "weight_v"): v
                  for k, v in state.items()}
        assert any(k.endswith("weight_g") for k in legacy)
        (d / "model.safetensors").unlink()
        torch.save(legacy, d / "pytorch_model.bin")
    tr.Wav2Vec2FeatureExtractor(sampling_rate=24000, do_normalize=True).save_pretrained(d)
    return d


def save_whisper(root: Path) -> Path:
    tr = seeded_transformers()
    d = root / "whisper"
    cfg = tr.WhisperConfig(d_model=32, encoder_layers=2, decoder_layers=1,
                           encoder_attention_heads=2, decoder_attention_heads=2,
                           encoder_ffn_dim=37, decoder_ffn_dim=37,
                           num_mel_bins=80, vocab_size=64, pad_token_id=0, bos_token_id=1,
                           eos_token_id=2, decoder_start_token_id=1, max_target_positions=16)
    tr.WhisperModel(cfg).save_pretrained(d)
    tr.WhisperFeatureExtractor(feature_size=80).save_pretrained(d)
    return d


def save_ast(root: Path) -> Path:
    tr = seeded_transformers()
    d = root / "ast"
    labels = {i: f"class {i}" for i in range(527)}
    cfg = tr.ASTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=37, num_mel_bins=128, max_length=1024,
                       id2label=labels, label2id={v: k for k, v in labels.items()})
    tr.ASTForAudioClassification(cfg).save_pretrained(d)
    tr.ASTFeatureExtractor().save_pretrained(d)
    return d


def bytes_to_unicode() -> list[str]:
    """GPT-2's byte-level alphabet (256 printable stand-ins for the 256 bytes)."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
          + list(range(ord("®"), ord("ÿ") + 1)))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def save_clap(root: Path) -> Path:
    tr = seeded_transformers()
    d = root / "clap"
    vocab = {t: i for i, t in enumerate(["<s>", "<pad>", "</s>", "<unk>"]
                                         + bytes_to_unicode() + ["Ġd", "og", "<mask>"])}
    tokenizer = tr.RobertaTokenizer(vocab=vocab, merges=[("Ġ", "d"), ("o", "g")],
                                    model_max_length=64)
    cfg = tr.ClapConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                         num_attention_heads=2, intermediate_size=37, max_position_embeddings=80),
        audio_config=dict(patch_embeds_hidden_size=8, depths=[1, 1], num_attention_heads=[1, 2],
                          hidden_size=16, window_size=8, enable_fusion=False),
        projection_dim=16)
    tr.ClapModel(cfg).save_pretrained(d)
    tr.ClapProcessor(feature_extractor=tr.ClapFeatureExtractor(truncation="rand_trunc"),
                     tokenizer=tokenizer).save_pretrained(d)
    return d


# registry base name -> the tiny stand-in saved for it (several names may share one)
HF_STAND_INS = {
    "wav2vec2-base": "wav2vec2", "hubert-base": "hubert", "mert-95m": "mert",
    "mert-330m": "mert-deepnorm", "whisper-tiny": "whisper", "whisper-base": "whisper",
    "whisper-small": "whisper", "ast-audioset": "ast", "clap-htsat-unfused": "clap",
}


@contextlib.contextmanager
def tiny_hf_models(root: Path) -> Iterator[dict[str, Path]]:
    """Every tiny hf folder, keyed by the registry base name it stands in for.

    While open, remote code (MERT's) is copied into `root/hf_modules`, not the user's cache."""
    import pytest

    tr = seeded_transformers()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tr.dynamic_module_utils, "HF_MODULES_CACHE", str(root / "hf_modules"))
        saved = {"wav2vec2": save_wav2vec2(root), "hubert": save_hubert(root),
                 "mert": save_mert(root, deepnorm=False), "mert-deepnorm": save_mert(root, deepnorm=True),
                 "whisper": save_whisper(root), "ast": save_ast(root), "clap": save_clap(root)}
        yield {name: saved[kind] for name, kind in HF_STAND_INS.items()}


# --------------------------------------------------------------------------- tfhub (SavedModels)


def save_tfhub_stand_in(folder: Path, *, yamnet: bool) -> Path:
    """A tf.Module SavedModel with YAMNet's (scores, embeddings, log-mel) or VGGish's signature."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    rng = np.random.default_rng(1 if yamnet else 2)
    patch_hop = 48 if yamnet else 96
    dim = 1024 if yamnet else 128

    class StandIn(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mel = tf.Variable(np.abs(rng.standard_normal((257, 64))).astype(np.float32) / 8)
            self.proj = tf.Variable(rng.standard_normal((64, dim)).astype(np.float32) / 8)
            if yamnet:
                self.cls = tf.Variable(rng.standard_normal((dim, 521)).astype(np.float32) / 30)
                csv = folder.parent / "yamnet_class_map.csv"
                csv.write_text("index,mid,display_name\n" + "".join(
                    f"{i},/m/{i:04d},\"Sound, kind {i}\"\n" for i in range(521)))
                self.class_map = tf.saved_model.Asset(str(csv))

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def __call__(self, waveform):
            n = tf.shape(waveform)[0]
            waveform = tf.pad(waveform, [[0, tf.maximum(0, 15600 - n)]])
            spec = tf.abs(tf.signal.stft(waveform, 400, 160, fft_length=512))
            log_mel = tf.math.log(tf.matmul(spec, self.mel) + 0.001)  # [frames, 64]
            patches = tf.signal.frame(log_mel, 96, patch_hop, axis=0)  # [T, 96, 64]
            emb = tf.nn.relu(tf.matmul(tf.reduce_mean(patches, axis=1), self.proj))
            if yamnet:
                return tf.sigmoid(tf.matmul(emb, self.cls)), emb, log_mel
            return emb

        if yamnet:
            @tf.function(input_signature=[])
            def class_map_path(self):
                return self.class_map.asset_path

    tf.saved_model.save(StandIn(), str(folder))
    return folder


def stub_pkg_resources(monkeypatch) -> None:
    """tensorflow_hub 0.16 imports pkg_resources only for a version check; setuptools>=81 no
    longer ships it. Give it a stand-in (test-only) so hub.load itself can be exercised."""
    import importlib.machinery
    import importlib.util
    import sys
    import types

    if importlib.util.find_spec("pkg_resources") is None:
        from packaging.version import parse

        stub = types.ModuleType("pkg_resources")
        stub.__spec__ = importlib.machinery.ModuleSpec("pkg_resources", None)
        stub.parse_version = parse
        monkeypatch.setitem(sys.modules, "pkg_resources", stub)


# --------------------------------------------------------------------------- musicnn, crepe


def write_random_musicnn_weights(data_dir: Path, seed: int = 0) -> None:
    """Random (but well-conditioned) weights for all checkpoints, saved as if converted.

    Half the batch-norm scales are negative, as in the real checkpoints.
    """
    import torch

    from embedders import musicnn

    gen = torch.Generator().manual_seed(seed)
    for ckpt in musicnn.CHECKPOINTS:
        net = musicnn.build_net(ckpt.split("_", 1)[1])
        state = {}
        for k, v in net.state_dict().items():
            if k.endswith("gamma"):
                v = torch.rand(v.shape, generator=gen) + 0.5
                v = v * torch.where(torch.rand(v.shape, generator=gen) < 0.5, -1.0, 1.0)
            elif k.endswith("moving_variance"):
                v = torch.rand(v.shape, generator=gen) + 0.5
            elif k.endswith(("moving_mean", "beta")):
                v = 0.1 * torch.randn(v.shape, generator=gen)
            state[k] = v
        musicnn.save_converted(ckpt, state, data_dir)


def write_random_crepe_weights(path: Path, capacity: str, seed: int = 0) -> Path:
    """A torchcrepe-format weight file of a randomly initialised CREPE `capacity` network."""
    import torch

    from embedders import crepe

    torch.manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(crepe._network(capacity).state_dict(), path)
    return path


def write_tiny_birdnet(folder: Path, n_classes: int = 7, dim: int = 16, seed: int = 0) -> Path:
    """A folder with a tiny random TFLite model shaped like BirdNET V2.4 (input [-1, 144000], a
    GLOBAL_AVG_POOL embedding, a class layer) and its `Scientific_Common` label file."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    from embedders import birdnet

    tf.random.set_seed(seed)
    inp = tf.keras.Input((birdnet.WINDOW,), name="INPUT")
    x = tf.keras.layers.Reshape((300, birdnet.WINDOW // 300))(inp)
    x = tf.keras.layers.Dense(dim, activation="relu")(x)
    x = tf.keras.layers.GlobalAveragePooling1D(name="GLOBAL_AVG_POOL")(x)
    out = tf.keras.layers.Dense(n_classes, name="CLASS_DENSE_LAYER")(x)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / birdnet.MODEL_FILE).write_bytes(tf.lite.TFLiteConverter.from_keras_model(tf.keras.Model(inp, out)).convert())
    (folder / birdnet.LABELS_FILE).write_text("".join(f"Genus species{i}_Sound {i}\n" for i in range(n_classes)))
    return folder


def write_random_aisfx_checkpoint(path: Path, seed: int = 0) -> Path:
    """An aisfx-format checkpoint ((state dict with `embedding_net.` keys, datasets)) of a random network."""
    import torch

    from embedders import aisfx

    torch.manual_seed(seed)
    state = {f"embedding_net.{k}": v for k, v in aisfx.network().state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save((state, {"stand-in": (0, 3)}), path)
    return path
