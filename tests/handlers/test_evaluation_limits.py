"""The training workflow's evaluation limits as functions/settings.py reads them: the
deployment's values, the defaults for local use, and anything but a positive whole number
refused."""

from __future__ import annotations

import pytest

from functions.settings import Settings, SettingsError
from tests.support import ENV


def test_the_limits_default_for_local_use_and_are_read_from_the_environment():
    local = Settings.from_env(ENV)
    assert (local.rekognition_evaluation_faces, local.report_timed_photos) == (1000, 200)
    deployed = Settings.from_env(
        {**ENV, "REKOGNITION_EVALUATION_FACES": "2000", "REPORT_TIMED_PHOTOS": "50"}
    )
    assert (deployed.rekognition_evaluation_faces, deployed.report_timed_photos) == (2000, 50)


@pytest.mark.parametrize("value", ["0", "-5", "1.5", "all", ""])
@pytest.mark.parametrize("name", ["REKOGNITION_EVALUATION_FACES", "REPORT_TIMED_PHOTOS"])
def test_a_limit_that_is_not_a_positive_whole_number_is_refused(name, value):
    with pytest.raises(SettingsError, match="positive whole numbers"):
        Settings.from_env({**ENV, name: value})
