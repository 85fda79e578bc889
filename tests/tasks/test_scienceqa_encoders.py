"""Encoders built from checkpoints: model class by config type, output shapes, masks, loading errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from autofusion.errors import AutoFusionError, ConfigError
from autofusion.tasks.scienceqa.encoders import (
    load_image_encoder,
    load_text_encoder,
    resolve_device,
)

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("scienceqa_one_thread")


def test_detr_gives_its_object_query_embeddings(detr_encoder: Any) -> None:
    from PIL import Image

    assert type(detr_encoder.model).__name__ == "DetrModel"
    assert (detr_encoder.n_tokens, detr_encoder.dim) == (6, 16)  # num_queries, d_model
    out = detr_encoder.encode([Image.new("RGB", (30, 20), (255, 0, 0)), Image.new("RGB", (12, 40), (0, 0, 255))])
    assert out.features.shape == (2, 6, 16) and out.features.dtype == torch.float32 and bool(out.mask.all())
    assert not torch.allclose(out.features[0], out.features[1])


def test_t5_checkpoint_loads_its_encoder_only_and_pads_with_zeros(t5_encoder: Any) -> None:
    assert type(t5_encoder.model).__name__ == "T5EncoderModel"
    texts = ["Question: which is a cat?", "Question: which?"]
    lengths = t5_encoder.token_lengths(texts)
    assert lengths[0] > lengths[1]
    out = t5_encoder.encode(texts, 40)
    assert out.features.shape == (2, 40, 16)
    assert out.mask.sum(1).tolist() == lengths
    assert float(out.features[1, lengths[1]:].abs().sum()) == 0 and float(out.features[1, :lengths[1]].abs().sum()) > 0
    short = t5_encoder.encode(texts, 5)  # truncation to the length asked for
    assert short.features.shape == (2, 5, 16) and short.mask.sum(1).tolist() == [min(n, 5) for n in lengths] == [5, 4]


def test_bert_style_minilm_uses_automodel(minilm_encoder: Any) -> None:
    assert type(minilm_encoder.model).__name__ == "BertModel" and minilm_encoder.dim == 384
    assert minilm_encoder.max_length == 512
    out = minilm_encoder.encode(["a cat", "a much longer sentence about a dog"], 12)
    assert out.features.shape == (2, 12, 384) and out.mask.sum(1).tolist() == minilm_encoder.token_lengths(["a cat", "a much longer sentence about a dog"])


def test_generic_vision_encoder_gives_its_tokens(tiny_vit_dir: Path) -> None:
    from PIL import Image

    vit = load_image_encoder(str(tiny_vit_dir), "cpu")
    assert (vit.n_tokens, vit.dim) == (5, 16)
    assert vit.encode([Image.new("RGB", (50, 70))]).features.shape == (1, 5, 16)


def test_missing_local_directory_says_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(AutoFusionError, match=r"--image-encoder '.*absent': no such directory"):
        load_image_encoder(str(tmp_path / "absent"), "cpu")


def test_broken_local_checkpoint_says_what_the_directory_needs(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(AutoFusionError, match=r"cannot load the text encoder from .*--text-encoder must be a directory written by save_pretrained"):
        load_text_encoder(str(tmp_path), "cpu")


def test_unreachable_hub_model_says_how_to_point_at_a_local_copy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # fail fast instead of retrying the network
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(AutoFusionError, match=r"cannot load the text encoder 'google/flan-t5-base'.*--text-encoder DIR.*HF_HUB_OFFLINE=1"):
        load_text_encoder("google/flan-t5-base", "cpu")


def test_device_names_are_checked() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in {"cpu", "cuda", "mps"}
    with pytest.raises(ConfigError, match="device 'gpu' is not one of"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU.*--device cpu"):
            resolve_device("cuda")
