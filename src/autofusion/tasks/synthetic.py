"""Synthetic built-in tasks with controlled multimodal interactions, generated offline.

Every generator here is a pure function of a fixed seed (numpy `default_rng`): it draws latent
factors, maps them into observed features through a fixed random nonlinear "mixer" (a two-layer
tanh network whose weights come from the same seed) plus Gaussian noise, and writes a feature-task
directory through `write_task`, so built-in tasks load through the same code path as user tasks.
Features are standardised with train-split statistics only.

The tasks (each docstring says how the label is made):
- `make_pid(kind=...)`: the PID suite (Liang et al., "Quantifying & Modeling Multimodal
  Interactions") — redundancy, uniqueness and synergy between two vector modalities;
- `make_pid_synergy3`: a three-way synergy over three vector modalities;
- `make_tokens_interaction`: a cross-modal binding problem over two padded token sequences;
- `make_mc_attributes`: multiple choice with `label_mask` and per-sample `subject` metadata.

This module does not cache, name or register tasks (see `builtin.py`) and does not train anything.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from autofusion.tasks.format import SPLITS, write_task

SIZES: dict[str, int] = {"train": 2000, "val": 1000, "test": 1000}
PidKind = Literal["redundancy", "uniqueness", "synergy"]

# Defaults, each chosen so a ~10-epoch proxy training on 2 CPU cores takes seconds and the task is
# neither trivial nor hopeless. Measured on pid-synergy (seed 1) with plain-PyTorch reference models,
# 10 epochs of AdamW (lr 2e-3, batch 64), best val epoch, test accuracy over 3 seeds: late fusion
# 0.25 (chance), concat-MLP 0.47, gated 0.54, tensor (outer product) 0.55, elementwise product 0.66.
PID_DIM = 32  # observed features per vector modality
PID_CLASSES = 4  # sectors of an angle
PID_FACTORS = 4  # complex latent factors per modality (the synergy sums this many products)
PID_NUISANCE = 2  # label-free latent factors mixed into every modality
PID_NOISE = 0.05  # std of the observation noise, relative to the mixer's output scale (~1)


# ------------------------------------------------------------------------------------ primitives


class Mixer:
    """A fixed random two-layer tanh network: latent factors -> observed features."""

    def __init__(self, rng: np.random.Generator, d_in: int, d_out: int, d_hidden: int = 64, gain: float = 1.5) -> None:
        self.w1 = rng.normal(0.0, gain / math.sqrt(d_in), size=(d_in, d_hidden))
        self.b1 = rng.normal(0.0, 0.5, size=(d_hidden,))
        self.w2 = rng.normal(0.0, 1.0 / math.sqrt(d_hidden), size=(d_hidden, d_out))

    def __call__(self, z: np.ndarray) -> np.ndarray:
        return np.tanh(z @ self.w1 + self.b1) @ self.w2


def observe(rng: np.random.Generator, mixer: Mixer, z: np.ndarray, noise: float) -> np.ndarray:
    """Mix latent factors into features and add isotropic Gaussian noise."""
    x = mixer(z)
    return x + rng.normal(0.0, noise * float(x.std()), size=x.shape)


def sector(theta: np.ndarray, n_sectors: int) -> np.ndarray:
    """Which of `n_sectors` equal sectors of the circle each angle falls in."""
    return np.floor(np.mod(theta, 2 * math.pi) / (2 * math.pi / n_sectors)).astype(np.int64) % n_sectors


def standardize(x: np.ndarray, n_train: int, mask: np.ndarray | None = None) -> np.ndarray:
    """Zero mean, unit variance per feature, with statistics from the train rows (and real tokens)."""
    train = x[:n_train]
    if mask is not None:
        train = train[mask[:n_train]]
    flat = train.reshape(-1, x.shape[-1])
    out = (x - flat.mean(0)) / (flat.std(0) + 1e-6)
    if mask is not None:
        out = out * mask[..., None]
    return out


def to_splits(arrays: dict[str, np.ndarray], sizes: dict[str, int] = SIZES) -> dict[str, dict[str, torch.Tensor]]:
    """Cut row-aligned arrays into train/val/test tensors with the dtypes DESIGN §1 requires."""
    out: dict[str, dict[str, torch.Tensor]] = {}
    start = 0
    for split in SPLITS:
        stop = start + sizes[split]
        tensors: dict[str, torch.Tensor] = {}
        for key, arr in arrays.items():
            part = torch.from_numpy(np.ascontiguousarray(arr[start:stop]))
            if arr.dtype == np.bool_:
                tensors[key] = part
            elif np.issubdtype(arr.dtype, np.integer):
                tensors[key] = part.long()
            else:
                tensors[key] = part.float()
        out[split] = tensors
        start = stop
    return out


def split_columns(columns: dict[str, list[Any]], sizes: dict[str, int] = SIZES) -> dict[str, dict[str, list[Any]]]:
    """Cut row-aligned metadata columns into the columnar-per-split layout of `meta.json`."""
    out: dict[str, dict[str, list[Any]]] = {}
    start = 0
    for split in SPLITS:
        stop = start + sizes[split]
        out[split] = {k: v[start:stop] for k, v in columns.items()}
        start = stop
    return out


# ------------------------------------------------------------------------------------- PID suite


def complex_latent(rng: np.random.Generator, n: int, m: int) -> np.ndarray:
    """`n` standard circular complex Gaussian vectors of length `m`."""
    return (rng.normal(size=(n, m)) + 1j * rng.normal(size=(n, m))) / math.sqrt(2)


def _pid_modality(rng: np.random.Generator, u: np.ndarray, n_train: int) -> np.ndarray:
    nuisance = rng.normal(size=(u.shape[0], PID_NUISANCE))  # u: [n, m] complex
    z = np.concatenate([u.real, u.imag, nuisance], axis=1)
    x = observe(rng, Mixer(rng, z.shape[1], PID_DIM), z, PID_NOISE)
    return standardize(x, n_train)


def pid_arrays(kind: PidKind, seed: int, n: int, n_train: int) -> dict[str, np.ndarray]:
    """Arrays of a two-modality PID task (`a`, `b`, `label`); see `make_pid`."""
    rng = np.random.default_rng(seed)
    u_a = complex_latent(rng, n, PID_FACTORS)
    u_b = complex_latent(rng, n, PID_FACTORS)
    w = complex_latent(rng, 1, PID_FACTORS)  # a fixed direction, for the one-modality labels
    if kind == "redundancy":
        u_b = u_a
        s = (u_a * w).sum(1)
    elif kind == "uniqueness":
        s = (u_a * w).sum(1)
    elif kind == "synergy":
        s = (u_a * u_b).sum(1)
    else:
        raise ValueError(f"unknown PID kind {kind!r}; use redundancy, uniqueness or synergy")
    a = _pid_modality(rng, u_a, n_train)
    b = _pid_modality(rng, u_b, n_train)
    return {"a": a, "b": b, "label": sector(np.angle(s), PID_CLASSES)}


def make_pid(out_dir: Path, kind: PidKind, name: str, description: str, seed: int) -> None:
    """A PID task: complex latents u_a, u_b (PID_FACTORS circular Gaussians each), mixed with
    nuisance factors into the features of modality a and b; label = sector of the angle of s:

    redundancy: u_b = u_a and s = <u_a, w> for a fixed w; either modality suffices.
    uniqueness: s = <u_a, w>; modality b is an independent distractor.
    synergy: s = sum_j u_a[j] * u_b[j]. Given one modality, s is a circular Gaussian, so its angle
    is uniform: each modality alone is exactly at chance. Re(s) and Im(s) are bilinear in the two
    latents, a sum of 4 * PID_FACTORS real products: multiplicative fusion fits it directly, while
    additive fusion must approximate every product with its hidden units.
    """
    n = sum(SIZES.values())
    arrays = pid_arrays(kind, seed, n, SIZES["train"])
    write_task(out_dir, name, PID_CLASSES, to_splits(arrays), description=description)


def make_pid_synergy3(out_dir: Path, name: str, description: str, seed: int, n_sectors: int = 2, n_factors: int = 2) -> None:
    """Three modalities a, b, c with complex latents; label = sector of sum_j u_a[j] u_b[j] u_c[j].

    Every single modality and every pair is exactly at chance; only all three together carry it.
    """
    rng = np.random.default_rng(seed)
    n = sum(SIZES.values())
    us = [complex_latent(rng, n, n_factors) for _ in range(3)]
    label = sector(np.angle((us[0] * us[1] * us[2]).sum(1)), n_sectors)
    arrays = {m: _pid_modality(rng, u, SIZES["train"]) for m, u in zip("abc", us)}
    arrays["label"] = label
    write_task(out_dir, name, n_sectors, to_splits(arrays), description=description)


# ------------------------------------------------------------------------- token-level binding

TOK_DIM = 32
TOK_IMAGE_LENS = (4, 8)  # regions per image: multiples of TOK_CLASSES, see `tokens_arrays`
TOK_TEXT_LEN = (4, 12)  # min, max words per question
TOK_KEYS = 8  # distinct region identities ("keys"); with 12 or more a small attention model stays
# at chance after 10 epochs. Measured (seed 2, 10 epochs): mean-pool+concat 0.25-0.27, text-to-image
# cross-attention 0.31-0.50, question-pooled attention over regions 0.47-0.69.
TOK_CLASSES = 4  # attribute values (the label)
TOK_FILLERS = 40  # filler-word vocabulary of the text
TOK_KEY_DIM = 16  # latent size of a key; keys are orthogonal when TOK_KEYS <= TOK_KEY_DIM
TOK_KEY_NORM = 3.0
TOK_GAIN = 1.0  # mixer gain: larger saturates the tanh and entangles key and attribute more
TOK_NOISE = 0.2


def _spread_vectors(rng: np.random.Generator, k: int, dim: int) -> np.ndarray:
    """`k` unit vectors in `dim` dimensions: orthonormal when k <= dim, else random directions."""
    if k <= dim:
        q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
        return q[:k]
    v = rng.normal(size=(k, dim))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _row_permutations(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """`n` independent random permutations of range(k), one per row."""
    return np.argsort(rng.random((n, k)), axis=1)


def tokens_arrays(seed: int, n: int, n_train: int) -> dict[str, np.ndarray]:
    """Arrays of the binding task (`image`, `image_mask`, `text`, `text_mask`, `label`).

    Every attribute value occurs equally often among an image's real regions, so that counting
    attributes (all that a mean over regions keeps) says nothing about the answer.
    """
    rng = np.random.default_rng(seed)
    keys_latent = _spread_vectors(rng, TOK_KEYS, TOK_KEY_DIM) * TOK_KEY_NORM
    attr = _spread_vectors(rng, TOK_CLASSES, 4) * 2.0
    filler = rng.normal(size=(TOK_FILLERS, TOK_KEY_DIM))
    mix_img = Mixer(rng, TOK_KEY_DIM + 4 + 4, TOK_DIM, gain=TOK_GAIN)
    mix_txt = Mixer(rng, TOK_KEY_DIM + 4, TOK_DIM, gain=TOK_GAIN)  # a different map from the image's
    l_img, l_txt = max(TOK_IMAGE_LENS), TOK_TEXT_LEN[1]
    rows = np.arange(n)

    n_img = rng.choice(np.array(TOK_IMAGE_LENS), size=n)
    n_txt = rng.integers(TOK_TEXT_LEN[0], TOK_TEXT_LEN[1] + 1, size=n)
    keys = _row_permutations(rng, n, TOK_KEYS)[:, :l_img]
    image_mask = np.arange(l_img)[None, :] < n_img[:, None]
    text_mask = np.arange(l_txt)[None, :] < n_txt[:, None]
    # balanced attributes: region i of the shuffled real regions gets value i mod TOK_CLASSES
    slot = np.argsort(rng.random((n, l_img)) + ~image_mask, axis=1)
    attrs = np.argsort(slot, axis=1) % TOK_CLASSES
    target = rng.integers(0, n_img)  # which real region the question asks about
    query_pos = rng.integers(0, n_txt)  # where the key word sits in the question
    label = attrs[rows, target]

    z_img = np.concatenate([keys_latent[keys], attr[attrs], rng.normal(size=(n, l_img, 4))], axis=-1)
    words = filler[rng.integers(0, TOK_FILLERS, size=(n, l_txt))]
    words[rows, query_pos] = keys_latent[keys[rows, target]]
    is_key = np.zeros((n, l_txt, 4))
    is_key[rows, query_pos] = 1.0  # a weak "this word names a region" marker
    z_txt = np.concatenate([words, is_key], axis=-1)

    image = standardize(observe(rng, mix_img, z_img, TOK_NOISE), n_train, image_mask)
    text = standardize(observe(rng, mix_txt, z_txt, TOK_NOISE), n_train, text_mask)
    return {"image": image, "image_mask": image_mask, "text": text, "text_mask": text_mask, "label": label}


def make_tokens_interaction(out_dir: Path, name: str, description: str, seed: int) -> None:
    """Regions (key, attribute) in `image`, a question naming one key in `text`; label = its attribute.

    Each image holds 8-16 regions with distinct keys and random attributes; the question is 4-12
    words, one of which names a key present in the image (through an embedding unrelated to the
    image's). Mean pooling sums over all regions and so loses which attribute belongs to which key.
    """
    n = sum(SIZES.values())
    arrays = tokens_arrays(seed, n, SIZES["train"])
    write_task(out_dir, name, TOK_CLASSES, to_splits(arrays), description=description)


# ---------------------------------------------------------------------------- multiple choice

MC_ATTRIBUTES = ("color", "shape", "size")
MC_CLASSES = 5  # values per attribute, and answer options
MC_PARAPHRASES = 4  # ways of asking for one attribute


def mc_arrays(seed: int, n: int, n_train: int) -> tuple[dict[str, np.ndarray], dict[str, list[Any]]]:
    """Arrays of the multiple-choice task and its `subject` column; see `make_mc_attributes`."""
    rng = np.random.default_rng(seed)
    n_attr = len(MC_ATTRIBUTES)
    value_emb = rng.normal(size=(n_attr, MC_CLASSES, 4))
    ask_emb = rng.normal(size=(n_attr, MC_PARAPHRASES, 8))
    values = rng.integers(0, MC_CLASSES, size=(n, n_attr))
    asked = rng.integers(0, n_attr, size=n)
    label = values[np.arange(n), asked]

    z_img = np.concatenate([value_emb[np.arange(n_attr), values].reshape(n, -1), rng.normal(size=(n, 4))], axis=1)
    z_q = np.concatenate([ask_emb[asked, rng.integers(0, MC_PARAPHRASES, size=n)], rng.normal(size=(n, 4))], axis=1)
    image = standardize(observe(rng, Mixer(rng, z_img.shape[1], 24), z_img, 0.2), n_train)
    question = standardize(observe(rng, Mixer(rng, z_q.shape[1], 16), z_q, 0.2), n_train)

    n_options = rng.integers(2, 5, size=n)  # 2-4 valid options out of MC_CLASSES
    order = np.argsort(rng.random((n, MC_CLASSES)) + (np.arange(MC_CLASSES)[None, :] == label[:, None]) * -2.0, axis=1)
    rank = np.argsort(order, axis=1)  # the true answer has rank 0, distractors follow at random
    label_mask = rank < n_options[:, None]
    arrays = {"image": image, "question": question, "label": label, "label_mask": label_mask}
    return arrays, {"subject": [MC_ATTRIBUTES[i] for i in asked]}


def make_mc_attributes(out_dir: Path, name: str, description: str, seed: int) -> None:
    """An object with three attributes (`image`) and a question asking for one (`question`).

    label = the value (0-4) of the asked attribute; `label_mask` offers the answer plus 1-3 random
    distractors; `meta.json` records the asked attribute as `subject` for a per-category breakdown.
    """
    n = sum(SIZES.values())
    arrays, columns = mc_arrays(seed, n, SIZES["train"])
    write_task(out_dir, name, MC_CLASSES, to_splits(arrays), meta=split_columns(columns), description=description)
