"""Everything that holds data: buckets, tables, the Rekognition collection and the S3 Vectors
bucket with its two indexes.

Each resource has a name derived from the config (``EnvironmentConfig.bucket_name`` and
``resource_name``) and a fixed logical id, so that:

- moving a construct in the code can never make CloudFormation replace (and so empty) a bucket
  or a table;
- the stateless stack finds them by name (``DataResources.imported``), with no cross-stack
  export that would pin this stack while the other one uses it.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_rekognition as rekognition
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3vectors as s3vectors
from constructs import Construct

from infra.config import EnvironmentConfig
from infra.nag import acknowledge

BUCKETS = ("ingest", "faces", "models", "reports", "quarantine")
CATALOG_INDEX = "gsi1"
FOLDER_INDEX = "gsi2"  # a person's items (keys only), for forgetting them without a scan
# The labelled faces only, whole, in 16 write shards (gsi3pk LABELLED#00..15, sort face_id):
# the training gather pages through them instead of scanning the table.
LABELLED_INDEX = "gsi3"
FACE_INDEX_INDEX = "person-index"
# S3 Vectors (docs/adr/0004-vector-store.md): one vector per face crop, and one per person.
VECTOR_BUCKET = "vectors"
FACE_VECTOR_INDEX = "faces"
CENTROID_VECTOR_INDEX = "centroids"
VECTOR_DIMENSION = 128  # FaceNet's embedding
PERSON_METADATA = "person"  # the faces index's metadata: read back, never filtered on


def vector_index_arn(scope: Construct, config: EnvironmentConfig, index: str) -> str:
    """``arn:<partition>:s3vectors:<region>:<account>:bucket/<vector bucket>/index/<index>``."""
    return Stack.of(scope).format_arn(
        service="s3vectors",
        resource="bucket",
        resource_name=f"{config.bucket_name(VECTOR_BUCKET)}/index/{index}",
    )


@dataclass(frozen=True)
class DataResources:
    """The buckets, tables and collection, as the stateless stack sees them."""

    ingest_bucket: s3.IBucket
    faces_bucket: s3.IBucket
    models_bucket: s3.IBucket
    reports_bucket: s3.IBucket
    quarantine_bucket: s3.IBucket
    catalog_table: dynamodb.ITable
    face_index_table: dynamodb.ITable
    collection_id: str
    collection_arn: str
    vector_bucket_name: str
    face_vector_index: str
    centroid_vector_index: str
    face_vector_index_arn: str
    centroid_vector_index_arn: str

    @property
    def vector_index_arns(self) -> list[str]:
        """Both S3 Vectors indexes: what every vector grant names, and nothing wider."""
        return [self.face_vector_index_arn, self.centroid_vector_index_arn]

    @classmethod
    def imported(cls, scope: Construct, config: EnvironmentConfig) -> DataResources:
        """References, by name, to what StatefulStack creates for ``config``."""
        buckets = {
            purpose: s3.Bucket.from_bucket_attributes(
                scope,
                f"{purpose.title()}Bucket",
                bucket_name=config.bucket_name(purpose),
                account=config.account,
                region=config.region,
            )
            for purpose in BUCKETS
        }
        return cls(
            ingest_bucket=buckets["ingest"],
            faces_bucket=buckets["faces"],
            models_bucket=buckets["models"],
            reports_bucket=buckets["reports"],
            quarantine_bucket=buckets["quarantine"],
            catalog_table=dynamodb.Table.from_table_attributes(
                scope,
                "CatalogTable",
                table_name=config.resource_name("catalog"),
                global_indexes=[CATALOG_INDEX],
            ),
            face_index_table=dynamodb.Table.from_table_attributes(
                scope,
                "FaceIndexTable",
                table_name=config.resource_name("face-index"),
                global_indexes=[FACE_INDEX_INDEX],
            ),
            collection_id=config.collection_id,
            collection_arn=Stack.of(scope).format_arn(
                service="rekognition", resource="collection", resource_name=config.collection_id
            ),
            vector_bucket_name=config.bucket_name(VECTOR_BUCKET),
            face_vector_index=FACE_VECTOR_INDEX,
            centroid_vector_index=CENTROID_VECTOR_INDEX,
            face_vector_index_arn=vector_index_arn(scope, config, FACE_VECTOR_INDEX),
            centroid_vector_index_arn=vector_index_arn(scope, config, CENTROID_VECTOR_INDEX),
        )


class StatefulStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: EnvironmentConfig, **kw):
        super().__init__(scope, construct_id, **kw)
        self.config = config

        # S3 server access logs cannot be delivered to a KMS-encrypted bucket; every bucket
        # here uses SSE-S3 (docs/adr/0001-one-image-eventbridge.md says why).
        self.access_logs_bucket = self._bucket(
            "AccessLogsBucket",
            "access-logs",
            access_logs=False,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-access-logs",
                    expiration=Duration.days(365 if config.retain_data else 30),
                )
            ],
        )
        # Enrolment: `<Person>/<photo>`; an object created here starts the align function.
        self.ingest_bucket = self._bucket("IngestBucket", "ingest", event_bridge=True)
        # Crops: `<Person>/<photo stem>-<N>.png`; an object created here starts embed and index.
        self.faces_bucket = self._bucket("FacesBucket", "faces", event_bridge=True)
        # Trained classifiers; every publish is a new object version.
        self.models_bucket = self._bucket(
            "ModelsBucket",
            "models",
            versioned=True,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-old-model-versions",
                    noncurrent_version_expiration=Duration.days(365),
                    noncurrent_versions_to_retain=10,
                )
            ],
        )
        # Evaluations, training failures and re-index summaries.
        self.reports_bucket = self._bucket("ReportsBucket", "reports")
        # Photos that could not be processed, each with its reason.
        self.quarantine_bucket = self._bucket("QuarantineBucket", "quarantine")

        self.catalog_table = self._table(
            "CatalogTable",
            "catalog",
            partition_key="pk",
            sort_key="sk",
            index_name=CATALOG_INDEX,
            index_partition_key="gsi1pk",
            index_sort_key="gsi1sk",
        )
        self.catalog_table.add_global_secondary_index(
            index_name=FOLDER_INDEX,
            partition_key=dynamodb.Attribute(name="gsi2pk", type=dynamodb.AttributeType.STRING),
            projection_type=dynamodb.ProjectionType.KEYS_ONLY,
        )
        # Every attribute: gathering reads the whole face (its embedding is most of the item),
        # and a face attribute added later needs no new index (a projection never changes).
        self.catalog_table.add_global_secondary_index(
            index_name=LABELLED_INDEX,
            partition_key=dynamodb.Attribute(name="gsi3pk", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="face_id", type=dynamodb.AttributeType.STRING),
            projection_type=dynamodb.ProjectionType.ALL,
        )
        self.face_index_table = self._table(
            "FaceIndexTable",
            "face-index",
            partition_key="face_id",
            index_name=FACE_INDEX_INDEX,
            index_partition_key="person",
        )

        self.collection = rekognition.CfnCollection(
            self, "FaceCollection", collection_id=config.collection_id
        )
        self.collection.apply_removal_policy(config.removal_policy)
        self.collection.override_logical_id("FaceCollection")

        # Embeddings for nearest-neighbour search: SSE-S3, like the buckets above.
        self.vector_bucket = s3vectors.CfnVectorBucket(
            self,
            "VectorBucket",
            vector_bucket_name=config.bucket_name(VECTOR_BUCKET),
            encryption_configuration=s3vectors.CfnVectorBucket.EncryptionConfigurationProperty(
                sse_type="AES256"
            ),
        )
        self.vector_bucket.apply_removal_policy(config.removal_policy)
        self.vector_bucket.override_logical_id("VectorBucket")
        # Key = crop key, metadata {"person": name}.
        self.face_vector_index = self._vector_index(
            "FaceVectorIndex", FACE_VECTOR_INDEX, non_filterable=[PERSON_METADATA]
        )
        # Key = person, vector = the normalised mean of their faces.
        self.centroid_vector_index = self._vector_index(
            "CentroidVectorIndex", CENTROID_VECTOR_INDEX
        )

        # Where to enrol people (`aws s3 cp photo.jpg s3://<IngestBucketName>/<Person>/`).
        CfnOutput(self, "IngestBucketName", value=self.ingest_bucket.bucket_name)
        CfnOutput(self, "ReportsBucketName", value=self.reports_bucket.bucket_name)
        CfnOutput(self, "CollectionId", value=config.collection_id)
        CfnOutput(self, "VectorBucketName", value=config.bucket_name(VECTOR_BUCKET))
        CfnOutput(self, "FaceVectorIndexArn", value=self.face_vector_index.attr_index_arn)
        CfnOutput(self, "CentroidVectorIndexArn", value=self.centroid_vector_index.attr_index_arn)

        if not config.point_in_time_recovery:
            for table in (self.catalog_table, self.face_index_table):
                acknowledge(
                    table,
                    "AwsSolutions-DDB3",
                    "dev only: its tables hold disposable test data and are deleted with the "
                    "stack; prod enables point-in-time recovery "
                    "(EnvironmentConfig.point_in_time_recovery).",
                )

    def _bucket(
        self,
        construct_id: str,
        purpose: str,
        *,
        versioned: bool = False,
        event_bridge: bool = False,
        access_logs: bool = True,
        lifecycle_rules: list[s3.LifecycleRule] | None = None,
    ) -> s3.Bucket:
        config = self.config
        bucket = s3.Bucket(
            self,
            construct_id,
            bucket_name=config.bucket_name(purpose),
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            versioned=versioned,
            server_access_logs_bucket=self.access_logs_bucket if access_logs else None,
            server_access_logs_prefix=f"{purpose}/" if access_logs else None,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="abort-incomplete-uploads",
                    abort_incomplete_multipart_upload_after=Duration.days(7),
                ),
                *(lifecycle_rules or []),
            ],
            removal_policy=config.removal_policy,
            # Dev buckets are emptied on `cdk destroy`; prod buckets are retained, never emptied.
            auto_delete_objects=not config.retain_data,
        )
        cfn_bucket: s3.CfnBucket = bucket.node.default_child
        cfn_bucket.override_logical_id(construct_id)
        if event_bridge:
            # The bucket's own EventBridge setting, rather than `event_bridge_enabled=True`,
            # which CDK implements with a notifications custom resource (one more Lambda).
            cfn_bucket.notification_configuration = s3.CfnBucket.NotificationConfigurationProperty(
                event_bridge_configuration=s3.CfnBucket.EventBridgeConfigurationProperty(
                    event_bridge_enabled=True
                )
            )
        return bucket

    def _vector_index(
        self, construct_id: str, name: str, *, non_filterable: list[str] | None = None
    ) -> s3vectors.CfnIndex:
        """A 128-d float32 cosine index in the vector bucket; its dimension, metric and
        metadata configuration can never change (a new embedding model needs a new index)."""
        index = s3vectors.CfnIndex(
            self,
            construct_id,
            vector_bucket_arn=self.vector_bucket.attr_vector_bucket_arn,
            index_name=name,
            dimension=VECTOR_DIMENSION,
            distance_metric="cosine",
            data_type="float32",
            metadata_configuration=s3vectors.CfnIndex.MetadataConfigurationProperty(
                non_filterable_metadata_keys=non_filterable
            )
            if non_filterable
            else None,
        )
        index.apply_removal_policy(self.config.removal_policy)
        index.override_logical_id(construct_id)
        return index

    def _table(
        self,
        construct_id: str,
        purpose: str,
        *,
        partition_key: str,
        index_name: str,
        index_partition_key: str,
        sort_key: str | None = None,
        index_sort_key: str | None = None,
    ) -> dynamodb.Table:
        config = self.config
        string = dynamodb.AttributeType.STRING
        table = dynamodb.Table(
            self,
            construct_id,
            table_name=config.resource_name(purpose),
            partition_key=dynamodb.Attribute(name=partition_key, type=string),
            sort_key=dynamodb.Attribute(name=sort_key, type=string) if sort_key else None,
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=config.point_in_time_recovery
            ),
            deletion_protection=config.retain_data,
            removal_policy=config.removal_policy,
        )
        table.add_global_secondary_index(
            index_name=index_name,
            partition_key=dynamodb.Attribute(name=index_partition_key, type=string),
            sort_key=dynamodb.Attribute(name=index_sort_key, type=string)
            if index_sort_key
            else None,
            projection_type=dynamodb.ProjectionType.ALL,
        )
        table.node.default_child.override_logical_id(construct_id)
        return table
