"""`autofusion prepare scienceqa`: the argparse sub-subcommand, registered by the main CLI.

`register_cli(subparsers)` adds `scienceqa` to the subparsers of a `prepare` command and sets
`func=run`. `run(args)` calls `prepare_scienceqa` and returns 0; project errors (AutoFusionError)
propagate to the main CLI, which prints them without a traceback and exits 2. The progress bar is
shown only when stderr is a terminal.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from autofusion.tasks.format import SPLITS
from autofusion.tasks.scienceqa.encoders import (
    DEFAULT_IMAGE_ENCODER,
    DEFAULT_TEXT_ENCODER,
    DEVICES,
)


def register_cli(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "scienceqa",
        help="ScienceQA -> feature-task directory (DETR image + T5 text features by default)",
        description="Extract ScienceQA image and text features into a feature-task directory. Resumes an interrupted run.",
    )
    parser.add_argument("--source", required=True, help="ScienceQA download: official layout (problems.json, pid_splits.json, images/) or Hugging Face parquet files")
    parser.add_argument("--out", required=True, help="task directory to write (a work directory inside it holds resumable shards)")
    parser.add_argument("--image-encoder", default=DEFAULT_IMAGE_ENCODER, metavar="NAME_OR_PATH", help=f"Hugging Face name or local directory (default: {DEFAULT_IMAGE_ENCODER})")
    parser.add_argument("--text-encoder", default=DEFAULT_TEXT_ENCODER, metavar="NAME_OR_PATH", help=f"Hugging Face name or local directory (default: {DEFAULT_TEXT_ENCODER})")
    parser.add_argument("--batch-size", type=int, default=16, help="questions per encoder forward pass (default: 16)")
    parser.add_argument("--max-text-tokens", type=int, default=256, help="truncate questions to this many tokens (default: 256)")
    parser.add_argument("--limit", type=int, default=None, help="keep only the first N questions of each split (for a quick trial)")
    parser.add_argument("--splits", nargs="+", default=list(SPLITS), choices=list(SPLITS), help="splits to extract in this call; the task is assembled once all three are done")
    parser.add_argument("--device", default="auto", choices=list(DEVICES), help="where the encoders run (default: auto = cuda, then mps, then cpu)")
    parser.add_argument("--fp16", action="store_true", help="store features as float16 (half the disk and memory; encoders still run in float32)")
    parser.add_argument("--shard-size", type=int, default=1024, help="questions per resumable shard (default: 1024)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from autofusion.tasks.scienceqa.prepare import prepare_scienceqa

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = prepare_scienceqa(
        args.source,
        args.out,
        image_encoder=args.image_encoder,
        text_encoder=args.text_encoder,
        batch_size=args.batch_size,
        max_text_tokens=args.max_text_tokens,
        limit=args.limit,
        splits=tuple(args.splits),
        device=args.device,
        fp16=args.fp16,
        progress=not args.no_progress and sys.stderr.isatty(),
        shard_size=args.shard_size,
    )
    complete = (out / "task.json").is_file()
    if getattr(args, "json", False):
        print(json.dumps({"task": str(out), "complete": complete}))
    else:
        print(f"{'wrote task' if complete else 'extracted shards into'} {out}")
    return 0
