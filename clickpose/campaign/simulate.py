"""The simulated annotator: the NoC click simulator labels the chosen images from their ground
truth with the current model (refine mode, annotator protocol) and is charged its clicks.

The labels it hands back are the ground truth of those images: what a careful person ends with.
The clicks are what it took to get there, image by image.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from clickpose.campaign import labels as label_sets
from clickpose.campaign.threads import torch_threads
from clickpose.evaluate import NocSettings, checkpoint_editors, run_noc
from clickpose.evaluate.inputs import schema_for


@dataclass
class AnnotatedBatch:
    labels: dict                      # COCO dict, file_name = image key
    records: list[dict] = field(default_factory=list)  # {"image", "clicks", "seconds", ...}

    @property
    def clicks(self) -> int:
        return sum(r["clicks"] for r in self.records)


def simulate_annotation(checkpoint: str | Path, pool_dir: Path, ground_truth: dict,
                        keys: list[str], target: int = 95, max_rounds: int = 17,
                        seconds_per_click: float = 2.0, threads: int | None = None,
                        device: str | None = None) -> AnnotatedBatch:
    """Label `keys` (pool/<file_name>) from `ground_truth` and count the clicks it needs.

    Per image: clicks until its OKS AP reaches `target` percent (or `max_rounds` rounds), as
    keypoint clicks plus the deletions and drawn boxes of the annotator protocol. Images
    without a person that counts cost 0 clicks. `seconds` is an estimate (clicks x
    seconds_per_click) so records stay comparable with a person's timed ones.
    """
    chosen = label_sets.subset(ground_truth, keys, label_sets.POOL)
    if not chosen["images"]:
        return AnnotatedBatch(labels=chosen)
    schema = schema_for(chosen, None, "ground truth")
    # The NoC simulator reads images by the dataset's file names inside pool_dir/images.
    by_id = {im["id"]: im for im in ground_truth["images"]}
    local = {**chosen, "images": [{**im, "file_name": by_id[im["id"]]["file_name"]}
                                  for im in chosen["images"]]}
    settings = NocSettings(targets=(target,), mode="refine", protocol="annotator",
                           max_rounds=max_rounds, ap_after=0, dataset_ap=False)
    with torch_threads(threads):
        editors = checkpoint_editors(checkpoint, pool_dir, local, "refine", schema,
                                     device=device)
        result = run_noc(local, editors, settings, schema)
    runs = {run.image_id: run for run in result.images}
    records = []
    for im in chosen["images"]:
        run = runs.get(im["id"])
        outcome = run.outcome(target) if run else {"total_clicks": 0, "rounds": 0,
                                                   "reached": True}
        clicks = int(outcome["total_clicks"])
        records.append({"image": im["file_name"], "clicks": clicks,
                        "seconds": clicks * seconds_per_click, "rounds": int(outcome["rounds"]),
                        "reached": bool(outcome["reached"]), "annotator": "simulated"})
    return AnnotatedBatch(labels=chosen, records=records)
