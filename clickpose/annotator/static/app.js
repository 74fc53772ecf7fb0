// Click-Pose annotator page: draws the image and every person's skeleton in one SVG (image
// pixels = SVG user units) and turns drags, clicks and keys into calls to the server's API.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const token = new URLSearchParams(location.search).get("token");
const el = (id) => document.getElementById(id);

const app = {
  task: null,       // GET /api/task
  index: 0,         // position of the current image in task.images
  state: null,      // the current image's state from the server
  person: null,     // selected person index
  keypoint: null,   // selected keypoint index
  drawing: false,   // "add person" mode: the next drag draws a box
  busy: false,
};

// ---- server --------------------------------------------------------------------------
async function api(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  if (token) headers["X-ClickPose-Token"] = token;
  const response = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({ detail: response.statusText }));
  if (!response.ok) throw new Error(data.detail || `HTTP ${response.status}`);
  return data;
}

function say(text, ok = false) {
  const box = el("message");
  box.textContent = text;
  box.className = ok ? "ok" : "";
}

async function edit(action, body, done = "") {
  if (app.busy || !app.state) return;
  app.busy = true;
  try {
    const image = app.task.images[app.index].id;
    app.state = await api("POST", `/api/images/${image}/${action}`, body);
    say(done, true);
  } catch (e) {
    say(e.message);
  } finally {
    app.busy = false;
    render();
  }
}

// ---- images --------------------------------------------------------------------------
async function openImage(index) {
  if (index < 0 || index >= app.task.images.length || app.busy) return;
  const image = app.task.images[index];
  app.busy = true;   // no edit in between: it would reach one image and be drawn on the other
  try {
    const state = await api("POST", `/api/images/${image.id}/open`);
    app.index = index;   // only now: after a failure the page stays on the image it shows
    app.state = state;
    app.person = state.poses.scores.length ? 0 : null;
    app.keypoint = null;
  } catch (e) {
    say(e.message);
    return;
  } finally {
    app.busy = false;
  }
  render();
}

async function accept() {
  if (!app.state || app.busy) return;
  app.busy = true;
  try {
    const image = app.task.images[app.index];
    const saved = await api("POST", `/api/images/${image.id}/accept`);
    image.accepted = true;
    app.state = saved;
    app.task.status = saved.status;
    const left = app.task.images.filter((im) => !im.accepted).length;
    say(left ? `saved ${image.name}` : `saved ${image.name}: all ${app.task.images.length} images ` +
        "accepted. Press \"Finish task\" (Shift+F) to hand the labels over; until then you can " +
        "still go back (←) and accept an image again.", true);
  } catch (e) {
    say(e.message);
    return;
  } finally {
    app.busy = false;
  }
  const next = app.task.images.findIndex((im, i) => i > app.index && !im.accepted);
  await openImage(next >= 0 ? next : Math.min(app.index + 1, app.task.images.length - 1));
}

async function finish() {
  try {
    app.task.status = await api("POST", "/api/finish");
    say("task finished: the labels can be loaded now (dataset.load_annotations(...)); " +
        "you can close this tab.", true);
    render();
  } catch (e) {
    say(e.message);
  }
}

// ---- drawing -------------------------------------------------------------------------
function side(name) {
  if (name.startsWith("left_")) return "left";
  if (name.startsWith("right_")) return "right";
  return "centre";
}

function node(tag, attrs, parent) {
  const n = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
  if (parent) parent.appendChild(n);
  return n;
}

function render() {
  const svg = el("canvas");
  const { state, task } = app;
  if (!state) return;
  const names = task.schema.keypoints;
  const count = state.poses.scores.length;
  if (app.person !== null && app.person >= count) {   // after a deletion or an undo
    app.person = count ? count - 1 : null;
    app.keypoint = null;
  }
  const radius = Math.max(3, Math.min(state.width, state.height) / 90);
  // The image element stays while the image does (no reload, no flicker); poses are redrawn.
  let overlay = svg.querySelector("g.overlay");
  if (!overlay || svg.dataset.image !== state.image) {
    svg.setAttribute("viewBox", `0 0 ${state.width} ${state.height}`);
    svg.replaceChildren();
    svg.dataset.image = state.image;
    const href = `/api/images/${state.image}/pixels` + (token ? `?token=${encodeURIComponent(token)}` : "");
    node("image", { href, x: 0, y: 0, width: state.width, height: state.height }, svg);
    overlay = node("g", { class: "overlay" }, svg);
  }
  overlay.replaceChildren();
  for (const draft of svg.querySelectorAll(".draft")) draft.remove();
  // Person tags keep one size on screen (about 13 px), whatever the image's resolution.
  const ctm = svg.getScreenCTM();
  const tagSize = 13 / (ctm && ctm.a > 0 ? ctm.a : 1);
  const poses = state.poses;
  let selectedGroup = null;
  poses.scores.forEach((score, p) => {
    const g = node("g", { class: "person" + (p === app.person ? " selected" : app.person !== null ? " dim" : ""),
                          "data-person": p }, overlay);
    if (p === app.person) selectedGroup = g;
    const [x0, y0, x1, y1] = poses.boxes[p];
    node("rect", { class: "box", x: x0, y: y0, width: x1 - x0, height: y1 - y0 }, g);
    const label = node("text", { class: "tag", x: x0 + 2, y: Math.max(tagSize, y0 - tagSize / 4),
                                 "font-size": tagSize, "stroke-width": tagSize / 4 }, g);
    label.textContent = `#${p + 1}`;
    for (const [a, b] of task.schema.skeleton) {
      const [xa, ya] = poses.keypoints[p][a];
      const [xb, yb] = poses.keypoints[p][b];
      const sa = side(names[a]), sb = side(names[b]);
      const faint = poses.visibility[p][a] === 0 || poses.visibility[p][b] === 0 ? " faint" : "";
      node("line", { class: `limb ${sa === sb ? sa : "centre"}${faint}`, x1: xa, y1: ya, x2: xb, y2: yb,
                     "stroke-width": radius / 2 }, g);
    }
    poses.keypoints[p].forEach(([x, y], k) => {
      const v = poses.visibility[p][k];
      const selected = p === app.person && k === app.keypoint ? " selected" : "";
      const c = node("circle", { class: `kp ${side(names[k])} v${v}${selected}`, cx: x, cy: y, r: radius,
                                 "data-person": p, "data-keypoint": k, "data-name": names[k] }, g);
      const title = node("title", {}, c);
      title.textContent = `${names[k]} (person #${p + 1}, ${["not labelled", "occluded", "visible"][v]}, ` +
                          `confidence ${poses.keypoint_scores[p][k].toFixed(2)})`;
    });
  });
  if (selectedGroup) overlay.appendChild(selectedGroup);   // on top, so its points can be grabbed
  renderSide();
}

function renderSide() {
  const { state, task } = app;
  const image = task.images[app.index];
  const status = task.status;
  el("task-name").textContent = task.name;
  el("image-position").textContent = `image ${app.index + 1} / ${task.images.length}`;
  el("image-name").textContent = image.name + (image.uncertainty != null ? ` · uncertainty ${image.uncertainty.toFixed(3)}` : "")
    + (image.reason ? ` · ${image.reason}` : "");
  el("image-state").textContent = (image.accepted ? "✔ accepted · " : "") +
    `this image: ${state.clicks} click${state.clicks === 1 ? "" : "s"}`;
  el("status").textContent = `${status.done} / ${status.images} accepted · ${status.clicks} clicks · ` +
    `${Math.round(status.seconds)} s` + (status.complete ? " · task finished" : "");
  const list = el("persons");
  list.replaceChildren();
  el("no-persons").hidden = state.poses.scores.length > 0;
  state.poses.scores.forEach((score, p) => {
    const li = document.createElement("li");
    li.className = p === app.person ? "selected" : "";
    li.dataset.person = p;
    const conf = state.poses.keypoint_scores[p].reduce((s, v) => s + v, 0) / state.poses.keypoint_scores[p].length;
    li.textContent = `#${p + 1} · score ${score.toFixed(2)} · points ${conf.toFixed(2)}`;
    li.title = "person score and mean keypoint confidence";
    const confirm = document.createElement("button");
    confirm.textContent = "✔";
    confirm.title = "confirm this person (C)";
    confirm.onclick = (e) => { e.stopPropagation(); confirmPerson(p); };
    const remove = document.createElement("button");
    remove.textContent = "✖";
    remove.title = "delete this person (Del / X)";
    remove.onclick = (e) => { e.stopPropagation(); removePerson(p); };
    li.append(confirm, remove);
    li.onclick = () => { app.person = p; app.keypoint = null; render(); };
    list.appendChild(li);
  });
  el("selected-keypoint").textContent = app.person !== null && app.keypoint !== null
    ? `#${app.person + 1} ${task.schema.keypoints[app.keypoint]}` : "none selected";
  el("add-person").classList.toggle("active", app.drawing);
  el("undo").disabled = !state.can_undo;
}

function confirmPerson(p) {
  edit("confirm_person", { person: p }, `person #${p + 1} confirmed (score 1)`);
}

function toggleDrawing() {
  app.drawing = !app.drawing;
  say(app.drawing ? "drag a box around the missed person (Esc cancels)" : "");
  renderSide();
}

function removePerson(p) {
  app.person = null;
  app.keypoint = null;
  edit("remove_person", { person: p }, `person #${p + 1} deleted (Z undoes)`);
}

// ---- pointer -------------------------------------------------------------------------
function imagePoint(event) {
  const svg = el("canvas");
  const pt = svg.createSVGPoint();
  pt.x = event.clientX;
  pt.y = event.clientY;
  const p = pt.matrixTransform(svg.getScreenCTM().inverse());
  const { width, height } = app.state;
  return { x: Math.min(Math.max(p.x, 0), width), y: Math.min(Math.max(p.y, 0), height) };
}

let drag = null;   // {kind: "keypoint"|"box", person, keypoint, start, moved, shape}

function onPointerDown(event) {
  if (!app.state || event.button !== 0) return;
  const target = event.target;
  const start = imagePoint(event);
  if (app.drawing) {
    const shape = node("rect", { class: "draft", x: start.x, y: start.y, width: 0, height: 0 }, el("canvas"));
    drag = { kind: "box", start, shape };
  } else if (target.classList.contains("kp")) {
    drag = { kind: "keypoint", person: +target.dataset.person, keypoint: +target.dataset.keypoint,
             start, moved: false, shape: target };
    app.person = drag.person;
    app.keypoint = drag.keypoint;
  } else {
    drag = { kind: "place", start, screen: [event.clientX, event.clientY] };
  }
  el("canvas").setPointerCapture(event.pointerId);
  event.preventDefault();
}

function onPointerMove(event) {
  if (!drag) return;
  const p = imagePoint(event);
  if (drag.kind === "keypoint") {
    drag.moved = drag.moved || Math.hypot(p.x - drag.start.x, p.y - drag.start.y) > 1;
    drag.shape.setAttribute("cx", p.x);
    drag.shape.setAttribute("cy", p.y);
  } else if (drag.kind === "box") {
    drag.shape.setAttribute("x", Math.min(p.x, drag.start.x));
    drag.shape.setAttribute("y", Math.min(p.y, drag.start.y));
    drag.shape.setAttribute("width", Math.abs(p.x - drag.start.x));
    drag.shape.setAttribute("height", Math.abs(p.y - drag.start.y));
  }
}

function onPointerUp(event) {
  if (!drag) return;
  const p = imagePoint(event);
  const done = drag;
  drag = null;
  if (done.kind === "keypoint") {
    if (done.moved) {
      edit("click", { person: done.person, keypoint: done.keypoint, x: p.x, y: p.y, visible: 2 });
    } else {
      render();   // selected, not moved
    }
  } else if (done.kind === "box") {
    app.drawing = false;
    const box = [Math.min(p.x, done.start.x), Math.min(p.y, done.start.y),
                 Math.max(p.x, done.start.x), Math.max(p.y, done.start.y)];
    app.person = app.state.poses.scores.length;   // the new person is appended
    app.keypoint = null;
    edit("add_person", { box });
  } else if (Math.hypot(event.clientX - done.screen[0], event.clientY - done.screen[1]) > 4) {
    // A drag that missed every keypoint: moving the selected one there would surprise.
    say("to move a keypoint, start the drag on its dot (a click on the image places the " +
        "selected keypoint)");
  } else if (app.person !== null && app.keypoint !== null) {
    // A plain click on the image puts the selected keypoint there.
    edit("click", { person: app.person, keypoint: app.keypoint, x: p.x, y: p.y, visible: 2 });
  } else {
    say("select a keypoint first (click its dot), then click its true place; or drag the dot");
  }
}

// ---- keys ----------------------------------------------------------------------------
function onKey(event) {
  if (!app.state || event.target.tagName === "INPUT") return;
  const n = app.state.poses.scores.length;
  const key = event.key;
  const selectedKeypoint = app.person !== null && app.keypoint !== null;
  if (key === "Enter") accept();
  else if (key === "ArrowRight") openImage(app.index + 1);
  else if (key === "ArrowLeft") openImage(app.index - 1);
  else if (key === "z" || key === "Z") edit("undo");
  else if (key === "b" || key === "B") toggleDrawing();
  else if (key === "F" && event.shiftKey) finish();
  else if (key === "Tab" && n) {
    app.person = app.person === null ? 0 : (app.person + (event.shiftKey ? n - 1 : 1)) % n;
    app.keypoint = null;
    render();
  } else if (/^[1-9]$/.test(key) && +key <= n) { app.person = +key - 1; app.keypoint = null; render(); }
  else if ((key === "Delete" || key === "x" || key === "X") && app.person !== null) removePerson(app.person);
  else if ((key === "c" || key === "C") && app.person !== null) confirmPerson(app.person);
  else if ((key === "v" || key === "V") && selectedKeypoint) edit("visibility", { person: app.person, keypoint: app.keypoint, v: 2 });
  else if ((key === "o" || key === "O") && selectedKeypoint) edit("visibility", { person: app.person, keypoint: app.keypoint, v: 1 });
  else if ((key === "n" || key === "N") && selectedKeypoint) edit("visibility", { person: app.person, keypoint: app.keypoint, v: 0 });
  else if (key === "Escape") { app.drawing = false; app.keypoint = null; say(""); render(); }
  else return;
  event.preventDefault();
}

// ---- start ---------------------------------------------------------------------------
async function start() {
  const svg = el("canvas");
  svg.addEventListener("pointerdown", onPointerDown);
  svg.addEventListener("pointermove", onPointerMove);
  svg.addEventListener("pointerup", onPointerUp);
  document.addEventListener("keydown", onKey);
  el("prev").onclick = () => openImage(app.index - 1);
  el("next").onclick = () => openImage(app.index + 1);
  el("accept").onclick = accept;
  el("finish").onclick = finish;
  el("undo").onclick = () => edit("undo");
  el("add-person").onclick = toggleDrawing;
  for (const b of document.querySelectorAll("button.vis")) {
    b.onclick = () => {
      if (app.person !== null && app.keypoint !== null) {
        edit("visibility", { person: app.person, keypoint: app.keypoint, v: +b.dataset.v });
      } else say("select a keypoint first (click it)");
    };
  }
  try {
    app.task = await api("GET", "/api/task");
  } catch (e) {
    say(e.message);
    return;
  }
  const first = app.task.images.findIndex((im) => !im.accepted);
  await openImage(first >= 0 ? first : 0);
}

start();
