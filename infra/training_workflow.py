"""The training workflow: one function per step, each granted only what its step uses, and a
state machine built from fragments (a LambdaStep per step, one RecordedFailure for all). One
training runs at a time (a lock item in the catalog table, taken by the first step), every
task has a timeout, the report step cannot fail a published model, and an execution that ends
without succeeding is recorded even when no state could catch it (the TrainingEnded function,
on Step Functions' status change events)."""

from __future__ import annotations

from dataclasses import replace

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from infra.face_function import FaceFunction
from infra.function_environment import FunctionDefaults
from infra.nag import acknowledge, finding
from infra.stateful_stack import LABELLED_INDEX, DataResources
from infra.workflows import LambdaStep, acknowledge_role_findings, standard_state_machine

TRAINING_FAILURES_PREFIX = "training/failures/"  # functions/training/ended.py writes here too
# Partition keys of the catalog items (layers/facerec/storage/aws.py) the training functions
# write: the training lock, and the models' pointers.
LOCK_KEYS = ("TRAINING",)
MODEL_KEYS = ("MODEL", "MODEL#*")
RECORD_TIMEOUT = Duration.minutes(1)  # one S3 PutObject
# The executions TrainingEnded records: every end but SUCCEEDED.
ENDED_STATUSES = ("FAILED", "TIMED_OUT", "ABORTED")

# (state name, module under functions/training/, the function's description), in order.
STEPS = (
    (
        "GatherEmbeddings",
        "gather",
        "Training step 1: the training lock, then every labelled embedding into one S3 object.",
    ),
    (
        "TrainClassifier",
        "fit",
        "Training step 2: seeded stratified split, SVC with cross-validation.",
    ),
    (
        "EvaluateFaceNet",
        "evaluate",
        "Training step 3: FaceNet and the nearest-neighbour engine on the held-out split.",
    ),
    (
        "EvaluateRekognition",
        "evaluate_rekognition",
        "Training step 4: Rekognition SearchFacesByImage on the same held-out crops.",
    ),
    (
        "PublishModel",
        "publish",
        "Training step 5: promote the model unless the current one is better on the same "
        "faces, write the report, release the training lock.",
    ),
    (
        "WriteReport",
        "write_report",
        "Training step 6: FaceNet and Rekognition on the held-out faces, as an HTML report.",
    ),
)


class RecordedFailure(sfn.StateMachineFragment):
    """The error and its cause written to ``training/failures/<execution>.json`` in the reports
    bucket, then a Fail state with the same error and cause (also when the write fails)."""

    def __init__(self, scope: Construct, construct_id: str, reports_bucket: s3.IBucket):
        super().__init__(scope, construct_id)
        failed = sfn.Fail(
            self,
            "TrainingFailed",
            state_name="TrainingFailed",
            error_path="$.error.Error",
            cause_path="$.error.Cause",
        )
        self.record = tasks.CallAwsService(
            self,
            "RecordFailure",
            state_name="RecordFailure",
            service="s3",
            action="putObject",
            parameters={
                "Bucket": reports_bucket.bucket_name,
                "Key": sfn.JsonPath.format(
                    f"{TRAINING_FAILURES_PREFIX}{{}}.json", sfn.JsonPath.execution_name
                ),
                "Body": sfn.JsonPath.json_to_string(sfn.JsonPath.object_at("$.error")),
                "ContentType": "application/json",
            },
            iam_resources=[reports_bucket.arn_for_objects(f"{TRAINING_FAILURES_PREFIX}*")],
            result_path=sfn.JsonPath.DISCARD,
            task_timeout=sfn.Timeout.duration(RECORD_TIMEOUT),
        )
        self.record.add_catch(failed, errors=["States.ALL"], result_path=sfn.JsonPath.DISCARD)
        self.record.next(failed)

    @property
    def start_state(self) -> sfn.State:
        return self.record

    @property
    def end_states(self) -> list[sfn.INextable]:
        return []


class TrainingWorkflow(Construct):
    """Begin -> GatherEmbeddings -> TrainClassifier -> EvaluateFaceNet -> EvaluateRekognition
    -> PublishModel -> WriteReport -> Trained. Begin puts the execution's name (the run's id
    and the owner of the training lock) and the lock's lease (the state machine's timeout)
    into the state as ``execution``. The comparison report comes last: it is the slowest step
    and the promotion needs nothing from it; its failure is kept in ``$.report_error`` and the
    execution still succeeds (ReportFailed). A step that still fails after its retries, or
    times out, ends in the RecordedFailure; whatever ends the execution otherwise (the state
    machine's own timeout, an abort) reaches the TrainingEnded function."""

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
        # State name -> its function, in order.
        self.functions = {
            state: defaults.create(
                self,
                f"{state}Function",
                f"functions.training.{module}.handler",
                config.report if state == "WriteReport" else config.training,
                description,
            )
            for state, module, description in STEPS
        }
        gather, fit, evaluate, rekognition, publish, report = self.functions.values()
        gather.table(data.catalog_table, query_indexes=[LABELLED_INDEX])  # every labelled face
        gather.items(data.catalog_table, ["PutItem"], LOCK_KEYS)
        gather.put(data.models_bucket)
        fit.read(data.models_bucket)
        fit.put(data.models_bucket)
        evaluate.read(data.models_bucket)
        evaluate.put(data.reports_bucket)
        rekognition.read(data.models_bucket)
        rekognition.read(data.faces_bucket)
        rekognition.table(data.face_index_table, "Scan")  # the collection's FaceIds
        # Why a training crop has no FaceId: its indexing claim.
        rekognition.table(data.catalog_table, "GetItem")
        rekognition.put(data.reports_bucket)
        rekognition.rekognition(data.collection_arn, "SearchFacesByImage", "DescribeCollection")
        publish.read(data.models_bucket)  # the candidate and the current model
        publish.put(data.models_bucket)
        publish.read(data.reports_bucket)
        publish.put(data.reports_bucket)
        # The current model's pointer read, the candidate's written (a transaction of two
        # Puts), the lock released: nothing else of the catalog.
        publish.items(data.catalog_table, ["GetItem", "PutItem"], MODEL_KEYS)
        publish.items(data.catalog_table, ["DeleteItem"], LOCK_KEYS)
        # The comparison: the runs the evaluation steps stored, the model and every model's
        # metadata (training history), the held-out photos (FaceNet's identify path, timed)
        # and crops (thumbnails), the quarantined photos' reasons, the catalog's faces.
        for bucket in (
            data.models_bucket,
            data.reports_bucket,
            data.ingest_bucket,
            data.faces_bucket,
            data.quarantine_bucket,
        ):
            report.read(bucket)
        report.table(data.catalog_table, "GetItem", query_indexes=[LABELLED_INDEX])
        report.put(data.reports_bucket)

        begin = sfn.Pass(
            self,
            "Begin",
            state_name="Begin",
            comment="The execution's name (run id, training lock owner) and the lock's lease.",
            parameters={
                "name": sfn.JsonPath.execution_name,
                "lease_seconds": config.training_timeout.to_seconds(),
            },
            result_path="$.execution",
        )
        failure = RecordedFailure(self, "Failure", data.reports_bucket)
        steps = {
            name: LambdaStep(self, name, step.function) for name, step in self.functions.items()
        }
        trained = sfn.Succeed(self, "Trained", state_name="Trained")
        report_failed = sfn.Pass(
            self,
            "ReportFailed",
            state_name="ReportFailed",
            comment="The model is published; the report's error is kept in $.report_error.",
        )
        report_failed.next(trained)
        definition = sfn.Chain.start(begin)
        for name, step in steps.items():
            if name == "WriteReport":
                step.task.add_catch(
                    report_failed, errors=["States.ALL"], result_path="$.report_error"
                )
            else:
                step.on_failure(failure)
            definition = definition.next(step)
        definition = definition.next(trained)

        self.state_machine = standard_state_machine(
            self,
            definition,
            purpose="training",
            comment="Train the FaceNet classifier, evaluate FaceNet and Rekognition on the same "
            "held-out split, publish the model (promoted unless the current model is better on "
            "the same faces), write the comparison report; one execution at a time. "
            'Input: {"seed": 42, "test_size": 0.25} (both optional).',
            config=config,
            timeout=config.training_timeout,
        )
        acknowledge_role_findings(
            self.state_machine,
            [step.function for step in self.functions.values()],
            "Resource::"
            f"{finding(self, data.reports_bucket.arn_for_objects(TRAINING_FAILURES_PREFIX))}*",
        )
        self.ended = self._ended(defaults, data)

    def _ended(self, defaults: FunctionDefaults, data: DataResources) -> FaceFunction:
        """TrainingEnded: every execution that ends FAILED, TIMED_OUT or ABORTED, through
        EventBridge: its failure record written (when no state could), its lock released."""
        ended = defaults.create(
            self,
            "TrainingEndedFunction",
            "functions.training.ended.handler",
            # No model is loaded: one S3 put and one DynamoDB delete.
            replace(defaults.config.training, memory_mb=512, timeout=Duration.minutes(1)),
            "After a training execution failed, timed out or was aborted: its failure record "
            "and its training lock released.",
        )
        failures = data.reports_bucket.arn_for_objects(f"{TRAINING_FAILURES_PREFIX}*")
        ended.role.add_to_principal_policy(
            iam.PolicyStatement(actions=["s3:PutObject"], resources=[failures])
        )
        acknowledge(
            ended.role,
            "AwsSolutions-IAM5",
            "s3:PutObject on the failure records' prefix of the reports bucket only.",
            f"Resource::{finding(self, failures)}",
        )
        ended.items(data.catalog_table, ["DeleteItem"], LOCK_KEYS)
        events.Rule(
            self,
            "TrainingEndedRule",
            description="A training execution that failed, timed out or was aborted.",
            event_pattern=events.EventPattern(
                source=["aws.states"],
                detail_type=["Step Functions Execution Status Change"],
                detail={
                    "stateMachineArn": [self.state_machine.state_machine_arn],
                    "status": list(ENDED_STATUSES),
                },
            ),
            targets=[defaults.event_target(ended)],
        )
        return ended
