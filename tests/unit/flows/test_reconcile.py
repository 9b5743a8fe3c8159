"""flows.reconcile on the embedded default: a crop no catalogued face holds (an enrolment that
stopped between its crops and its record) is found and deleted, a face whose crop is gone is
found and reported; and the `facerec reconcile` command, which needs no model."""

from __future__ import annotations

import json

from facerec.core.records import PhotoRecord
from facerec.flows.reconcile import Gap, delete_orphan, find_gaps, repair
from facerec.interfaces.cli import EXIT_OK, EXIT_PARTIAL, main
from facerec.storage.local import local_stores
from tests.factories import face_record


def enrolled(root):
    """Two enrolled photos of Ann with their crops, an orphan crop of a third photo, and
    Ben's photo whose crop file is gone."""
    stores = local_stores(root)
    for n, name in enumerate(("a", "b")):
        key = f"Ann/{name}.jpg"
        face = face_record(key, 0, "Ann", seed=n)
        stores.faces.put(face.crop_key, b"png")
        stores.catalog.put_photo(PhotoRecord(key, "Ann", f"sha-{n}", "enrolled", "", 1), [face])
    stores.faces.put("Ann/c-0.png", b"png of a photo never recorded")
    ben = face_record("Ben/a.jpg", 0, "Ben", seed=3)
    stores.catalog.put_photo(PhotoRecord("Ben/a.jpg", "Ben", "sha-3", "enrolled", "", 1), [ben])
    return stores


def test_gaps_of_the_local_workspace_are_orphans_and_missing_crops(tmp_path):
    stores = enrolled(tmp_path / "ws")
    assert find_gaps(stores) == [Gap("Ann/c-0.png", ("orphan",)), Gap("Ben/a-0.png", ("crop",))]

    result = repair(find_gaps(stores), {"orphan": delete_orphan(stores)})

    assert result["found"] == {"crop": 1, "embedding": 0, "vector": 0, "face_id": 0, "orphan": 1}
    assert result["repaired"]["orphan"] == 1 and result["failed"] == []
    assert not stores.faces.exists("Ann/c-0.png")
    assert stores.faces.exists("Ann/a-0.png") and stores.faces.exists("Ann/b-0.png")
    assert find_gaps(stores) == [Gap("Ben/a-0.png", ("crop",))]  # nothing makes a crop back


def test_a_failing_repair_is_listed_and_the_rest_goes_on(tmp_path):
    from facerec.core.errors import CropNotCatalogued

    def refuse(key):
        raise CropNotCatalogued("no catalogued face holds this crop yet")

    gaps = [Gap("Ann/c-0.png", ("orphan",)), Gap("Ann/d-0.png", ("orphan",))]
    result = repair(gaps, {"orphan": refuse})
    assert result["repaired"]["orphan"] == 0
    assert [item["crop_key"] for item in result["failed"]] == ["Ann/c-0.png", "Ann/d-0.png"]


def test_the_reconcile_command_lists_then_repairs(tmp_path, capsys):
    workspace = tmp_path / "ws"
    enrolled(workspace).catalog.close()
    common = ["--workspace", str(workspace), "reconcile"]

    assert main([*common, "--dry-run"]) == EXIT_PARTIAL
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == ["orphan    Ann/c-0.png", "crop      Ben/a-0.png"]
    assert json.loads(out[2])["repaired"]["orphan"] == 0
    assert (workspace / "faces" / "Ann" / "c-0.png").exists()

    assert main(common) == EXIT_PARTIAL  # the missing crop cannot be made here
    assert not (workspace / "faces" / "Ann" / "c-0.png").exists()
    capsys.readouterr()
    assert main(common) == EXIT_PARTIAL
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["found"]["orphan"] == 0


def test_a_clean_workspace_has_no_gap(tmp_path, capsys):
    stores = local_stores(tmp_path / "ws")
    face = face_record("Ann/a.jpg", 0, "Ann")
    stores.faces.put(face.crop_key, b"png")
    stores.catalog.put_photo(PhotoRecord("Ann/a.jpg", "Ann", "sha", "enrolled", "", 1), [face])
    stores.catalog.close()
    assert main(["--workspace", str(tmp_path / "ws"), "reconcile"]) == EXIT_OK
