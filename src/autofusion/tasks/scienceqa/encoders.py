"""Image and text encoders: any Hugging Face checkpoint (hub name or local directory) -> token features.

`load_image_encoder` / `load_text_encoder` pick the model class from the checkpoint's config type:
DETR gives its decoder's object-query embeddings (`last_hidden_state`, [num_queries, d_model]); CLIP
and SigLIP checkpoints give their vision (or text) tower; T5-family checkpoints give the encoder alone
(`T5EncoderModel`); any other checkpoint is loaded with `AutoModel` and its `last_hidden_state`
tokens are used (a convolutional map [C, H, W] becomes H*W tokens of size C). Encoder-decoder text
models contribute their encoder.

Both return `Encoded(features [B, L, D] float32 on CPU, mask [B, L] bool)`. Text is right-padded with
zero vectors to the length asked for. Loading failures raise AutoFusionError saying how to point at
a local copy. `transformers` is imported only when an encoder is loaded. This module reads no data.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from autofusion.errors import AutoFusionError, ConfigError

DEFAULT_IMAGE_ENCODER = "facebook/detr-resnet-50"
DEFAULT_TEXT_ENCODER = "google/flan-t5-base"
DEVICES = ("auto", "cpu", "cuda", "mps")
_VISION_CLASSES = {"clip": "CLIPVisionModel", "siglip": "SiglipVisionModel"}
_TEXT_CLASSES = {"t5": "T5EncoderModel", "mt5": "MT5EncoderModel", "umt5": "UMT5EncoderModel",
                 "clip": "CLIPTextModel", "siglip": "SiglipTextModel"}
_PROBE_SIZE = 224
_UNBOUNDED = 1_000_000  # tokenizers report a huge model_max_length when they have none


@dataclass(frozen=True)
class Encoded:
    features: torch.Tensor  # [B, L, D] float32, CPU
    mask: torch.Tensor  # [B, L] bool, True = real token


class ImageEncoder(Protocol):
    name: str
    n_tokens: int
    dim: int

    def encode(self, images: Sequence[Any]) -> Encoded: ...


class TextEncoder(Protocol):
    name: str
    dim: int
    max_length: int

    def token_lengths(self, texts: Sequence[str]) -> list[int]: ...

    def encode(self, texts: Sequence[str], length: int) -> Encoded: ...


def resolve_device(device: str) -> torch.device:
    if device not in DEVICES:
        raise ConfigError(f"device {device!r} is not one of {DEVICES}. Fix: pass --device auto, cpu, cuda or mps.")
    mps = getattr(torch.backends, "mps", None)
    mps_ok = bool(mps and mps.is_available())
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if mps_ok else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but torch sees no CUDA GPU. Fix: pass --device cpu (or auto), or install a CUDA build of torch.")
    if device == "mps" and not mps_ok:
        raise ConfigError("device 'mps' was asked for but is not available. Fix: pass --device cpu (or auto).")
    return torch.device(device)


# ------------------------------------------------------------------------------------------ image


class HFImageEncoder:
    """A vision checkpoint with its image processor; `n_tokens` and `dim` are probed at load time."""

    def __init__(self, name: str, model: Any, processor: Any, device: torch.device) -> None:
        self.name = name
        self.model = model.to(device).eval()
        self.processor = processor
        self.device = device
        self._accepts = set(inspect.signature(self.model.forward).parameters)
        from PIL import Image

        probe = self._run([Image.new("RGB", (_PROBE_SIZE, _PROBE_SIZE), (128, 128, 128))])
        self.n_tokens, self.dim = int(probe.shape[1]), int(probe.shape[2])

    def _run(self, images: Sequence[Any]) -> torch.Tensor:
        inputs = self.processor(images=list(images), return_tensors="pt")
        kwargs = {k: inputs[k].to(self.device) for k in ("pixel_values", "pixel_mask") if k in inputs and k in self._accepts}
        with torch.inference_mode():
            out = self.model(**kwargs)
        hidden = getattr(out, "last_hidden_state", None)
        if hidden is None:
            raise AutoFusionError(f"image encoder {self.name!r} returns no last_hidden_state. Fix: pass a vision encoder checkpoint (DETR, ViT, CLIP, SigLIP, ResNet...).")
        if hidden.dim() == 4:  # convolutional map [B, C, H, W] -> H*W tokens of size C
            hidden = hidden.flatten(2).transpose(1, 2)
        return hidden.float().cpu()

    def encode(self, images: Sequence[Any]) -> Encoded:
        hidden = self._run(images)
        if tuple(hidden.shape[1:]) != (self.n_tokens, self.dim):
            raise AutoFusionError(
                f"image encoder {self.name!r} returned {list(hidden.shape[1:])} tokens for a batch but "
                f"[{self.n_tokens}, {self.dim}] at load time (its output depends on image size). Fix: use an "
                "encoder with a fixed token count (DETR, ViT, CLIP) or an image processor that resizes to a fixed size."
            )
        return Encoded(hidden, torch.ones(hidden.shape[:2], dtype=torch.bool))


def load_image_encoder(name: str, device: str | torch.device = "auto") -> HFImageEncoder:
    dev = resolve_device(device) if isinstance(device, str) else device

    def load(target: str) -> HFImageEncoder:
        import transformers

        config = transformers.AutoConfig.from_pretrained(target)
        cls = getattr(transformers, _VISION_CLASSES.get(config.model_type, "AutoModel"))
        model = cls.from_pretrained(target)
        processor = transformers.AutoImageProcessor.from_pretrained(target)
        return HFImageEncoder(target, model, processor, dev)

    return _load_or_explain("image", name, load)


# ------------------------------------------------------------------------------------------- text


class HFTextEncoder:
    """A text checkpoint with its tokenizer; inputs are truncated to `max_length` tokens."""

    def __init__(self, name: str, model: Any, tokenizer: Any, device: torch.device) -> None:
        self.name = name
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.device = device
        self._accepts = set(inspect.signature(self.model.forward).parameters)
        limit = getattr(tokenizer, "model_max_length", None)
        self.max_length = int(limit) if isinstance(limit, int) and 0 < limit < _UNBOUNDED else _UNBOUNDED
        self.dim = int(self.encode(["probe"], 8).features.shape[2])

    def token_lengths(self, texts: Sequence[str]) -> list[int]:
        lengths: list[int] = []
        for start in range(0, len(texts), 1024):
            ids = self.tokenizer(list(texts[start:start + 1024]), truncation=False, verbose=False)["input_ids"]
            lengths.extend(len(x) for x in ids)
        return lengths

    def encode(self, texts: Sequence[str], length: int) -> Encoded:
        enc = self.tokenizer(list(texts), padding="longest", truncation=True, max_length=length, return_tensors="pt")
        kwargs = {k: v.to(self.device) for k, v in enc.items() if k in self._accepts}
        with torch.inference_mode():
            hidden = self.model(**kwargs).last_hidden_state.float().cpu()
        # A length below the tokenizer's special-token count still yields them all: cut to `length`.
        hidden, mask = hidden[:, :length], enc["attention_mask"][:, :length].bool()
        n, seq = mask.shape
        features = torch.zeros(n, length, hidden.shape[2])
        features[:, :seq] = hidden * mask[..., None]  # padded positions are stored as exact zeros
        full_mask = torch.zeros(n, length, dtype=torch.bool)
        full_mask[:, :seq] = mask
        return Encoded(features, full_mask)


def load_text_encoder(name: str, device: str | torch.device = "auto") -> HFTextEncoder:
    dev = resolve_device(device) if isinstance(device, str) else device

    def load(target: str) -> HFTextEncoder:
        import transformers

        config = transformers.AutoConfig.from_pretrained(target)
        cls = getattr(transformers, _TEXT_CLASSES.get(config.model_type, "AutoModel"))
        model = cls.from_pretrained(target)
        if getattr(model.config, "is_encoder_decoder", False) and hasattr(model, "get_encoder"):
            model = model.get_encoder()
        tokenizer = transformers.AutoTokenizer.from_pretrained(target)
        return HFTextEncoder(target, model, tokenizer, dev)

    return _load_or_explain("text", name, load)


# ---------------------------------------------------------------------------------------- loading


def _looks_local(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~", ".\\")) or Path(name).expanduser().exists()


def _load_or_explain(kind: str, name: str, load: Callable[[str], Any]) -> Any:
    """Run `load` on the hub name or the resolved local directory; turn any failure into a fix."""
    flag = f"--{kind}-encoder"
    local = _looks_local(name)
    if local and not Path(name).expanduser().is_dir():
        raise AutoFusionError(f"{flag} {name!r}: no such directory. Fix: pass a directory holding config.json and the weights, or a Hugging Face model name.")
    try:
        import transformers  # noqa: F401
    except ImportError:
        raise AutoFusionError("ScienceQA feature extraction needs transformers. Fix: pip install 'autofusion[data]'") from None
    try:
        return load(str(Path(name).expanduser().resolve()) if local else name)
    except AutoFusionError:
        raise
    except ImportError as exc:
        raise AutoFusionError(f"{kind} encoder {name!r} needs a package that is not installed ({exc}). Fix: install it (facebook/detr-resnet-50 needs `pip install timm`; its `no_timm` revision does not: `hf download facebook/detr-resnet-50 --revision no_timm --local-dir DIR`, then {flag} DIR), or pick another encoder.") from None
    except Exception as exc:  # noqa: BLE001 (any loading failure becomes a message with the fix)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        if local:
            raise AutoFusionError(
                f"cannot load the {kind} encoder from {name!r} ({type(exc).__name__}: {first}). Fix: {flag} must be a "
                "directory written by save_pretrained / `hf download`: config.json, the weights and the "
                f"{'image processor' if kind == 'image' else 'tokenizer'} files."
            ) from None
        raise AutoFusionError(
            f"cannot load the {kind} encoder {name!r} ({type(exc).__name__}: {first}). Fix: without network access, "
            f"download it once elsewhere (`hf download {name} --local-dir DIR`), copy DIR here and pass {flag} DIR; "
            "or, if it is already in the Hugging Face cache, set HF_HUB_OFFLINE=1."
        ) from None
