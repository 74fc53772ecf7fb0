"""OKS AP of one image, as pycocotools' COCOeval gives it with params.imgIds = [image], fast.

The NoC simulator asks for one image's AP after every round of clicks (thousands of times);
COCOeval spends most of that time building indexes. This class prepares the image's ground
truth once and then reproduces COCOeval step by step for the 'all' area range and maxDets 20:
computeOks (same formula, same ignore-region rule for persons without keypoints),
evaluateImg (same greedy matching, crowd and ignore rules) and accumulate/summarize (same
interpolated precision, same float operations, so thresholds like AP >= 0.9 decide alike).
"""
from __future__ import annotations

import numpy as np

# COCOeval keypoint parameters (pycocotools Params.setKpParams).
IOU_THRESHOLDS = np.linspace(.5, 0.95, int(np.round((0.95 - .5) / .05)) + 1, endpoint=True)
RECALL_THRESHOLDS = np.linspace(.0, 1.00, int(np.round((1.00 - .0) / .01)) + 1, endpoint=True)
MAX_DETECTIONS = 20
AREA_ALL = (0 ** 2, 1e5 ** 2)


class ImageAp:
    """Ground truth of one image; `ap(keypoints, scores)` is that image's OKS AP."""

    def __init__(self, annotations: list[dict], sigmas: np.ndarray):
        k = len(sigmas)
        self.variances = (np.asarray(sigmas, dtype=np.float64) * 2) ** 2
        # COCOeval._prepare: crowd persons and persons without keypoints are ignored.
        ignore = np.array([bool(a.get("iscrowd", 0)) or a["num_keypoints"] == 0 or
                           not (AREA_ALL[0] <= a["area"] <= AREA_ALL[1]) for a in annotations],
                          dtype=bool)
        # evaluateImg sorts ignored persons last (stable); the OKS matrix follows that order.
        order = np.argsort(ignore.astype(int), kind="mergesort")
        self.annotations = [annotations[i] for i in order]
        self.ignore = ignore[order]
        self.iscrowd = np.array([bool(a.get("iscrowd", 0)) for a in self.annotations])
        self.ids = np.array([a["id"] for a in self.annotations])
        g = np.array([a["keypoints"] for a in self.annotations], dtype=np.float64).reshape(-1, k, 3)
        self.gt_xy = g[..., :2]                                      # (G, K, 2)
        self.gt_labelled = g[..., 2] > 0                             # (G, K)
        self.areas = np.array([a["area"] for a in self.annotations], dtype=np.float64)
        self.boxes = np.array([a["bbox"] for a in self.annotations],
                              dtype=np.float64).reshape(-1, 4)
        self.num_scored = int(np.count_nonzero(~self.ignore))

    @property
    def has_persons(self) -> bool:
        """False when COCOeval would give -1 (no person that counts)."""
        return self.num_scored > 0

    def oks(self, keypoints: np.ndarray) -> np.ndarray:
        """(D, K, 2) detections, best score first -> (D, G) OKS, as COCOeval.computeOks."""
        d = np.asarray(keypoints, dtype=np.float64)
        out = np.zeros((len(d), len(self.annotations)))
        for j in range(len(self.annotations)):
            labelled = self.gt_labelled[j]
            if labelled.any():
                dx = d[..., 0] - self.gt_xy[j, :, 0]
                dy = d[..., 1] - self.gt_xy[j, :, 1]
            else:  # distance to the person's doubled box, for persons without keypoints
                x, y, w, h = self.boxes[j]
                x0, x1, y0, y1 = x - w, x + w * 2, y - h, y + h * 2
                dx = np.maximum(0, x0 - d[..., 0]) + np.maximum(0, d[..., 0] - x1)
                dy = np.maximum(0, y0 - d[..., 1]) + np.maximum(0, d[..., 1] - y1)
            e = (dx ** 2 + dy ** 2) / self.variances / (self.areas[j] + np.spacing(1)) / 2
            if labelled.any():
                e = e[:, labelled]
            for i in range(len(d)):
                out[i, j] = np.sum(np.exp(-e[i])) / e.shape[1]
        return out

    def _match(self, ious: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """COCOeval.evaluateImg's greedy matching -> (matched gt id (T, D), ignored (T, D))."""
        t_count, d_count, g_count = len(IOU_THRESHOLDS), ious.shape[0], len(self.annotations)
        gt_matched = np.zeros((t_count, g_count))
        dt_matched = np.zeros((t_count, d_count))
        dt_ignored = np.zeros((t_count, d_count))
        if g_count == 0:
            return dt_matched, dt_ignored
        ious = ious.tolist()
        ignore, crowd, ids = self.ignore.tolist(), self.iscrowd.tolist(), self.ids.tolist()
        for t, threshold in enumerate(IOU_THRESHOLDS):
            for di in range(d_count):
                best, m = min([threshold, 1 - 1e-10]), -1
                for gi in range(g_count):
                    if gt_matched[t, gi] > 0 and not crowd[gi]:
                        continue
                    if m > -1 and not ignore[m] and ignore[gi]:
                        break
                    if ious[di][gi] < best:
                        continue
                    best, m = ious[di][gi], gi
                if m == -1:
                    continue
                dt_ignored[t, di] = ignore[m]
                dt_matched[t, di] = ids[m]
                gt_matched[t, m] = di + 1  # COCOeval stores the detection id (1-based, > 0)
        return dt_matched, dt_ignored

    def ap(self, keypoints: np.ndarray, scores: np.ndarray) -> float:
        """OKS AP over IoU .50:.95 ('all' area, 20 detections); -1.0 when no person counts."""
        if not self.has_persons:
            return -1.0
        order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="mergesort")
        order = order[:MAX_DETECTIONS]
        if len(order) == 0:
            return 0.0
        ious = self.oks(np.asarray(keypoints)[order])
        dt_matched, dt_ignored = self._match(ious)
        # Unmatched detections are never outside the 'all' area range, so no extra ignores.
        tps = np.logical_and(dt_matched, np.logical_not(dt_ignored))
        fps = np.logical_and(np.logical_not(dt_matched), np.logical_not(dt_ignored))
        tp_sum = np.cumsum(tps, axis=1).astype(dtype=float)
        fp_sum = np.cumsum(fps, axis=1).astype(dtype=float)
        precision = np.zeros((len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS)))
        for t, (tp, fp) in enumerate(zip(tp_sum, fp_sum)):
            precision[t] = _interpolated_precision(tp, fp, self.num_scored)
        # summarize(): mean over the flattened (T, R) precision in C order, as np.mean(s[s > -1]).
        return float(np.mean(precision.reshape(-1)))


def _interpolated_precision(tp: np.ndarray, fp: np.ndarray, num_gt: int) -> np.ndarray:
    """COCOeval.accumulate for one IoU threshold: precision at each recall threshold."""
    nd = len(tp)
    recall = tp / num_gt
    precision = (tp / (fp + tp + np.spacing(1))).tolist()
    for i in range(nd - 1, 0, -1):
        precision[i - 1] = max(precision[i - 1], precision[i])
    q = np.zeros(len(RECALL_THRESHOLDS))
    indices = np.searchsorted(recall, RECALL_THRESHOLDS, side="left")
    for ri, pi in enumerate(indices):
        if pi >= nd:
            break
        q[ri] = precision[pi]
    return q
