"""The checks around the stacks: cdk-nag, cfn-lint, the image asset and its build context,
pinned versions, and `cdk synth` with the pinned CLI staying offline and quiet."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from importlib.metadata import requires, version

import aws_cdk as cdk
import pytest
from aws_cdk import aws_s3 as s3
from aws_cdk.assertions import Annotations, Match
from cdk_nag import AwsSolutionsChecks
from cfnlint.api import ManualArgs, lint_file
from infra_support import ACCOUNT, REGION, REPO_ROOT
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from facerec.vision.runtime import FACENET, MANIFEST, MTCNN
from infra.application import app_context, build

# What the image copies from .cache/onnx (make setup writes them), in the Dockerfile's order.
NETWORK_FILES = (MANIFEST, "SHA256SUMS", *(f"{name}.onnx" for name in (*FACENET.values(), *MTCNN)))

# ---- cdk-nag ---------------------------------------------------------------------------------


def test_cdk_nag_aws_solutions_finds_nothing_unacknowledged(synthesized):
    report = AwsSolutionsChecks().validate_scope(synthesized.app)
    findings = [
        f"{violation.rule_name} at {resource.construct_path}"
        for violation in report.violations
        for resource in violation.violating_resources
    ]
    assert findings == []
    assert report.success is True


def test_no_stack_carries_an_error_annotation(synthesized):
    for stack in (synthesized.data_stack, synthesized.service_stack):
        annotations = Annotations.from_stack(stack)
        assert annotations.find_error("*", Match.string_like_regexp("AwsSolutions-.*")) == []
        assert annotations.find_error("*", Match.any_value()) == []


def test_synth_fails_on_a_new_finding(tmp_path):
    # cdk-nag runs inside `cdk synth` (a validation plugin), not only in these tests.
    app = cdk.App(context=app_context("dev", account=ACCOUNT, region=REGION), outdir=str(tmp_path))
    data, _ = build(app)
    s3.Bucket(data, "CarelessBucket", enforce_ssl=False)
    with pytest.raises(RuntimeError, match=r"(?s)ValidationFailed.*AwsSolutions-S10"):
        app.synth()


def test_an_app_built_in_process_with_just_the_env_equals_the_cli_one(dev, tmp_path, monkeypatch):
    # build() applies cdk.json's feature flags itself: other tests may build the app with
    # nothing but {"env": "dev"} and still get what `cdk synth -c env=dev` deploys.
    monkeypatch.delenv("CDK_DEFAULT_ACCOUNT", raising=False)
    monkeypatch.delenv("CDK_DEFAULT_REGION", raising=False)
    app = cdk.App(context={"env": "dev"}, outdir=str(tmp_path))
    data, service = build(app)
    app.synth()
    for stack, expected in ((data, dev.data_json), (service, dev.service_json)):
        built = (tmp_path / stack.template_file).read_text()
        # Asset hashes follow the repo's files, which may change between the two syntheses.
        assert without_hashes(built) == without_hashes(json.dumps(expected, indent=1))


def without_hashes(template: str) -> dict:
    """The template with asset hashes (64 hex) and the hashes CDK puts in logical ids of
    versions (32 hex) masked: both change with any file the image copies."""
    return json.loads(re.sub(r"[0-9a-f]{64}|[0-9a-f]{32}", "<hash>", template))


def acknowledgments(app: cdk.App) -> list[tuple[cdk.IConstruct, str, str]]:
    found = []
    for construct in app.node.find_all():
        for entry in construct.node.metadata:
            if entry.type == cdk.Validations.ACKNOWLEDGED_RULES_METADATA_KEY:
                found += [(construct, rule, reason) for rule, reason in entry.data.items()]
    return found


def test_every_acknowledgment_is_scoped_to_a_resource_and_says_why(synthesized):
    found = acknowledgments(synthesized.app)
    assert found
    for construct, rule, reason in found:
        assert not isinstance(construct, (cdk.App, cdk.Stack)), rule
        assert len(reason) >= 60, (rule, reason)
        if "AwsSolutions-IAM5" in rule:  # wildcard findings: one by one, never the whole rule
            assert re.search(r"AwsSolutions-IAM5\[.+\]$", rule), rule


def test_resource_star_is_acknowledged_only_where_aws_requires_it(synthesized):
    # X-Ray on function roles; X-Ray and logs delivery on state machines.
    holders = {
        construct.node.path.split("/", 1)[1]
        for construct, rule, _ in acknowledgments(synthesized.app)
        if rule.endswith("[Resource::*]")
    }
    stack = synthesized.service_stack
    functions = {f"{function.node.path.split('/', 1)[1]}/Role" for function in stack.functions}
    workflows = {
        "TrainingWorkflow/StateMachine",
        "ReindexWorkflow/StateMachine",
        "ForgetWorkflow/StateMachine",
    }
    assert holders == functions | workflows


def test_acknowledged_rules_are_the_expected_few(synthesized):
    rules = {
        re.sub(r"^Annotation::", "", rule).split("[")[0]
        for _, rule, _ in acknowledgments(synthesized.app)
    }
    expected = {"AwsSolutions-IAM5", "AwsSolutions-IAM4", "AwsSolutions-APIG3", "AwsSolutions-COG4"}
    if not synthesized.config.point_in_time_recovery:
        expected.add("AwsSolutions-DDB3")  # dev only
    assert rules == expected


# ---- cfn-lint ---------------------------------------------------------------------------------


def test_cfn_lint_is_clean_but_for_cdks_duplicate_depends_on(synthesized):
    findings = []
    for stack in (synthesized.data_stack, synthesized.service_stack):
        template = synthesized.outdir / stack.template_file
        matches = lint_file(template, config=ManualArgs(regions=[REGION]))
        findings += [f"{match.rule.id} {template.name}: {match.message}" for match in matches]
    # W3005: CDK writes DependsOn entries a GetAtt already implies.
    assert [finding for finding in findings if not finding.startswith("W3005 ")] == []


# ---- the image asset -----------------------------------------------------------------------------


def docker_assets(synthesized) -> dict:
    manifest = synthesized.outdir / f"{synthesized.service_stack.artifact_id}.assets.json"
    return json.loads(manifest.read_text())["dockerImages"]


def test_all_functions_share_one_image_asset_built_from_the_repo_root(synthesized):
    assets = docker_assets(synthesized)
    assert len(assets) == 1
    ((_, asset),) = assets.items()
    assert asset["source"]["dockerFile"] == "functions/Dockerfile"
    assert asset["source"]["platform"] == "linux/amd64"


def test_the_build_context_holds_the_package_the_handlers_and_the_networks_only(synthesized):
    ((_, asset),) = docker_assets(synthesized).items()
    context = synthesized.outdir / asset["source"]["directory"]
    handlers = {
        "/".join(function.handler.split(".")[:-1]) + ".py"
        for function in synthesized.service_stack.functions
    }
    for needed in (
        "functions/Dockerfile",
        "functions/requirements.txt",
        *sorted(handlers),
        "layers/facerec/__init__.py",
    ):
        assert (context / needed).is_file(), needed
    top_level = {path.name for path in context.iterdir()}
    assert top_level <= {"functions", "layers", ".cache", ".dockerignore"}, top_level
    assert {path.name for path in (context / ".cache").iterdir()} == {"onnx"}
    networks = context / ".cache/onnx"
    assert {path.name for path in networks.iterdir()} == set(NETWORK_FILES)
    # The check the image build runs: every .onnx listed, every listed file intact.
    listed = {
        line.split(maxsplit=1)[1].lstrip("*")
        for line in (networks / "SHA256SUMS").read_text().splitlines()
    }
    assert {name for name in NETWORK_FILES if name.endswith(".onnx")} <= listed
    check = ["sha256sum", "--check", "--strict", "--quiet", "SHA256SUMS"]
    assert subprocess.run(check, cwd=networks, capture_output=True).returncode == 0
    assert {path.name for path in (context / "layers").iterdir()} == {"facerec"}
    assert not list(context.rglob("__pycache__"))


def test_the_dockerfile_bakes_in_the_checked_networks_and_the_package():
    dockerfile = (REPO_ROOT / "functions/Dockerfile").read_text()
    assert re.search(r"^FROM public\.ecr\.aws/lambda/python:3\.12$", dockerfile, re.MULTILINE)
    steps = instructions(dockerfile)
    networks = [f".cache/onnx/{name}" for name in NETWORK_FILES]
    assert [step for step in steps if ".cache/" in step] == [
        " ".join(["COPY", *networks, "${MODELS_DIR}/"])
    ]
    assert "MODELS_DIR=/opt/facerec/models" in next(
        step for step in steps if step.startswith("ENV ")
    )
    assert "RUN cd ${MODELS_DIR} && sha256sum --check --strict SHA256SUMS" in steps
    assert "facenet_keras.h5" not in dockerfile
    assert not re.search(r"TF_|KERAS", dockerfile)
    assert "COPY layers/facerec ${LAMBDA_TASK_ROOT}/facerec" in dockerfile
    assert "COPY functions/ ${LAMBDA_TASK_ROOT}/functions/" in dockerfile
    assert "pip install --no-cache-dir --only-binary=:all: -r" in dockerfile


def instructions(dockerfile: str) -> list[str]:
    """A Dockerfile's instructions, one string each: comments dropped, continued lines joined,
    runs of white space as one space."""
    lines = [line for line in dockerfile.splitlines() if not line.lstrip().startswith("#")]
    joined = "\n".join(lines).replace("\\\n", " ")
    return [" ".join(line.split()) for line in joined.splitlines() if line.strip()]


# ---- pinned versions ---------------------------------------------------------------------------


def pins(path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-r"):
            name, separator, pinned = line.partition("==")
            assert separator, f"{path.name}: {line} is not pinned"
            found[name.lower().replace("_", "-")] = pinned
    return found


def test_the_image_installs_the_same_versions_the_tests_run():
    image = pins(REPO_ROOT / "functions/requirements.txt")
    runtime = pins(REPO_ROOT / "requirements.txt")
    shared = set(image) & set(runtime)
    assert {"onnxruntime", "numpy", "scikit-learn", "pillow"} <= shared
    assert {name: image[name] for name in shared} == {name: runtime[name] for name in shared}
    assert image["boto3"] == version("boto3")


# The training stack the image no longer carries: the networks run on ONNX Runtime.
NOT_IN_THE_IMAGE = {
    "tensorflow",
    "tensorflow-cpu",
    "tf-keras",
    "keras",
    "h5py",
    "mtcnn",
    "tf2onnx",
    "onnx",
    "tensorboard",
    "libclang",
    "grpcio",
    "ml-dtypes",
}

# What pip evaluates environment markers against in the image (CPython 3.12, Linux x86_64).
IMAGE_MARKERS = {
    "python_version": "3.12",
    "python_full_version": "3.12.0",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "extra": "",
}


def test_the_image_installs_onnx_runtime_and_no_training_stack():
    image = pins(REPO_ROOT / "functions/requirements.txt")
    assert image["onnxruntime"] == "1.32.0"
    assert not set(image) & NOT_IN_THE_IMAGE, set(image) & NOT_IN_THE_IMAGE


def test_the_image_requirements_are_fully_resolved():
    # Every dependency of every pin (as installed here, at the pinned version) is pinned too,
    # at a version it accepts: pip in the image then resolves nothing of its own.
    image = pins(REPO_ROOT / "functions/requirements.txt")
    for name, pinned in image.items():
        assert version(name) == pinned, f"{name}: {version(name)} installed, {pinned} pinned"
        for requirement in map(Requirement, requires(name) or []):
            if requirement.marker and not requirement.marker.evaluate(IMAGE_MARKERS):
                continue
            needed = canonicalize_name(requirement.name)
            assert needed in image, f"{name} needs {requirement}, which is not pinned"
            assert requirement.specifier.contains(image[needed], prereleases=True), (
                f"{name} needs {requirement}; {image[needed]} is pinned"
            )


def test_the_infra_toolchain_is_pinned_and_installed_as_pinned():
    infra = pins(REPO_ROOT / "requirements-infra.txt")
    assert infra["aws-cdk-lib"] == "2.275.0"
    assert infra["cdk-nag"] == "3.0.2"
    for name, pinned in infra.items():
        assert version(name) == pinned, name


def test_the_cdk_cli_is_pinned_exactly():
    package = json.loads((REPO_ROOT / "package.json").read_text())
    pinned = package["devDependencies"]["aws-cdk"]
    assert re.fullmatch(r"2\.\d+\.\d+", pinned), pinned
    lock = json.loads((REPO_ROOT / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/aws-cdk"]["version"] == pinned


def test_cdk_json_keeps_synth_offline_and_quiet():
    settings = json.loads((REPO_ROOT / "cdk.json").read_text())
    assert settings["app"] == ".venv/bin/python app.py"
    assert settings["notices"] is False
    assert settings["context"]["cli-telemetry"] is False
    assert "env" not in settings["context"]  # the environment is always chosen explicitly


CLI = REPO_ROOT / "node_modules/.bin/cdk"


def test_cdk_synth_with_the_pinned_cli_is_offline_and_quiet(tmp_path):
    assert CLI.exists(), "the pinned CDK CLI is not installed: run `make setup` (npm ci)"
    environment = {
        **os.environ,
        "CDK_DISABLE_VERSION_CHECK": "1",
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
        # Any attempt to reach the network (notices, version check, telemetry) fails loudly.
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
    }
    for name in ("CDK_DEFAULT_ACCOUNT", "CDK_DEFAULT_REGION", "AWS_PROFILE"):
        environment.pop(name, None)
    outdir = tmp_path / "cdk.out"
    result = subprocess.run(
        [str(CLI), "synth", "-c", "env=dev", "--quiet", "--output", str(outdir)],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    # The CLI's two closing lines go to stderr, or to stdout when CI=true; nothing else may.
    noise = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if line.strip() and not line.startswith(("Successfully synthesized", "Supply a stack id"))
    ]
    assert noise == []
    assert (outdir / "FaceRec-dev-Data.template.json").is_file()
    assert (outdir / "FaceRec-dev-Service.template.json").is_file()
    shutil.rmtree(outdir)
