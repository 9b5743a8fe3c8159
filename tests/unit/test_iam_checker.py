"""tests/iam.py: calls mapped to the IAM requests they need, policies evaluated with IAM's
wildcards, conditions on dynamodb:LeadingKeys and Deny, and the checker on real boto3 clients
(moto S3 and DynamoDB, Stubber on Rekognition)."""

from __future__ import annotations

import os
import threading
from unittest import mock

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from tests.iam import (
    LEADING_KEYS,
    CallChecker,
    Deployment,
    Policy,
    Request,
    Statement,
    Unmapped,
    function_policies,
    requests_for,
    requests_for_answer,
    role_policy,
)

TABLES = {"catalog": {"": "pk", "gsi1": "gsi1pk"}, "other": {"": "id"}}
ARNS = Deployment("us-east-1", "111111111111", TABLES)
BUCKET = "facerec-dev-faces"
HANDLER = "functions.embed_faces.handler.handler"
TABLE = "arn:aws:dynamodb:us-east-1:111111111111:table/catalog"
INDEX = "arn:aws:s3vectors:us-east-1:111111111111:bucket/vec/index/faces"


@pytest.mark.parametrize(
    ("service", "operation", "params", "expected"),
    [
        ("s3", "HeadObject", {"Bucket": "b", "Key": "k"}, ["s3:GetObject on arn:aws:s3:::b/k"]),
        (
            "s3",
            "GetObject",
            {"Bucket": "b", "Key": "a b/é:1.png", "VersionId": "v1"},
            ["s3:GetObjectVersion on arn:aws:s3:::b/a b/é:1.png"],
        ),
        (
            "s3",
            "PutObject",
            {"Bucket": "b", "Key": "k", "Body": b"x", "Tagging": "a=b"},
            ["s3:PutObject on arn:aws:s3:::b/k", "s3:PutObjectTagging on arn:aws:s3:::b/k"],
        ),
        (
            "s3",
            "DeleteObject",
            {"Bucket": "b", "Key": "k"},
            ["s3:DeleteObject on arn:aws:s3:::b/k"],
        ),
        (
            "s3",
            "DeleteObjects",
            {"Bucket": "b", "Delete": {"Objects": [{"Key": "k"}, {"Key": "v", "VersionId": "1"}]}},
            ["s3:DeleteObject on arn:aws:s3:::b/k", "s3:DeleteObjectVersion on arn:aws:s3:::b/v"],
        ),
        ("s3", "ListObjectsV2", {"Bucket": "b"}, ["s3:ListBucket on arn:aws:s3:::b"]),
        ("s3", "ListObjectVersions", {"Bucket": "b"}, ["s3:ListBucketVersions on arn:aws:s3:::b"]),
        (
            "dynamodb",
            "Query",
            {
                "TableName": "catalog",
                "IndexName": "gsi1",
                "KeyConditionExpression": "#n0 = :v0 AND begins_with(#n1, :v1)",
                "ExpressionAttributeNames": {"#n0": "gsi1pk", "#n1": "gsi1sk"},
                "ExpressionAttributeValues": {":v0": {"S": "PERSON#ann"}, ":v1": {"S": "F"}},
            },
            [f"dynamodb:Query on {TABLE}/index/gsi1 ({LEADING_KEYS}: PERSON#ann)"],
        ),
        ("dynamodb", "Scan", {"TableName": "catalog"}, [f"dynamodb:Scan on {TABLE}"]),
        (
            "dynamodb",
            "UpdateItem",
            {"TableName": "catalog", "Key": {"pk": {"S": "PHOTO#a"}, "sk": {"S": "META"}}},
            [f"dynamodb:UpdateItem on {TABLE} ({LEADING_KEYS}: PHOTO#a)"],
        ),
        (
            "dynamodb",
            "BatchWriteItem",
            {
                "RequestItems": {
                    "catalog": [
                        {"PutRequest": {"Item": {"pk": {"S": "B"}, "x": {"N": "1"}}}},
                        {"DeleteRequest": {"Key": {"pk": {"S": "A"}, "sk": {"S": "M"}}}},
                    ],
                    "other": [{"DeleteRequest": {"Key": {"id": {"N": "7"}}}}],
                }
            },
            [
                f"dynamodb:BatchWriteItem on {TABLE} ({LEADING_KEYS}: A, B)",
                "dynamodb:BatchWriteItem on arn:aws:dynamodb:us-east-1:111111111111:table/other"
                f" ({LEADING_KEYS}: 7)",
            ],
        ),
        (
            "dynamodb",
            "TransactWriteItems",
            {
                "TransactItems": [
                    {"Put": {"TableName": "catalog", "Item": {"pk": {"S": "MODEL"}}}},
                    {"ConditionCheck": {"TableName": "catalog", "Key": {"pk": {"S": "LOCK"}}}},
                ]
            },
            [
                f"dynamodb:PutItem on {TABLE} ({LEADING_KEYS}: MODEL)",
                f"dynamodb:ConditionCheckItem on {TABLE} ({LEADING_KEYS}: LOCK)",
            ],
        ),
        (
            "rekognition",
            "IndexFaces",
            {"CollectionId": "facerec-dev"},
            [
                "rekognition:IndexFaces on "
                "arn:aws:rekognition:us-east-1:111111111111:collection/facerec-dev"
            ],
        ),
        (
            "s3vectors",
            "QueryVectors",
            {"vectorBucketName": "vec", "indexName": "faces", "returnMetadata": False},
            [f"s3vectors:QueryVectors on {INDEX}"],
        ),
        (
            "s3vectors",
            "QueryVectors",
            {"indexArn": INDEX, "returnMetadata": True},
            [f"s3vectors:QueryVectors on {INDEX}", f"s3vectors:GetVectors on {INDEX}"],
        ),
        (
            "s3vectors",
            "ListVectors",
            {"vectorBucketName": "vec", "indexName": "faces", "returnData": True},
            [f"s3vectors:ListVectors on {INDEX}", f"s3vectors:GetVectors on {INDEX}"],
        ),
        (
            "stepfunctions",
            "StartExecution",
            {"stateMachineArn": "arn:aws:states:us-east-1:1:stateMachine:t"},
            ["states:StartExecution on arn:aws:states:us-east-1:1:stateMachine:t"],
        ),
    ],
)
def test_a_call_needs_these_iam_requests(service, operation, params, expected):
    assert [str(r) for r in requests_for(service, operation, params, ARNS)] == expected


@pytest.mark.parametrize(
    ("service", "operation", "params", "refused"),
    [
        ("s3", "CopyObject", {"Bucket": "b"}, "s3.CopyObject"),
        ("rekognition", "DetectFaces", {}, "rekognition.DetectFaces"),
        ("sts", "GetCallerIdentity", {}, "sts.GetCallerIdentity"),
        ("dynamodb", "GetItem", {"TableName": "unknown", "Key": {}}, "no key schema"),
        ("dynamodb", "Query", {"TableName": "catalog"}, "without a KeyConditionExpression"),
    ],
)
def test_a_call_without_a_mapping_is_refused(service, operation, params, refused):
    with pytest.raises(Unmapped, match=refused):
        requests_for(service, operation, params, ARNS)


def test_a_missing_object_needs_list_bucket_to_be_a_404():
    params = {"Bucket": "b", "Key": "k"}
    assert requests_for_answer("s3", "HeadObject", params, 404, ARNS) == [
        Request("s3:ListBucket", "arn:aws:s3:::b")
    ]
    assert requests_for_answer("s3", "GetObject", params, 200, ARNS) == []
    assert requests_for_answer("s3", "PutObject", params, 404, ARNS) == []


def allow(actions, resources) -> Statement:
    return Statement("Allow", tuple(actions), tuple(resources))


@pytest.mark.parametrize(
    ("statement", "request_", "applies"),
    [
        # actions: case-insensitive, * and ?
        (allow(["s3:GetObject*"], ["*"]), Request("s3:getobjectversion", "x"), True),
        (allow(["s3:putObject"], ["*"]), Request("s3:PutObject", "x"), True),
        (allow(["s3:Get?bject"], ["*"]), Request("s3:GetObject", "x"), True),
        (allow(["s3:GetObject"], ["*"]), Request("s3:GetObjectVersion", "x"), False),
        (allow(["s3:*"], ["*"]), Request("dynamodb:GetItem", "x"), False),
        # resources: case-sensitive; '*' ending a segment runs on, past colons and slashes
        (
            allow(["s3:*"], ["arn:aws:s3:::b/*"]),
            Request("s3:GetObject", "arn:aws:s3:::b/a:c/d"),
            True,
        ),
        (allow(["s3:*"], ["arn:aws:s3:::b/*"]), Request("s3:ListBucket", "arn:aws:s3:::b"), False),
        (allow(["s3:*"], ["arn:aws:s3:::b/*"]), Request("s3:GetObject", "arn:aws:s3:::B/k"), False),
        (allow(["s3:*"], ["arn:aws:s3:::b?"]), Request("s3:ListBucket", "arn:aws:s3:::bc"), True),
        (allow(["s3:*"], ["arn:aws:s3:::b?"]), Request("s3:ListBucket", "arn:aws:s3:::b"), False),
        # ... but one inside a segment stays in it
        (
            allow(["dynamodb:*"], ["arn:aws:dynamodb:us-*-1:1:table/t"]),
            Request("dynamodb:GetItem", "arn:aws:dynamodb:us-east-1:1:table/t"),
            True,
        ),
        (
            allow(["dynamodb:*"], ["arn:aws:dynamodb:us-*-1:1:table/t"]),
            Request("dynamodb:GetItem", "arn:aws:dynamodb:us-east:x-1:1:table/t"),
            False,
        ),
        (
            allow(["dynamodb:Query"], [f"{TABLE}/index/*"]),
            Request("dynamodb:Query", TABLE),
            False,
        ),
        (
            allow(["states:*"], ["arn:aws:states:r:1:execution:m:*"]),
            Request("states:X", "arn:aws:states:r:1:execution:m:run:1"),
            True,
        ),
    ],
)
def test_statements_match_as_iam_matches(statement, request_, applies):
    assert statement.applies_to(request_) is applies


def leading(*keys: str) -> tuple:
    return ((LEADING_KEYS, keys),)


MODELS_ONLY = {"ForAllValues:StringLike": {LEADING_KEYS: ["MODEL", "MODEL#*"]}}


@pytest.mark.parametrize(
    ("condition", "context", "holds"),
    [
        (MODELS_ONLY, leading("MODEL"), True),
        (MODELS_ONLY, leading("MODEL#m1", "MODEL"), True),
        (MODELS_ONLY, leading("MODEL#m1", "PHOTO#a"), False),  # every key must match
        (MODELS_ONLY, leading("model"), False),  # StringLike is case-sensitive
        (MODELS_ONLY, (), True),  # IAM: ForAllValues holds without the key (a Scan)
        ({"ForAnyValue:StringEquals": {LEADING_KEYS: "A"}}, leading("B", "A"), True),
        ({"ForAnyValue:StringEquals": {LEADING_KEYS: "A"}}, (), False),
        ({"StringEquals": {LEADING_KEYS: ["A", "B"]}}, leading("B"), True),
        ({"StringEquals": {LEADING_KEYS: "A"}}, leading("A*"), False),
        ({"StringEquals": {LEADING_KEYS: "A"}}, (), False),
    ],
)
def test_conditions_on_the_leading_keys_hold_as_in_iam(condition, context, holds):
    statement = Statement("Allow", ("dynamodb:*",), ("*",), condition)
    assert statement.applies_to(Request("dynamodb:PutItem", TABLE, context)) is holds


def test_an_allow_is_needed_and_a_deny_wins():
    request = Request("s3:DeleteObject", "arn:aws:s3:::b/k")
    everything = allow(["s3:*"], ["*"])
    deny = Statement("Deny", ("s3:Delete*",), ("arn:aws:s3:::b/*",))
    assert Policy((everything,)).allows(request)
    assert not Policy((everything, deny)).allows(request)
    assert not Policy((deny,)).allows(request)
    assert not Policy(()).allows(request)


def template(*statements: dict, role_properties: dict | None = None) -> dict:
    """One function running HANDLER, its role, and one policy with ``statements``."""
    return {
        "Resources": {
            "Fn": {
                "Type": "AWS::Lambda::Function",
                "Properties": {
                    "ImageConfig": {"Command": [HANDLER]},
                    "Role": {"Fn::GetAtt": ["FnRole", "Arn"]},
                },
            },
            "FnRole": {"Type": "AWS::IAM::Role", "Properties": role_properties or {}},
            "FnPolicy": {
                "Type": "AWS::IAM::Policy",
                "Properties": {
                    "PolicyDocument": {"Statement": list(statements), "Version": "2012-10-17"},
                    "Roles": [{"Ref": "FnRole"}],
                },
            },
            "OtherPolicy": {
                "Type": "AWS::IAM::Policy",
                "Properties": {
                    "PolicyDocument": {
                        "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]
                    },
                    "Roles": [{"Ref": "OtherRole"}],
                },
            },
        }
    }


def bucket_statements(bucket: str = BUCKET, listing: bool = True) -> list[dict]:
    """Get and (``listing``) list the bucket, with resources written as CDK writes them."""
    objects = {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, f":s3:::{bucket}/*"]]}
    statements = [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": objects}]
    if listing:
        statements.append(
            {
                "Effect": "Allow",
                "Action": ["s3:List*"],
                "Resource": {"Fn::Sub": "arn:${AWS::Partition}:s3:::" + bucket},
            }
        )
    return statements


def test_a_role_policy_is_read_from_the_template_with_intrinsics_resolved():
    policies = function_policies(template(*bucket_statements()))
    assert set(policies) == {HANDLER}
    assert policies[HANDLER].statements == (
        allow(["s3:GetObject"], [f"arn:aws:s3:::{BUCKET}/*"]),
        allow(["s3:List*"], [f"arn:aws:s3:::{BUCKET}"]),
    )  # the other role's statement is not the function's


@pytest.mark.parametrize(
    ("statement", "role_properties", "refused"),
    [
        ({"Condition": {"Bool": {"aws:SecureTransport": "true"}}}, None, "Bool"),
        ({"Condition": {"StringEquals": {"aws:PrincipalTag/a": "b"}}}, None, "PrincipalTag"),
        ({"Condition": {"StringLikeIfExists": {LEADING_KEYS: "b"}}}, None, "IfExists"),
        ({"NotResource": "arn:aws:s3:::x"}, None, "NotResource"),
        ({}, {"ManagedPolicyArns": ["arn:aws:iam::aws:policy/AdministratorAccess"]}, "managed"),
    ],
)
def test_what_cannot_be_evaluated_offline_is_refused(statement, role_properties, refused):
    document = {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*", **statement}
    with pytest.raises(ValueError, match=refused):
        role_policy(template(document, role_properties=role_properties), "FnRole")


@pytest.fixture
def session():
    environment = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    with mock.patch.dict(os.environ, environment), mock_aws():
        session = boto3.session.Session(region_name="us-east-1")
        session.client("s3").create_bucket(Bucket=BUCKET)
        yield session


def checker_for(*statements: dict) -> CallChecker:
    return CallChecker(function_policies(template(*statements)), ARNS)


def test_calls_inside_acting_as_are_checked_and_a_missing_key_needs_the_listing(session):
    checker = checker_for(*bucket_statements())
    checker.attach(session)
    s3 = session.client("s3")
    s3.put_object(Bucket=BUCKET, Key="a/b.png", Body=b"x")  # the test's own: not checked
    with checker.acting_as(HANDLER):
        assert s3.get_object(Bucket=BUCKET, Key="a/b.png")["Body"].read() == b"x"
        with pytest.raises(s3.exceptions.ClientError, match="404"):
            s3.head_object(Bucket=BUCKET, Key="a/missing.png")
        s3.list_objects_v2(Bucket=BUCKET)
    assert checker.requests(HANDLER) == {
        Request("s3:GetObject", f"arn:aws:s3:::{BUCKET}/a/b.png"),
        Request("s3:GetObject", f"arn:aws:s3:::{BUCKET}/a/missing.png"),
        Request("s3:ListBucket", f"arn:aws:s3:::{BUCKET}"),
    }
    assert [call.name for call in checker.calls] == [
        "s3.GetObject",
        "s3.HeadObject",
        "s3.ListObjectsV2",
    ]

    unlisted = checker_for(*bucket_statements(listing=False))
    unlisted.attach(s3)
    with pytest.raises(AssertionError) as failure, unlisted.acting_as(HANDLER):
        s3.head_object(Bucket=BUCKET, Key="a/b.png")  # found: allowed
        with pytest.raises(s3.exceptions.ClientError):
            s3.head_object(Bucket=BUCKET, Key="a/missing.png")  # AWS: 403, not 404
    assert str(failure.value) == (
        f"the role of {HANDLER} does not allow:\n"
        f"  s3.HeadObject: s3:ListBucket on arn:aws:s3:::{BUCKET}"
    )


def test_a_call_its_role_does_not_allow_fails_with_function_action_and_resource(session):
    checker = checker_for(*bucket_statements())
    s3 = session.client("s3")
    checker.attach(s3)
    checker.attach(s3)  # attached twice, recorded once
    s3.put_object(Bucket=BUCKET, Key="k.png", Body=b"x")
    with pytest.raises(AssertionError) as failure, checker.acting_as(HANDLER):
        s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": "k.png"}]})
    assert str(failure.value) == (
        f"the role of {HANDLER} does not allow:\n"
        f"  s3.DeleteObjects: s3:DeleteObject on arn:aws:s3:::{BUCKET}/k.png"
    )
    assert len(checker.calls) == 1


def test_an_unmapped_call_fails_and_threads_act_as_the_handler(session):
    checker = checker_for({"Effect": "Allow", "Action": "s3:*", "Resource": "*"})
    checker.attach(session)
    s3 = session.client("s3")
    unmapped = r"s3.GetBucketVersioning: no IAM mapping"
    with pytest.raises(AssertionError, match=unmapped), checker.acting_as(HANDLER):
        worker = threading.Thread(target=lambda: s3.get_bucket_versioning(Bucket=BUCKET))
        worker.start()
        worker.join()
    assert [(call.function, call.name) for call in checker.calls] == [
        (HANDLER, "s3.GetBucketVersioning")
    ]


def test_stubbed_answers_and_errors_are_checked_too():
    collection = "arn:aws:rekognition:us-east-1:111111111111:collection/facerec-dev"
    checker = checker_for(
        {"Effect": "Allow", "Action": "rekognition:SearchFacesByImage", "Resource": collection}
    )
    client = boto3.client(
        "rekognition",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    with Stubber(client) as stubber:
        checker.attach(client)
        stubber.add_response("search_faces_by_image", {"FaceMatches": []})
        stubber.add_client_error("delete_faces", "InvalidParameterException")
        with pytest.raises(AssertionError) as failure, checker.acting_as(HANDLER):
            client.search_faces_by_image(CollectionId="facerec-dev", Image={"Bytes": b"x"})
            with pytest.raises(client.exceptions.InvalidParameterException):
                client.delete_faces(CollectionId="facerec-dev", FaceIds=["f"])
    assert str(failure.value) == (
        f"the role of {HANDLER} does not allow:\n"
        f"  rekognition.DeleteFaces: rekognition:DeleteFaces on {collection}"
    )


def test_the_partition_keys_a_resource_writes_are_checked_against_the_condition(session):
    dynamodb = session.resource("dynamodb")
    dynamodb.create_table(
        TableName="catalog",
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
    )
    checker = checker_for(
        {
            "Effect": "Allow",
            "Action": "dynamodb:PutItem",
            "Resource": TABLE,
            "Condition": MODELS_ONLY,
        }
    )
    checker.attach(session)
    table = session.resource("dynamodb").Table("catalog")  # typed values, as handlers use
    with checker.acting_as(HANDLER):
        table.put_item(Item={"pk": "MODEL", "model_id": "m1"})
    with pytest.raises(AssertionError) as failure, checker.acting_as(HANDLER):
        table.put_item(Item={"pk": "PHOTO#a/b.jpg", "status": "enrolled"})
    assert str(failure.value) == (
        f"the role of {HANDLER} does not allow:\n"
        f"  dynamodb.PutItem: dynamodb:PutItem on {TABLE} ({LEADING_KEYS}: PHOTO#a/b.jpg)"
    )
