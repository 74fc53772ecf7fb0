"""Accepted labels of a task -> COCO person_keypoints (annotations.json), with provenance."""
from __future__ import annotations

from pathlib import Path

from clickpose.annotator.task import Task
from clickpose.io import atomic_write_json


def task_to_coco(task: Task) -> dict:
    images, annotations = [], []
    for image_id, (entry, label) in enumerate(
            ((im, task.label(im.id)) for im in task.images), start=1):
        if label is None:
            continue
        images.append({"id": image_id, "file_name": Path(entry.filepath).name,
                       "width": entry.width, "height": entry.height, "task_image": entry.id,
                       "clicks": len(label.provenance.get("clicks", [])),
                       "seconds": label.provenance.get("seconds")})
        poses = label.poses
        for p in range(poses.num_persons):
            flat = []
            for (x, y), v in zip(poses.keypoints[p], poses.visibility[p]):
                flat += [0, 0, 0] if v == 0 else [round(float(x), 2), round(float(y), 2), int(v)]
            x0, y0, x1, y1 = (float(v) for v in poses.boxes[p])
            w, h = max(0.0, x1 - x0), max(0.0, y1 - y0)
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": 1,
                "keypoints": flat, "num_keypoints": int((poses.visibility[p] > 0).sum()),
                "bbox": [round(x0, 2), round(y0, 2), round(w, 2), round(h, 2)],
                "area": round(w * h, 2), "iscrowd": 0, "label_id": label.person_ids[p]})
    return {"info": {"description": f"Click-Pose annotation task '{task.name}'"},
            "licenses": [], "images": images, "annotations": annotations,
            "categories": [task.schema.to_coco_category()]}


def export_task(task_dir: str | Path, out: str | Path) -> Path:
    out = Path(out)
    atomic_write_json(out, task_to_coco(Task(task_dir)))
    return out
