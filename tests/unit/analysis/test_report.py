"""The HTML report and its JSON numbers, from two- and three-engine comparisons (FaceNet, the
nearest face on a hand-made gallery, Rekognition) whose Rekognition answers come from recorded
SearchFacesByImage responses through botocore's Stubber."""

from __future__ import annotations

import base64
import io
import json
import re
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from facerec.analysis.report.figures import hybrid_figure, score_figure
from facerec.analysis.report.html import SECTIONS, render
from facerec.analysis.report.numbers import build
from facerec.flows.evaluate import EngineRun
from facerec.flows.train import local_engines
from tests.unit.analysis.test_comparison import (
    CROPS,
    FACENET_ANSWERS,
    HELD_OUT,
    comparison_of,
    facenet_answer,
    facenet_run,
    hybrid_comparison,
    model_with_split,
    stubbed_rekognition,
    three_engine_comparison,
    two_engine_comparison,
)


class Page(HTMLParser):
    """What a reader sees: headings, section ids, images, links and the text of each part."""

    def __init__(self, text: str):
        super().__init__()
        self.h2, self.sections, self.images, self.links, self.tags = [], [], [], [], []
        self._in_h2 = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if tag == "section":
            self.sections.append(attrs["id"])
        elif tag == "img":
            self.images.append(attrs)
        elif tag == "a":
            self.links.append(attrs["href"])
        self._in_h2 = tag == "h2"

    def handle_endtag(self, tag):
        self._in_h2 = False

    def handle_data(self, data):
        if self._in_h2:
            self.h2.append(data)


def section(html: str, section_id: str) -> str:
    return re.search(rf'<section id="{section_id}">(.*?)</section>', html, re.S).group(1)


def decoded(uri: str) -> Image.Image:
    assert uri.startswith("data:image/png;base64,")
    image = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1], validate=True)))
    image.load()
    return image


@pytest.fixture(scope="module")
def two_engines():
    """(comparison, HTML, numbers) of the two-engine case, rendered once for the module."""
    with stubbed_rekognition() as pair:
        comparison = two_engine_comparison(*pair, volumes=(1_000, 1_000_000))
    html, numbers = render(comparison, CROPS.__getitem__)
    return comparison, html, numbers


def test_every_section_is_there_in_order_with_a_link(two_engines):
    _, html, _ = two_engines
    page = Page(html)
    assert page.sections == [s.id for s in SECTIONS]
    assert page.h2 == [s.title for s in SECTIONS]
    assert page.links == [f"#{s.id}" for s in SECTIONS]


def test_the_page_is_self_contained(two_engines):
    _, html, _ = two_engines
    page = Page(html)
    assert not {"script", "link", "iframe", "object"} & set(page.tags)
    assert "http://" not in html and "https://" not in html
    assert "default-src 'none'; img-src data:" in html
    # Two confusion matrices, two score plots, the cost chart, three wrong-answer thumbnails,
    # the hybrid routing plot.
    assert len(page.images) == 9
    sizes = [decoded(image["src"]).size for image in page.images]
    assert all(width > 0 and height > 0 for width, height in sizes)
    thumbnails = [decoded(image["src"]).size for image in page.images if image["class"] == "thumb"]
    assert thumbnails == [(96, 96)] * 3
    assert all(image["alt"] for image in page.images)


def test_summary_shows_each_engines_figures_and_refusals(two_engines):
    _, html, _ = two_engines
    summary = section(html, "summary")
    assert "<b>0.800</b> (4 / 5)" in summary and "<b>0.600</b> (3 / 5)" in summary
    assert "0.667 / 0.500" in summary  # Rekognition's macro precision / recall
    assert "found no face in the crop" in summary  # refused held-out crop
    assert "LOW_SHARPNESS" in summary and "cy/c2-0.png" in summary  # refused training crop
    assert "0.240 s (p95" in summary
    assert "answered &quot;unknown&quot; (open-set)</td><td>0 of 5 (score not above 0.07)" in (
        summary
    )
    assert "$0.012 vs $1.00" in summary  # cost per 1,000 photos at 1 M a month


def test_per_class_lists_only_imperfect_classes(two_engines):
    _, html, numbers = two_engines
    imperfect = {
        name: sorted(engine["imperfect_classes"])
        for name, engine in numbers["report"]["engines"].items()
    }
    assert imperfect == {"facenet": ["ann", "bob"], "rekognition": ["bob", "cy"]}
    part = section(html, "per-class")
    assert part.count("<tr>") == 2 + 2 + 2  # header and two classes per engine


def test_thresholds_pick_the_lowest_that_meets_the_target(two_engines):
    _, html, numbers = two_engines
    picks = {name: item["threshold"] for name, item in numbers["report"]["engines"].items()}
    assert picks["facenet"]["threshold"] == 0.35  # the wrong answer scored 0.31
    assert picks["facenet"]["correct_discarded"] == 0 and picks["facenet"]["wrong_accepted"] == 0
    assert picks["rekognition"]["threshold"] == 85.0  # the wrong answer scored 84.0
    part = section(html, "thresholds")
    assert "meets the target: <b>0.35</b>" in part and "meets the target: <b>85</b>" in part
    assert '<td class="text">97.5</td>' in part  # Rekognition's table is on its 0-100 scale


def test_a_stricter_target_can_cost_correct_answers():
    answers = dict(FACENET_ANSWERS)
    answers[HELD_OUT[3].face_id] = facenet_answer("ann", 0.86, 0.3, 0.2)
    run = facenet_run(answers)
    model = model_with_split([item.face_id for item in HELD_OUT])
    numbers = build(comparison_of(model, {"facenet": run}))
    pick = numbers["report"]["engines"]["facenet"]["threshold"]
    assert pick["threshold"] == 0.88  # the lowest score above the wrong 0.86
    assert (pick["correct_discarded"], pick["wrong_accepted"]) == (2, 0)
    with pytest.raises(ValueError, match="target_wrong_rate"):
        build(comparison_of(model, {"facenet": run}), 1.5)


def test_gallery_shows_every_wrong_or_refused_face_with_each_engines_answer(two_engines):
    _, html, numbers = two_engines
    assert numbers["report"]["wrong_faces"] == [
        HELD_OUT[2].face_id,
        HELD_OUT[3].face_id,
        HELD_OUT[4].face_id,
    ]
    part = section(html, "errors")
    assert part.count('<figure class="face">') == 3
    assert "Amazon Rekognition: cy (84)" in part
    assert "FaceNet + SVC: ann (0.31)" in part
    assert "refused: Rekognition found no face" in part
    assert part.count('class="bad"') == 3


def test_cost_section_prints_rows_chart_and_assumptions(two_engines):
    comparison, html, _ = two_engines
    part = section(html, "cost")
    assert "1,000,000" in part and "<b>$1,000.00</b>" in part
    facenet = comparison["cost"]["rows"][1]["facenet_total"]
    assert f"<b>${facenet:,.2f}</b>" in part
    assert part.count("<li>") == len(comparison["cost"]["assumptions"])
    assert "per GB-second" in part


def test_operations_notes_are_drawn_from_the_numbers(two_engines):
    _, html, numbers = two_engines
    notes = " ".join(numbers["report"]["notes"])
    assert "3 people and 6 training faces took 0.04 s" in notes
    assert "3 binary SVCs here" in notes
    assert "2.0 faces per person that is about 10 M people per collection" in notes
    assert "(version 7.0 here)" in notes and "5 faces cost $0.005" in notes
    assert "One model so far" in section(html, "operations")


def test_json_holds_the_same_numbers(two_engines):
    comparison, _, numbers = two_engines
    again = json.loads(json.dumps(numbers))
    assert again["engines"] == json.loads(json.dumps(comparison["engines"]))
    assert again["report"]["target_wrong_rate"] == 0.01
    assert again["faces"][2]["answers"]["rekognition"]["person"] == "cy"


def test_an_engine_not_run_says_why_once_and_nothing_leaks_into_the_page():
    absent = EngineRun("rekognition", reason="<script>alert(1)</script>")
    model = model_with_split([item.face_id for item in HELD_OUT])
    comparison = comparison_of(model, {"facenet": facenet_run(), "rekognition": absent})
    html, numbers = render(comparison, lambda key: b"not a png")
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert section(html, "summary").count("not run") >= 2
    for part in ("confusion", "scores", "thresholds"):
        assert "Not run (see the summary)" in section(html, part)
    assert "crop not available" in section(html, "errors")  # unreadable crop, no broken image
    assert list(numbers["report"]["engines"]) == ["facenet"]
    hybrid = section(html, "hybrid")
    assert '<p class="notrun"><b>No hybrid figures:</b> Rekognition did not run (' in hybrid
    assert "<img" not in hybrid and "<table>" not in hybrid
    assert numbers["hybrid"]["ran"] is False and "points" not in numbers["hybrid"]


def test_a_comparison_made_before_hybrid_routing_still_renders():
    model = model_with_split([item.face_id for item in HELD_OUT])
    comparison = comparison_of(model, {"facenet": facenet_run()})
    del comparison["hybrid"]
    html, _ = render(comparison, CROPS.__getitem__)
    assert "made before hybrid routing was measured" in section(html, "hybrid")


@pytest.fixture(scope="module")
def hybrid():
    """(numbers, hybrid section HTML) of the weaker FaceNet against the stubbed Rekognition."""
    with stubbed_rekognition() as pair:
        comparison = hybrid_comparison(*pair)
    html, numbers = render(comparison, CROPS.__getitem__)
    return numbers, section(html, "hybrid")


def test_hybrid_section_states_the_best_threshold_in_one_sentence(hybrid):
    _, part = hybrid
    assert (
        "Best routing threshold: <b>0.2</b>, the cheapest that is as accurate as Amazon "
        "Rekognition alone (0.600): it sends 2 of 5 faces (40.0%) to Rekognition for an "
        "accuracy of 0.600 at $0.41 per 1,000 faces."
    ) in part
    assert "unknowns and refusals (1 of 5) go to Rekognition at any threshold" in part


def test_hybrid_table_puts_both_engines_beside_the_hybrid(hybrid):
    _, part = hybrid
    rows = re.findall(r"<tr>(.*?)</tr>", part)
    cells = [re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row) for row in rows]
    assert cells == [
        ["", "routing threshold", "accuracy", "Rekognition calls", "USD per 1,000 faces"],
        ["FaceNet alone", "– (nothing routed)", "<b>0.400</b> (2 / 5)", "0 (0.0%)", "$0.0085"],
        ["Rekognition alone", "– (no FaceNet)", "<b>0.600</b> (3 / 5)", "5 (100.0%)", "$1.00"],
        ["Hybrid at the best threshold", "0.2", "<b>0.600</b> (3 / 5)", "2 (40.0%)", "$0.41"],
        [
            "Hybrid at the model&#x27;s stored threshold",
            "0.3",
            "<b>0.800</b> (4 / 5)",
            "3 (60.0%)",
            "$0.61",
        ],
    ]
    assert part.count("<li>") == 7 and "0.250 s at 2048 MB" in part


def test_hybrid_plot_is_one_embedded_png(hybrid):
    numbers, part = hybrid
    images = Page(part).images
    assert len(images) == 1 and "routing threshold" in images[0]["alt"]
    width, height = decoded(images[0]["src"]).size
    assert (width, height) == (1000, 480)
    figure = hybrid_figure(numbers["hybrid"])
    accuracy, cost = figure.axes
    assert accuracy.get_ylabel() == "accuracy on the held-out faces"
    assert cost.get_ylabel() == "USD per 1,000 faces"
    labels = [text.get_text() for text in accuracy.get_xticklabels()]
    assert labels[0] == "−∞" and labels[-1] == "+∞"
    legend = [text.get_text() for text in figure.legends[0].get_texts()]
    assert "FaceNet + SVC alone: accuracy" in legend
    assert "Amazon Rekognition alone: cost" in legend


def test_hybrid_json_holds_the_curve(hybrid):
    numbers, _ = hybrid
    again = json.loads(json.dumps(numbers, allow_nan=False))
    assert again["hybrid"]["best"]["threshold"] == 0.2
    assert [point["threshold"] for point in again["hybrid"]["points"]][::5] == ["-inf", "inf"]


# ---- three engines: the nearest face and the open-set section ----------------------------


@pytest.fixture(scope="module")
def three_engines():
    """(comparison, HTML, numbers) of FaceNet, the nearest face and Rekognition."""
    with stubbed_rekognition() as pair:
        comparison = three_engine_comparison(*pair, volumes=(1_000, 1_000_000))
    html, numbers = render(comparison, CROPS.__getitem__)
    return comparison, html, numbers


def cells(part: str) -> list[list[str]]:
    rows = re.findall(r"<tr>(.*?)</tr>", part)
    return [re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row) for row in rows]


def test_the_nearest_engine_is_the_third_engine_everywhere(three_engines):
    _, html, numbers = three_engines
    page = Page(html)
    assert page.sections == [s.id for s in SECTIONS] and "open-set" in page.sections
    title = "FaceNet, nearest face and Amazon Rekognition on the same faces"
    assert f"<title>{title}: model" in html
    # Three confusion matrices, three score plots, the cost chart, three thumbnails, the
    # hybrid plot.
    assert len(page.images) == 11
    for part in ("confusion", "per-class", "scores", "thresholds"):
        assert section(html, part).count("<h3>") == 3, part
        assert "<h3>Nearest face (open set)</h3>" in section(html, part), part
    assert list(numbers["report"]["engines"]) == ["facenet", "nearest", "rekognition"]
    assert "nearest face names the person of the nearest training face" in html


def test_summary_puts_the_nearest_engine_between_facenet_and_rekognition(three_engines):
    _, html, _ = three_engines
    summary = section(html, "summary")
    table = cells(summary)
    assert table[0] == ["", "FaceNet + SVC", "Nearest face (open set)", "Amazon Rekognition"]
    rows = {row[0]: row[1:] for row in table[1:]}
    assert rows["accuracy: correct / held-out faces"] == [
        "<b>0.800</b> (4 / 5)",
        "<b>0.600</b> (3 / 5)",
        "<b>0.600</b> (3 / 5)",
    ]
    assert rows["answered &quot;unknown&quot; (open-set)"] == [
        "0 of 5 (score not above 0)",
        "1 of 5 (score not above 0)",
        "–",
    ]
    assert rows["wrong answers"] == ["1", "2", "1"]
    assert rows["score"][1] == "open-set score (cohort-normalised cosine)"
    assert rows["time per call: mean (p95)"][1].endswith(" ms)")  # a gallery search: no model
    assert (
        rows["what one call is"][1]
        == "per face: one identify call on its stored embedding and crop"
    )
    assert summary.count('<div class="card">') == 4  # three engines and the cost
    assert 'Nearest face (open set)</div><div class="big">60.0%' in summary


def test_nearest_thresholds_and_wrong_answers(three_engines):
    _, html, numbers = three_engines
    pick = numbers["report"]["engines"]["nearest"]["threshold"]
    assert pick["threshold"] == 0.55  # the wrong "ann" scored 0.5
    assert (pick["correct_discarded"], pick["wrong_accepted"]) == (0, 0)
    part = section(html, "thresholds")
    assert "meets the target: <b>0.55</b>" in part
    errors = section(html, "errors")
    assert errors.count('<figure class="face">') == 3
    assert "Nearest face (open set): unknown (0)" in errors
    assert "Nearest face (open set): ann (0.5)" in errors
    assert "runs in the same Lambda function as FaceNet" in section(html, "cost")
    assert "With the nearest-face engine it means adding" in " ".join(numbers["report"]["notes"])


def test_open_set_section_states_each_threshold_and_its_calibration(three_engines):
    _, html, _ = three_engines
    part = section(html, "open-set")
    assert "centroid cosine minus mean of the 20 nearest other centroids" in part
    table = cells(part)
    assert table[0][1:6] == [
        "unknown threshold (accepted above)",
        "FAR target",
        "calibrated by",
        "impostor scores",
        "false accepts among them",
    ]
    assert table[1] == [
        "FaceNet + SVC, and the nearest face in this comparison",
        "<b>0</b>",
        "1.0%",
        "leave-one-person-out",
        "6",
        "0 (0.0%)",
        "the training part&#x27;s 6 faces",
    ]
    assert table[2] == [
        "Nearest face as the service runs it",
        "<b>0.3503</b>",
        "1.0%",
        "leave-one-person-out",
        "11",
        "1 (9.1%)",
        "every labelled face (11)",
    ]
    assert table[3] == ["engine", "unknown threshold", "answered &quot;unknown&quot;"]
    assert table[4] == ["FaceNet + SVC", "0", "<b>0</b> of 5 (0.0%): false rejects"]
    assert table[5] == ["Nearest face (open set)", "0", "<b>1</b> of 5 (20.0%): false rejects"]
    assert table[6][0] == "Amazon Rekognition" and "no unknown threshold" in table[6][2]
    assert 'each "unknown" here is a false reject' in part
    assert "<b>bench/OPEN_SET.md</b>" in part and "DIR at 1 % FAR is <b>0.963</b>" in part


def test_a_model_without_an_open_set_part_gets_a_notice(two_engines):
    _, html, _ = two_engines
    part = section(html, "open-set")
    assert '<p class="notrun">This model has no open-set part' in part
    assert "<table>" not in part


def test_a_model_without_an_open_set_part_is_compared_without_the_nearest_engine():
    # The training workflow runs the nearest face only on a model's open-set gallery.
    model = model_with_split([item.face_id for item in HELD_OUT])
    assert list(local_engines(model)) == ["facenet"]
    html, numbers = render(
        comparison_of(model, {"facenet": facenet_run(FACENET_ANSWERS)}), CROPS.get
    )
    assert "Nearest face (open set)" not in html
    assert "the nearest-face engine did not run" in section(html, "open-set")
    assert "runs in the same Lambda function as FaceNet" not in section(html, "cost")
    assert list(numbers["engines"]) == list(numbers["report"]["engines"]) == ["facenet"]


def test_the_open_set_score_plot_spans_the_scores_observed():
    correct = np.array([True, True, False, False])
    scores = np.array([1.0, 0.67, 0.5, -0.08])
    figure = score_figure(correct, scores, "open-set score (cohort-normalised cosine)", "x")
    low, high = figure.axes[0].get_xlim()
    assert low <= -0.1 < 1.0 <= high < 1.2
