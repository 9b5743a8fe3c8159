"""The training workflow: one function per step, each granted only what its step uses, and a
state machine built from fragments (a LambdaStep per step, one RecordedFailure for all)."""

from __future__ import annotations

from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from infra.function_environment import FunctionDefaults
from infra.nag import finding
from infra.stateful_stack import DataResources
from infra.workflows import LambdaStep, acknowledge_role_findings, standard_state_machine

TRAINING_FAILURES_PREFIX = "training/failures/"

# (state name, module under functions/training/, the function's description), in order.
STEPS = (
    (
        "GatherEmbeddings",
        "gather",
        "Training step 1: every labelled embedding from the catalog into one S3 object.",
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
        "Training step 5: write the report, publish the model, promote it if not worse.",
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
    """GatherEmbeddings -> TrainClassifier -> EvaluateFaceNet -> EvaluateRekognition ->
    PublishModel -> WriteReport. The comparison report comes last: it is the slowest step and
    the promotion needs nothing from it, so its failure never holds a model back, and the
    report says whether the model was promoted. A step that still fails after its retries
    ends in the RecordedFailure."""

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
        gather.read_table(data.catalog_table)
        gather.put(data.models_bucket)
        fit.read(data.models_bucket)
        fit.put(data.models_bucket)
        evaluate.read(data.models_bucket)
        evaluate.put(data.reports_bucket)
        rekognition.read(data.models_bucket)
        rekognition.read(data.faces_bucket)
        rekognition.read_table(data.face_index_table)
        rekognition.put(data.reports_bucket)
        rekognition.rekognition(data.collection_arn, "SearchFacesByImage", "DescribeCollection")
        publish.read(data.models_bucket)
        publish.put(data.models_bucket)
        publish.read(data.reports_bucket)
        publish.put(data.reports_bucket)
        publish.read_write_table(data.catalog_table)
        # The comparison: the model and every model's metadata (training history), the
        # held-out photos (FaceNet's identify path) and crops (Rekognition), the quarantined
        # photos' reasons, the catalog's faces, the collection's FaceIds.
        for bucket in (
            data.models_bucket,
            data.ingest_bucket,
            data.faces_bucket,
            data.quarantine_bucket,
        ):
            report.read(bucket)
        report.read_table(data.catalog_table)
        report.read_table(data.face_index_table)
        report.put(data.reports_bucket)
        report.rekognition(data.collection_arn, "SearchFacesByImage", "DescribeCollection")

        failure = RecordedFailure(self, "Failure", data.reports_bucket)
        steps = [
            LambdaStep(self, name, step.function).on_failure(failure)
            for name, step in self.functions.items()
        ]
        definition = sfn.Chain.start(steps[0])
        for step in steps[1:]:
            definition = definition.next(step)
        definition = definition.next(sfn.Succeed(self, "Trained", state_name="Trained"))

        self.state_machine = standard_state_machine(
            self,
            definition,
            purpose="training",
            comment="Train the FaceNet classifier, evaluate FaceNet and Rekognition on the same "
            "held-out split, publish the model (promoted only if at least as good), write the "
            "comparison report. "
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
