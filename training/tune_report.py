"""What a finished width search writes: the results table, the Pareto plot, the best model."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import warnings

from keras_googlenet_training.tune_config import BEST_DIR, PARETO_PNG, RESULTS_CSV, RESULTS_MD


def no_score_message(records, directory):
    """Why a search that ended produced no score, and what to do about it."""
    counts = {}
    for r in records:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no trials"
    if records and all(r["status"] == "rejected" for r in records):
        cheapest = min(records, key=lambda r: r["macs"] or math.inf)
        return (
            f"no trial produced a score: every candidate was over budget ({summary}); the "
            f"cheapest had {cheapest['macs'] / 1e6:,.1f} MMACs and {cheapest['params']:,} "
            "params. Raise the budget or search smaller widths. Results: "
            f"{os.path.join(directory, RESULTS_MD)}"
        )
    failed = [r for r in records if r["status"] == "failed"]
    reason = f" Last error: {failed[-1]['note']}" if failed and failed[-1]["note"] else ""
    return (
        f"no trial produced a score ({summary}): KerasTuner catches an exception inside a "
        f"trial, prints its traceback (above, or in the worker logs) and moves on.{reason} "
        f"Results: {os.path.join(directory, RESULTS_MD)}"
    )


TABLE_COLUMNS = ("trial", "status", "val_main_accuracy", "macs", "params", "latency_ms",
                 "seconds", "stage3", "stage4", "stage5", "reduce_3x3", "reduce_5x5",
                 "variant", "dropout", "learning_rate", "widths", "note")


def _widths_text(widths):
    return " ".join(f"{block}:{'/'.join(str(v) for v in cols)}" for block, cols in widths.items())


def _cell(name, value):
    if value is None:
        return ""
    if name == "widths":
        return _widths_text(value)
    if name == "val_main_accuracy":
        return f"{value:.4f}"
    if name == "macs":
        return f"{value / 1e6:,.1f}M"
    if name == "params":
        return f"{value / 1e6:,.3f}M"
    if name in ("latency_ms", "seconds"):
        return f"{value:.2f}" if name == "latency_ms" else f"{value:.0f}"
    if name == "learning_rate":
        return f"{value:.2g}"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value).replace("|", "/")


def format_markdown(records, front=()):
    """The results as a markdown table; Pareto-optimal trials are marked with *."""
    columns = [c for c in TABLE_COLUMNS
               if c != "latency_ms" or any(r["latency_ms"] is not None for r in records)]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in records:
        cells = [_cell(c, r[c]) for c in columns]
        if r["trial"] in front:
            cells[0] += "*"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_results(records, directory, budget=None):
    """Write `results.csv`, `results.md` and `pareto.png`; return their paths."""
    from keras_googlenet.tuning import pareto_front
    from keras_googlenet_training import run_dir as run_dir_lib

    front = pareto_front(records)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[*TABLE_COLUMNS, "pareto"])
    writer.writeheader()
    for r in records:
        writer.writerow({**r, "widths": json.dumps(r["widths"]), "pareto": r["trial"] in front})
    csv_path = os.path.join(directory, RESULTS_CSV)
    run_dir_lib.write_text(csv_path, buffer.getvalue())
    markdown = format_markdown(records, front)
    counts = {}
    for r in records:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    md_path = os.path.join(directory, RESULTS_MD)
    run_dir_lib.write_text(md_path, (
        f"# Width search: {', '.join(f'{n} {s}' for s, n in sorted(counts.items()))}\n\n"
        f"MACs and params are those of the inference model (aux heads dropped); * marks "
        f"the Pareto front of accuracy against MACs.\n\n{markdown}\n"
    ))
    png_path = os.path.join(directory, PARETO_PNG)
    plot_pareto(records, png_path, front, budget)
    return {"csv": csv_path, "markdown": md_path, "pareto": png_path, "markdown_text": markdown}


def plot_pareto(records, path, front=None, budget=None):
    """Accuracy against MACs: every scored trial, the Pareto front, rejected candidates."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import transforms

    from keras_googlenet.tuning import pareto_front
    from keras_googlenet_training import run_dir as run_dir_lib

    front = pareto_front(records) if front is None else front
    done = [r for r in records if r["status"] == "completed"]
    rejected = [r for r in records if r["status"] == "rejected" and r["macs"] is not None]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.scatter([r["macs"] / 1e6 for r in done], [r["val_main_accuracy"] for r in done],
               color="tab:blue", label="trained", zorder=3)
    on_front = sorted((r for r in done if r["trial"] in front), key=lambda r: r["macs"])
    if on_front:
        ax.step([r["macs"] / 1e6 for r in on_front], [r["val_main_accuracy"] for r in on_front],
                where="post", color="tab:red", zorder=2)
        ax.scatter([r["macs"] / 1e6 for r in on_front],
                   [r["val_main_accuracy"] for r in on_front], s=90, facecolors="none",
                   edgecolors="tab:red", linewidths=1.5, label="Pareto front", zorder=4)
    for r in done:
        ax.annotate(r["trial"], (r["macs"] / 1e6, r["val_main_accuracy"]), fontsize=7,
                    xytext=(3, 3), textcoords="offset points")
    if rejected:
        # along the bottom edge: they have no accuracy, and y=0 would squash the rest
        bottom = transforms.blended_transform_factory(ax.transData, ax.transAxes)
        ax.scatter([r["macs"] / 1e6 for r in rejected], [0.03] * len(rejected), marker="x",
                   color="grey", transform=bottom, label="rejected (over budget)", zorder=3)
    if budget is not None and budget.max_macs is not None:
        ax.axvline(budget.max_macs / 1e6, color="grey", linestyle="--", label="max_macs")
    xs = [r["macs"] / 1e6 for r in done + rejected]
    if budget is not None and budget.max_macs is not None:
        xs.append(budget.max_macs / 1e6)
    if xs:  # markers on a blended transform and vertical lines do not autoscale
        margin = 0.05 * (max(xs) - min(xs) or max(xs))
        ax.set_xlim(min(xs) - margin, max(xs) + margin)
    ax.set_xlabel("MACs per image (millions, inference model)")
    ax.set_ylabel("val_main_accuracy")
    ax.set_title("GoogLeNet width search: accuracy vs compute")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    with run_dir_lib.atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)


def save_best_model(tuner, hypermodel, best, splits, config, directory):
    """The best trial's float32 inference model, as a run directory `googlenet-export` reads."""
    import keras

    import keras_googlenet as kg
    from keras_googlenet.tuning import OBJECTIVE
    from keras_googlenet_training import run_dir as run_dir_lib

    trial = tuner.oracle.get_trial(best["trial"])
    with warnings.catch_warnings():
        # The checkpoint holds optimizer slots the fresh model does not need.
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        model = tuner.load_model(trial)
    inference = kg.float32_inference_model(model, name=f"googlenet_trial_{best['trial']}")
    out = os.path.join(directory, BEST_DIR)
    path = os.path.join(out, "inference.keras")
    run_dir_lib.save_keras(inference, path)
    hp = trial.hyperparameters.copy()
    build = hypermodel.build_kwargs(hp)
    run_dir_lib.write_json(os.path.join(out, "config.json"), {
        "trial": best["trial"],
        "hyperparameters": hypermodel.values(hp),
        "dataset": config.dataset,
        "data_dir": config.data_dir,
        "class_names": splits.class_names,
        "model": {
            "variant": build["variant"], "input_size": config.input_size,
            "classes": build["classes"], "widths": {k: list(v) for k, v in build["widths"].items()},
            "width_multiplier": build["width_multiplier"], "include_aux": config.aux,
            "dropout": build["dropout"], "resolved_widths": best["widths"],
            "preprocessing": kg.VARIANTS[build["variant"]].preprocessing,
        },
        "search": dataclasses.asdict(config),
        "versions": {"keras": keras.__version__},
    })
    run_dir_lib.write_text(os.path.join(out, "labels.txt"), "\n".join(splits.class_names) + "\n")
    run_dir_lib.write_json(os.path.join(out, "metrics.json"), {
        OBJECTIVE.name: best[OBJECTIVE.name], "macs": best["macs"], "params": best["params"],
        "latency_ms": best["latency_ms"], "trial": best["trial"],
    })
    return path
