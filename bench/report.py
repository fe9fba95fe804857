"""The benchmark's table, target checks and chart."""

from __future__ import annotations

import operator
import platform

import matplotlib
import psutil

matplotlib.use("Agg")
import matplotlib.pyplot as plt

SERVED = ("TorchServe direct", "through the proxy")
COMPARE = {">=": operator.ge, "<=": operator.le, "<": operator.lt}


def machine() -> dict:
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": psutil.cpu_count(logical=True),
        "python": platform.python_version(),
    }


def limit_line(row: dict) -> str:
    rate = "n/a (not available here)" if row["images_per_s"] is None else row["images_per_s"]
    return f"  {row['variant']:<36} batch {row['batch']:>2}: {rate} images/s"


def load_line(row: dict) -> str:
    return (
        f"  {row['system']:<24} {row['photo']:>9} c={row['concurrency']:<2} "
        f"{row['images_per_s']:>7.2f} img/s  p50 {row['p50_ms']:>7.1f}  p95 {row['p95_ms']:>7.1f}"
        f"  p99 {row['p99_ms']:>7.1f} ms  errors {row['errors']}  RSS {row['server_rss_mb']} MB"
    )


def _load(results: dict, system: str, photo: str, concurrency: int) -> dict:
    return next(
        r
        for r in results["loads"]
        if (r["system"], r["photo"], r["concurrency"]) == (system, photo, concurrency)
    )


def baseline(results: dict) -> float:
    """Row 1 of the table: eager fp32 at batch 1."""
    return results["limits"][0]["images_per_s"]


def best_eager(results: dict) -> float:
    return max(r["images_per_s"] for r in results["limits"] if r["variant"] == "eager fp32")


def targets(results: dict) -> list[dict]:
    direct16 = _load(results, "TorchServe direct", "500x375", 16)["images_per_s"]
    naive16 = _load(results, "naive server (baseline)", "500x375", 16)["images_per_s"]
    proxy_extra = (
        _load(results, "through the proxy", "500x375", 1)["p50_ms"]
        - _load(results, "TorchServe direct", "500x375", 1)["p50_ms"]
    )
    timings = results["handler_timings_ms_500x375"]
    codec_share = (timings["preprocess"] + timings["postprocess"]) / timings["request"]
    agreement = min(results["mask_agreement_vs_fp32_eager"][s] for s in SERVED)
    rows = [
        (
            "TorchServe direct c=16 / best eager limit (500x375)",
            direct16 / best_eager(results),
            ">=",
            0.9,
        ),
        ("proxy p50 - direct p50 at c=1, ms (500x375)", proxy_extra, "<=", 5.0),
        ("TorchServe direct c=16 / naive server c=16 (500x375)", direct16 / naive16, ">=", 1.5),
        ("served masks = fp32 eager masks, fraction of pixels", agreement, ">=", 0.995),
        ("decode+preprocess+postprocess / request time, c=1 (500x375)", codec_share, "<", 0.15),
    ]
    checks = []
    for name, value, op, bound in rows:
        met = COMPARE[op](value, bound)
        checks.append(
            {
                "target": name,
                "measured": round(value, 4),
                "bound": f"{op} {bound}",
                "met": bool(met),
            }
        )
    return checks


def table(results: dict) -> list[str]:
    base = baseline(results)
    size = results["model"]["input_size"]
    lines = [
        f"limit: bare model, {size}x{size} input, in-process",
        f"{'':<38}{'batch':>6}{'img/s':>9}{'x row 1':>9}",
    ]
    for row in results["limits"]:
        rate = row["images_per_s"]
        shown = "n/a" if rate is None else f"{rate:.2f}"
        ratio = "" if rate is None else f"{rate / base:.2f}"
        lines.append(f"{row['variant']:<38}{row['batch']:>6}{shown:>9}{ratio:>9}")
    lines += [
        "",
        "served (client in its own process)",
        f"{'system':<25}{'photo':>10}{'c':>4}{'img/s':>8}{'x row 1':>8}{'p50':>8}"
        f"{'p95':>8}{'p99':>8}{'errors':>7}{'RSS MB':>8}",
    ]
    for row in results["loads"]:
        lines.append(
            f"{row['system']:<25}{row['photo']:>10}{row['concurrency']:>4}"
            f"{row['images_per_s']:>8.2f}{row['images_per_s'] / base:>8.2f}{row['p50_ms']:>8.0f}"
            f"{row['p95_ms']:>8.0f}{row['p99_ms']:>8.0f}{row['errors']:>7}"
            f"{row['server_rss_mb']:>8.0f}"
        )
    lines += [
        "",
        "mask agreement with fp32 eager: "
        + ", ".join(f"{k} {v:.2%}" for k, v in results["mask_agreement_vs_fp32_eager"].items()),
    ]
    lines.append(
        "handler stages at c=1, 500x375, ms: "
        + ", ".join(f"{k} {v}" for k, v in results["handler_timings_ms_500x375"].items())
    )
    lines += ["", "targets"]
    for check in results["targets"]:
        verdict = "met" if check["met"] else "MISSED"
        lines.append(f"  {check['target']:<62} {check['measured']:>9} ({check['bound']}) {verdict}")
    return lines


def _limit_lines(axis, limits: list[dict]) -> None:
    """The bare model's eager rows, and the served variant at the configured batch size."""
    largest = max(row["batch"] for row in limits)
    for row in limits:
        eager = row["variant"] == "eager fp32"
        if row["images_per_s"] is None or not (eager or row["batch"] == largest):
            continue
        axis.axhline(
            row["images_per_s"], linestyle="--", linewidth=1, color="grey" if eager else "black"
        )
        axis.annotate(
            f"limit: {row['variant']}, batch {row['batch']}",
            (1, row["images_per_s"]),
            fontsize=7,
            va="bottom",
        )


def chart(results: dict, path) -> None:
    photos = sorted({r["photo"] for r in results["loads"]}, key=lambda p: int(p.split("x")[0]))
    fig, axes = plt.subplots(1, len(photos), figsize=(6 * len(photos), 4.5))
    for axis, photo in zip(axes, photos, strict=True):
        for system in dict.fromkeys(r["system"] for r in results["loads"]):
            rows = [r for r in results["loads"] if (r["system"], r["photo"]) == (system, photo)]
            axis.plot(
                [r["concurrency"] for r in rows],
                [r["images_per_s"] for r in rows],
                marker="o",
                label=system,
            )
        if photo == photos[0]:
            _limit_lines(axis, results["limits"])
        else:
            axis.set_ylim(bottom=0)
        axis.set(
            xscale="log",
            xticks=[1, 4, 16],
            xticklabels=["1", "4", "16"],
            xlabel="concurrent clients",
            ylabel="images/s",
            title=f"{photo} photos",
        )
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="center left")
    fig.suptitle(f"petseg served vs the bare model ({results['machine']['cores']} cores)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
