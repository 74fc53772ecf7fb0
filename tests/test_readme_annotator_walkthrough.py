"""README.md's "Try it: annotate three images", run as a new user would: its shell commands
(synthetic images, a first model), its script (a FiftyOne pool sent to the `clickpose`
backend, then load_annotations), and three images corrected in real headless Chromium with
the mouse and the keys the README lists. The commands are read from README.md, so the README
cannot drift from what works.

What differs from a user's shell is only environment, outside the README's commands: the
script shares this test session's FiftyOne database (so the labels can be checked here), the
annotator's port is a free one, set through FiftyOne's backend environment
(FIFTYONE_CLICKPOSE_PORT), and torch uses one thread.
Set CLICKPOSE_WALKTHROUGH_SHOTS=DIR to keep the page's screenshots."""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from annotator_fixtures import free_port, make_checkpoint, make_images
from browser_fixtures import CHROMIUM, CHROMIUM_ARGS, needs_chromium, screen_point

README = Path(__file__).resolve().parent.parent / "README.md"
SECTION = "### Try it: annotate three images"


# ---- the README's commands ------------------------------------------------------------------
def readme_walkthrough() -> dict:
    """The section's three code blocks: setup (bash), the script (python, with the file name
    the text gives it) and the command that runs it (bash)."""
    text = README.read_text(encoding="utf-8")
    assert SECTION in text, f"README.md has no section '{SECTION}'"
    section = text.split(SECTION, 1)[1].split("\n### ", 1)[0]
    blocks = re.findall(r"```(\w+)\n(.*?)```", section, flags=re.DOTALL)
    assert [lang for lang, _ in blocks] == ["bash", "python", "bash"], [b[0] for b in blocks]
    name = re.search(r"Save this as `([\w.-]+\.py)`", section)
    assert name, "the section must say which file the script is saved as"
    setup, script, run = (code for _, code in blocks)
    assert name.group(1) in run
    activate = [line for line in setup.splitlines() if line.startswith("source ")]
    assert activate, "the setup block activates the project's environment first"
    return {"setup": setup, "script_name": name.group(1), "script": script, "run": run,
            "activate": activate[0]}


def user_environment(port: int) -> dict:
    env = dict(os.environ)
    env.pop("CLICKPOSE_WORK", None)       # the user's ./work: task folders go there
    env.update({"OMP_NUM_THREADS": "1",
                "FIFTYONE_ANNOTATION_BACKENDS": "*,clickpose",
                "FIFTYONE_CLICKPOSE_CONFIG_CLS": "clickpose.fo_backend.ClickPoseBackendConfig",
                "FIFTYONE_CLICKPOSE_PORT": str(port)})
    return env


def project_venv(home: Path) -> None:
    """`source .venv/bin/activate` from `home`: the environment running these tests."""
    venv = Path(sys.prefix)
    if (venv / "bin" / "activate").exists():
        (home / ".venv").symlink_to(venv)
    else:   # not a virtual environment: an activate script that puts this python first
        bin_dir = home / ".venv" / "bin"
        bin_dir.mkdir(parents=True)
        (bin_dir / "activate").write_text(
            f'export PATH="{Path(sys.executable).parent}:$PATH"\n')


class Output:
    """A child's stdout, read as it comes (the annotator's address appears mid-run)."""

    def __init__(self, process: subprocess.Popen):
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process):
        for line in process.stdout:
            self.lines.append(line.rstrip("\n"))

    def text(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: str, process: subprocess.Popen, timeout: float) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.text())
            if found:
                return found
            if process.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"no {pattern!r} in the script's output:\n{self.text()[-3000:]}")


# ---- the page, driven as a person would -------------------------------------------------------
KEYPOINTS_TO_TRY = [0, 5, 6, 9, 10, 11, 12, 13, 14, 15, 16, 7, 8, 1, 2, 3, 4]


def press(page, key: str, endpoint: str) -> None:
    """A key whose edit goes to the server; returns once the page has shown the answer."""
    with page.expect_response(lambda r: r.url.endswith(endpoint)) as answer:
        page.keyboard.press(key)
    assert answer.value.status == 200, (key, answer.value.text())
    page.wait_for_function("!app.busy")


def wait_rows(page, n: int) -> None:
    page.wait_for_function(f"document.querySelectorAll('#persons li').length === {n}")


class Person:
    """A person looking at one image in the annotator, following the README's steps."""

    def __init__(self, page, image: dict, truths: list[dict]):
        self.page, self.truths = page, truths
        self.size = (image["width"], image["height"])
        self.rows = page.locator("#persons li").count()   # the model's own persons
        self.found = self.rows
        self.clicked: list[tuple[int, np.ndarray]] = []   # (keypoint, image pixel) in order
        self.occluded = self.not_labelled = None

    def dot(self, person: int, keypoint: int) -> np.ndarray:
        c = self.page.locator(f'circle.kp[data-person="{person}"][data-keypoint="{keypoint}"]')
        return np.array([float(c.get_attribute("cx")), float(c.get_attribute("cy"))])

    def grabbable(self, person: int) -> list[int]:
        """Keypoints of `person` whose dot is what the mouse meets at its centre."""
        return self.page.evaluate("""([person, candidates]) => candidates.filter((k) => {
            const c = document.querySelector(
                `circle.kp[data-person="${person}"][data-keypoint="${k}"]`);
            const r = c.getBoundingClientRect();
            return document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2) === c;
        })""", [person, KEYPOINTS_TO_TRY])

    def draw_box(self, box) -> int:
        """B, then drag a box (x0, y0, x1, y1 in image pixels); the new person's index."""
        self.page.keyboard.press("b")
        assert "drag a box" in self.page.text_content("#message")
        self.page.mouse.move(*screen_point(self.page, box[0], box[1]))
        self.page.mouse.down()
        with self.page.expect_response(lambda r: r.url.endswith("/add_person")) as answer:
            self.page.mouse.move(*screen_point(self.page, box[2], box[3]), steps=5)
            self.page.mouse.up()
        assert answer.value.status == 200, answer.value.text()
        self.rows += 1
        wait_rows(self.page, self.rows)
        assert self.page.locator("#no-persons").is_hidden()
        return self.rows - 1

    def box_around(self, truth: dict) -> int:
        x, y, w, h = truth["bbox"]
        return self.draw_box((x, y, x + w, y + h))

    def true_place(self, keypoint: int, truth: dict) -> np.ndarray:
        """The drawn figure's own point (its box centre when the point is not drawn)."""
        x, y, v = truth["keypoints"][3 * keypoint: 3 * keypoint + 3]
        if v == 0:
            bx, by, bw, bh = truth["bbox"]
            x, y = bx + bw / 2, by + bh / 2
        return np.clip(np.array([x, y], dtype=float), 2.0, np.array(self.size) - 2.0)

    def drag(self, person: int, keypoint: int, truth: dict) -> None:
        """Drag the keypoint's dot to its true place; the dot must land there."""
        target = self.true_place(keypoint, truth)
        self.page.mouse.move(*screen_point(self.page, *self.dot(person, keypoint)))
        self.page.mouse.down()
        with self.page.expect_response(lambda r: r.url.endswith("/click")) as answer:
            self.page.mouse.move(*screen_point(self.page, *target), steps=5)
            self.page.mouse.up()
        assert answer.value.status == 200, answer.value.text()
        self.page.wait_for_function(
            "([p, k, x, y]) => { const c = document.querySelector("
            "`circle.kp[data-person='${p}'][data-keypoint='${k}']`); return c && "
            "Math.abs(+c.getAttribute('cx') - x) < 1 && Math.abs(+c.getAttribute('cy') - y) < 1; }",
            arg=[person, keypoint, float(target[0]), float(target[1])])
        self.clicked.append((keypoint, target))
        self.wait_clicks()

    def wait_clicks(self) -> None:
        n = len(self.clicked)
        self.page.wait_for_function(
            "(n) => document.getElementById('image-state').textContent.includes("
            "`this image: ${n} click`)", arg=n)

    def accept(self) -> None:
        press(self.page, "Enter", "/accept")


def image_1(ui: Person, shots: Path) -> int:
    """Draw the person, fix two keypoints (the second is occluded), delete a stray box."""
    person = ui.box_around(ui.truths[0])
    first, second = ui.grabbable(person)[:2]
    ui.drag(person, first, ui.truths[0])
    ui.drag(person, second, ui.truths[0])
    press(ui.page, "o", "/visibility")                   # the keypoint just moved
    ui.occluded = second
    w, h = ui.size
    ui.draw_box((0.02 * w, 0.02 * h, 0.2 * w, 0.15 * h))  # by mistake
    press(ui.page, "x", "/remove_person")                # the new person is the selected one
    ui.rows -= 1
    wait_rows(ui.page, ui.rows)
    ui.page.screenshot(path=str(shots / "image1-corrected.png"))
    return person


def image_2(ui: Person, shots: Path) -> int:
    """Two persons; fix one keypoint, undo a wrong drag, confirm the other person."""
    person = ui.box_around(ui.truths[0])
    ui.box_around(ui.truths[1] if len(ui.truths) > 1 else ui.truths[0])
    ui.page.keyboard.press(str(person + 1))                # select the first one again
    assert ui.page.locator("#persons li.selected").get_attribute("data-person") == str(person)
    first, second = ui.grabbable(person)[:2]
    ui.drag(person, first, ui.truths[0])
    ui.drag(person, second, ui.truths[0])
    press(ui.page, "z", "/undo")                         # that one was right before
    ui.clicked.pop()
    ui.wait_clicks()
    # A drag that starts beside every dot moves nothing (not even the selected keypoint).
    sent = []
    ui.page.on("request", lambda r: sent.append(r.url) if "/api/images/" in r.url else None)
    w, h = ui.size
    ui.page.mouse.move(*screen_point(ui.page, 0.5 * w, 0.02 * h))
    ui.page.mouse.down()
    ui.page.mouse.move(*screen_point(ui.page, 0.6 * w, 0.1 * h), steps=4)
    ui.page.mouse.up()
    ui.page.wait_for_timeout(300)
    assert sent == [] and "start the drag on its dot" in ui.page.text_content("#message")
    ui.page.keyboard.press("Tab")                        # the other person
    press(ui.page, "c", "/confirm_person")
    assert "confirmed" in ui.page.text_content("#message")
    ui.page.screenshot(path=str(shots / "image2-corrected.png"))
    return person


def image_3(ui: Person, shots: Path) -> int:
    """One person; fix one keypoint, mark another one not labelled (N)."""
    person = ui.box_around(ui.truths[0])
    grabbable = ui.grabbable(person)
    ui.drag(person, grabbable[0], ui.truths[0])
    hidden = [k for k in ui.grabbable(person) if k != grabbable[0]][-1]
    ui.page.click(f'circle.kp[data-person="{person}"][data-keypoint="{hidden}"]')
    name = ui.page.evaluate("(k) => app.task.schema.keypoints[k]", hidden)
    assert ui.page.text_content("#selected-keypoint") == f"#{person + 1} {name}"
    press(ui.page, "n", "/visibility")
    ui.not_labelled = hidden
    ui.page.screenshot(path=str(shots / "image3-corrected.png"))
    return person


# ---- the tests ----------------------------------------------------------------------------------
@needs_chromium
def test_readme_walkthrough_annotates_three_images(tmp_path):
    from playwright.sync_api import sync_playwright

    steps = readme_walkthrough()
    project_venv(tmp_path)
    port = free_port()
    env = user_environment(port)
    shots = Path(os.environ.get("CLICKPOSE_WALKTHROUGH_SHOTS") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)

    # The data: every command of the README's setup block, in one shell, as typed.
    setup = subprocess.Popen(["bash", "-e", "-c", steps["setup"] + "\npwd > .walkthrough-cwd\n"],
                             cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    # Meanwhile (the setup trains on one thread), this process opens the FiftyOne database
    # the script will share, to check its labels at the end.
    import fiftyone as fo

    import clickpose.fo_backend  # noqa: F401  (the backend, for load_annotation_results)

    fo.list_datasets()
    out, _ = setup.communicate(timeout=240)
    assert setup.returncode == 0, out[-4000:]
    home = Path(next(tmp_path.rglob(".walkthrough-cwd")).read_text().strip())
    (home / steps["script_name"]).write_text(steps["script"])
    coco = json.loads((home / "data/pool/annotations.json").read_text())
    images = sorted(coco["images"], key=lambda im: im["file_name"])
    assert len(images) == 3

    # The same shell session: activated where the setup was, then in the setup's folder.
    session = f"{steps['activate']}\ncd '{home}'\n{steps['run']}"
    run = subprocess.Popen(["bash", "-e", "-c", session], cwd=tmp_path, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = Output(run)
    done = []   # (Person, index of the corrected person) per image
    try:
        url = output.wait_for(r"Click-Pose annotator: (http://127\.0\.0\.1:(\d+)/\S*)", run,
                              timeout=180)
        assert int(url.group(2)) == port
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 820})
            page.goto(url.group(1))
            for i, (image, correct) in enumerate(zip(images, (image_1, image_2, image_3))):
                page.wait_for_function(
                    "(name) => document.getElementById('image-name').textContent"
                    ".startsWith(name)", arg=image["file_name"])
                page.wait_for_function("document.getElementById('image-state').textContent"
                                       ".includes('this image: 0 clicks')")
                truths = [a for a in coco["annotations"] if a["image_id"] == image["id"]]
                ui = Person(page, image, truths)
                if ui.rows == 0:   # the first model finds nobody: the page says what to do
                    assert "Press B" in page.text_content("#no-persons")
                    assert page.locator("#no-persons").is_visible()
                page.screenshot(path=str(shots / f"image{i + 1}-open.png"))
                done.append((ui, correct(ui, shots)))
                ui.accept()
            page.wait_for_function("document.getElementById('status').textContent"
                                   ".startsWith('3 / 3 accepted')")
            assert "Finish task" in page.text_content("#message")   # the page says what's next
            with page.expect_response(lambda r: r.url.endswith("/api/finish")):
                page.keyboard.press("Shift+F")
            page.wait_for_function("document.getElementById('status').textContent"
                                   ".includes('task finished')")
            page.screenshot(path=str(shots / "finished.png"))
            browser.close()
        assert run.wait(timeout=120) == 0, output.text()[-3000:]
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    printed = output.text()
    if not any(ui.found for ui, _ in done):   # the script said why the images were empty
        assert "no person pre-labelled on the 3 images" in printed, printed[-2000:]
        assert "draw each person's box in the annotator (B, then drag)" in printed
    with socket.socket() as probe:   # the annotator stopped with the script
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))

    # The labels, loaded by the README's script, as FiftyOne has them.
    dataset = fo.load_dataset("try-annotator")
    try:
        results = dataset.load_annotation_results("try")
        assert results.status().complete and results.status().done == 3
        names = dataset.default_skeleton.labels
        actions = []
        for image, (ui, _), sample in zip(images, done, dataset.sort_by("filepath")):
            file_name, (w, h) = image["file_name"], ui.size
            assert Path(sample.filepath).name == file_name
            persons = sample.ground_truth.keypoints
            assert len(persons) == ui.rows == len(sample.ground_truth_boxes.detections)
            assert sample.ground_truth_clicks == len(ui.clicked)
            assert sample.ground_truth_seconds > 0
            provenance = results.task.label(sample.id).provenance
            clicked_names = [names[k] for k, _ in ui.clicked]
            assert [c["keypoint"] for c in provenance["clicks"]] == clicked_names
            person = next(kp for kp in persons if kp.id == provenance["clicks"][0]["person_id"])
            for k, target in ui.clicked:
                assert person.points[k] == pytest.approx([target[0] / w, target[1] / h],
                                                         abs=1e-3)
            if ui.occluded is not None:
                assert person.visible[ui.occluded] == 1
            if ui.not_labelled is not None:
                assert person.visible[ui.not_labelled] == 0
            actions.append([a["action"] for a in provenance["actions"]])
            # the script's own line for the image
            line = next(line for line in printed.splitlines() if line.startswith(file_name))
            assert line.startswith(f"{file_name} {ui.rows} persons, {len(ui.clicked)} clicks,")
            assert line.endswith("clicked: " + ", ".join(clicked_names)), line
        assert actions[0].count("add_person") == 2 and "remove_person" in actions[0]
        assert "visibility" in actions[0]
        assert {"undo", "confirm_person"} <= set(actions[1]) and actions[1].count("click") == 2
        assert "visibility" in actions[2]
    finally:
        dataset.delete()


def test_annotate_cli_says_how_many_persons_and_what_to_do_with_none(tmp_path):
    """`clickpose annotate create` with a model that finds nobody says so and what to do;
    `export` says how much of the task it wrote."""
    from typer.testing import CliRunner

    from clickpose.cli.main import app

    _, checkpoint = make_checkpoint(tmp_path / "checkpoint")
    images = make_images(tmp_path / "data", 2)[0].parent
    runner = CliRunner()

    def cli(*args):
        result = runner.invoke(app, ["annotate", *map(str, args)])
        assert result.exit_code == 0, result.output
        return " ".join(result.output.split())

    said = cli("create", images, "--task", tmp_path / "empty", "--checkpoint", checkpoint,
               "--min-score", "1.0")   # person scores are below 1: nobody is kept
    assert "2 images and 0 pre-labelled persons" in said
    assert "draw each person's box in the annotator (B, then drag)" in said
    assert "--min-score" in said
    said = cli("create", images, "--task", tmp_path / "guesses", "--checkpoint", checkpoint,
               "--min-score", "0", "--max-persons", "2")
    assert "2 images and 4 pre-labelled persons" in said and "note:" not in said
    said = cli("export", tmp_path / "guesses", "--out", tmp_path / "labels.json")
    assert "0 accepted images, 0 persons (2 of 2 images not accepted yet)" in said
    assert json.loads((tmp_path / "labels.json").read_text())["annotations"] == []
