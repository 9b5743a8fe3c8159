"""The enrolment chain: an ingest photo -> align; a face crop created -> embed and index; a
crop deleted (a replaced photo with fewer faces) -> embed and index forget it. S3 events come
through EventBridge; failed deliveries and invocations end in the dead-letter queue."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import aws_events as events
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.face_function import FaceFunction
from infra.function_environment import FunctionDefaults
from infra.stateful_stack import CATALOG_INDEX, FACE_INDEX_INDEX, FOLDER_INDEX, DataResources

CROP_SUFFIX = ".png"


class EnrolmentChain(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        data: DataResources,
        defaults: FunctionDefaults,
    ):
        super().__init__(scope, construct_id)
        config = defaults.config
        self._defaults = defaults

        self.align_faces = defaults.create(
            self,
            "AlignFacesFunction",
            "functions.align_faces.handler.handler",
            config.align_faces,
            "Ingest photo -> every face cropped into the faces bucket and catalogued.",
            dead_letter_queue=defaults.dead_letter_queue,
        )
        self.align_faces.read(data.ingest_bucket)
        # HeadObject on a crop name before writing it (is it another photo's?): a missing
        # crop answers 404 only with the bucket's list permission, else 403.
        self.align_faces.read(data.faces_bucket)
        self.align_faces.put(data.faces_bucket)
        self.align_faces.put(data.quarantine_bucket)
        # The photo, its faces and crop pointers (a batch write that also drops the faces a
        # replacing photo no longer has), the event ledger; the duplicate photo by hash and,
        # for a group photo, the person's faces through the GSI; the person's photos through
        # the person-folder index (whose record holds crops named like a new photo's).
        self.align_faces.table(
            data.catalog_table,
            "GetItem",
            "PutItem",
            "Query",
            "BatchWriteItem",
            query_indexes=[CATALOG_INDEX, FOLDER_INDEX],
        )
        # A photo replaced by one with fewer usable faces leaves crops that must go.
        self.align_faces.delete_objects(data.faces_bucket)

        self.embed_faces = defaults.create(
            self,
            "EmbedFacesFunction",
            "functions.embed_faces.handler.handler",
            config.embed_faces,
            "Face crop -> its FaceNet embedding in the catalog.",
            dead_letter_queue=defaults.dead_letter_queue,
        )
        self.embed_faces.read(data.faces_bucket)
        # The crop's face and its embedding (rewritten when made by other weights); the
        # person's faces for the centroid through the GSI.
        self.embed_faces.table(
            data.catalog_table, "GetItem", "UpdateItem", query_indexes=[CATALOG_INDEX]
        )
        # The face's vector, then its person's centroid rewritten from the catalog's faces; a
        # deleted crop's vector goes with it, and the centroid of a person left with no face.
        self.embed_faces.vectors(data.vector_index_arns, "PutVectors", "DeleteVectors")

        self.index_faces = defaults.create(
            self,
            "IndexFacesFunction",
            "functions.index_faces.handler.handler",
            config.index_faces,
            "Face crop -> Rekognition IndexFaces and its FaceId -> person row.",
            dead_letter_queue=defaults.dead_letter_queue,
        )
        self.index_faces.read(data.faces_bucket)
        # The catalog holds the crop's face and the idempotency claim per collection, crop
        # and ETag (conditional puts; a deleted crop's claim is deleted). The face index's
        # rows are put, found by person (a deleted crop's) and deleted with their FaceId.
        self.index_faces.table(data.catalog_table, "GetItem", "PutItem", "DeleteItem")
        self.index_faces.table(
            data.face_index_table, "PutItem", "DeleteItem", query_indexes=[FACE_INDEX_INDEX]
        )
        # DeleteFaces: a newer version of a crop, or its deletion, removes the older FaceId.
        self.index_faces.rekognition(data.collection_arn, "IndexFaces", "DeleteFaces")

        self._route(
            "IngestObjectCreatedRule",
            data.ingest_bucket,
            "Object Created",
            [self.align_faces],
            "Ingest bucket Object Created -> align faces.",
        )
        crops = [self.embed_faces, self.index_faces]
        self._route(
            "FacesObjectCreatedRule",
            data.faces_bucket,
            "Object Created",
            crops,
            "Faces bucket Object Created (.png crops) -> embed and index.",
            key_suffix=CROP_SUFFIX,
        )
        self._route(
            "FacesObjectDeletedRule",
            data.faces_bucket,
            "Object Deleted",
            crops,
            "Faces bucket Object Deleted (.png crops) -> embed and index forget the face.",
            key_suffix=CROP_SUFFIX,
        )

    def _route(
        self,
        construct_id: str,
        bucket: s3.IBucket,
        detail_type: str,
        functions: Sequence[FaceFunction],
        description: str,
        key_suffix: str | None = None,
    ) -> events.Rule:
        """A rule for the bucket's ``detail_type`` events, delivered to each function with
        EventBridge's retries and then the dead-letter queue."""
        detail: dict = {"bucket": {"name": [bucket.bucket_name]}}
        if key_suffix:
            detail["object"] = {"key": [{"suffix": key_suffix}]}
        rule = events.Rule(
            self,
            construct_id,
            description=description,
            event_pattern=events.EventPattern(
                source=["aws.s3"], detail_type=[detail_type], detail=detail
            ),
        )
        for function in functions:
            rule.add_target(self._defaults.event_target(function))
        return rule
