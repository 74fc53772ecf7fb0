"""Evaluation results as rich tables (for people) and JSON files (for the round registry)."""
from __future__ import annotations

from pathlib import Path

from rich.table import Table

from clickpose.evaluate.ap import STAT_NAMES, ApResult
from clickpose.evaluate.noc import NocResult
from clickpose.io import atomic_write_json

_AP_LABELS = {
    "AP": "AP @ OKS .50:.95", "AP50": "AP @ OKS .50", "AP75": "AP @ OKS .75",
    "AP_medium": "AP medium", "AP_large": "AP large",
    "AR": "AR @ OKS .50:.95", "AR50": "AR @ OKS .50", "AR75": "AR @ OKS .75",
    "AR_medium": "AR medium", "AR_large": "AR large",
}


def _value(v: float) -> str:
    return "n/a" if v < 0 else f"{v:.3f}"


def ap_table(result: ApResult, title: str = "COCO keypoint AP") -> Table:
    table = Table(title=title, caption=f"{result.num_images} images, {result.num_persons} "
                  f"persons, {result.num_detections} detections, schema {result.schema_name}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name in STAT_NAMES:
        table.add_row(_AP_LABELS[name], _value(result.stats[name]))
    return table


_ERROR_LABELS = {"jitter": "jitter", "inversion": "inversion (left/right)",
                 "swap": "swap (other person)", "miss": "miss"}


def error_table(lines: list[dict]) -> Table:
    """clickpose.evaluate.error_classes.diagnose's lines: each kind's share of the labelled
    keypoints of matched persons and the AP with that kind set right."""
    classes, aps = lines[0], {line["fixed"]: line for line in lines[1:]}
    table = Table(title="Keypoint errors and the AP without them",
                  caption=f"{classes['matched']} of {classes['persons']} persons matched, "
                          f"{classes['predictions']} predictions; "
                          f"AP as predicted {aps['nothing']['AP']:.3f}")
    table.add_column("error")
    for column in ("keypoints", "share", "AP set right", "AP50", "AP75"):
        table.add_column(column, justify="right")

    def ap_cells(fixed: str) -> list[str]:
        return [f"{aps[fixed][name]:.3f}" for name in ("AP", "AP50", "AP75")]

    for kind, label in _ERROR_LABELS.items():
        table.add_row(label, str(classes["counts"][kind]), f"{classes['shares'][kind]:.1%}",
                      *ap_cells(kind))
    table.add_row("all large errors", "", "", *ap_cells("inversion+swap+miss"))
    table.add_row("perfect ranking", "", "", *ap_cells("ranking"))
    return table


MATCHING_ROWS = ("mean_official_clicks", "n_never_reached_with_unmatched_gt",
                 "n_never_reached_fp_outranks")


def noc_tables(result: NocResult) -> list[Table]:
    """The NoC table per target and the AP-after-k-rounds table."""
    s = result.summary()
    title = (f"NoC, {s['mode']} mode, {s['protocol']} protocol, {s['n_images']} images with "
             "annotated persons")
    noc = Table(title=title)
    noc.add_column("")
    targets = list(s["targets"])
    for t in targets:
        noc.add_column(f"@{t}", justify="right")
    rows = [
        ("NoC (rounds)", "NoC", "{:.2f}"),
        ("keypoint clicks / image", "mean_kpt_clicks", "{:.2f}"),
        ("rounds x matched persons / image", "mean_official_clicks", "{:.2f}"),
        ("all clicks / image (keypoints, deletions, boxes)", "mean_total_clicks", "{:.2f}"),
        ("images never reaching the target", "n_never_reached", "{}"),
        ("  of which a person is never matched", "n_never_reached_with_unmatched_gt", "{}"),
        ("  of which a false positive outranks", "n_never_reached_fp_outranks", "{}"),
        ("images at the target with no click", "n_zero_clicks", "{}"),
    ]
    if s["mode"] == "manual":  # no poses: nothing is matched, every keypoint is a click
        rows = [row for row in rows if row[1] not in MATCHING_ROWS]
    for label, key, fmt in rows:
        noc.add_row(label, *(fmt.format(s["targets"][t][key]) for t in targets))
    after = Table(title="AP after k rounds of clicks")
    after.add_column("k", justify="right")
    after.add_column("mean image AP", justify="right")
    after.add_column("COCO AP (these images)", justify="right")
    for k, ap in s.get("mean_image_ap_after", {}).items():
        dataset_ap = s["dataset_ap_after"].get(k)
        after.add_row(k, f"{ap:.3f}", "-" if dataset_ap is None else f"{dataset_ap:.3f}")
    return [noc, after]


def write_json(path: str | Path, payload: dict) -> None:
    atomic_write_json(Path(path), payload, indent=2)
