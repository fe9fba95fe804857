"""The benchmark's report: the names of its figures, the lines they are printed as, the
targets they are checked against, the table and the chart.

One place for all of it, so a row printed while `make bench` runs and the same row in the table
cannot drift apart. The measuring modules (bench/run.py, bench/served.py, bench/ablation.py)
import it; it imports nothing from bench, so nothing it imports can import back.
"""

from __future__ import annotations

import operator
import platform

import matplotlib
import psutil

matplotlib.use("Agg")
import matplotlib.pyplot as plt

NAIVE, DIRECT, PROXY = "naive server (baseline)", "TorchServe direct", "through the proxy"
BATCHED = "handler, a batch in-process"
BULK_RUNS = {
    "masks": (),
    "COCO": ("--coco",),
    "overlays": ("--overlay",),
    "overlays, COCO": ("--overlay", "--coco"),
}
"""`petseg predict DIR` on a folder of the same photo: as it runs by default (the mask PNGs
alone are asked for), with a COCO file (the labels answer: the mask and its classes' RLE,
made by the server), with --overlay (the JSON answers the load rows get: mask and overlay),
and with both (the client makes the RLE from the mask)."""
SERVED = (DIRECT, PROXY)
PHOTOS = ("500x375", "4000x3000")
COMPARE = {">=": operator.ge, "<=": operator.le}
GAIN_TO_KEEP = 0.10
"""A mechanism that gains less than this where it applies does not pay for its code."""


def machine() -> dict:
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": psutil.cpu_count(logical=True),
        "python": platform.python_version(),
    }


def limit_line(row: dict) -> str:
    rate = "n/a (not available here)" if row["images_per_s"] is None else row["images_per_s"]
    return f"  forward only, {row['variant']:<36} batch {row['batch']:>2}: {rate} images/s"


def pipeline_line(photo: str, row: dict) -> str:
    return (
        f"  pipeline limit {photo:>9}: {row['images_per_s']} images/s (median of "
        f"{row['repeats']}, {row['min']}-{row['max']}; {row['workers']} worker processes)"
    )


def load_line(row: dict) -> str:
    return (
        f"  {row['system']:<24} {row['photo']:>9} c={row['concurrency']:<2} "
        f"{row['images_per_s']:>7.2f} img/s  p50 {row['p50_ms']:>7.1f}  p95 {row['p95_ms']:>7.1f}"
        f"  p99 {row['p99_ms']:>7.1f} ms  errors {row['errors']}  RSS {row['server_rss_mb']} MB"
    )


def memory_line(workers: list[dict]) -> str:
    return "  worker RSS, idle -> end of 12 MP burst -> 2 s later: " + "; ".join(
        f"{w['idle_mb']} -> {w['after_burst_mb']} -> {w['settled_mb']} MB" for w in workers
    )


def ablation_line(row: dict) -> str:
    """An ablation row, as printed while it is measured and in the table."""
    verdict = "pays" if row["pays"] else f"UNDER {GAIN_TO_KEEP:.0%}"
    return (
        f"  {row['switch']:<28} {row['measure']:<12} {row['photo']:>9}  on {row['on']:>8.2f}"
        f"  off {row['off']:>8.2f}  gain {row['gain']:>+7.1%}  {verdict:<9} ({row['applies']})"
    )


def proxy_added_line(by_photo: dict) -> str:
    """As measured, per photo: the median of the pairs' differences and its quartiles."""
    return f"  proxy's added time at c=1: {by_photo}"


def bulk_ratio(model: dict, photo: str, row: dict) -> float:
    """A bulk row's images/s over TorchServe's at the same photo and concurrency."""
    return row["images_per_s"] / load(model, DIRECT, photo, row["concurrency"])["images_per_s"]


def bulk_line(model: dict, photo: str, row: dict) -> str:
    return (
        f"  bulk, {row['runs']:<17} {photo:>9} c={row['concurrency']:<2} "
        f"{row['images_per_s']:>7.2f} img/s  {bulk_ratio(model, photo, row):.2f}x direct at "
        f"c={row['concurrency']}  failed {row['failed']}"
    )


def load(model: dict, system: str, photo: str, concurrency: int) -> dict:
    return next(
        r
        for r in model["loads"]
        if (r["system"], r["photo"], r["concurrency"]) == (system, photo, concurrency)
    )


def ratios(model: dict, row: dict) -> tuple[float, float]:
    """A row's throughput over the pipeline limit and over the naive server (same photo, c)."""
    limit = model["pipeline"][row["photo"]]["images_per_s"]
    naive = load(model, NAIVE, row["photo"], row["concurrency"])["images_per_s"]
    return row["images_per_s"] / limit, row["images_per_s"] / naive


def image_work_ratio(results: dict, model: dict, photo: str) -> float:
    """The handler's preprocess + postprocess over one full decode of the same photo."""
    timings = model["handler_timings_ms"][photo]
    return (timings["preprocess"] + timings["postprocess"]) / results["decode_ms"][photo]


def _model_targets(results: dict, name: str, model: dict) -> list[tuple[str, float, str, float]]:
    rows = []
    for photo in PHOTOS:
        direct1, naive1 = load(model, DIRECT, photo, 1), load(model, NAIVE, photo, 1)
        direct16, naive16 = load(model, DIRECT, photo, 16), load(model, NAIVE, photo, 16)
        latency = direct1["p50_ms"] / naive1["p50_ms"]
        throughput = direct16["images_per_s"] / naive16["images_per_s"]
        rows += [
            (f"{name}: direct c=1 p50 / naive c=1 p50, {photo}", latency, "<=", 1.0),
            (f"{name}: direct c=16 / naive c=16, {photo}", throughput, ">=", 3.0),
        ]
        for row in model["bulk"][photo]:
            target = f"{name}: bulk, {row['runs']} / direct c=16, {photo}"
            rows.append((target, bulk_ratio(model, photo, row), ">=", 0.9))
    direct16 = load(model, DIRECT, "500x375", 16)
    rows += [
        (
            f"{name}: direct c=16 / pipeline limit, 500x375",
            ratios(model, direct16)[0],
            ">=",
            0.9,
        ),
        (
            f"{name}: proxy's added time at c=1 (median of pairs), ms, 500x375",
            model["proxy_added_ms"]["500x375"]["median"],
            "<=",
            3.0,
        ),
    ]
    if model["trained"]:
        settled = max(w["settled_mb"] - w["idle_mb"] for w in model["worker_memory"])
        rows += [
            (
                f"{name}: handler pre+post / one full decode, 4000x3000",
                image_work_ratio(results, model, "4000x3000"),
                "<=",
                3.0,
            ),
            (f"{name}: worker RSS growth after a 12 MP burst, MB", settled, "<=", 300.0),
        ]
        for photo in PHOTOS:
            agreement = min(
                by_photo[photo]
                for system, by_photo in model["mask_agreement_vs_fp32_eager"].items()
                if system != NAIVE
            )
            target = f"{name}: served masks = fp32 eager masks, {photo}"
            rows.append((target, agreement, ">=", 0.995))
    for row in model["ablation"]:
        target = f"{name}: gain of {row['switch']} ({row['measure']}, {row['photo']})"
        rows.append((target, row["gain"], ">=", GAIN_TO_KEEP))
    return rows


def targets(results: dict) -> list[dict]:
    checks = []
    for name, model in results["models"].items():
        for target, value, op, bound in _model_targets(results, name, model):
            checks.append(
                {
                    "target": target,
                    "measured": round(value, 4),
                    "bound": f"{op} {bound}",
                    "met": bool(COMPARE[op](value, bound)),
                }
            )
    return checks


def _model_table(results: dict, name: str, model: dict) -> list[str]:
    size = model["input_size"]
    lines = [f"== {name} ({size}x{size} input)", "forward pass only, in-process, every core:"]
    for row in model["limits"]:
        rate = row["images_per_s"]
        shown = "n/a" if rate is None else f"{rate:.2f}"
        lines.append(f"  {row['variant']:<38} batch {row['batch']:>2} {shown:>9} img/s")
    lines.append("pipeline limit (the handler in-process, served configuration):")
    for photo, row in model["pipeline"].items():
        lines.append(
            f"  {photo:>9} {row['images_per_s']:>8.2f} img/s (median of {row['repeats']}, "
            f"{row['min']}-{row['max']})"
        )
    lines += [
        "served (client in its own process):",
        f"  {'system':<25}{'photo':>10}{'c':>4}{'img/s':>8}{'x limit':>8}{'x naive':>8}"
        f"{'p50':>8}{'p95':>8}{'p99':>8}{'errors':>7}{'RSS MB':>8}",
    ]
    for row in model["loads"]:
        to_limit, to_naive = ratios(model, row)
        lines.append(
            f"  {row['system']:<25}{row['photo']:>10}{row['concurrency']:>4}"
            f"{row['images_per_s']:>8.2f}{to_limit:>8.2f}{to_naive:>8.2f}{row['p50_ms']:>8.0f}"
            f"{row['p95_ms']:>8.0f}{row['p99_ms']:>8.0f}{row['errors']:>7}"
            f"{row['server_rss_mb']:>8.0f}"
        )
    lines += [bulk_line(model, photo, row) for photo, rows in model["bulk"].items() for row in rows]
    lines.append("speed mechanisms, each on against off where it applies (bench/ablation.py):")
    lines += [ablation_line(row) for row in model["ablation"]]
    for photo, stages in model["handler_timings_ms"].items():
        lines.append(
            f"handler stages at c=1, {photo}, ms (one full decode: {results['decode_ms'][photo]}): "
            + ", ".join(f"{k} {v}" for k, v in stages.items())
        )
    lines.append(memory_line(model["worker_memory"]).strip())
    lines.append(
        "proxy's added time at c=1, ms, median of pairs, half in each order (quartiles): "
        + ", ".join(
            f"{photo} {v['median']} ({v['q1']} to {v['q3']})"
            for photo, v in model["proxy_added_ms"].items()
        )
    )
    if "shadow_cost" in model:
        lines.append(shadow_line(model["shadow_cost"]))
    if "prelabel" in model:
        lines.append(prelabel_line(model["prelabel"]))
    for system, by_photo in model["mask_agreement_vs_fp32_eager"].items():
        lines.append(
            f"mask agreement with fp32 eager, {system}: "
            + ", ".join(f"{photo} {v:.3%}" for photo, v in by_photo.items())
        )
    return [*lines, ""]


def table(results: dict) -> list[str]:
    lines = []
    for name, model in results["models"].items():
        lines += _model_table(results, name, model)
    lines.append("targets")
    for check in results["targets"]:
        verdict = "met" if check["met"] else "MISSED"
        lines.append(f"  {check['target']:<66} {check['measured']:>9} ({check['bound']}) {verdict}")
    return lines


def _panel(axis, model: dict, photo: str) -> None:
    """Images/s against clients for each system, the pipeline limit as a line, and each served
    point labelled with its ratios to the limit and to the naive server."""
    limit = model["pipeline"][photo]["images_per_s"]
    axis.axhline(limit, linestyle="--", linewidth=1, color="black")
    axis.annotate("pipeline limit", (1, limit), fontsize=7, va="bottom")
    for system in (NAIVE, *SERVED):
        rows = [r for r in model["loads"] if (r["system"], r["photo"]) == (system, photo)]
        axis.plot(
            [r["concurrency"] for r in rows],
            [r["images_per_s"] for r in rows],
            marker="o",
            label=system,
        )
        if system == DIRECT:
            for row in rows:
                to_limit, to_naive = ratios(model, row)
                axis.annotate(
                    f"{to_limit:.2f}x limit\n{to_naive:.1f}x naive",
                    (row["concurrency"], row["images_per_s"]),
                    fontsize=6,
                    textcoords="offset points",
                    xytext=(4, -14),
                )
    axis.set(
        xscale="log",
        xticks=[1, 4, 16],
        xticklabels=["1", "4", "16"],
        xlabel="concurrent clients",
        ylabel="images/s",
        ylim=(0, limit * 1.15),
    )
    axis.grid(alpha=0.3)


def chart(results: dict, path) -> None:
    models = list(results["models"].items())
    fig, axes = plt.subplots(len(models), len(PHOTOS), figsize=(6 * len(PHOTOS), 4 * len(models)))
    for row_axes, (name, model) in zip(axes, models, strict=True):
        for axis, photo in zip(row_axes, PHOTOS, strict=True):
            _panel(axis, model, photo)
            axis.set_title(f"{name}: {photo} photos", fontsize=10)
    handles, labels = axes[0][0].get_legend_handles_labels()  # below the panels: no curve hidden
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8)
    fig.suptitle(f"petseg served vs its pipeline limit ({results['machine']['cores']} cores)")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def shadow_line(cost: dict) -> str:
    """What a shadow rollout costs the users of the default version, through the proxy."""
    none, shadow = cost["none"], cost["shadow"]
    return (
        f"shadow rollout of {cost['percent']}%, 500x375, through the proxy: c=1 p50 "
        f"{none['c1_p50_ms']} -> {shadow['c1_p50_ms']} ms, c=16 "
        f"{none['c16_images_per_s']} -> {shadow['c16_images_per_s']} images/s "
        f"({shadow['c16_images_per_s'] / none['c16_images_per_s']:.2f}x)"
    )


def prelabel_line(row: dict) -> str:
    """Label Studio's "Retrieve Predictions" with petseg as its ML backend, against the bulk
    client on the same photos (bench/prelabel.py)."""
    ratio = row["label_studio_images_per_s"] / row["predict_images_per_s"]
    return (
        f"pre-labelling {row['photos']} photos of {row['photo']}: Label Studio's Retrieve "
        f"Predictions {row['label_studio_images_per_s']} images/s, petseg predict "
        f"{row['predict_images_per_s']} images/s ({ratio:.2f}x; "
        f"{row['predicted']} predictions stored)"
    )
