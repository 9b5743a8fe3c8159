"""The stateful stack: buckets, tables, the collection and the vector store, per environment."""

from __future__ import annotations

import boto3
import pytest
from aws_cdk.assertions import Match
from infra_support import resolve, resources_of_type
from moto import mock_aws

from tests.support import ENV, create_resources

BUCKETS = {
    "IngestBucket": "ingest",
    "FacesBucket": "faces",
    "ModelsBucket": "models",
    "ReportsBucket": "reports",
    "QuarantineBucket": "quarantine",
    "AccessLogsBucket": "access-logs",
}


def test_six_named_buckets_with_fixed_logical_ids(synthesized):
    template = synthesized.data_json
    buckets = resources_of_type(template, "AWS::S3::Bucket")
    assert set(buckets) == set(BUCKETS)
    for logical_id, purpose in BUCKETS.items():
        name = buckets[logical_id]["Properties"]["BucketName"]
        assert name == synthesized.config.bucket_name(purpose)


@pytest.mark.parametrize("logical_id", sorted(BUCKETS))
def test_every_bucket_is_encrypted_private_and_owner_enforced(synthesized, logical_id):
    properties = synthesized.data_json["Resources"][logical_id]["Properties"]
    assert properties["BucketEncryption"] == {
        "ServerSideEncryptionConfiguration": [
            {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
        ]
    }
    assert properties["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert properties["OwnershipControls"] == {
        "Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]
    }


@pytest.mark.parametrize("logical_id", sorted(BUCKETS))
def test_every_bucket_refuses_plain_http_and_old_tls(synthesized, logical_id):
    policies = [
        resource["Properties"]
        for resource in resources_of_type(synthesized.data_json, "AWS::S3::BucketPolicy").values()
        if resource["Properties"]["Bucket"] == {"Ref": logical_id}
    ]
    assert len(policies) == 1
    denies = [
        statement
        for statement in policies[0]["PolicyDocument"]["Statement"]
        if statement["Effect"] == "Deny"
    ]
    conditions = [statement["Condition"] for statement in denies]
    assert {"Bool": {"aws:SecureTransport": "false"}} in conditions
    assert {"NumericLessThan": {"s3:TlsVersion": 1.2}} in conditions
    for statement in denies:
        assert statement["Principal"] == {"AWS": "*"}
        assert statement["Action"] == "s3:*"


def test_every_bucket_but_the_log_bucket_logs_access_into_it(synthesized):
    resources = synthesized.data_json["Resources"]
    for logical_id, purpose in BUCKETS.items():
        logging = resources[logical_id]["Properties"].get("LoggingConfiguration")
        if logical_id == "AccessLogsBucket":
            assert logging is None
        else:
            assert logging == {
                "DestinationBucketName": {"Ref": "AccessLogsBucket"},
                "LogFilePrefix": f"{purpose}/",
            }


def test_only_ingest_and_faces_send_events_to_eventbridge(synthesized):
    resources = synthesized.data_json["Resources"]
    for logical_id in BUCKETS:
        notifications = resources[logical_id]["Properties"].get("NotificationConfiguration")
        if logical_id in ("IngestBucket", "FacesBucket"):
            assert notifications == {"EventBridgeConfiguration": {"EventBridgeEnabled": True}}
        else:
            assert notifications is None
    # Native bucket setting: no notifications custom resource (and no Lambda behind it).
    assert not resources_of_type(synthesized.data_json, "Custom::S3BucketNotifications")


def test_only_the_models_bucket_is_versioned(synthesized):
    resources = synthesized.data_json["Resources"]
    for logical_id in BUCKETS:
        versioning = resources[logical_id]["Properties"].get("VersioningConfiguration")
        expected = {"Status": "Enabled"} if logical_id == "ModelsBucket" else None
        assert versioning == expected


def test_catalog_table_matches_the_contract(synthesized):
    synthesized.data.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "TableName": synthesized.config.resource_name("catalog"),
            "KeySchema": [
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            "GlobalSecondaryIndexes": [
                {
                    "IndexName": "gsi1",
                    "KeySchema": [
                        {"AttributeName": "gsi1pk", "KeyType": "HASH"},
                        {"AttributeName": "gsi1sk", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                },
                {
                    "IndexName": "gsi2",
                    "KeySchema": [{"AttributeName": "gsi2pk", "KeyType": "HASH"}],
                    "Projection": {"ProjectionType": "KEYS_ONLY"},
                },
                {  # the labelled faces, whole, for the training gather (storage.aws)
                    "IndexName": "gsi3",
                    "KeySchema": [
                        {"AttributeName": "gsi3pk", "KeyType": "HASH"},
                        {"AttributeName": "face_id", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                },
            ],
            "AttributeDefinitions": Match.array_with(
                [
                    {"AttributeName": name, "AttributeType": "S"}
                    for name in ("pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi3pk", "face_id")
                ]
            ),
            "BillingMode": "PAY_PER_REQUEST",
            "SSESpecification": {"SSEEnabled": True},
        },
    )


def test_the_offline_tables_have_the_deployed_keys_and_indexes(synthesized):
    """The moto tables every cloud test runs on (tests/support.create_resources) are the
    template's: the same key schema and the same indexes with the same projections."""
    deployed = {
        resolve(table["Properties"]["TableName"]): table["Properties"]
        for table in resources_of_type(synthesized.data_json, "AWS::DynamoDB::Table").values()
    }
    with mock_aws():
        session = boto3.session.Session(region_name="us-east-1")
        create_resources(session)
        client = session.client("dynamodb")
        for variable in ("CATALOG_TABLE", "FACE_INDEX_TABLE"):
            offline = client.describe_table(TableName=ENV[variable])["Table"]
            template = next(
                properties
                for name, properties in deployed.items()
                if name.endswith(ENV[variable].split("-", 2)[-1])
            )
            assert offline["KeySchema"] == template["KeySchema"]
            indexes = {
                index["IndexName"]: (index["KeySchema"], index["Projection"]["ProjectionType"])
                for index in offline["GlobalSecondaryIndexes"]
            }
            assert indexes == {
                index["IndexName"]: (index["KeySchema"], index["Projection"]["ProjectionType"])
                for index in template["GlobalSecondaryIndexes"]
            }


def test_face_index_table_matches_the_contract(synthesized):
    synthesized.data.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "TableName": synthesized.config.resource_name("face-index"),
            "KeySchema": [{"AttributeName": "face_id", "KeyType": "HASH"}],
            "GlobalSecondaryIndexes": [
                {
                    "IndexName": "person-index",
                    "KeySchema": [{"AttributeName": "person", "KeyType": "HASH"}],
                    "Projection": {"ProjectionType": "ALL"},
                }
            ],
            "BillingMode": "PAY_PER_REQUEST",
            "SSESpecification": {"SSEEnabled": True},
        },
    )
    synthesized.data.resource_count_is("AWS::DynamoDB::Table", 2)


def test_one_rekognition_collection_per_environment(synthesized):
    synthesized.data.resource_count_is("AWS::Rekognition::Collection", 1)
    collection = synthesized.data_json["Resources"]["FaceCollection"]
    assert collection["Properties"]["CollectionId"] == f"facerec-{synthesized.config.name}"


VECTOR_RESOURCES = ("VectorBucket", "FaceVectorIndex", "CentroidVectorIndex")


def test_one_encrypted_vector_bucket_per_environment(synthesized):
    synthesized.data.resource_count_is("AWS::S3Vectors::VectorBucket", 1)
    bucket = synthesized.data_json["Resources"]["VectorBucket"]
    assert bucket["Type"] == "AWS::S3Vectors::VectorBucket"
    properties = bucket["Properties"]
    assert properties["VectorBucketName"] == synthesized.config.bucket_name("vectors")
    assert properties["EncryptionConfiguration"] == {"SseType": "AES256"}


@pytest.mark.parametrize(
    ("logical_id", "name", "metadata"),
    [
        # The faces' person is read back with each hit, never filtered on.
        ("FaceVectorIndex", "faces", {"NonFilterableMetadataKeys": ["person"]}),
        ("CentroidVectorIndex", "centroids", None),
    ],
)
def test_two_128_d_float32_cosine_indexes_in_the_vector_bucket(
    synthesized, logical_id, name, metadata
):
    synthesized.data.resource_count_is("AWS::S3Vectors::Index", 2)
    index = synthesized.data_json["Resources"][logical_id]
    assert index["Type"] == "AWS::S3Vectors::Index"
    properties = index["Properties"]
    assert properties["IndexName"] == name
    assert properties["Dimension"] == 128
    assert properties["DistanceMetric"] == "cosine"
    assert properties["DataType"] == "float32"
    assert properties.get("MetadataConfiguration") == metadata
    assert properties["VectorBucketArn"] == {"Fn::GetAtt": ["VectorBucket", "VectorBucketArn"]}
    assert "EncryptionConfiguration" not in properties  # the bucket's SSE-S3 applies


def test_the_vector_store_is_an_output(synthesized):
    outputs = synthesized.data_json["Outputs"]
    assert outputs["VectorBucketName"]["Value"] == synthesized.config.bucket_name("vectors")
    assert outputs["FaceVectorIndexArn"]["Value"] == {"Fn::GetAtt": ["FaceVectorIndex", "IndexArn"]}
    assert outputs["CentroidVectorIndexArn"]["Value"] == {
        "Fn::GetAtt": ["CentroidVectorIndex", "IndexArn"]
    }


def test_the_service_stack_names_the_indexes_as_s3_vectors_arns_them(synthesized):
    # DataResources.imported builds the ARNs by name; this is the format S3 Vectors documents
    # (arn:aws:s3vectors:<region>:<account>:bucket/<bucket>/index/<index>).
    data = synthesized.service_stack.data
    assert [resolve(synthesized.service_stack.resolve(arn)) for arn in data.vector_index_arns] == [
        *synthesized.vector_index_arns
    ]


TABLES = ("CatalogTable", "FaceIndexTable")
# Every resource whose deletion loses data: what retain_data keeps (prod) or deletes (dev).
STATEFUL_RESOURCES = (*BUCKETS, *TABLES, "FaceCollection", *VECTOR_RESOURCES)


def test_prod_retains_every_stateful_resource_and_recovers_tables(prod):
    resources = prod.data_json["Resources"]
    for logical_id in STATEFUL_RESOURCES:
        assert resources[logical_id]["DeletionPolicy"] == "Retain", logical_id
        assert resources[logical_id]["UpdateReplacePolicy"] == "Retain", logical_id
    for table in TABLES:
        properties = resources[table]["Properties"]
        assert properties["PointInTimeRecoverySpecification"] == {
            "PointInTimeRecoveryEnabled": True
        }
        assert properties["DeletionProtectionEnabled"] is True
    # Nothing empties a prod bucket.
    assert not resources_of_type(prod.data_json, "Custom::S3AutoDeleteObjects")
    assert prod.data_stack.termination_protection is True


def test_dev_deletes_everything_with_the_stack(dev):
    resources = dev.data_json["Resources"]
    for logical_id in STATEFUL_RESOURCES:
        assert resources[logical_id]["DeletionPolicy"] == "Delete", logical_id
    for table in TABLES:
        properties = resources[table]["Properties"]
        assert properties["PointInTimeRecoverySpecification"] == {
            "PointInTimeRecoveryEnabled": False
        }
    # Buckets are emptied first, so `cdk destroy` can delete them.
    emptied = {
        resolve(resource["Properties"]["BucketName"])
        for resource in resources_of_type(dev.data_json, "Custom::S3AutoDeleteObjects").values()
    }
    assert emptied == {f"<{logical_id}>" for logical_id in BUCKETS}
    assert dev.data_stack.termination_protection is False


def test_the_data_stack_holds_only_data(synthesized):
    # Functions, roles and the rest live in the service stack; dev adds only CDK's provider
    # that empties buckets on `cdk destroy`.
    types = {resource["Type"] for resource in synthesized.data_json["Resources"].values()}
    stateful = {
        "AWS::S3::Bucket",
        "AWS::S3::BucketPolicy",
        "AWS::DynamoDB::Table",
        "AWS::Rekognition::Collection",
        "AWS::S3Vectors::VectorBucket",
        "AWS::S3Vectors::Index",
        "AWS::CDK::Metadata",
    }
    extra = types - stateful
    if synthesized.config.retain_data:
        assert extra == set()
    else:
        assert extra == {"Custom::S3AutoDeleteObjects", "AWS::IAM::Role", "AWS::Lambda::Function"}
