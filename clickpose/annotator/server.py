"""The annotator's web server (FastAPI): the page, the image pixels, and one small JSON API
over the task folder and the model's InteractiveSession.

    GET  /                          the page (static/index.html)
    GET  /api/task                  schema, images (accepted or not), status
    GET  /api/status                images done / left, clicks, seconds, complete
    GET  /api/images/{id}/pixels    the image file
    POST /api/images/{id}/open      start (or resume) editing; returns the image's state
    POST /api/images/{id}/click     {person, keypoint, x, y, visible}
    POST /api/images/{id}/visibility  {person, keypoint, v}
    POST /api/images/{id}/add_person  {box: [x0, y0, x1, y1]}
    POST /api/images/{id}/remove_person  {person}
    POST /api/images/{id}/confirm_person {person}
    POST /api/images/{id}/undo
    POST /api/images/{id}/accept    save the label now (atomic), with its provenance
    POST /api/finish                mark the task complete
Edits run one at a time (a lock): the session is not thread-safe, and one person annotates.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from clickpose.annotator.bodies import BoxBody, ClickBody, PersonBody, VisibilityBody
from clickpose.annotator.editor import EditError, ImageEditor
from clickpose.annotator.security import GuardMiddleware
from clickpose.annotator.task import Task, TaskError
from clickpose.data.errors import DataError

STATIC = Path(__file__).resolve().parent / "static"
MAX_BODY_BYTES = 16 * 1024
OPEN_EDITORS = 4   # images kept in memory for previous / next without losing their edits


def load_task_model(task: Task, checkpoint: str | Path | None = None, device: str = "cpu"):
    from clickpose.model.checkpoint import load_model

    path = checkpoint or task.checkpoint
    if path is None:
        raise TaskError(f"task {task.folder}: no checkpoint recorded; pass one (--checkpoint)")
    return load_model(path, device=device, schema=task.schema)


class Workspace:
    """The task, the model, and the editors of the images opened, behind one lock."""

    def __init__(self, task: Task, model):
        self.task, self.model = task, model
        self.lock = threading.Lock()
        self.editors: OrderedDict[str, ImageEditor] = OrderedDict()
        self.active: str | None = None

    def editor(self, image_id: str) -> ImageEditor:
        if image_id not in {image.id for image in self.task.images}:
            raise EditError(f"image '{image_id}' is not part of task '{self.task.name}'", 404)
        if self.active is not None and self.active != image_id and self.active in self.editors:
            self.editors[self.active].pause()
        editor = self.editors.get(image_id)
        if editor is None:
            editor = ImageEditor(self.task, image_id, self.model)
            self.editors[image_id] = editor
            while len(self.editors) > OPEN_EDITORS:
                self.editors.popitem(last=False)
        self.editors.move_to_end(image_id)
        editor.resume()
        self.active = image_id
        return editor


def create_app(task_dir: str | Path, model=None, token: str | None = None,
               max_body_bytes: int = MAX_BODY_BYTES, torch_threads: int | None = 1) -> FastAPI:
    """The annotator app for one task. `model`: a ClickPose (else the task's checkpoint);
    `token`: required on every request when set. One torch thread keeps a click's latency
    steady on a busy machine (the decoder is small; more threads mostly wait for each other)."""
    task = Task(task_dir)
    if torch_threads:
        import torch

        torch.set_num_threads(torch_threads)
    model = model if model is not None else load_task_model(task)
    model.eval()
    work = Workspace(task, model)
    app = FastAPI(title="Click-Pose annotator", docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.workspace = work

    @app.exception_handler(EditError)
    async def _edit_error(_: Request, e: EditError):
        return JSONResponse({"detail": str(e)}, status_code=e.status)

    @app.exception_handler(TaskError)
    async def _task_error(_: Request, e: TaskError):
        return JSONResponse({"detail": str(e)}, status_code=409)

    @app.exception_handler(DataError)
    async def _data_error(_: Request, e: DataError):
        return JSONResponse({"detail": str(e)}, status_code=409)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, e: RequestValidationError):
        problems = []
        for err in e.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
            problems.append(f"{where}: {err.get('msg')}")
        return JSONResponse({"detail": "; ".join(problems)}, status_code=422)

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/task")
    def get_task():
        labels = set(task.labels())
        return {"name": task.name,
                "schema": {"name": task.schema.name, "keypoints": task.schema.keypoints,
                           "skeleton": task.schema.skeleton,
                           "flip_pairs": task.schema.flip_pairs},
                "images": [{"id": i.id, "width": i.width, "height": i.height,
                            "uncertainty": i.uncertainty, "reason": i.reason,
                            "name": Path(i.filepath).name, "accepted": i.id in labels}
                           for i in task.images],
                "status": task.status().to_dict()}

    @app.get("/api/status")
    def get_status():
        return task.status().to_dict()

    @app.get("/api/images/{image_id}/pixels")
    def pixels(image_id: str):
        if image_id not in {image.id for image in task.images}:
            raise EditError(f"image '{image_id}' is not part of task '{task.name}'", 404)
        return FileResponse(task.image(image_id).filepath)

    def act(image_id: str, do):
        with work.lock:
            return do(work.editor(image_id))

    @app.post("/api/images/{image_id}/open")
    def open_image(image_id: str):
        return act(image_id, lambda ed: ed.state())

    @app.post("/api/images/{image_id}/click")
    def click(image_id: str, body: ClickBody):
        return act(image_id, lambda ed: ed.click(body.person, body.keypoint, body.x, body.y,
                                                 body.visible))

    @app.post("/api/images/{image_id}/visibility")
    def visibility(image_id: str, body: VisibilityBody):
        return act(image_id, lambda ed: ed.set_visibility(body.person, body.keypoint, body.v))

    @app.post("/api/images/{image_id}/add_person")
    def add_person(image_id: str, body: BoxBody):
        return act(image_id, lambda ed: ed.add_person(body.box))

    @app.post("/api/images/{image_id}/remove_person")
    def remove_person(image_id: str, body: PersonBody):
        return act(image_id, lambda ed: ed.remove_person(body.person))

    @app.post("/api/images/{image_id}/confirm_person")
    def confirm_person(image_id: str, body: PersonBody):
        return act(image_id, lambda ed: ed.confirm_person(body.person))

    @app.post("/api/images/{image_id}/undo")
    def undo(image_id: str):
        return act(image_id, lambda ed: ed.undo())

    @app.post("/api/images/{image_id}/accept")
    def accept(image_id: str):
        state = act(image_id, lambda ed: ed.accept())
        return {**state, "status": task.status().to_dict()}

    @app.post("/api/finish")
    def finish():
        with work.lock:
            return task.mark_complete().to_dict()

    app.add_middleware(GuardMiddleware, token=token, max_body_bytes=max_body_bytes)
    return app
