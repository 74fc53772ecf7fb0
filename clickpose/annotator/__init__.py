"""The Click-Pose web annotator: a task folder on disk, a FastAPI server over the model's
InteractiveSession, and a plain JS page. See "Annotating with Click-Pose" in the README."""
from clickpose.annotator.task import (
    Label,
    Task,
    TaskError,
    TaskImage,
    TaskStatus,
    create_task,
    wait_until_complete,
)

__all__ = ["Label", "Task", "TaskError", "TaskImage", "TaskStatus", "create_task",
           "wait_until_complete"]
