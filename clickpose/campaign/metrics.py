"""A round's model on the fixed validation set: OKS AP (pycocotools) on every image, and
NoC@85/90/95 (refine mode, annotator protocol) on the first `noc_images` of them."""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

from clickpose.campaign.threads import torch_threads
from clickpose.evaluate import NocSettings, checkpoint_editors, evaluate_ap, run_noc
from clickpose.evaluate.inputs import schema_for

NOC_TARGETS = (85, 90, 95)


def evaluate_checkpoint(checkpoint: str | Path, val_dir: Path, noc_images: int | None = 20,
                        noc_max_rounds: int = 17, device: str | None = None,
                        threads: int | None = None) -> dict:
    """{"ap", "ap50", "ap75", "noc": {"85": rounds, ...}, "noc_clicks": {...}, "n_val", "n_noc"}."""
    from clickpose.train.predict import predict_folder

    val_dir = Path(val_dir)
    where = val_dir / "annotations.json"
    if not where.is_file():
        raise FileNotFoundError(f"{where}: the validation set must be a labeled dataset folder "
                                "(annotations.json + images/); give its path in val")
    ground_truth = json.loads(where.read_text())
    schema = schema_for(ground_truth, None, str(where))
    noc_set = _first_images(ground_truth, noc_images)
    settings = NocSettings(targets=NOC_TARGETS, mode="refine", protocol="annotator",
                           max_rounds=noc_max_rounds, ap_after=0, dataset_ap=False)
    with torch_threads(threads):
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools' index-building chatter
            results = predict_folder(checkpoint, val_dir, device=device, progress=False)
        ap = evaluate_ap(ground_truth, results, schema)
        editors = checkpoint_editors(checkpoint, val_dir, noc_set, "refine", schema,
                                     device=device)
        noc = run_noc(noc_set, editors, settings, schema).summary()
    targets = noc.get("targets", {})
    return {"ap": ap.stats["AP"], "ap50": ap.stats["AP50"], "ap75": ap.stats["AP75"],
            "noc": {t: v["NoC"] for t, v in targets.items()},
            "noc_clicks": {t: v["mean_total_clicks"] for t, v in targets.items()},
            "n_val": ap.num_images, "n_noc": noc["n_images"]}


def _first_images(dataset: dict, n: int | None) -> dict:
    if n is None or n >= len(dataset["images"]):
        return dataset
    images = sorted(dataset["images"], key=lambda im: im["id"])[:n]
    ids = {im["id"] for im in images}
    return {**dataset, "images": images,
            "annotations": [a for a in dataset["annotations"] if a["image_id"] in ids]}
