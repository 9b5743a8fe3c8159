"""The report with thousands of people: FaceNet's evaluation of 2,000 people (sparse
confusions) beside Rekognition's three (recorded answers through botocore's Stubber): the
largest confusions instead of a heat map, the worst classes instead of every imperfect one,
each with a note of what was left out, on a page that is still well-formed HTML."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import pytest

from facerec.analysis.report.figures import TOP_CONFUSIONS, confusion_figure, heat_map_fits
from facerec.analysis.report.html import PER_CLASS_ROWS, SECTIONS, render
from facerec.analysis.report.numbers import imperfect_classes
from facerec.core.metrics import confusion_cells, evaluate_predictions, worst_classes
from tests.unit.analysis.test_comparison import CROPS, stubbed_rekognition, two_engine_comparison
from tests.unit.analysis.test_report import Page, section
from tests.unit.core.test_metrics_scale import answers

PEOPLE = 2000
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}


class WellFormed(HTMLParser):
    """Every element other than a void one is closed, in order; ``problems`` lists those
    that are not."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.open, self.problems = [], []
        self.feed(text)
        self.close()
        self.problems += [f"<{tag}> never closed" for tag in self.open]

    def handle_starttag(self, tag, attrs):
        if tag not in VOID:
            self.open.append(tag)

    def handle_endtag(self, tag):
        if not self.open or self.open[-1] != tag:
            self.problems.append(f"</{tag}> closes <{self.open[-1] if self.open else None}>")
        else:
            self.open.pop()


@pytest.fixture(scope="module")
def many_people():
    """(FaceNet's 2,000-people evaluation, HTML, numbers)."""
    truth, predicted, scores, labels = answers(people=PEOPLE, faces=3, wrong=0.05)
    evaluation = evaluate_predictions(truth, predicted, scores, labels)
    with stubbed_rekognition() as pair:
        comparison = two_engine_comparison(*pair, volumes=(1_000, 1_000_000))
    comparison["engines"]["facenet"]["evaluation"] = evaluation
    html, numbers = render(comparison, CROPS.__getitem__)
    return evaluation, html, numbers


def h3_parts(part: str) -> dict[str, str]:
    """A section's text under each <h3>, by heading."""
    pieces = re.split(r"<h3>(.*?)</h3>", part)
    return dict(zip(pieces[1::2], pieces[2::2], strict=True))


def test_the_page_is_well_formed_with_every_section(many_people):
    _, html, _ = many_people
    assert WellFormed(html).problems == []
    page = Page(html)
    assert page.sections == [s.id for s in SECTIONS]
    assert all(image["alt"] for image in page.images)


def test_the_validator_catches_a_misnested_page():
    assert WellFormed("<main><p><b>x</p></b></main>").problems == [
        "</p> closes <b>",
        "</main> closes <p>",
        "<main> never closed",
        "<p> never closed",
    ]
    assert WellFormed("<main><p>a<br><img src=x alt=y></p></main>").problems == []


def test_the_largest_confusions_replace_the_heat_map(many_people):
    evaluation, html, _ = many_people
    assert evaluation["confusion_form"] == "sparse" and not heat_map_fits(evaluation)
    parts = h3_parts(section(html, "confusion"))
    facenet, rekognition = parts["FaceNet + SVC"], parts["Amazon Rekognition"]
    cells = confusion_cells(evaluation)
    assert len(cells) > TOP_CONFUSIONS
    assert (
        f"2,001 people: too many for a readable matrix, so the {TOP_CONFUSIONS} largest of the "
        f"{len(cells):,} confusions (cells off the diagonal) are drawn, and listed below; the "
        f"other {len(cells) - TOP_CONFUSIONS:,} are left out here. The JSON holds every one."
    ) in facenet
    rows = re.findall(r"<tr><td[^>]*>(.*?)</td><td[^>]*>(.*?)</td><td>(\d+)</td>", facenet)
    assert [(truth, answer, int(faces)) for truth, answer, faces in rows] == cells[:30]
    truth, _, faces = cells[0]
    share = faces / evaluation["per_class"][truth]["support"]
    assert f"<td>{faces}</td><td>{share:.1%}</td>" in facenet
    assert [image["alt"] for image in Page(facenet).images] == [
        "the largest confusions of FaceNet + SVC"
    ]
    assert [image["alt"] for image in Page(rekognition).images] == [
        "confusion matrix of Amazon Rekognition"
    ]  # three people: still the heat map


def test_the_confusion_figure_draws_the_largest_confusions_as_bars(many_people):
    evaluation, _, _ = many_people
    figure = confusion_figure(evaluation, "FaceNet")
    (axes,) = figure.axes
    cells = confusion_cells(evaluation)
    assert [bar.get_width() for bar in axes.patches] == [faces for _, _, faces in cells[:30]]
    ticks = [text.get_text() for text in axes.get_yticklabels()]
    assert ticks == [f"{truth} → {answer}" for truth, answer, _ in cells[:30]]
    assert axes.get_title() == (
        "FaceNet: the 30 largest confusions (truth → answer)\n"
        f"of {len(cells):,} among 2,001 people; {len(cells) - 30:,} smaller ones left out"
    )
    truth, _, faces = cells[0]
    share = faces / evaluation["per_class"][truth]["support"]
    assert axes.texts[0].get_text() == f" {faces} ({share:.0%})"


def test_without_a_wrong_answer_the_bars_say_so():
    labels = [f"Person_{n:03d}" for n in range(50)]
    evaluation = evaluate_predictions(labels, labels, [0.9] * 50, labels)
    (axes,) = confusion_figure(evaluation, "FaceNet").axes
    assert axes.get_title() == "FaceNet: 50 people, no confusion" and not axes.patches
    assert [text.get_text() for text in axes.texts] == ["no wrong answers"]


def test_the_per_class_table_lists_the_worst_and_says_how_many_are_left_out(many_people):
    evaluation, html, numbers = many_people
    imperfect = numbers["report"]["engines"]["facenet"]["imperfect_classes"]
    assert len(imperfect) > PER_CLASS_ROWS
    facenet = h3_parts(section(html, "per-class"))["FaceNet + SVC"]
    assert (
        f"The {PER_CLASS_ROWS} worst (lowest F1, then recall) of the {len(imperfect):,} classes "
        f"that are not perfect, among 2,001; the other {len(imperfect) - PER_CLASS_ROWS:,} are "
        "left out here and the JSON holds them all."
    ) in facenet
    listed = re.findall(r"<tr><td class=\"text\">(.*?)</td>", facenet)
    worst = [label for label in worst_classes(evaluation, PEOPLE + 1) if label in imperfect]
    assert listed == worst[:PER_CLASS_ROWS]
    assert listed[0] == "unknown"  # answered, never the truth: F1 0
    assert "Person_01999" not in imperfect  # never the truth nor an answer


def test_imperfect_classes_are_the_same_from_either_form(many_people):
    evaluation, _, numbers = many_people
    truth, predicted, scores, labels = answers(people=PEOPLE, faces=3, wrong=0.05)
    dense = evaluate_predictions(truth, predicted, scores, labels, dense_classes=PEOPLE + 1)
    assert imperfect_classes(evaluation) == imperfect_classes(dense)
    assert "unknown" in imperfect_classes(evaluation)  # answered, never true: precision 0
    assert len(json.dumps(numbers, indent=2).encode()) < 2_000_000
