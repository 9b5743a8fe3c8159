"""Person and photo names, and the storage keys built from them."""

from __future__ import annotations

import unicodedata

import pytest

from facerec.core.errors import InvalidLabel
from facerec.core.naming import (
    MAX_NAME_LENGTH,
    crop_key,
    ingest_key,
    parse_ingest_key,
    validate_person_name,
    validate_photo_name,
)

NFC_INAKI = unicodedata.normalize("NFC", "Iñaki_Diaz")
NFD_INAKI = unicodedata.normalize("NFD", "Iñaki_Diaz")


def test_nfc_and_nfd_spellings_are_the_same_person():
    assert NFC_INAKI != NFD_INAKI
    assert len(NFD_INAKI) == len(NFC_INAKI) + 1  # n + combining tilde
    assert validate_person_name(NFC_INAKI) == NFC_INAKI
    assert validate_person_name(NFD_INAKI) == NFC_INAKI


@pytest.mark.parametrize(
    "name",
    [
        "Jean-Claude Van Damme",
        "O'Brien",
        "Iñaki Diaz",
        "José María Aznar",
        "Zoë Saldaña",
        "Björk Guðmundsdóttir",
        "Łukasz Żebrowski",
        "Владимир Путин",
        "周杰伦",
        "山田 太郎",
        "김연아",
        "Agent 47",
        "Sammy Davis, Jr.",
        "ben_afflek",
        "हिन्दी नाम",  # Devanagari vowel signs are combining marks (Mc/Mn)
    ],
)
def test_real_names_are_kept_as_given(name):
    assert validate_person_name(name) == unicodedata.normalize("NFC", name)


def test_surrounding_whitespace_is_stripped():
    assert validate_person_name("  Ben Afflek \n") == "Ben Afflek"


def test_a_name_of_exactly_100_characters_is_accepted():
    name = "a" * MAX_NAME_LENGTH
    assert MAX_NAME_LENGTH == 100
    assert validate_person_name(name) == name


def test_the_length_limit_counts_nfc_characters():
    """60 accented letters are 120 code points in NFD and 60 in NFC: accepted."""
    decomposed = unicodedata.normalize("NFD", "é" * 60)
    assert len(decomposed) == 120
    assert validate_person_name(decomposed) == "é" * 60


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("\t\n", "empty"),
        ("..", r"start with '\.'"),
        ("../etc", r"start with '\.'"),
        ("a/../b", r"'\.\.'"),
        ("x..", r"'\.\.'"),
        (".hidden", r"start with '\.'"),
        ("_x", "start with '.' or '_'"),
        ("a/b", r"not allowed: '/'"),
        ("/etc/passwd", r"not allowed: '/'"),
        ("a\\b", r"not allowed: '\\\\'"),
        ("a\x00b", r"not allowed: '\\x00'"),
        ("tab\tname", r"not allowed: '\\t'"),
        ("new\nline", r"not allowed: '\\n'"),
        ("a:b", r"not allowed: ':'"),
        ("a*b?", r"not allowed: '\*', '\?'"),
        ("a\u2215b", "not allowed"),  # division slash, looks like '/'
        ("a\uff0fb", "not allowed"),  # fullwidth solidus
        ("evil\u202etxt.exe", "not allowed"),  # right-to-left override
        ("zero\u200bwidth", "not allowed"),  # zero-width space
        ("a" * 101, "101 characters; at most 100"),
    ],
)
def test_unsafe_names_are_invalid_labels_that_say_why(name, why):
    with pytest.raises(InvalidLabel, match=why) as caught:
        validate_person_name(name)
    assert caught.value.code == "invalid_label"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("photo.jpg", "photo.jpg"),
        ("ben affleck (2).JPEG", "ben affleck (2).JPEG"),
        (unicodedata.normalize("NFD", "Iñaki.png"), unicodedata.normalize("NFC", "Iñaki.png")),
    ],
)
def test_plain_photo_names_are_kept_in_nfc(raw, expected):
    assert validate_photo_name(raw) == expected


@pytest.mark.parametrize(
    "raw",
    ["", ".jpg", ".hidden.png", "..", "a/b.jpg", "../x.jpg", "a\\b.jpg", "x\x00.jpg", "x\n.jpg"],
)
def test_photo_names_with_folders_or_control_characters_are_invalid(raw):
    with pytest.raises(InvalidLabel, match="photo name") as caught:
        validate_photo_name(raw)
    assert caught.value.code == "invalid_label"


def test_ingest_key_is_person_slash_photo_in_nfc():
    assert ingest_key(NFD_INAKI, "1.jpg") == f"{NFC_INAKI}/1.jpg"
    assert ingest_key("Jean-Claude Van Damme", "a b.jpg") == "Jean-Claude Van Damme/a b.jpg"


@pytest.mark.parametrize(
    ("person", "photo"),
    [("../evil", "x.jpg"), ("Ben", "../../x.jpg"), ("", "x.jpg"), ("Ben", ".x")],
)
def test_ingest_key_refuses_unsafe_parts(person, photo):
    with pytest.raises(InvalidLabel):
        ingest_key(person, photo)


def test_parse_ingest_key_inverts_ingest_key():
    for person, photo in [("Iñaki Diaz", "1.jpg"), ("O'Brien", "x.y.png"), ("周杰伦", "a.jpg")]:
        assert parse_ingest_key(ingest_key(person, photo)) == (person, photo)


def test_parse_ingest_key_normalises_to_nfc():
    assert parse_ingest_key(f"{NFD_INAKI}/a.jpg") == (NFC_INAKI, "a.jpg")


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("photo.jpg", "not <Person>/<photo file>"),
        ("a/b/c.jpg", "not <Person>/<photo file>"),
        ("/etc/passwd", "not <Person>/<photo file>"),
        ("../x.jpg", r"may not start with '\.'"),
        ("/x.jpg", "empty"),
        ("Ben/", "photo name"),
        ("Ben/.x", "photo name"),
    ],
)
def test_parse_ingest_key_refuses_other_shapes(key, why):
    with pytest.raises(InvalidLabel, match=why):
        parse_ingest_key(key)


@pytest.mark.parametrize(
    ("photo_key", "index", "expected"),
    [
        ("Person/photo.jpg", 2, "Person/photo-2.png"),
        ("Person/photo.jpg", 0, "Person/photo-0.png"),
        ("Iñaki Diaz/a.b.jpeg", 1, "Iñaki Diaz/a.b-1.png"),
        ("Person/noextension", 3, "Person/noextension-3.png"),
        ("Person/photo.png", 10, "Person/photo-10.png"),
    ],
)
def test_crop_key_is_the_photo_stem_dash_index_png(photo_key, index, expected):
    assert crop_key(photo_key, index) == expected


@pytest.mark.parametrize("length", [245, 250, 255])
def test_a_photo_name_too_long_for_its_crops_is_an_invalid_label(length):
    """A 245-255 character name fits the file system but its crop's ``.partial`` file does
    not: refused here, with the limit, before any store sees it."""
    name = "a" * (length - 4) + ".jpg"
    with pytest.raises(InvalidLabel, match=f"is {length} bytes long in UTF-8; at most 200"):
        validate_photo_name(name)
    with pytest.raises(InvalidLabel, match="at most 200"):
        ingest_key("Ada", name)


def test_the_photo_name_limit_counts_utf8_bytes():
    assert validate_photo_name("a" * 196 + ".jpg") == "a" * 196 + ".jpg"
    with pytest.raises(InvalidLabel, match="is 204 bytes"):
        validate_photo_name("é" * 100 + ".jpg")  # 104 characters, 204 bytes


def test_a_person_name_within_100_characters_but_over_200_bytes_is_refused():
    name = "李" * MAX_NAME_LENGTH  # 300 bytes: its folder would not fit the file system
    with pytest.raises(InvalidLabel, match="is 300 bytes long in UTF-8; at most 200"):
        validate_person_name(name)
