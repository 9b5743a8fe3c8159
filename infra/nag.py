"""cdk-nag 3 acknowledgments: each finding is acknowledged on the construct it concerns, one
id per finding (``AwsSolutions-IAM5[Resource::*]``), always with its reason."""

from __future__ import annotations

import json

from aws_cdk import Acknowledgment, Stack, Validations
from constructs import IConstruct


def acknowledge(scope: IConstruct, rule: str, reason: str, *findings: str) -> None:
    """Acknowledge ``rule`` on ``scope``: the whole rule when no ``findings`` are given, else
    each ``rule[finding]`` (e.g. ``Resource::*``) and nothing else."""
    if not reason.strip():
        raise ValueError(f"acknowledging {rule} needs a reason")
    ids = [f"{rule}[{item}]" for item in findings] if findings else [rule]
    Validations.of(scope).acknowledge(*(Acknowledgment(id=id_, reason=reason) for id_ in ids))


def finding(scope: IConstruct, value: str) -> str:
    """``value`` (a string or a token, e.g. an ARN) as cdk-nag prints it in a finding id:
    ``{"Ref": "AWS::Partition"}`` becomes ``<AWS::Partition>``, a ``Fn::GetAtt`` becomes
    ``<LogicalId.Attribute>``, ``Fn::Join`` parts are joined and any other intrinsic is
    printed as compact JSON."""
    return _flatten(Stack.of(scope).resolve(value))


def _flatten(value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        ((function, argument),) = value.items()
        if function == "Ref":
            return f"<{argument}>"
        if function == "Fn::GetAtt":
            return f"<{argument[0]}.{argument[1]}>"
        if function == "Fn::Join":
            separator, parts = argument
            return separator.join(_flatten(part) for part in parts)
    return json.dumps(value, separators=(",", ":"))
