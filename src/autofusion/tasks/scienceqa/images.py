"""Decoding a problem's image, from a file on disk or from a parquet row, into an RGB PIL image.

Parquet images are read one row group at a time and the last group is cached: extraction walks the
problems in order, so each group is read once and memory stays bounded by one group. A missing or
undecodable image raises AutoFusionError naming the problem and the file. No model is touched here.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from autofusion.errors import AutoFusionError
from autofusion.tasks.scienceqa.problems import Problem


class ImageLoader:
    """Loads `Problem.image` as an RGB `PIL.Image.Image`."""

    def __init__(self) -> None:
        self._files: dict[Path, Any] = {}
        self._group_key: tuple[Path, int] | None = None
        self._group_rows: list[Any] = []

    def load(self, problem: Problem) -> Any:
        ref = problem.image
        if ref is None:
            raise ValueError(f"problem {problem.pid} has no image")
        if ref.row is None:
            try:
                data = ref.source.read_bytes()
            except OSError as exc:
                raise AutoFusionError(f"image of problem {problem.pid} ({ref.source}) cannot be read: {exc.strerror or exc}. Fix: re-download the ScienceQA images.") from None
            where = str(ref.source)
        else:
            data = self._parquet_bytes(ref.source, ref.row)
            where = f"{ref.source} row {ref.row}"
        return _decode(data, problem.pid, where)

    def _parquet_bytes(self, path: Path, row: int) -> bytes:
        pf = self._files.get(path)
        if pf is None:
            import pyarrow.parquet as pq

            pf = self._files[path] = pq.ParquetFile(path)
        start = 0
        for group in range(pf.metadata.num_row_groups):
            n = pf.metadata.row_group(group).num_rows
            if row < start + n:
                if self._group_key != (path, group):
                    self._group_rows = pf.read_row_group(group, columns=["image"]).column(0).to_pylist()
                    self._group_key = (path, group)
                value = self._group_rows[row - start]
                data = value.get("bytes") if isinstance(value, dict) else value
                if not data:
                    raise AutoFusionError(f"{path} row {row}: the image cell holds no bytes. Fix: re-download this parquet file.")
                return bytes(data)
            start += n
        raise AutoFusionError(f"{path}: has {start} rows, row {row} requested. Fix: the file changed since it was read; rerun.")


def _decode(data: bytes, pid: str, where: str) -> Any:
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise AutoFusionError("decoding ScienceQA images needs pillow. Fix: pip install 'autofusion[data]'") from None
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise AutoFusionError(f"image of problem {pid} ({where}) is corrupt or not an image ({type(exc).__name__}: {exc}). Fix: re-download it, or remove the file's problem from the source.") from None
