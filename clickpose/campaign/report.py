"""The campaign report: a markdown table (AP, NoC, clicks, images per round) and a learning
curve (val AP against labeled images and clicks spent), written into the store."""
from __future__ import annotations

import io

from storage import Store

# "predicted": the clicks the selection expected the batch to cost (calibrated once earlier
# rounds have taken some), beside the clicks it took: whether a click budget means clicks.
COLUMNS = ("round", "labeled", "new", "clicks", "predicted", "clicks total", "AP", "AP50",
           "NoC@85", "NoC@90", "NoC@95", "model", "promoted")


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _whole(value: float | None) -> int | None:
    return None if value is None else round(value)


def rounds_table(rounds: dict[int, dict]) -> str:
    """One markdown row per round summary (see flows: the round's summary dict)."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in sorted(rounds):
        s = rounds[r]
        m, noc = s.get("metrics", {}), s.get("metrics", {}).get("noc", {})
        cells = [r, s.get("labeled_images"), s.get("new_images"), s.get("clicks"),
                 _whole(s.get("predicted_clicks")), s.get("clicks_total"), m.get("ap"),
                 m.get("ap50"), noc.get("85"), noc.get("90"), noc.get("95"), s.get("model"),
                 "yes" if s.get("promoted") else "no"]
        lines.append("| " + " | ".join(_fmt(c) for c in cells) + " |")
    return "\n".join(lines)


def learning_curve_png(rounds: dict[int, dict], title: str = "") -> bytes:
    """Val AP and NoC@90 against labeled images (left) and clicks spent (right), as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = sorted(rounds)
    labeled = [rounds[r].get("labeled_images", 0) for r in order]
    clicks = [rounds[r].get("clicks_total", 0) for r in order]
    ap = [rounds[r].get("metrics", {}).get("ap", float("nan")) for r in order]
    noc = [rounds[r].get("metrics", {}).get("noc", {}).get("90", float("nan")) for r in order]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), dpi=100)
    for ax, x, label in ((axes[0], labeled, "labeled images"), (axes[1], clicks, "clicks spent")):
        ax.plot(x, ap, "o-", color="tab:blue")
        for xi, yi, r in zip(x, ap, order):
            ax.annotate(f"r{r}", (xi, yi), textcoords="offset points", xytext=(3, 4), fontsize=8)
        ax.set_xlabel(label)
        ax.set_ylabel("val OKS AP", color="tab:blue")
        twin = ax.twinx()
        twin.plot(x, noc, "s--", color="tab:orange")
        twin.set_ylabel("NoC@90 (rounds)", color="tab:orange")
        ax.grid(alpha=0.3)
    fig.suptitle(title or "learning curve")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def report_markdown(name: str, rounds: dict[int, dict], curve_uri: str | None) -> str:
    text = [f"# Campaign `{name}`", "", rounds_table(rounds), ""]
    if curve_uri:
        text += [f"Learning curve: [{curve_uri}]({curve_uri})", ""]
    return "\n".join(text)


def write_report(store: Store, name: str, rounds: dict[int, dict]) -> dict[str, str]:
    """reports/NAME/report.md, learning_curve.png and rounds.json in the store; returns keys
    and the curve's location (a file:// path for a local store)."""
    import json

    prefix = f"reports/{name}"
    curve_key, md_key, json_key = (f"{prefix}/learning_curve.png", f"{prefix}/report.md",
                                   f"{prefix}/rounds.json")
    store.put_bytes(curve_key, learning_curve_png(rounds, f"campaign {name}"))
    curve_uri = object_uri(store, curve_key)
    markdown = report_markdown(name, rounds, curve_uri)
    store.put_bytes(md_key, markdown.encode())
    store.put_bytes(json_key, json.dumps({str(r): s for r, s in rounds.items()},
                                         indent=1).encode())
    return {"markdown": md_key, "curve": curve_key, "rounds": json_key,
            "curve_uri": curve_uri, "markdown_uri": object_uri(store, md_key),
            "text": markdown}


def object_uri(store: Store, key: str) -> str:
    """Where a person opens the object: file:///... for a local store, s3://... otherwise."""
    uri = store.uri.rstrip("/")
    if "://" not in uri:
        from pathlib import Path

        return (Path(uri) / key).resolve().as_uri()
    return f"{uri}/{key}"
