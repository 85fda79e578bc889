"""The report's figures as PNG bytes (matplotlib, Agg backend): plotted from `ReportData` only.

Each function returns None when there is nothing measured to plot (no curve is ever drawn from
invented values). Best-so-far, training curves, accuracy vs. params / FLOPs with the Pareto front,
per-category accuracy, and best-so-far across runs for comparisons. This file does not lay figures
out in a page (`html.py`, `markdown.py` do).
"""

from __future__ import annotations

import io
import math
from typing import Any, Sequence

from autofusion.report.data import Point, ReportData

DPI = 110
MAX_BARS = 6  # models per category in the bar chart (the table lists them all)
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


def _plt() -> Any:
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def best_so_far(runs: Sequence[tuple[str, list[tuple[int, float | None]]]],
                zoo_best: float | None = None) -> bytes | None:
    """One step line per run: best search val accuracy after n proposals."""
    plt = _plt()
    if plt is None or not any(any(v is not None for _, v in pts) for _, pts in runs):
        return None
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for i, (name, pts) in enumerate(runs):
        xs = [x for x, v in pts if v is not None]
        ys = [v for _, v in pts if v is not None]
        ax.step(xs, ys, where="post", marker="o", ms=3, color=COLORS[i % len(COLORS)], label=name)
    if zoo_best is not None:
        ax.axhline(zoo_best, color="#555", ls="--", lw=1, label="best zoo member (search eval)")
    ax.set_xlabel("candidates generated (budget spent)")
    ax.set_ylabel("best val accuracy so far")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _png(fig)


def training_curves(curves: dict[str, dict[str, list[float]]], title: str = "") -> bytes | None:
    """Val accuracy and train loss per epoch, one line per model (or per seed)."""
    plt = _plt()
    if plt is None or not curves:
        return None
    fig, (acc_ax, loss_ax) = plt.subplots(1, 2, figsize=(9.6, 3.6))
    for i, (name, c) in enumerate(curves.items()):
        color = COLORS[i % len(COLORS)]
        width = 2.4 if name.startswith("winner") else 1.2
        val = c.get("val_accuracy") or []
        loss = [v if v is not None and math.isfinite(v) else float("nan") for v in (c.get("train_loss") or [])]
        acc_ax.plot(range(1, len(val) + 1), val, marker="o", ms=3, lw=width, color=color, label=name)
        if loss:
            loss_ax.plot(range(1, len(loss) + 1), loss, marker="o", ms=3, lw=width, color=color, label=name)
    acc_ax.set_xlabel("epoch")
    acc_ax.set_ylabel("val accuracy")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("train loss (reported by the candidate)")
    from matplotlib.ticker import MaxNLocator

    for ax in (acc_ax, loss_ax):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.legend(*acc_ax.get_legend_handles_labels(), fontsize=7, loc="upper center", bbox_to_anchor=(0.5, 0.0),
               ncol=min(5, max(1, len(curves))), frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    return _png(fig)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats (cost <= and accuracy >=, one strictly)."""
    front = []
    for i, (cost, acc) in enumerate(points):
        dominated = any((c <= cost and a >= acc) and (c < cost or a > acc) for j, (c, a) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def accuracy_vs_cost(points: list[Point], cost: str, winner_id: int | None) -> bytes | None:
    """Search val accuracy against params or FLOPs (log scale); Pareto front as a step line."""
    plt = _plt()
    pts = [p for p in points if getattr(p, cost) > 0]
    if plt is None or not pts:
        return None
    xy = [(float(getattr(p, cost)), p.val_accuracy) for p in pts]
    front = pareto_front(xy)
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    search = [i for i, p in enumerate(pts) if not p.is_zoo]
    zoo = [i for i, p in enumerate(pts) if p.is_zoo]
    ax.scatter([xy[i][0] for i in search], [xy[i][1] for i in search], s=18, color="#1f77b4", alpha=0.7, label="search candidates")
    ax.scatter([xy[i][0] for i in zoo], [xy[i][1] for i in zoo], s=40, marker="s", color="#ff7f0e", label="zoo")
    for i in zoo:
        ax.annotate(pts[i].label, xy[i], fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.step([xy[i][0] for i in front], [xy[i][1] for i in front], where="post", color="#2ca02c", lw=1.5, label="Pareto front")
    ax.scatter([xy[i][0] for i in front], [xy[i][1] for i in front], s=70, facecolors="none", edgecolors="#2ca02c")
    for i, p in enumerate(pts):
        if p.candidate_id == winner_id:
            ax.scatter([xy[i][0]], [xy[i][1]], s=180, marker="*", color="#d62728", zorder=5, label="winner")
    ax.set_xscale("log")
    ax.set_xlabel("parameters" if cost == "params" else "forward FLOPs per sample (traced)")
    ax.set_ylabel("val accuracy (search evaluation)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower right")
    return _png(fig)


def breakdown_bars(field: str, table: dict[str, dict[str, tuple[float, int, int]]]) -> bytes | None:
    """Grouped bars: test accuracy per category value, one bar per model."""
    plt = _plt()
    if plt is None or not table:
        return None
    table = dict(list(table.items())[:MAX_BARS])
    values = sorted({v for cells in table.values() for v in cells})
    fig, ax = plt.subplots(figsize=(max(6.4, 0.9 * len(values) * max(1, len(table)) / 3), 3.6))
    width = 0.8 / len(table)
    for i, (model, cells) in enumerate(table.items()):
        xs = [j + i * width for j, v in enumerate(values) if v in cells]
        ax.bar(xs, [cells[v][0] for v in values if v in cells], width=width, color=COLORS[i % len(COLORS)], label=model)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(values))])
    ax.set_xticklabels(values, fontsize=8, rotation=20 if len(values) > 6 else 0)
    ax.set_ylabel(f"test accuracy by {field}")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7, ncol=2)
    return _png(fig)


def report_figures(data: ReportData) -> dict[str, tuple[str, bytes]]:
    """name -> (caption, PNG) for every figure of one run's report that has data."""
    zoo_vals = [p.val_accuracy for p in data.points if p.is_zoo]
    winner_id = data.winner.id if data.winner else None
    figs: dict[str, tuple[str, bytes | None]] = {
        "best_so_far": ("Best val accuracy so far vs. candidates generated (search evaluations, seed "
                        f"{data.base_seed}); dashed: best zoo member.",
                        best_so_far([(str(data.config.get("controller", "search")), data.best_so_far)],
                                    max(zoo_vals) if zoo_vals else None)),
        "curves": ("Training curves of the winner and the zoo (search evaluation, seed "
                   f"{data.base_seed}; measured per epoch).", training_curves(data.curves)),
        "acc_params": ("Val accuracy vs. parameters; green: Pareto front; red star: winner.",
                       accuracy_vs_cost(data.points, "params", winner_id)),
        "acc_flops": ("Val accuracy vs. forward FLOPs per sample; green: Pareto front; red star: winner.",
                      accuracy_vs_cost(data.points, "flops", winner_id)),
    }
    for fld, table in data.breakdown.items():
        figs[f"breakdown_{fld}"] = (f"Test accuracy by {fld} (mean over seeds; winner and the first "
                                    f"{MAX_BARS - 1} other rows of the table).", breakdown_bars(fld, table))
    for full in data.full:
        curves = {f"seed {s}": c for s, c in sorted(full.curves.items())}
        figs[f"full_{full.candidate_id}"] = (f"Full training of {full.label}: {full.epochs} epochs, cosine schedule, per seed.",
                                              training_curves(curves, title=full.label))
    return {k: (cap, png) for k, (cap, png) in figs.items() if png is not None}
