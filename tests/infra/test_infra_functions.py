"""The functions: one image, one handler each, their settings, event wiring, dead letters and,
above all, exactly the permissions each one needs."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest
from aws_cdk import Duration
from aws_cdk.assertions import Match
from infra_support import (
    ACCOUNT,
    REGION,
    REPO_ROOT,
    Synthesized,
    function_by_handler,
    resolve,
    resources_of_type,
    role_permissions,
)

from facerec.flows.forget import RETRAINING

ALIGN = "functions.align_faces.handler.handler"
EMBED = "functions.embed_faces.handler.handler"
INDEX = "functions.index_faces.handler.handler"
IDENTIFY = "functions.identify_faces.handler.handler"
GATHER = "functions.training.gather.handler"
TRAIN = "functions.training.fit.handler"
EVALUATE_FACENET = "functions.training.evaluate.handler"
EVALUATE_REKOGNITION = "functions.training.evaluate_rekognition.handler"
PUBLISH = "functions.training.publish.handler"
REPORT = "functions.training.write_report.handler"
REINDEX = "functions.reindex.handler.handler"
FORGET = "functions.forget.request.handler"
FORGET_GROUP_FACES = "functions.forget.group_faces.handler"
FORGET_PERSON = "functions.forget.person.handler"
FORGET_RETRAIN = "functions.forget.retrain.handler"
RECONCILE = "functions.reconcile.handler.handler"
ENDED = "functions.training.ended.handler"
HANDLERS = (
    ALIGN,
    EMBED,
    INDEX,
    IDENTIFY,
    GATHER,
    TRAIN,
    EVALUATE_FACENET,
    EVALUATE_REKOGNITION,
    PUBLISH,
    REPORT,
    REINDEX,
    FORGET,
    FORGET_GROUP_FACES,
    FORGET_PERSON,
    FORGET_RETRAIN,
    RECONCILE,
    ENDED,
)
ASYNCHRONOUS = (ALIGN, EMBED, INDEX)  # S3 events through EventBridge, with Lambda's retries

# What CDK's grants allow (aws-cdk-lib is pinned: a wider grant after an upgrade fails here).
S3_READ = {"s3:GetBucket*", "s3:GetObject*", "s3:List*"}
S3_PUT = {
    "s3:Abort*",
    "s3:PutObject",
    "s3:PutObjectLegalHold",
    "s3:PutObjectRetention",
    "s3:PutObjectTagging",
    "s3:PutObjectVersionTagging",
}
S3_DELETE = {"s3:DeleteObject", "s3:DeleteObjectVersion"}
XRAY = {"xray:PutTelemetryRecords", "xray:PutTraceSegments"}
LOGS = {"logs:CreateLogStream", "logs:PutLogEvents"}


def expected_permissions(s: Synthesized, handler: str) -> dict[str, set[str]]:
    """resource ARN -> actions, everything the function may do besides its own log group,
    X-Ray and (asynchronous functions) its dead-letter queue."""
    expected: dict[str, set[str]] = {}

    def allow(resource: str, actions: set[str]) -> None:
        expected.setdefault(resource, set()).update(actions)

    def read(bucket: str) -> None:
        allow(s.bucket_arn(bucket), S3_READ)
        allow(f"{s.bucket_arn(bucket)}/*", S3_READ)

    def put(bucket: str) -> None:
        allow(f"{s.bucket_arn(bucket)}/*", S3_PUT)

    def table_actions(name: str, *actions: str, query: tuple[str, ...] = ()) -> None:
        """Exactly ``actions`` on the table and Query on each index named in ``query``."""
        allow(s.table_arn(name), {f"dynamodb:{action}" for action in actions})
        for index in query:
            allow(f"{s.table_arn(name)}/index/{index}", {"dynamodb:Query"})

    def rekognition(*actions: str) -> None:
        allow(s.collection_arn, {f"rekognition:{action}" for action in actions})

    def vectors(*actions: str) -> None:
        for index in s.vector_index_arns:
            allow(index, {f"s3vectors:{action}" for action in actions})

    def delete(bucket: str) -> None:
        allow(s.bucket_arn(bucket), {"s3:ListBucketVersions"})
        allow(f"{s.bucket_arn(bucket)}/*", S3_DELETE)

    if handler == ALIGN:
        read("ingest"), read("faces"), put("faces"), put("quarantine")
        table_actions(
            "catalog", "GetItem", "PutItem", "Query", "BatchWriteItem", query=("gsi1", "gsi2")
        )
        allow(f"{s.bucket_arn('faces')}/*", {"s3:DeleteObject"})  # surplus crops
    elif handler == EMBED:
        read("faces"), table_actions("catalog", "GetItem", "UpdateItem", query=("gsi1",))
        vectors("PutVectors", "DeleteVectors")  # deleted crops and emptied centroids
    elif handler == INDEX:
        read("faces"), table_actions("catalog", "GetItem", "PutItem", "DeleteItem")
        table_actions("face-index", "PutItem", "DeleteItem", query=("person-index",))
        rekognition("IndexFaces", "DeleteFaces")
    elif handler == IDENTIFY:
        read("ingest"), read("models")
        table_actions("catalog", "GetItem"), table_actions("face-index", "BatchGetItem")
        rekognition("SearchFacesByImage")
        vectors("QueryVectors", "GetVectors")
    elif handler == GATHER:
        put("models")
        table_actions("catalog", "PutItem", query=("gsi3",))  # the training lock; the faces
    elif handler == TRAIN:
        read("models"), put("models")
    elif handler == EVALUATE_FACENET:
        read("models"), put("reports")
    elif handler == EVALUATE_REKOGNITION:
        read("models"), read("faces"), put("reports")
        table_actions("face-index", "Scan"), table_actions("catalog", "GetItem")
        rekognition("SearchFacesByImage", "DescribeCollection")
    elif handler == PUBLISH:
        read("models"), put("models"), read("reports"), put("reports")
        # the model pointer and the training lock only (conditions on the partition key)
        table_actions("catalog", "GetItem", "PutItem", "DeleteItem")
    elif handler == REPORT:
        for bucket in ("models", "reports", "ingest", "faces", "quarantine"):
            read(bucket)
        put("reports"), table_actions("catalog", "GetItem", query=("gsi3",))
    elif handler == REINDEX:
        read("faces"), table_actions("catalog", "GetItem", "PutItem", "UpdateItem", query=("gsi1",))
        table_actions("face-index", "PutItem", "DeleteItem")
        rekognition("IndexFaces", "DeleteFaces")
        vectors("PutVectors")
    elif handler == FORGET:  # starts the forget workflow, reads its executions back
        allow(f"<{state_machine(s, 'forget')}>", {"states:StartExecution"})
        allow(executions(s, "forget"), {"states:DescribeExecution"})
    elif handler == FORGET_GROUP_FACES:
        read("models"), allow(f"{s.bucket_arn('faces')}/*", {"s3:DeleteObject"})
        # the model pointer, faces through gsi1; deletes only photo, face and crop items
        table_actions("catalog", "GetItem", "BatchWriteItem", "DeleteItem", query=("gsi1",))
    elif handler == FORGET_PERSON:
        for bucket in ("ingest", "faces", "quarantine", "models", "reports"):
            read(bucket), delete(bucket)
        # no Scan: the person's items through the person-folder index (gsi2)
        table_actions("catalog", "GetItem", "DeleteItem", "BatchWriteItem", query=("gsi1", "gsi2"))
        table_actions("face-index", "DeleteItem", query=("person-index",))
        rekognition("DeleteFaces")
        vectors("DeleteVectors")
        # the retraining it owes, before it deletes the current model
        allow(f"{s.bucket_arn('models')}/{RETRAINING}", {"s3:PutObject"})
    elif handler == FORGET_RETRAIN:
        allow(f"{s.bucket_arn('models')}/{RETRAINING}", {"s3:DeleteObject"})
        allow(f"<{state_machine(s, 'training')}>", {"states:StartExecution"})
        allow(f"<{state_machine(s, 'training')}>", {"states:ListExecutions"})
        allow(executions(s, "training"), {"states:StopExecution"})
        table_actions("catalog", "DeleteItem")  # the training lock only
    elif handler == RECONCILE:
        read("faces"), allow(f"{s.bucket_arn('faces')}/*", {"s3:DeleteObject"})  # orphans
        table_actions(
            "catalog", "GetItem", "PutItem", "UpdateItem", "DeleteItem", query=("gsi1", "gsi3")
        )
        table_actions("face-index", "Scan", "PutItem", "DeleteItem")
        rekognition("IndexFaces", "DeleteFaces")
        vectors("PutVectors", "GetVectors")
    elif handler == ENDED:
        allow(f"{s.bucket_arn('reports')}/training/failures/*", {"s3:PutObject"})
        table_actions("catalog", "DeleteItem")  # the training lock only
    return expected


def state_machine(s: Synthesized, purpose: str) -> str:
    """The logical id of the ``purpose`` (training, forget) state machine."""
    (logical_id,) = [
        logical_id
        for logical_id, resource in resources_of_type(
            s.service_json, "AWS::StepFunctions::StateMachine"
        ).items()
        if resource["Properties"]["StateMachineName"] == s.config.resource_name(purpose)
    ]
    return logical_id


def executions(s: Synthesized, purpose: str) -> str:
    """The ARN of every execution of the ``purpose`` state machine, as IAM reads it."""
    return f"arn:aws:states:{REGION}:{ACCOUNT}:execution:<{state_machine(s, purpose)}.Name>:*"


def test_every_function_runs_from_one_image(synthesized):
    functions = resources_of_type(synthesized.service_json, "AWS::Lambda::Function")
    assert len(functions) == len(HANDLERS)
    images = {json.dumps(f["Properties"]["Code"]["ImageUri"]) for f in functions.values()}
    assert len(images) == 1
    commands = sorted(f["Properties"]["ImageConfig"]["Command"][0] for f in functions.values())
    assert commands == sorted(HANDLERS)
    for function in functions.values():
        assert function["Properties"]["PackageType"] == "Image"
        assert function["Properties"]["Architectures"] == ["x86_64"]
        assert function["Properties"]["TracingConfig"] == {"Mode": "Active"}


@pytest.mark.parametrize("handler", HANDLERS)
def test_every_handler_the_stack_names_exists_in_functions(handler):
    # infra never imports runtime code: it checks the file defines the function it names.
    *module, function = handler.split(".")
    path = REPO_ROOT.joinpath(*module).with_suffix(".py")
    assert path.is_file(), path
    assert re.search(rf"^def {function}\(", path.read_text(), re.MULTILINE), handler


@pytest.mark.parametrize("handler", HANDLERS)
def test_memory_timeout_and_concurrency_come_from_the_config(synthesized, handler):
    config = synthesized.config
    settings = {
        ALIGN: config.align_faces,
        EMBED: config.embed_faces,
        INDEX: config.index_faces,
        IDENTIFY: config.identify_faces,
        REPORT: config.report,
        REINDEX: config.reindex,
        RECONCILE: config.reindex,
        FORGET_GROUP_FACES: config.forget,
        FORGET_PERSON: config.forget,
    }.get(handler, config.training)
    if handler == ENDED:  # no model loaded: one put, one delete
        settings = replace(config.training, memory_mb=512, timeout=Duration.minutes(1))
    if handler == FORGET_RETRAIN:  # a few Step Functions calls
        settings = replace(config.forget, memory_mb=512, timeout=Duration.minutes(1))
    if handler == FORGET:  # inside API Gateway's 29 s
        settings = replace(config.forget, memory_mb=512, timeout=Duration.seconds(29))
    _, properties = function_by_handler(synthesized.service_json, handler)
    assert properties["MemorySize"] == settings.memory_mb
    assert properties["Timeout"] == settings.timeout.to_seconds()
    assert properties.get("ReservedConcurrentExecutions") == settings.reserved_concurrency


def test_prod_reserves_concurrency_for_the_event_chain(prod):
    for handler in (ALIGN, EMBED, INDEX, IDENTIFY, REINDEX):
        _, properties = function_by_handler(prod.service_json, handler)
        assert properties["ReservedConcurrentExecutions"] > 0


@pytest.mark.parametrize("handler", HANDLERS)
def test_every_function_gets_the_contract_environment(synthesized, handler):
    config = synthesized.config
    _, properties = function_by_handler(synthesized.service_json, handler)
    variables = dict(properties["Environment"]["Variables"])
    if handler == FORGET_RETRAIN:  # it alone starts a retraining
        arn = variables.pop("TRAINING_STATE_MACHINE_ARN")
        assert arn == {"Ref": state_machine(synthesized, "training")}
    if handler == FORGET:  # it alone starts a forget
        arn = variables.pop("FORGET_STATE_MACHINE_ARN")
        assert arn == {"Ref": state_machine(synthesized, "forget")}
    assert variables == {
        "INGEST_BUCKET": config.bucket_name("ingest"),
        "FACES_BUCKET": config.bucket_name("faces"),
        "MODELS_BUCKET": config.bucket_name("models"),
        "REPORTS_BUCKET": config.bucket_name("reports"),
        "QUARANTINE_BUCKET": config.bucket_name("quarantine"),
        "CATALOG_TABLE": config.resource_name("catalog"),
        "FACE_INDEX_TABLE": config.resource_name("face-index"),
        "COLLECTION_ID": f"facerec-{config.name}",
        "VECTOR_BUCKET": config.bucket_name("vectors"),
        "FACE_VECTOR_INDEX": "faces",
        "CENTROID_VECTOR_INDEX": "centroids",
        "MODELS_DIR": "/opt/facerec/models",
        "CROP_METHOD": "aligned",
        "EMBEDDING_PRECISION": "int8",
        "REKOGNITION_MIN_SIMILARITY": "90",
        "FACENET_MIN_PROBABILITY": "0",
        "REKOGNITION_EVALUATION_FACES": str(config.rekognition_evaluation_faces),
        "REPORT_TIMED_PHOTOS": str(config.report_timed_photos),
        "LOG_LEVEL": "INFO",
    }


@pytest.mark.parametrize("handler", HANDLERS)
def test_every_function_logs_to_its_own_group_with_retention(synthesized, handler):
    _, properties = function_by_handler(synthesized.service_json, handler)
    log_group_id = properties["LoggingConfig"]["LogGroup"]["Ref"]
    log_group = synthesized.service_json["Resources"][log_group_id]
    days = {"dev": 14, "prod": 180}[synthesized.config.name]
    assert log_group["Properties"]["RetentionInDays"] == days


@pytest.mark.parametrize("handler", HANDLERS)
def test_each_function_may_touch_exactly_its_own_resources(synthesized, handler):
    template = synthesized.service_json
    _, properties = function_by_handler(template, handler)
    role_id = properties["Role"]["Fn::GetAtt"][0]
    permissions = role_permissions(template, role_id)

    log_group = f"<{properties['LoggingConfig']['LogGroup']['Ref']}.Arn>"
    assert permissions.pop(log_group) == LOGS
    # '*' is for X-Ray only: its actions support no resource-level permission.
    assert permissions.pop("*") == XRAY
    if handler in ASYNCHRONOUS:
        queue = properties["DeadLetterConfig"]["TargetArn"]["Fn::GetAtt"][0]
        assert permissions.pop(f"<{queue}.Arn>") == {"sqs:SendMessage"}
    assert permissions == expected_permissions(synthesized, handler)


def test_no_function_role_has_a_wildcard_action_or_a_foreign_resource(synthesized):
    template = synthesized.service_json
    for handler in HANDLERS:
        _, properties = function_by_handler(template, handler)
        permissions = role_permissions(template, properties["Role"]["Fn::GetAtt"][0])
        for resource, actions in permissions.items():
            assert not any(
                action in ("*", "s3:*", "dynamodb:*", "s3vectors:*", "states:*")
                for action in actions
            )
            assert not any(action.startswith("rekognition:") for action in actions) or (
                resource == synthesized.collection_arn
            )
            # S3 Vectors: the two indexes only, never the vector bucket or '*'.
            if any(action.startswith("s3vectors:") for action in actions):
                assert resource in synthesized.vector_index_arns, resource
                assert all(action.startswith("s3vectors:") for action in actions), resource
            assert resource == "*" or resource.startswith(("<", "arn:aws:"))
            assert (
                f"-{synthesized.config.name}" in resource
                or resource.startswith("<")
                or re.search(r"<\w+\.Name>", resource)  # one of this stack's state machines
                or (resource == "*")
            )


def test_asynchronous_functions_retry_then_dead_letter(synthesized):
    template = synthesized.service_json
    config = synthesized.config
    queues = resources_of_type(template, "AWS::SQS::Queue")
    assert len(queues) == 1
    ((queue_id, queue),) = queues.items()
    assert queue["Properties"]["SqsManagedSseEnabled"] is True
    invoke_configs = {
        resolve(resource["Properties"]["FunctionName"]): resource["Properties"]
        for resource in resources_of_type(template, "AWS::Lambda::EventInvokeConfig").values()
    }
    for handler in HANDLERS:
        logical_id, properties = function_by_handler(template, handler)
        if handler in ASYNCHRONOUS:
            assert properties["DeadLetterConfig"] == {
                "TargetArn": {"Fn::GetAtt": [queue_id, "Arn"]}
            }
            invoke_config = invoke_configs[f"<{logical_id}>"]
            assert invoke_config["MaximumRetryAttempts"] == config.async_retry_attempts
            assert (
                invoke_config["MaximumEventAgeInSeconds"] == config.async_max_event_age.to_seconds()
            )
        else:
            assert "DeadLetterConfig" not in properties
            assert f"<{logical_id}>" not in invoke_configs


def test_the_dead_letter_queue_refuses_plain_http_and_takes_only_our_rules(synthesized):
    template = synthesized.service_json
    ((policy,),) = [list(resources_of_type(template, "AWS::SQS::QueuePolicy").values())]
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    assert {
        "Action": "sqs:*",
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        "Effect": "Deny",
        "Principal": {"AWS": "*"},
        "Resource": statements[0]["Resource"],
    } in statements
    rules = set(resources_of_type(template, "AWS::Events::Rule"))
    senders = {
        statement["Condition"]["ArnEquals"]["aws:SourceArn"]["Fn::GetAtt"][0]
        for statement in statements
        if statement["Effect"] == "Allow"
    }
    assert senders == rules
    for statement in statements:
        if statement["Effect"] == "Allow":
            assert statement["Principal"] == {"Service": "events.amazonaws.com"}
            assert statement["Action"] == "sqs:SendMessage"


def _s3_rules(template: dict) -> list[dict]:
    """The properties of the rules on S3 events (not schedules or other services' events)."""
    return [
        rule["Properties"]
        for rule in resources_of_type(template, "AWS::Events::Rule").values()
        if rule["Properties"].get("EventPattern", {}).get("source") == ["aws.s3"]
    ]


def _rule_for(template: dict, bucket_name: str, detail_type: str) -> dict:
    rules = [
        rule
        for rule in _s3_rules(template)
        if rule["EventPattern"]["detail"]["bucket"]["name"] == [bucket_name]
        and rule["EventPattern"]["detail-type"] == [detail_type]
    ]
    assert len(rules) == 1
    return rules[0]


def _targets(template: dict, rule: dict) -> set[str]:
    return {target["Arn"]["Fn::GetAtt"][0] for target in rule["Targets"]}


def test_a_photo_in_the_ingest_bucket_starts_align(synthesized):
    template = synthesized.service_json
    rule = _rule_for(template, synthesized.config.bucket_name("ingest"), "Object Created")
    assert rule["EventPattern"] == {
        "source": ["aws.s3"],
        "detail-type": ["Object Created"],
        "detail": {"bucket": {"name": [synthesized.config.bucket_name("ingest")]}},
    }
    assert _targets(template, rule) == {function_by_handler(template, ALIGN)[0]}


def test_a_crop_in_the_faces_bucket_starts_embed_and_index(synthesized):
    template = synthesized.service_json
    rule = _rule_for(template, synthesized.config.bucket_name("faces"), "Object Created")
    assert rule["EventPattern"]["detail"]["object"] == {"key": [{"suffix": ".png"}]}
    assert _targets(template, rule) == {
        function_by_handler(template, EMBED)[0],
        function_by_handler(template, INDEX)[0],
    }


def test_a_crop_deleted_from_the_faces_bucket_reaches_embed_and_index(synthesized):
    template = synthesized.service_json
    config = synthesized.config
    ((queue_id, _),) = resources_of_type(template, "AWS::SQS::Queue").items()

    def target(handler: str) -> dict:
        return {
            "Arn": {"Fn::GetAtt": [function_by_handler(template, handler)[0], "Arn"]},
            "DeadLetterConfig": {"Arn": {"Fn::GetAtt": [queue_id, "Arn"]}},
            "RetryPolicy": {
                "MaximumRetryAttempts": config.event_retry_attempts,
                "MaximumEventAgeInSeconds": config.event_max_age.to_seconds(),
            },
        }

    synthesized.service.has_resource_properties(
        "AWS::Events::Rule",
        {
            "EventPattern": Match.exact(
                {
                    "source": ["aws.s3"],
                    "detail-type": ["Object Deleted"],
                    "detail": {
                        "bucket": {"name": [config.bucket_name("faces")]},
                        "object": {"key": [{"suffix": ".png"}]},
                    },
                }
            ),
            "State": "ENABLED",
            "Targets": [target(EMBED), target(INDEX)],
        },
    )
    # Only the crops' deletions: no rule listens to deletions in any other bucket.
    deleted = [
        rule["EventPattern"]["detail"]["bucket"]["name"]
        for rule in _s3_rules(template)
        if rule["EventPattern"]["detail-type"] == ["Object Deleted"]
    ]
    assert deleted == [[config.bucket_name("faces")]]


def test_event_targets_retry_then_dead_letter(synthesized):
    template = synthesized.service_json
    config = synthesized.config
    ((queue_id, _),) = resources_of_type(template, "AWS::SQS::Queue").items()
    for rule in resources_of_type(template, "AWS::Events::Rule").values():
        for target in rule["Properties"]["Targets"]:
            assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [queue_id, "Arn"]}}
            assert target["RetryPolicy"] == {
                "MaximumRetryAttempts": config.event_retry_attempts,
                "MaximumEventAgeInSeconds": config.event_max_age.to_seconds(),
            }


def test_only_eventbridge_and_the_api_may_invoke_functions(synthesized):
    template = synthesized.service_json
    permissions = resources_of_type(template, "AWS::Lambda::Permission").values()
    invoked = {}
    for permission in permissions:
        properties = permission["Properties"]
        name = properties["FunctionName"]
        if "Ref" in name:  # an alias (identify's): counted as the function it points at
            name = template["Resources"][name["Ref"]]["Properties"]["FunctionName"]
        function = name["Fn::GetAtt"][0] if "Fn::GetAtt" in name else name["Ref"]
        invoked.setdefault(function, set()).add(properties["Principal"])
        assert "SourceArn" in properties  # never "any rule" or "any API"
    assert invoked == {
        function_by_handler(template, ALIGN)[0]: {"events.amazonaws.com"},
        function_by_handler(template, EMBED)[0]: {"events.amazonaws.com"},
        function_by_handler(template, INDEX)[0]: {"events.amazonaws.com"},
        function_by_handler(template, IDENTIFY)[0]: {"apigateway.amazonaws.com"},
        function_by_handler(template, FORGET)[0]: {"apigateway.amazonaws.com"},
        function_by_handler(template, RECONCILE)[0]: {"events.amazonaws.com"},
        function_by_handler(template, ENDED)[0]: {"events.amazonaws.com"},
    }


# handler -> (actions on both indexes, actions on the faces index only)
VECTOR_ACTIONS = {
    EMBED: ({"s3vectors:PutVectors", "s3vectors:DeleteVectors"}, set()),
    RECONCILE: ({"s3vectors:PutVectors", "s3vectors:GetVectors"}, set()),
    IDENTIFY: ({"s3vectors:QueryVectors", "s3vectors:GetVectors"}, set()),
    REINDEX: ({"s3vectors:PutVectors"}, set()),
    FORGET_PERSON: ({"s3vectors:DeleteVectors"}, set()),
}


@pytest.mark.parametrize("handler", HANDLERS)
def test_s3_vectors_actions_name_exactly_the_indexes_they_need(synthesized, handler):
    template = synthesized.service_json
    _, properties = function_by_handler(template, handler)
    permissions = role_permissions(template, properties["Role"]["Fn::GetAtt"][0])
    granted = {
        resource: {action for action in actions if action.startswith("s3vectors:")}
        for resource, actions in permissions.items()
    }
    granted = {resource: actions for resource, actions in granted.items() if actions}
    both, faces_only = VECTOR_ACTIONS.get(handler, (set(), set()))
    faces, centroids = synthesized.vector_index_arns
    expected = {faces: both | faces_only, centroids: both}
    assert granted == {resource: actions for resource, actions in expected.items() if actions}


def test_align_deletes_surplus_crops_from_the_faces_bucket_only(synthesized):
    template = synthesized.service_json
    _, properties = function_by_handler(template, ALIGN)
    synthesized.service.has_resource_properties(
        "AWS::IAM::Policy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        {
                            "Action": "s3:DeleteObject",
                            "Effect": "Allow",
                            "Resource": f"{synthesized.bucket_arn('faces')}/*",
                        }
                    ]
                )
            },
            "Roles": [{"Ref": properties["Role"]["Fn::GetAtt"][0]}],
        },
    )
    permissions = role_permissions(template, properties["Role"]["Fn::GetAtt"][0])
    deletes = {
        resource: actions & (S3_DELETE | {"s3:ListBucketVersions"})
        for resource, actions in permissions.items()
        if actions & (S3_DELETE | {"s3:ListBucketVersions"})
    }
    # Current objects only: no versions, nothing in the ingest or quarantine buckets.
    assert deletes == {f"{synthesized.bucket_arn('faces')}/*": {"s3:DeleteObject"}}


def test_index_forgets_a_deleted_crop_in_rekognition_and_the_face_index(synthesized):
    template = synthesized.service_json
    _, properties = function_by_handler(template, INDEX)
    permissions = role_permissions(template, properties["Role"]["Fn::GetAtt"][0])
    assert "rekognition:DeleteFaces" in permissions[synthesized.collection_arn]
    assert "dynamodb:DeleteItem" in permissions[synthesized.table_arn("face-index")]


@pytest.mark.parametrize(
    ("number", "handler"),
    list(enumerate((GATHER, TRAIN, EVALUATE_FACENET, EVALUATE_REKOGNITION, PUBLISH, REPORT), 1)),
)
def test_each_training_step_runs_its_own_module(synthesized, number, handler):
    synthesized.service.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "ImageConfig": {"Command": [handler]},
            "Description": Match.string_like_regexp(f"^Training step {number}: "),
        },
    )


def test_only_forget_deletes_uploads_and_only_forget_starts_the_training(synthesized):
    template = synthesized.service_json
    training = f"<{state_machine(synthesized, 'training')}>"
    forget = f"<{state_machine(synthesized, 'forget')}>"
    for handler in HANDLERS:
        _, properties = function_by_handler(template, handler)
        permissions = role_permissions(template, properties["Role"]["Fn::GetAtt"][0])
        starts = {
            resource
            for resource, actions in permissions.items()
            if "states:StartExecution" in actions
        }
        deletes = {
            resource
            for resource, actions in permissions.items()
            if actions & (S3_DELETE | {"s3:ListBucketVersions"})
        }
        if handler == FORGET_PERSON:
            assert starts == set()
            assert deletes == {
                arn
                for bucket in ("ingest", "faces", "quarantine", "models", "reports")
                for arn in (synthesized.bucket_arn(bucket), f"{synthesized.bucket_arn(bucket)}/*")
            }
            # Every version of a model (the models bucket is versioned) can be removed.
            assert permissions[f"{synthesized.bucket_arn('models')}/*"] >= S3_DELETE
            assert "rekognition:DeleteFaces" in permissions[synthesized.collection_arn]
        elif handler == FORGET_RETRAIN:  # only the retraining a forget owed
            assert starts == {training}
            assert deletes == {f"{synthesized.bucket_arn('models')}/{RETRAINING}"}
        elif handler == FORGET:
            assert starts == {forget} and deletes == set()
        elif handler in (ALIGN, RECONCILE, FORGET_GROUP_FACES):  # crops, never an upload
            assert starts == set() and deletes == {f"{synthesized.bucket_arn('faces')}/*"}
        else:
            assert starts == set() and deletes == set(), handler
