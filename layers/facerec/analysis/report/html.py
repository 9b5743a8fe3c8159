"""The report as one self-contained HTML page.

Everything the page shows is inside it: plots and face thumbnails as base64 PNG data URIs, the
style sheet inline, no scripts, no fonts, and a Content-Security-Policy that forbids loading
anything else. Sections come from ``SECTIONS`` in order; a later analysis adds its own by
passing a longer tuple to ``render``.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from facerec.analysis.report.figures import (
    HEAT_MAP_CLASSES,
    TOP_CONFUSIONS,
    confusion_figure,
    cost_figure,
    figure_uri,
    heat_map_fits,
    history_figure,
    hybrid_figure,
    score_figure,
    thumbnail,
)
from facerec.analysis.report.numbers import (
    DEFAULT_TARGET_WRONG_RATE,
    answered,
    build,
    duration,
    engine_list,
    engine_title,
    short_count,
    threshold_text,
    usd,
)
from facerec.core.metrics import confusion_cells, worst_classes
from facerec.storage.ports import BlobStore

MAX_GALLERY_FACES = 60
PER_CLASS_ROWS = 50  # the worst classes listed; the JSON holds every imperfect one
OPEN_SET_BENCHMARK = "bench/OPEN_SET.md"
# bench/OPEN_SET.md, LFW dev-train, aligned crops: nearest-face label, cohort-normalised
# centroid (K=20), mean over 5 split seeds.
LFW_DIR_AT_1_FAR = 0.963

STYLE = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1b1b1b;
margin:0;background:#f6f7f9}
header,main,footer{max-width:1180px;margin:0 auto;padding:0 24px}
header{padding-top:24px}h1{font-size:26px;margin:0 0 6px}
h2{font-size:21px;margin:0 0 12px;padding-top:8px}h3{font-size:16px;margin:18px 0 8px}
section{background:#fff;border:1px solid #dde1e6;border-radius:8px;padding:16px 22px;
margin:18px 0}
nav ol{columns:2;margin:8px 0}.lead{color:#444;max-width:900px}
table{border-collapse:collapse;margin:8px 0 12px;font-size:14px}
th,td{border:1px solid #dde1e6;padding:4px 10px;text-align:right;vertical-align:top;
overflow-wrap:anywhere}
th:first-child,td:first-child{text-align:left}thead th{background:#eef1f5}
td.text,th.text{text-align:left}
.cards{display:flex;gap:16px;flex-wrap:wrap;margin:8px 0 14px}
.card{border:1px solid #dde1e6;border-radius:8px;padding:12px 16px;min-width:220px;
max-width:340px}
.card .big{font-size:30px;font-weight:600}.muted{color:#666;font-size:13px}
.notrun{color:#8a5300;background:#fff6e5;border:1px solid #f0d9a8;border-radius:6px;
padding:8px 12px}
img.plot{max-width:100%;height:auto;display:block;margin:8px 0}
.gallery{display:flex;flex-wrap:wrap;gap:12px}
figure.face{margin:0;border:1px solid #dde1e6;border-radius:8px;padding:8px;width:220px;
overflow-wrap:anywhere}
figure.face img{display:block;width:96px;height:96px}
.ok{color:#2e7d32}.bad{color:#c62828;font-weight:600}
ul.notes li{margin-bottom:8px}
"""
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _f(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _pct(value) -> str:
    return "–" if value is None else f"{value:.1%}"


def _img(uri: str, alt: str, css: str = "plot") -> str:
    return f'<img class="{css}" src="{uri}" alt="{_e(alt)}">'


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], text_columns=(0,)) -> str:
    """An HTML table; cells are HTML already (escape before)."""

    def cell(tag: str, index: int, value: str) -> str:
        css = ' class="text"' if index in text_columns else ""
        return f"<{tag}{css}>{value}</{tag}>"

    header = "".join(cell("th", i, value) for i, value in enumerate(head))
    body = "".join(
        "<tr>" + "".join(cell("td", i, value) for i, value in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"


def _not_run(engine: dict, brief: bool = True) -> str:
    """Why an engine has no figures: in full in the summary, in brief elsewhere."""
    if brief:
        return '<p class="muted">Not run (see the summary).</p>'
    return (
        f'<p class="notrun"><b>{_e(engine_title(engine["name"]))} was not run:</b> '
        f"{_e(engine['reason'])}</p>"
    )


@dataclass(frozen=True)
class Section:
    """One part of the report: ``render(numbers, read_crop) -> HTML`` under an ``<h2>``."""

    id: str
    title: str
    render: Callable[[dict, Callable[[str], bytes]], str]


def _unknown(engine: dict) -> str:
    """FaceNet's open-set "unknown" answers among the held-out faces, with the threshold."""
    open_set = engine.get("open_set")
    if open_set is None:
        return "–"
    threshold = open_set["threshold"]
    at = "" if threshold is None else f" (score not above {threshold:.4g})"
    return f"{open_set['unknown']} of {engine['held_out_faces']}{at}"


def _summary(data: dict, read_crop) -> str:
    engines = data["engines"]
    cards = []
    for name, engine in engines.items():
        if engine["ran"]:
            cards.append(
                f'<div class="card"><div>{_e(engine_title(name))}</div>'
                f'<div class="big">{engine["accuracy_all"]:.1%}</div>'
                f'<div class="muted">{engine["correct"]} of {engine["held_out_faces"]} '
                "held-out faces named correctly</div></div>"
            )
        else:
            cards.append(
                f'<div class="card"><div>{_e(engine_title(name))}</div>'
                '<div class="big">not run</div>'
                '<div class="muted">the reason is below</div></div>'
            )
    rows = data["cost"]["rows"]
    at = next((row for row in rows if row["images"] >= 1_000_000), rows[-1])
    cards.append(
        '<div class="card"><div>Cost per 1,000 photos</div>'
        f'<div class="big">{usd(at["facenet_per_1000"])} vs {usd(at["rekognition_per_1000"])}'
        '</div><div class="muted">FaceNet on Lambda vs Rekognition, at '
        f"{short_count(at['images'])} photos a month (see the cost model)</div></div>"
    )
    names = list(engines)

    def row(label: str, value: Callable[[dict], str]) -> list[str]:
        return [label] + [value(engines[name]) if engines[name]["ran"] else "–" for name in names]

    def timing(engine: dict) -> str:
        seconds = engine["seconds"]
        return f"{duration(seconds['mean'])} (p95 {duration(seconds['p95'])})"

    rows = [
        ["status"] + ["ran" if engines[name]["ran"] else "not run (see above)" for name in names],
        row(
            "accuracy: correct / held-out faces",
            lambda e: f"<b>{e['accuracy_all']:.3f}</b> ({e['correct']} / {e['held_out_faces']})",
        ),
        row("faces answered", lambda e: str(e["answered"])),
        row("answered &quot;unknown&quot; (open-set)", _unknown),
        row("wrong answers", lambda e: str(e["answered"] - e["correct"])),
        row("faces or crops refused", lambda e: str(len(e["refusals"]))),
        row(
            "macro precision / recall",
            lambda e: (
                f"{e['evaluation']['macro_avg']['precision']:.3f} / "
                f"{e['evaluation']['macro_avg']['recall']:.3f}"
            ),
        ),
        row(
            "weighted precision / recall",
            lambda e: (
                f"{e['evaluation']['weighted_avg']['precision']:.3f} / "
                f"{e['evaluation']['weighted_avg']['recall']:.3f}"
            ),
        ),
        ["score"] + [_e(engines[name]["score"]) for name in names],
        row("time per call: mean (p95)", timing),
        row("what one call is", lambda e: _e(e["describe"].get("timed", ""))),
    ]
    parts = ['<div class="cards">' + "".join(cards) + "</div>"]
    parts += [_not_run(engine, brief=False) for engine in engines.values() if not engine["ran"]]
    parts.append(_table(["", *(_e(engine_title(name)) for name in names)], rows, text_columns=(0,)))
    parts.append(
        '<p class="muted">Precision, recall and scores are over the faces an engine answered; '
        "a refused face counts as a miss in the accuracy. FaceNet and the nearest face answer "
        '"unknown" when their open-set score is not above the calibrated threshold (a miss '
        "here: every held-out face is of an enrolled person; see the open-set section). "
        "Rekognition answers with the best match whatever its similarity (no threshold); the "
        "thresholds section shows what a threshold would cost.</p>"
    )
    refusals = [
        [_e(engine_title(name)), _e(item["stage"]), _e(item["key"]), _e(item["reason"])]
        for name, engine in engines.items()
        if engine["ran"]
        for item in engine["refusals"]
    ]
    parts.append("<h3>Refusals and why</h3>")
    parts.append(
        _table(["engine", "stage", "crop", "reason"], refusals, text_columns=(0, 1, 2, 3))
        if refusals
        else "<p>No engine refused a held-out face or a training crop.</p>"
    )
    enrolment = data["enrolment_refusals"]
    parts.append("<h3>Photos refused at enrolment (before the split, for every engine)</h3>")
    parts.append(
        _table(
            ["photo", "code", "reason"],
            [[_e(item["photo_key"]), _e(item["code"]), _e(item["reason"])] for item in enrolment],
            text_columns=(0, 1, 2),
        )
        if enrolment
        else "<p>None.</p>"
    )
    return "".join(parts)


def _each_engine(data: dict, body: Callable[[str, dict], str]) -> str:
    """Per engine: its title, then ``body(name, engine)``, or why it did not run."""
    return "".join(
        f"<h3>{_e(engine_title(name))}</h3>"
        + (body(name, engine) if engine["ran"] else _not_run(engine))
        for name, engine in data["engines"].items()
    )


def _confusion(data: dict, read_crop) -> str:
    def body(name: str, engine: dict) -> str:
        evaluation = engine["evaluation"]
        figure = confusion_figure(evaluation, engine_title(name))
        if heat_map_fits(evaluation):
            return _img(figure_uri(figure), f"confusion matrix of {engine_title(name)}")
        cells = confusion_cells(evaluation)
        people = len(evaluation["labels"])
        image = _img(figure_uri(figure), f"the largest confusions of {engine_title(name)}")
        if not cells:
            return f'<p class="muted">{people:,} people and no confusion.</p>' + image
        shown = cells[:TOP_CONFUSIONS]
        left_out = len(cells) - len(shown)
        note = (
            f'<p class="muted">{people:,} people: too many for a readable matrix, so the '
            f"{len(shown)} largest of the {len(cells):,} confusions (cells off the diagonal) "
            "are drawn, and listed below"
            + (f"; the other {left_out:,} are left out here" if left_out else "")
            + ". The JSON holds every one.</p>"
        )
        per_class = evaluation["per_class"]
        rows = [
            [_e(truth), _e(answer), str(faces), _pct(faces / per_class[truth]["support"])]
            for truth, answer, faces in shown
        ]
        table = _table(["true person", "answer", "faces", "share of the person"], rows, (0, 1))
        return note + image + table

    return (
        f"<p>Up to {HEAT_MAP_CLASSES} people, a heat map: rows are the true person, columns "
        "the answer; each row is normalised to 1 and each cell also shows its count. A perfect "
        "engine fills the diagonal. With more people, the largest confusions as bars: true "
        "person → answer, faces, and their share of the true person's faces.</p>"
        + _each_engine(data, body)
    )


def _per_class(data: dict, read_crop) -> str:
    def body(name: str, engine: dict) -> str:
        evaluation = engine["evaluation"]
        labels = evaluation["labels"]
        imperfect = data["report"]["engines"][name]["imperfect_classes"]
        if not imperfect:
            return f"<p>Every one of the {len(labels)} classes has precision and recall 1.</p>"
        worst = [label for label in worst_classes(evaluation, len(labels)) if label in imperfect]
        shown = worst[:PER_CLASS_ROWS]
        rows = [
            [
                _e(label),
                _f(imperfect[label]["precision"]),
                _f(imperfect[label]["recall"]),
                _f(imperfect[label]["f1-score"]),
                str(int(imperfect[label]["support"])),
            ]
            for label in shown
        ]
        note = (
            f'<p class="muted">The {len(shown)} worst (lowest F1, then recall) of the '
            f"{len(imperfect):,} classes that are not perfect, among {len(labels):,}; the "
            f"other {len(imperfect) - len(shown):,} are left out here and the JSON holds them "
            "all.</p>"
            if len(shown) < len(imperfect)
            else ""
        )
        return note + _table(["person", "precision", "recall", "f1", "support"], rows)

    return _each_engine(data, body)


def _scores(data: dict, read_crop) -> str:
    scales = "; ".join(
        f"{_e(engine_title(name))}: {_e(engine['score'])}"
        for name, engine in data["engines"].items()
    )

    def body(name: str, engine: dict) -> str:
        part = ""
        correct, scores = answered(data, name)
        if len(scores):
            figure = score_figure(correct, scores, engine["score"], engine_title(name))
            part = _img(figure_uri(figure), f"score distribution of {engine_title(name)}")
        stats = engine["evaluation"]["score_statistics"]
        rows = [
            [group, str(item["count"]), *(_f(item[key]) for key in ("mean", "std", "min", "max"))]
            for group, item in stats.items()
        ]
        return part + _table(["answers", "count", "mean", "std", "min", "max"], rows)

    return (
        "<p>How sure each engine was when it was right and when it was wrong, on its own "
        f"scale ({scales}). The further apart the two groups, the better a threshold can "
        'separate them. An "unknown" answer is a wrong one here.</p>' + _each_engine(data, body)
    )


def _thresholds(data: dict, read_crop) -> str:
    target = data["report"]["target_wrong_rate"]

    def body(name: str, engine: dict) -> str:
        evaluation = engine["evaluation"]
        wrong = evaluation["faces"] - evaluation["correct"]
        pick = data["report"]["engines"][name]["threshold"]
        if wrong == 0:
            floor = 1 / evaluation["faces"] if evaluation["faces"] else None
            verdict = (
                f"<p><b>No wrong answers</b> among {evaluation['faces']} answered faces: every "
                "threshold meets the target here. A sample this size cannot show a wrong-answer "
                f"rate under {_pct(floor)}; judge thresholds on a larger held-out set.</p>"
            )
        elif pick is None:
            verdict = (
                "<p><b>No threshold</b> keeps wrong acceptances under the target without "
                "discarding every answer.</p>"
            )
        else:
            verdict = (
                f"<p>Lowest threshold that meets the target: <b>{pick['threshold']:g}</b>. It "
                f"still accepts {pick['wrong_accepted']} of {wrong} wrong answers and discards "
                f"{pick['correct_discarded']} of {evaluation['correct']} correct answers "
                f"({_pct(pick['correct_discarded_rate'])}).</p>"
            )
        rows = [
            [
                f"{row['threshold']:g}",
                f"{row['correct_discarded']} ({_pct(row['correct_discarded_rate'])})",
                f"{row['wrong_accepted']} ({_pct(row['wrong_accepted_rate'])})",
            ]
            for row in evaluation["thresholds"]
        ]
        table = _table(["threshold", "correct discarded", "wrong still accepted"], rows)
        return verdict + table

    return (
        '<p>An answer whose score is under the threshold would be discarded ("not sure"). '
        "For each threshold: the correct answers it would discard and the wrong answers it "
        f"would still accept. The target: at most {target:.0%} of the wrong answers accepted."
        "</p>" + _each_engine(data, body)
    )


def _errors(data: dict, read_crop) -> str:
    wrong_ids = data["report"]["wrong_faces"]
    ran = [name for name, engine in data["engines"].items() if engine["ran"]]
    if not wrong_ids:
        return (
            f"<p>No engine that ran ({_e(', '.join(engine_title(name) for name in ran))}) gave "
            f"a wrong answer or refused a face among the {len(data['faces'])} held-out faces."
            "</p>"
        )
    faces = {face["face_id"]: face for face in data["faces"]}
    shown = wrong_ids[:MAX_GALLERY_FACES]
    parts = [
        f"<p>{len(wrong_ids)} held-out faces that at least one engine got wrong or refused"
        + (f" (the first {len(shown)} shown)" if len(shown) < len(wrong_ids) else "")
        + ". Red: a wrong answer or a refusal.</p>",
        '<div class="gallery">',
    ]
    for face_id in shown:
        face = faces[face_id]
        uri = thumbnail(read_crop, face["crop_key"])
        picture = (
            _img(uri, f"face crop of {face['truth']}", "thumb")
            if uri
            else '<p class="muted">crop not available</p>'
        )
        lines = [f"<b>truth: {_e(face['truth'])}</b>"]
        for name in ran:
            answer = face["answers"].get(name)
            if answer is None:  # not in the sample this engine was asked about
                continue
            css = "ok" if answer["person"] == face["truth"] else "bad"
            if answer["score"] is None:
                said = f"refused: {_e(answer.get('reason', ''))}"
            else:
                person = answer["person"] or "no match in the gallery"
                said = f"{_e(person)} ({answer['score']:.3g})"
            lines.append(f'<span class="{css}">{_e(engine_title(name))}: {said}</span>')
        parts.append(
            f'<figure class="face">{picture}<figcaption>{"<br>".join(lines)}'
            f'<br><span class="muted">{_e(face["photo_key"])}</span></figcaption></figure>'
        )
    parts.append("</div>")
    return "".join(parts)


def _cost(data: dict, read_crop) -> str:
    cost = data["cost"]
    rows = [
        [
            f"{row['images']:,}",
            usd(row["rekognition_images"]),
            usd(row["rekognition_storage"]),
            f"<b>{usd(row['rekognition_total'])}</b>",
            usd(row["facenet_compute"]),
            usd(row["facenet_requests"]),
            f"<b>{usd(row['facenet_total'])}</b>",
            usd(row["rekognition_per_1000"]),
            usd(row["facenet_per_1000"]),
        ]
        for row in cost["rows"]
    ]
    head = [
        "photos a month",
        "Rekognition images",
        "face storage",
        "Rekognition total",
        "Lambda compute",
        "Lambda requests",
        "FaceNet total",
        "Rekognition per 1,000",
        "FaceNet per 1,000",
    ]
    assumptions = "".join(f"<li>{_e(item)}</li>" for item in cost["assumptions"])
    nearest = (
        '<p class="muted">The nearest-face engine runs in the same Lambda function as FaceNet '
        "(detection and embedding are the same; a gallery search replaces the SVC): its cost "
        "is not modelled separately.</p>"
        if "nearest" in data["engines"]
        else ""
    )
    return (
        "<p>What identifying the photos of one month costs with each engine, in USD.</p>"
        + nearest
        + _table(head, rows)
        + _img(figure_uri(cost_figure(cost)), "monthly cost of FaceNet on Lambda and Rekognition")
        + f"<h3>Assumptions</h3><ul>{assumptions}</ul>"
    )


def _hybrid(data: dict, read_crop) -> str:
    hybrid = data.get("hybrid")
    if hybrid is None:
        return (
            '<p class="notrun">This comparison was made before hybrid routing was measured: '
            "make it again to see it.</p>"
        )
    if not hybrid["ran"]:
        return f'<p class="notrun"><b>No hybrid figures:</b> {_e(hybrid["reason"])}</p>'
    faces, best, target = hybrid["faces"], hybrid["best"], hybrid["target"]
    parts = [
        "<p>FaceNet answers first; a face goes to Rekognition only when FaceNet answers "
        '"unknown" or its open-set score is below the routing threshold. Both engines answered '
        f"the same {faces} held-out faces, so every threshold is replayed on them. FaceNet's "
        f"unknowns and refusals ({hybrid['always_routed']} of {faces}) go to Rekognition at "
        "any threshold.</p>"
    ]
    if best["reached"]:
        sentence = (
            f"Best routing threshold: <b>{threshold_text(best['threshold'])}</b>, the cheapest "
            f"that is as accurate as {_e(engine_title(target['engine']))} alone "
            f"({target['accuracy']:.3f}): it sends {best['rekognition_calls']} of {faces} faces "
            f"({_pct(best['routed_share'])}) to Rekognition for an accuracy of "
            f"{best['accuracy']:.3f} at {usd(best['cost_per_1000'])} per 1,000 faces."
        )
    else:
        sentence = (
            f"No routing threshold reaches the better engine's accuracy ({target['accuracy']:.3f}"
            f", {_e(engine_title(target['engine']))}); the most accurate is "
            f"<b>{threshold_text(best['threshold'])}</b>: {best['accuracy']:.3f} at "
            f"{usd(best['cost_per_1000'])} per 1,000 faces."
        )
    parts.append(f"<p>{sentence}</p>")

    def line(name: str, point: dict, threshold: str) -> list[str]:
        return [
            _e(name),
            _e(threshold),
            f"<b>{point['accuracy']:.3f}</b> ({point['correct']} / {faces})",
            f"{point['rekognition_calls']} ({_pct(point['routed_share'])})",
            usd(point["cost_per_1000"]),
        ]

    rows = [
        line("FaceNet alone", hybrid["facenet_alone"], "– (nothing routed)"),
        line("Rekognition alone", hybrid["rekognition_alone"], "– (no FaceNet)"),
        line("Hybrid at the best threshold", best, threshold_text(best["threshold"])),
    ]
    if hybrid.get("stored"):
        stored = hybrid["stored"]
        rows.append(
            line(
                "Hybrid at the model's stored threshold",
                stored,
                threshold_text(stored["threshold"]),
            )
        )
    head = ["", "routing threshold", "accuracy", "Rekognition calls", "USD per 1,000 faces"]
    parts.append(_table(head, rows))
    parts.append(
        _img(
            figure_uri(hybrid_figure(hybrid)),
            "hybrid accuracy and cost per 1,000 faces against the routing threshold",
        )
    )
    shown = len(hybrid["points"])
    if shown < hybrid["candidates"]:
        parts.append(
            f'<p class="muted">The plot shows {shown} of the {hybrid["candidates"]} thresholds '
            "evaluated (evenly spaced in rank; each point exact).</p>"
        )
    assumptions = "".join(f"<li>{_e(item)}</li>" for item in hybrid["assumptions"])
    parts.append(f"<h3>Assumptions</h3><ul>{assumptions}</ul>")
    return "".join(parts)


def _calibration_row(label: str, calibration: dict) -> list[str]:
    scores, accepts = calibration["impostor_scores"], calibration["impostor_false_accepts"]
    return [
        _e(label),
        f"<b>{_e(threshold_text(calibration['threshold']))}</b>",
        _pct(calibration["far_target"]),
        _e(calibration["method"]),
        f"{scores:,}",
        f"{accepts:,} ({_pct(accepts / scores if scores else None)})",
        _e(calibration.get("gallery", "–")),
    ]


def _open_set(data: dict, read_crop) -> str:
    model = data["model"]
    open_set, nearest = model.get("open_set"), model.get("nearest")
    if open_set is None:
        return (
            '<p class="notrun">This model has no open-set part (it was trained before the '
            'unknown threshold): FaceNet never answers "unknown" and the nearest-face engine '
            "did not run. Retrain it (<code>facerec train</code>) to see this section.</p>"
        )
    parts = [
        '<p>FaceNet + SVC and the nearest face answer "unknown" when a face\'s open-set score '
        "is not above their threshold. The score: "
        f"<b>{_e(open_set['score'])}</b> (FaceNet scores the SVC's label, the nearest face its "
        "nearest enrolled face's person). Each threshold is calibrated to a false-accept rate "
        "(FAR) on impostor scores; leave-one-person-out scores each enrolled face against the "
        "gallery without its own person, the score a stranger would get, so no strangers are "
        "needed.</p>"
    ]
    rows = [_calibration_row("FaceNet + SVC, and the nearest face in this comparison", open_set)]
    if nearest is not None:
        rows.append(_calibration_row("Nearest face as the service runs it", nearest))
    head = [
        "",
        "unknown threshold (accepted above)",
        "FAR target",
        "calibrated by",
        "impostor scores",
        "false accepts among them",
        "gallery",
    ]
    parts.append(_table(head, rows, text_columns=(0, 3, 6)))
    if nearest is not None:
        parts.append(
            '<p class="muted">The service\'s nearest-face engine searches every labelled face, '
            "the held-out ones too, so its own threshold is not used on these faces: here the "
            "nearest face searches the training part with the model's threshold, as FaceNet "
            "and Rekognition see the training part only.</p>"
        )
    engines = data["engines"]
    rows = []
    for name, engine in engines.items():
        if not engine["ran"]:
            rows.append([_e(engine_title(name)), "–", "not run (see the summary)"])
        elif engine.get("open_set") is None:
            rows.append(
                [
                    _e(engine_title(name)),
                    "–",
                    "no unknown threshold: it answers with its best match (closed set)",
                ]
            )
        else:
            unknown, faces = engine["open_set"]["unknown"], engine["held_out_faces"]
            threshold = engine["open_set"]["threshold"]
            rows.append(
                [
                    _e(engine_title(name)),
                    _e(threshold_text(threshold)),
                    f"<b>{unknown}</b> of {faces} ({_pct(unknown / faces if faces else None)}): "
                    "false rejects",
                ]
            )
    parts.append('<h3>Held-out faces answered "unknown"</h3>')
    parts.append(
        _table(["engine", "unknown threshold", "answered &quot;unknown&quot;"], rows, (0, 2))
    )
    parts.append(
        '<p>Every held-out face is of an enrolled person, so each "unknown" here is a false '
        "reject, counted as a miss in the accuracy. How often a stranger is accepted cannot be "
        "measured on these faces (there are none among them): the measurement with real "
        f"strangers is in <b>{_e(OPEN_SET_BENCHMARK)}</b>. On LFW, with this method on "
        f"aligned crops, DIR at 1 % FAR is <b>{LFW_DIR_AT_1_FAR:.3f}</b>: the share of "
        "enrolled people's faces named correctly at the threshold that accepts 1 % of the "
        "strangers.</p>"
    )
    return "".join(parts)


def _operations(data: dict, read_crop) -> str:
    notes = "".join(f"<li>{_e(note)}</li>" for note in data["report"]["notes"])
    parts = [f'<ul class="notes">{notes}</ul>']
    history = data["training_history"]
    parts.append("<h3>Training time against gallery size</h3>")
    if len(history) >= 2:
        parts.append(_img(figure_uri(history_figure(history)), "training time against faces"))
    rows = [
        [
            _e(item["model_id"]),
            str(item["people"]),
            str(item["train_faces"]),
            f"{item['training_seconds']:.2f}",
        ]
        for item in history
    ]
    parts.append(_table(["model", "people", "training faces", "seconds"], rows))
    if len(history) < 2:
        parts.append(
            '<p class="muted">One model so far: train again on a larger gallery to see the '
            "curve.</p>"
        )
    return "".join(parts)


SECTIONS = (
    Section("summary", "Summary per engine", _summary),
    Section("confusion", "Confusion matrices", _confusion),
    Section("per-class", "Classes that are not perfect", _per_class),
    Section("scores", "Scores of correct and wrong answers", _scores),
    Section("thresholds", "Thresholds", _thresholds),
    Section("open-set", "Open set: the unknown threshold", _open_set),
    Section("errors", "Wrong answers", _errors),
    Section("cost", "Cost model", _cost),
    Section("hybrid", "Hybrid routing", _hybrid),
    Section("operations", "Scalability and operations", _operations),
)


def _publication(data: dict, read_crop) -> str:
    publication = data["publication"]
    verdict = (
        "<b>promoted</b>: it is now the current model"
        if publication["promoted"]
        else "<b>not promoted</b>: the current model stays"
    )
    return (
        f"<p>Model {_e(data['model']['model_id'])} was {verdict} ({_e(publication['reason'])})."
        f" The promotion decision is in {_e(publication['evaluation_key'])} next to this "
        "report.</p>"
    )


# For a report written after the model was published: ``comparison["publication"]`` holds
# ``{"promoted", "reason", "evaluation_key"}`` (the training workflow's publish step).
PUBLICATION = Section("publication", "Publication", _publication)


def render_html(
    numbers: dict, read_crop: Callable[[str], bytes], sections: Sequence[Section] = SECTIONS
) -> str:
    """The report's numbers (``build``) as one self-contained HTML page; ``read_crop(key)``
    returns a face crop's PNG bytes for the gallery."""
    model = numbers["model"]
    engines = numbers["engines"]
    title = f"{engine_list(list(engines))} on the same faces: model {model['model_id']}"
    toc = "".join(f'<li><a href="#{_e(s.id)}">{_e(s.title)}</a></li>' for s in sections)
    body = "".join(
        f'<section id="{_e(s.id)}"><h2>{_e(s.title)}</h2>{s.render(numbers, read_crop)}</section>'
        for s in sections
    )
    lead = (
        f"{model['people']} people; the model was trained on {model['train_faces']} faces and "
        f"the engines answered the same {model['test_faces']} held-out faces (a seeded "
        f"stratified {model['test_size']:.0%} split, seed {model['seed']}; Rekognition, whose "
        "calls are capped, a seeded sample of them: its figures say how many). FaceNet "
        "classifies with the trained classifier; "
        + (
            "the nearest face names the person of the nearest training face; "
            if "nearest" in engines
            else ""
        )
        + "Rekognition searches a collection that holds the training faces "
        f"only. Cross-validation on the training part: {model['cv']['mean']:.3f} "
        f"(+/- {model['cv']['std']:.3f}, {model['cv']['folds']} folds)."
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{STYLE}</style></head><body>"
        f'<header><h1>{_e(title)}</h1><p class="lead">{_e(lead)}</p>'
        f"<nav><ol>{toc}</ol></nav></header><main>{body}</main>"
        f'<footer><p class="muted">Generated {_e(numbers["created_at"])} by facerec. The same '
        "numbers, with every face's answers, are in the JSON file next to this one.</p>"
        "</footer></body></html>"
    )


def render(
    comparison: dict,
    read_crop: Callable[[str], bytes],
    target_wrong_rate: float = DEFAULT_TARGET_WRONG_RATE,
    sections: Sequence[Section] = SECTIONS,
) -> tuple[str, dict]:
    """A comparison (``facerec.analysis.comparison.compare``) -> (HTML page, JSON-ready
    numbers)."""
    numbers = build(comparison, target_wrong_rate)
    return render_html(numbers, read_crop, sections), numbers


def save(
    reports: BlobStore,
    comparison: dict,
    read_crop: Callable[[str], bytes],
    target_wrong_rate: float = DEFAULT_TARGET_WRONG_RATE,
    sections: Sequence[Section] = SECTIONS,
) -> tuple[dict[str, str], dict]:
    """Render a comparison and put ``<model_id>/comparison.html`` and ``.json`` into the
    reports store. Returns ({"report_html_key", "report_json_key"}, the numbers)."""
    page, numbers = render(comparison, read_crop, target_wrong_rate, sections)
    model_id = comparison["model"]["model_id"]
    keys = {
        "report_html_key": f"{model_id}/comparison.html",
        "report_json_key": f"{model_id}/comparison.json",
    }
    reports.put(keys["report_html_key"], page.encode())
    reports.put(keys["report_json_key"], json.dumps(numbers, indent=2, ensure_ascii=False).encode())
    return keys, numbers
