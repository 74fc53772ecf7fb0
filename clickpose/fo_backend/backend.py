"""FiftyOne annotation backend `clickpose`: dataset.annotate(..., backend="clickpose") writes
a Click-Pose task folder (images pre-labelled by the model), the annotator edits it, and
dataset.load_annotations(anno_key) merges the accepted images into the label field.

Like the CVAT and Label Studio backends, it is a config class (`ClickPoseBackendConfig`,
named by `config_cls` in FiftyOne's annotation config), a backend and a results class
whose `_from_dict` rebuilds it in any process from what FiftyOne stored: the results only
hold the task folder, so status and loading need no running server.
"""
from __future__ import annotations

import atexit
import shutil
from pathlib import Path

import fiftyone.core.media as fomm
import fiftyone.utils.annotations as foua

from clickpose.annotator.poses_json import order_worst_first
from clickpose.annotator.task import Task, TaskImage, TaskStatus, create_task, wait_until_complete
from clickpose.labels_fo.convert import poses_to_detections, poses_to_keypoints, set_skeleton
from clickpose.labels_fo.pool import sample_poses

BACKEND = "clickpose"
# Keypoint attributes the annotator changes besides `points`: declared in the run's label
# schema so that load_annotations merges them into labels that already existed.
EDITED_ATTRIBUTES = ("visible", "confidence", "score", "bounding_box")


class ClickPoseBackendConfig(foua.AnnotationBackendConfig):
    """Options of dataset.annotate(..., backend="clickpose", **options).

    checkpoint      Click-Pose checkpoint folder: pre-labels and the annotator's model
    task_dir        where the task folder goes (default WORK/annotation-tasks/DATASET-KEY)
    prelabel_field  a Keypoints field to start from instead of the model's predictions
    min_score, max_persons  which predicted persons become pre-labels
    launch          start the annotator server now (else print how to start it)
    host, port, token  where the annotator listens; a host other than loopback needs a token
    """

    def __init__(self, name, label_schema, media_field="filepath", checkpoint=None,
                 task_dir=None, prelabel_field=None, min_score=0.3, max_persons=20,
                 launch=True, host="127.0.0.1", port=8765, token=None, **kwargs):
        super().__init__(name, label_schema, media_field=media_field, **kwargs)
        self.checkpoint = str(checkpoint) if checkpoint is not None else None
        self.task_dir = str(task_dir) if task_dir is not None else None
        self.prelabel_field = prelabel_field
        self.min_score = float(min_score)
        self.max_persons = max_persons
        self.launch = bool(launch)
        self.host = host
        self.port = int(port)
        self._token = token   # private: never stored in the database

    @property
    def token(self):
        return self._token

    @token.setter
    def token(self, value):
        self._token = value

    def load_credentials(self, token=None, **kwargs):
        self._load_parameters(token=token)   # else the "token" of the annotation config


class ClickPoseBackend(foua.AnnotationBackend):
    @property
    def supported_media_types(self):
        return [fomm.IMAGE]

    @property
    def supported_label_types(self):
        return ["keypoints"]

    @property
    def supported_scalar_types(self):
        return []

    @property
    def supported_attr_types(self):
        return ["text"]

    @property
    def supports_keyframes(self):
        return False

    @property
    def supports_video_sample_fields(self):
        return False

    @property
    def requires_label_schema(self):
        return True

    def recommend_attr_tool(self, name, value):
        return {"type": "text"}

    def requires_attr_values(self, attr_type):
        return False

    def _connect_to_api(self):
        return None

    # ---- annotate() ---------------------------------------------------------------------
    def upload_annotations(self, samples, anno_key, launch_editor=False):
        from clickpose.annotator.prelabel import prelabel
        from clickpose.model.checkpoint import checkpoint_schema, load_model

        label_field = _single_keypoints_field(self.config.label_schema)
        self.config.label_schema[label_field]["attributes"] = {
            name: {"type": "text"} for name in EDITED_ATTRIBUTES}
        self.update_run_config(samples, anno_key, self.config)
        if not self.config.checkpoint:
            raise ValueError("backend 'clickpose': pass checkpoint=PATH (a Click-Pose checkpoint "
                             "folder) to annotate(), or set it in the annotation config")
        schema = checkpoint_schema(self.config.checkpoint)
        existing = self.config.label_schema[label_field].get("existing_field", False)
        task_dir = Path(self.config.task_dir or _default_task_dir(samples, anno_key))
        if (task_dir / "task.json").exists():
            raise ValueError(f"{task_dir}: a Click-Pose task is already there (from an earlier "
                             f"run?); pass task_dir=... or delete that folder, then "
                             f"dataset.delete_annotation_run('{anno_key}') and annotate again")
        prelabel_field = self.config.prelabel_field
        if prelabel_field and not samples.has_sample_field(prelabel_field):
            raise ValueError(f"prelabel_field '{prelabel_field}' is not a field of the dataset; "
                             "name a Keypoints field (e.g. 'predictions') or leave it out to "
                             "pre-label with the model")
        model = None
        dataset = samples._root_dataset
        if dataset.default_skeleton is None and label_field not in dataset.skeletons:
            set_skeleton(dataset, schema, label_field)   # the App draws the skeleton
        samples.compute_metadata(progress=False)
        images, prelabels, person_ids, id_map = [], {}, {}, {}
        for sample in samples.iter_samples(progress=True):
            w, h = sample.metadata.width, sample.metadata.height
            ids = None
            if existing and sample[label_field] is not None:
                poses = sample_poses(sample, label_field, schema.num_keypoints)
                ids = [kp.id for kp in sample[label_field].keypoints]
                id_map[sample.id] = list(ids)
            elif prelabel_field and sample[prelabel_field] is not None:
                poses = sample_poses(sample, prelabel_field, schema.num_keypoints)
            else:
                model = model or load_model(self.config.checkpoint, schema=schema)
                poses = prelabel(model, sample.filepath, self.config.min_score,
                                 self.config.max_persons)
            order = order_worst_first(poses)
            prelabels[sample.id] = poses.select(order)
            if ids is not None:
                person_ids[sample.id] = [ids[i] for i in order]
            images.append(TaskImage(
                id=sample.id, filepath=sample.filepath, width=w, height=h,
                uncertainty=_get(sample, "uncertainty"), reason=_get(sample, "selection_reason")))
        if not any(poses.num_persons for poses in prelabels.values()):
            print(f"Click-Pose: no person pre-labelled on the {len(images)} images (none scored "
                  f"min_score={self.config.min_score} or more): draw each person's box in the "
                  "annotator (B, then drag), or annotate again with a lower min_score",
                  flush=True)
        create_task(task_dir, images, prelabels, schema, checkpoint=self.config.checkpoint,
                    name=f"{samples._root_dataset.name}/{anno_key}", person_ids=person_ids)
        results = ClickPoseAnnotationResults(samples, self.config, anno_key,
                                             {label_field: id_map}, str(task_dir), backend=self)
        if self.config.launch or launch_editor:
            results.launch_editor()
        else:
            print(f"Click-Pose task written to {task_dir}; start the annotator with "
                  f"results.launch_editor() or:\n  clickpose annotate serve {task_dir}",
                  flush=True)
        return results

    # ---- load_annotations() -------------------------------------------------------------
    def download_annotations(self, results):
        """Accepted images become labels (same ids as the labels they edit); images not yet
        accepted keep their current labels. Also writes each person's box to
        LABEL_FIELD_boxes and the image's clicks and seconds to LABEL_FIELD_clicks /
        LABEL_FIELD_seconds."""
        label_field = _single_keypoints_field(self.config.label_schema)
        task = Task(results.task_dir)
        labels = task.labels()
        dataset = results.samples._root_dataset
        dataset.compute_metadata(progress=False)
        annos = {}
        edited = results.id_map.get(label_field, {})
        for sample in dataset.select(list(edited) + list(labels)).iter_samples(autosave=True):
            label = labels.get(sample.id)
            if label is None:   # not accepted yet: leave its labels as they are
                current = sample[label_field] if sample.has_field(label_field) else None
                annos[sample.id] = {kp.id: kp for kp in (current.keypoints if current else [])}
                continue
            w, h = sample.metadata.width, sample.metadata.height
            keypoints = poses_to_keypoints(label.poses, w, h, hide_unlabelled=True,
                                           ids=label.person_ids)
            annos[sample.id] = {kp.id: kp for kp in keypoints.keypoints}
            sample[f"{label_field}_boxes"] = poses_to_detections(label.poses, w, h,
                                                                 ids=label.person_ids)
            sample[f"{label_field}_clicks"] = len(label.provenance.get("clicks", []))
            sample[f"{label_field}_seconds"] = float(label.provenance.get("seconds", 0.0))
        return {label_field: {"keypoints": annos}}


class ClickPoseAnnotationResults(foua.AnnotationResults):
    """What annotate() returns: the task folder, its status, and the annotator server."""

    def __init__(self, samples, config, anno_key, id_map, task_dir, url=None, backend=None):
        super().__init__(samples, config, anno_key, id_map, backend=backend)
        self.task_dir = str(task_dir)
        self.url = url
        self._server = None

    @property
    def task(self) -> Task:
        return Task(self.task_dir)

    def status(self) -> TaskStatus:
        """Images done / left, clicks, seconds, complete."""
        return self.task.status()

    def print_status(self) -> None:
        s = self.status()
        print(f"{s.done} of {s.images} images accepted, {s.left} left, {s.clicks} clicks, "
              f"{s.seconds:.0f} s" + (", finished" if s.complete else ""))

    def is_complete(self) -> bool:
        return self.task.is_complete()

    def wait(self, timeout: float | None = None, poll_seconds: float = 2.0) -> TaskStatus:
        """Block until the annotator presses "finish"."""
        return wait_until_complete(self.task_dir, timeout, poll_seconds)

    def launch_editor(self, port: int | None = None):
        """Start the annotator server (a child process that stops with this one) and print
        its address."""
        from clickpose.annotator.serve import launch

        self.stop_editor()
        self._server = launch(self.task_dir, host=self.config.host,
                              port=port or self.config.port, token=self.config.token,
                              log_file=Path(self.task_dir) / "server.log")
        # A script that ends must not leave a server holding the port (accepted images are
        # on disk already; the task can be served again with `clickpose annotate serve`).
        atexit.register(self.stop_editor)
        self.url = self._server.url
        print(f"Click-Pose annotator: {self.url}   (open it in a browser; each accepted image "
              "is saved at once; press \"Finish task\" when done)", flush=True)
        return self._server

    def stop_editor(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def cleanup(self):
        """Stop the server and delete the task folder (after load_annotations)."""
        self.stop_editor()
        shutil.rmtree(self.task_dir, ignore_errors=True)

    @classmethod
    def _from_dict(cls, d, samples, config, anno_key):
        return cls(samples, config, anno_key, d["id_map"], d["task_dir"], url=d.get("url"))


def _single_keypoints_field(label_schema: dict) -> str:
    fields = list(label_schema or {})
    if len(fields) != 1 or label_schema[fields[0]].get("type") not in ("keypoints", "keypoint"):
        raise ValueError(f"backend 'clickpose' annotates one keypoints field; got label schema "
                         f"{ {k: v.get('type') for k, v in (label_schema or {}).items()} }; call "
                         "annotate(anno_key, label_field=..., label_type='keypoints')")
    return fields[0]


def _default_task_dir(samples, anno_key: str) -> Path:
    from clickpose.settings import work_dir

    name = samples._root_dataset.name.replace("/", "_")
    return work_dir() / "annotation-tasks" / f"{name}-{anno_key}"


def _get(sample, field: str):
    return sample[field] if sample.has_field(field) else None


