"""The per-environment config and how the app picks it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from aws_cdk import RemovalPolicy
from infra_support import REPO_ROOT

from infra.config import ENVIRONMENTS, UnknownEnvironmentError, load_config


def test_prod_keeps_data_and_dev_does_not():
    dev, prod = load_config("dev"), load_config("prod")
    assert (dev.retain_data, dev.point_in_time_recovery) == (False, False)
    assert (prod.retain_data, prod.point_in_time_recovery) == (True, True)
    assert dev.removal_policy == RemovalPolicy.DESTROY
    assert prod.removal_policy == RemovalPolicy.RETAIN


def test_dev_reserves_no_concurrency_so_a_new_account_can_deploy_it():
    dev = load_config("dev")
    settings = (
        dev.align_faces,
        dev.embed_faces,
        dev.index_faces,
        dev.identify_faces,
        dev.training,
        dev.report,
        dev.reindex,
        dev.forget,
    )
    assert all(setting.reserved_concurrency is None for setting in settings)
    assert load_config("prod").index_faces.reserved_concurrency is not None


def test_identify_fits_api_gateways_29_second_integration_limit():
    for name in ENVIRONMENTS:
        assert load_config(name).identify_faces.timeout.to_seconds() <= 29


def test_only_prod_keeps_identify_environments_initialised_within_its_reservation():
    # Provisioned concurrency is billed while idle; Lambda refuses more than is reserved.
    assert load_config("dev").identify_provisioned_concurrency == 0
    prod = load_config("prod")
    assert 0 < prod.identify_provisioned_concurrency <= prod.identify_faces.reserved_concurrency


def test_forget_loads_no_model_and_may_outlive_the_api_integration():
    for name in ENVIRONMENTS:
        forget = load_config(name).forget
        assert (forget.memory_mb, forget.timeout.to_seconds()) == (1024, 300)
        assert forget.reserved_concurrency is None


def test_the_report_step_times_facenet_at_the_identify_functions_memory():
    # The report's cost model prices FaceNet's identify path at the memory it was timed at.
    for name in ENVIRONMENTS:
        config = load_config(name)
        assert config.report.memory_mb == config.identify_faces.memory_mb
        assert config.report.timeout.to_seconds() == 15 * 60  # Lambda's longest


def test_the_training_evaluation_limits_fit_inside_lambdas_15_minutes():
    lowest_search_tps, usd_per_search, identify_seconds = 5, 0.001, 0.44
    for name in ENVIRONMENTS:
        config = load_config(name)
        searches = config.rekognition_evaluation_faces
        seconds = config.training.timeout.to_seconds()
        # every call at the lowest default quota of SearchFacesByImage, with room to spare
        assert searches >= 500 and searches / lowest_search_tps <= seconds / 2
        assert searches * usd_per_search <= 2.0  # USD a training
        # the standard error of an accuracy near 0.99 over the sample
        assert (0.99 * 0.01 / searches) ** 0.5 < 0.005
        timed = config.report_timed_photos
        assert timed >= 100 and timed * identify_seconds <= config.report.timeout.to_seconds() / 5
    assert load_config("prod").rekognition_evaluation_faces == 2_000
    assert load_config("dev").rekognition_evaluation_faces == 1_000


def test_every_environment_serves_facenet_at_the_runtimes_default_precision():
    from facerec.core.settings import DEFAULT_PRECISION  # infra cannot import the runtime

    for name in ENVIRONMENTS:
        assert load_config(name).embedding_precision == DEFAULT_PRECISION


def test_the_config_is_frozen():
    config = load_config("dev")
    with pytest.raises(AttributeError):
        config.retain_data = True  # type: ignore[misc]


@pytest.mark.parametrize("name", ["staging", "Dev", "", None])
def test_an_unknown_or_missing_environment_is_refused_with_the_allowed_values(name):
    with pytest.raises(UnknownEnvironmentError, match=r"-c env=dev or -c env=prod"):
        load_config(name)


def test_account_and_region_default_to_placeholders_and_can_be_overridden():
    assert (load_config("dev").account, load_config("dev").region) == ("111111111111", "us-east-1")
    config = load_config("prod", account="222222222222", region="eu-west-1")
    assert (config.account, config.region) == ("222222222222", "eu-west-1")
    assert config.bucket_name("ingest") == "facerec-prod-222222222222-eu-west-1-ingest"


def test_names_carry_the_environment_and_no_user_or_branch():
    config = load_config("dev")
    assert config.stack_name("Data") == "FaceRec-dev-Data"
    assert config.stack_name("Service") == "FaceRec-dev-Service"
    assert config.collection_id == "facerec-dev"
    assert config.resource_name("catalog") == "facerec-dev-catalog"


def test_bucket_names_stay_valid_in_the_longest_region():
    # S3: 3-63 characters, lower case, digits and hyphens.
    config = load_config("prod", account="123456789012", region="ap-southeast-5")
    for purpose in ("ingest", "faces", "models", "reports", "quarantine", "access-logs", "vectors"):
        name = config.bucket_name(purpose)
        assert len(name) <= 63 and name == name.lower(), name


def test_app_py_exits_with_a_clear_message_for_an_unknown_environment():
    env = {
        **os.environ,
        "CDK_CONTEXT_JSON": json.dumps({"env": "staging"}),
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    }
    result = subprocess.run(
        [sys.executable, "app.py"], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "unknown environment 'staging': pass -c env=dev or -c env=prod" in result.stderr
    assert "Traceback" not in result.stderr
