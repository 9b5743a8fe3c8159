"""The forget workflow: ``DELETE /people/{name}`` starts it (functions/forget/request.py) and
answers 202 at once; the work runs here, one function per step, each granted only what its
step uses, and nothing scans the catalog table (the person's items come from its
person-folder index).

ForgetGroupFaces -> ForgetPerson -> (the current model knew them?) Retrain -> Forgotten.
Every step is idempotent, so a retried or re-sent forget finishes what an earlier one began;
a step that still fails after its retries ends in ForgetFailed, whose error the status route
shows.
"""

from __future__ import annotations

from dataclasses import replace

from aws_cdk import ArnFormat, Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.face_function import FaceFunction
from infra.function_environment import FunctionDefaults
from infra.nag import acknowledge, finding
from infra.stateful_stack import CATALOG_INDEX, FACE_INDEX_INDEX, FOLDER_INDEX, DataResources
from infra.training_workflow import LOCK_KEYS
from infra.workflows import LambdaStep, acknowledge_role_findings, standard_state_machine

FORGET_TIMEOUT = Duration.hours(1)
# The retraining a forget owes, in the models bucket (facerec.flows.forget.RETRAINING): put by
# ForgetPerson before it deletes the current model, deleted by Retrain once it started one.
RETRAINING_KEY = "retraining.json"
# Catalog items of photos, faces and crop pointers (the other faces of group photos).
FACE_KEYS = ("PHOTO#*", "CROP#*")


def execution_arns(state_machine: sfn.StateMachine) -> str:
    """``arn:<partition>:states:<region>:<account>:execution:<machine name>:*``: the
    executions of ``state_machine`` (the resource DescribeExecution and StopExecution take)."""
    return Stack.of(state_machine).format_arn(
        service="states",
        resource="execution",
        resource_name=f"{state_machine.state_machine_name}:*",
        arn_format=ArnFormat.COLON_RESOURCE_NAME,
    )


class ForgetWorkflow(Construct):
    """The three step functions and the state machine (``state_machine``) that runs them."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        data: DataResources,
        defaults: FunctionDefaults,
        training: sfn.StateMachine,
    ):
        super().__init__(scope, construct_id)
        config = defaults.config
        small = replace(config.forget, memory_mb=512, timeout=Duration.minutes(1))
        self.group_faces = defaults.create(
            self,
            "ForgetGroupFacesFunction",
            "functions.forget.group_faces.handler",
            config.forget,
            "Forget step 1: the person's faces in other people's photos (crops, records).",
        )
        self.person = defaults.create(
            self,
            "ForgetPersonFunction",
            "functions.forget.person.handler",
            config.forget,
            "Forget step 2: the person's photos, crops, FaceIds, vectors, models, records.",
        )
        self.retrain = defaults.create(
            self,
            "ForgetRetrainFunction",
            "functions.forget.retrain.handler",
            small,
            "Forget step 3: running trainings stopped, a training without the person started.",
        )

        # Step 1: the current model (pointer, artifact), the person's faces and the unlabelled
        # ones (gsi1), then those matched: their crops and their records.
        group = self.group_faces
        group.table(data.catalog_table, "GetItem", query_indexes=(CATALOG_INDEX,))
        group.read(data.models_bucket)
        group.delete_objects(data.faces_bucket)
        group.items(data.catalog_table, ["BatchWriteItem", "DeleteItem"], FACE_KEYS)

        # Step 2: every store by the person's folder, models by their labels; the catalog
        # through its indexes (the person's faces, the folder's keys, the models), no Scan.
        person = self.person
        for bucket in (
            data.ingest_bucket,
            data.faces_bucket,
            data.quarantine_bucket,
            data.models_bucket,
            data.reports_bucket,
        ):
            person.read(bucket)
            person.delete(bucket)
        person.table(
            data.catalog_table,
            *("GetItem", "DeleteItem", "BatchWriteItem"),
            query_indexes=(CATALOG_INDEX, FOLDER_INDEX),
        )
        person.table(data.face_index_table, "DeleteItem", query_indexes=(FACE_INDEX_INDEX,))
        person.rekognition(data.collection_arn, "DeleteFaces")
        person.vectors(data.vector_index_arns, "DeleteVectors")
        owed = data.models_bucket.arn_for_objects(RETRAINING_KEY)
        person.role.add_to_principal_policy(
            iam.PolicyStatement(actions=["s3:PutObject"], resources=[owed])
        )

        # Step 3: the training workflow's running executions stopped, their lock released,
        # a new one started.
        retrain = self.retrain
        retrain.start(training)
        retrain.role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["states:ListExecutions"], resources=[training.state_machine_arn]
            )
        )
        trainings = execution_arns(training)
        retrain.role.add_to_principal_policy(
            iam.PolicyStatement(actions=["states:StopExecution"], resources=[trainings])
        )
        acknowledge(
            retrain.role,
            "AwsSolutions-IAM5",
            "StopExecution on the executions of the training state machine only (their names "
            "are made at run time).",
            f"Resource::{finding(self, trainings)}",
        )
        retrain.items(data.catalog_table, ["DeleteItem"], LOCK_KEYS)
        retrain.role.add_to_principal_policy(
            iam.PolicyStatement(actions=["s3:DeleteObject"], resources=[owed])
        )
        retrain.function.add_environment("TRAINING_STATE_MACHINE_ARN", training.state_machine_arn)

        failed = sfn.Fail(
            self,
            "ForgetFailed",
            state_name="ForgetFailed",
            error_path="$.error.Error",
            cause_path="$.error.Cause",
        )
        steps = [
            LambdaStep(self, name, function.function).on_failure(failed)
            for name, function in (
                ("ForgetGroupFaces", group),
                ("ForgetPerson", person),
                ("Retrain", retrain),
            )
        ]
        forgotten = sfn.Succeed(self, "Forgotten", state_name="Forgotten")
        needs_training = (
            sfn.Choice(self, "CurrentModelDeleted", state_name="CurrentModelDeleted")
            .when(sfn.Condition.is_present("$.retrain_options"), steps[2].next(forgotten))
            .otherwise(forgotten)
        )
        definition = sfn.Chain.start(steps[0]).next(steps[1]).next(needs_training)
        self.state_machine = standard_state_machine(
            self,
            definition,
            purpose="forget",
            comment="Forget a person: their faces in other people's photos, then every trace of "
            "them, then a training without them when the current model knew them. "
            'Input: {"person": "<name>"} (a valid name; the API checks it).',
            config=config,
            timeout=FORGET_TIMEOUT,
        )
        acknowledge_role_findings(
            self.state_machine, [group.function, person.function, retrain.function]
        )

    @property
    def functions(self) -> tuple[FaceFunction, ...]:
        return (self.group_faces, self.person, self.retrain)
