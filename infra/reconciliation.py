"""The reconciliation: a scheduled function that repairs what the event chain missed (lost
events, an enrolment that stopped half-way): embeddings from older weights, missing vectors
and FaceIds, and crops no catalogued face holds (functions/reconcile)."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_events as events
from constructs import Construct

from infra.function_environment import FunctionDefaults
from infra.stateful_stack import LABELLED_INDEX, DataResources

SCHEDULE = Duration.days(1)


class Reconciliation(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        data: DataResources,
        defaults: FunctionDefaults,
    ):
        super().__init__(scope, construct_id)
        # The same work as a re-index batch (re-embed, re-store, re-index), on the gaps only.
        self.function = defaults.create(
            self,
            "ReconcileFunction",
            "functions.reconcile.handler.handler",
            defaults.config.reindex,
            "Daily: repair the embeddings, vectors and FaceIds the event chain missed.",
        )
        self.function.read(data.faces_bucket)  # lists the crops and reads them
        self.function.delete_objects(data.faces_bucket)  # crops no catalogued face holds
        # The faces (gsi3 the labelled, gsi1 the others), their embeddings, crop pointers and
        # indexing claims.
        self.function.table(
            data.catalog_table,
            *("GetItem", "PutItem", "UpdateItem", "DeleteItem"),
            query_indexes=("gsi1", LABELLED_INDEX),  # gsi1: also a person's faces, for a centroid
        )
        self.function.table(data.face_index_table, "Scan", "PutItem", "DeleteItem")
        self.function.rekognition(data.collection_arn, "IndexFaces", "DeleteFaces")
        self.function.vectors(data.vector_index_arns, "PutVectors", "GetVectors")
        self.rule = events.Rule(
            self,
            "ReconcileSchedule",
            description="Once a day: reconcile the faces bucket, catalog, collection, vectors.",
            schedule=events.Schedule.rate(SCHEDULE),
            targets=[defaults.event_target(self.function)],
        )
