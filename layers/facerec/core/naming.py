"""Person names and the storage keys built from them (same keys locally and in S3).

Ingest keys are ``<Person>/<photo file>``; face crops are ``<Person>/<photo stem>-<N>.png``
with N the face's index in the photo (0 = most confident).
"""

from __future__ import annotations

import unicodedata
from pathlib import PurePosixPath

from facerec.core.errors import InvalidLabel

MAX_NAME_LENGTH = 100
# A person's folder and a photo's file name, in UTF-8 bytes: file systems allow 255, and the
# stores add up to 16 (a crop's "-N.png", the ".partial" of a write in progress).
MAX_NAME_BYTES = 200
_ALLOWED_PUNCTUATION = set(" _-.',")


def validate_person_name(raw: str) -> str:
    """Return the NFC-normalised name, or raise InvalidLabel saying what is wrong.

    Surrounding spaces are stripped. Letters of any script, digits, spaces and ``_ - . ' ,``
    are allowed ("Iñaki_Diaz", "Jean-Claude Van Damme"); a leading dot or underscore,
    slashes, ``..`` and control characters are not.
    """
    name = unicodedata.normalize("NFC", raw).strip()
    if not name:
        raise InvalidLabel("the person name is empty")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidLabel(f"the person name is {len(name)} characters; at most {MAX_NAME_LENGTH}")
    _check_bytes("person name", name)
    if name[0] in "._" or ".." in name:
        raise InvalidLabel(f"the person name {name!r} may not start with '.' or '_' or hold '..'")
    bad = sorted(
        {
            char
            for char in name
            if not (
                char.isalnum()
                or char in _ALLOWED_PUNCTUATION
                or unicodedata.category(char) in ("Mn", "Mc")
            )
        }
    )
    if bad:
        raise InvalidLabel(
            f"the person name {name!r} holds characters that are not allowed: "
            f"{', '.join(repr(char) for char in bad)}; use letters, digits, spaces and _-.',"
        )
    return name


def validate_photo_name(raw: str) -> str:
    """A photo's file name (no folders): NFC, no slashes, no leading dot, no control chars,
    at most MAX_NAME_BYTES bytes in UTF-8."""
    name = unicodedata.normalize("NFC", raw)
    if not name or name.startswith(".") or "/" in name or "\\" in name or "\x00" in name:
        raise InvalidLabel(f"the photo name {raw!r} is not a plain file name")
    if any(unicodedata.category(char) == "Cc" for char in name):
        raise InvalidLabel(f"the photo name {raw!r} holds control characters")
    _check_bytes("photo name", name)
    return name


def _check_bytes(what: str, name: str) -> None:
    size = len(name.encode("utf-8", "surrogatepass"))
    if size > MAX_NAME_BYTES:
        raise InvalidLabel(
            f"the {what} {name[:40]!r}... is {size} bytes long in UTF-8; at most {MAX_NAME_BYTES}"
        )


def ingest_key(person: str, photo_name: str) -> str:
    return f"{validate_person_name(person)}/{validate_photo_name(photo_name)}"


def split_ingest_key(key: str) -> tuple[str, str]:
    """``<Person>/<photo>`` -> (person, photo name) without validating: a key without a folder
    gives an empty person, a deeper key a photo name with a slash (both refused later)."""
    person, _, name = key.partition("/") if "/" in key else ("", "", key)
    return person, name


def parse_ingest_key(key: str) -> tuple[str, str]:
    """``<Person>/<photo>`` -> (person, photo name); InvalidLabel for any other shape."""
    person, name = split_ingest_key(key)
    if "/" not in key or "/" in name:
        raise InvalidLabel(f"the key {key!r} is not <Person>/<photo file>")
    return validate_person_name(person), validate_photo_name(name)


def crop_key(photo_key: str, face_index: int) -> str:
    path = PurePosixPath(photo_key)
    return str(path.with_name(f"{path.stem}-{face_index}.png"))
