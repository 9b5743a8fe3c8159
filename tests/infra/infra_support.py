"""Helpers of the infra tests: the app synthesized in-process (with cdk.json's context,
cdk-nag and CDK's own CloudFormation validation, as `cdk synth` runs it) and readers of the
templates that resolve intrinsics the way CloudFormation will for the placeholder account."""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("CDK_DISABLE_VERSION_CHECK", "1")

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # `infra` is a top-level package of the repo
    sys.path.insert(0, str(REPO_ROOT))

import aws_cdk as cdk  # noqa: E402
from aws_cdk.assertions import Template  # noqa: E402

from infra.application import app_context, build  # noqa: E402
from infra.config import EnvironmentConfig  # noqa: E402
from infra.stateful_stack import StatefulStack  # noqa: E402
from infra.stateless_stack import StatelessStack  # noqa: E402

ACCOUNT = "111111111111"
REGION = "us-east-1"


@dataclass
class Synthesized:
    """One environment's app after `app.synth()`."""

    config: EnvironmentConfig
    app: cdk.App
    data_stack: StatefulStack
    service_stack: StatelessStack
    outdir: Path

    @property
    def data(self) -> Template:
        return Template.from_json(self.data_json)

    @property
    def service(self) -> Template:
        return Template.from_json(self.service_json)

    @property
    def data_json(self) -> dict:
        return self._template(self.data_stack)

    @property
    def service_json(self) -> dict:
        return self._template(self.service_stack)

    def _template(self, stack: cdk.Stack) -> dict:
        return json.loads((self.outdir / stack.template_file).read_text())

    # Names as the templates hold them (the placeholder account: see ACCOUNT).
    def bucket_arn(self, purpose: str) -> str:
        return f"arn:aws:s3:::{self.config.bucket_name(purpose)}"

    def table_arn(self, purpose: str) -> str:
        return f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{self.config.resource_name(purpose)}"

    @property
    def collection_arn(self) -> str:
        return f"arn:aws:rekognition:{REGION}:{ACCOUNT}:collection/facerec-{self.config.name}"

    def vector_index_arn(self, index: str) -> str:
        bucket = self.config.bucket_name("vectors")
        return f"arn:aws:s3vectors:{REGION}:{ACCOUNT}:bucket/{bucket}/index/{index}"

    @property
    def vector_index_arns(self) -> tuple[str, str]:
        """The faces index and the centroids index."""
        return self.vector_index_arn("faces"), self.vector_index_arn("centroids")


def synthesize(env: str, outdir: Path) -> Synthesized:
    app = cdk.App(context=app_context(env, account=ACCOUNT, region=REGION), outdir=str(outdir))
    data_stack, service_stack = build(app)
    app.synth()  # fails here on any unacknowledged cdk-nag or CloudFormation Validate finding
    return Synthesized(service_stack.config, app, data_stack, service_stack, outdir)


# ---- reading templates ------------------------------------------------------------------------


def resolve(value):
    """Intrinsics -> strings as CloudFormation would produce them for the placeholder account:
    pseudo parameters become their values, a `Ref` to a resource `<LogicalId>`, a `GetAtt`
    `<LogicalId.Attribute>` (a Lambda ARN: `arn:...:function:<LogicalId>`)."""
    if isinstance(value, list):
        return [resolve(item) for item in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Fn::Join"}:
        separator, parts = value["Fn::Join"]
        return separator.join(str(resolve(part)) for part in parts)
    if set(value) == {"Ref"}:
        pseudo = {
            "AWS::Partition": "aws",
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "AWS::URLSuffix": "amazonaws.com",
        }
        return pseudo.get(value["Ref"], f"<{value['Ref']}>")
    if set(value) == {"Fn::GetAtt"}:
        logical_id, attribute = value["Fn::GetAtt"]
        return f"<{logical_id}.{attribute}>"
    if set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):
        # `${Name}` as the `Ref` of Name, `${Id.Attribute}` as its `GetAtt`
        return re.sub(
            r"\$\{([^}!]+)\}",
            lambda match: resolve(
                {"Fn::GetAtt": match[1].split(".", 1)} if "." in match[1] else {"Ref": match[1]}
            ),
            value["Fn::Sub"],
        )
    if len(value) == 1 and next(iter(value)).startswith("Fn::"):
        return json.dumps(value, separators=(",", ":"))  # e.g. Fn::Select: kept readable
    return {key: resolve(item) for key, item in value.items()}


def resources_of_type(template: dict, resource_type: str) -> dict[str, dict]:
    return {
        logical_id: resource
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == resource_type
    }


def function_by_handler(template: dict, handler: str) -> tuple[str, dict]:
    """(logical id, properties) of the function whose image runs ``handler``."""
    found = [
        (logical_id, resource["Properties"])
        for logical_id, resource in resources_of_type(template, "AWS::Lambda::Function").items()
        if resource["Properties"].get("ImageConfig", {}).get("Command") == [handler]
    ]
    assert len(found) == 1, f"expected one function running {handler}, found {len(found)}"
    return found[0]


def role_permissions(template: dict, role_logical_id: str) -> dict[str, set[str]]:
    """resource ARN -> the actions every policy attached to the role allows on it (inline
    policies and managed policy ARNs both counted; Deny statements are not expected)."""
    role = template["Resources"][role_logical_id]
    assert not role["Properties"].get("ManagedPolicyArns"), "functions get no managed policies"
    permissions: dict[str, set[str]] = {}
    for policy in resources_of_type(template, "AWS::IAM::Policy").values():
        if {"Ref": role_logical_id} not in policy["Properties"]["Roles"]:
            continue
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            assert statement["Effect"] == "Allow"
            actions = statement["Action"]
            actions = [actions] if isinstance(actions, str) else actions
            targets = resolve(statement["Resource"])
            targets = [targets] if isinstance(targets, str) else targets
            for target in targets:
                permissions.setdefault(target, set()).update(actions)
    return permissions


def definition_of(template: dict, state_machine_logical_id: str) -> dict:
    """The state machine's ASL definition as JSON, its function ARNs resolved."""
    properties = template["Resources"][state_machine_logical_id]["Properties"]
    text = properties["DefinitionString"]
    parts = text["Fn::Join"][1] if isinstance(text, dict) else [text]
    resolved = []
    for part in parts:
        if isinstance(part, dict) and "Fn::GetAtt" in part:
            logical_id = part["Fn::GetAtt"][0]
            resolved.append(f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{logical_id}")
        else:
            resolved.append(str(resolve(part)))
    return json.loads("".join(resolved))
