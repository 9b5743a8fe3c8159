"""The training and re-index state machines: their definitions (as Step Functions will read
them), retries, timeouts, failure handling, the training lock, logging and permissions."""

from __future__ import annotations

import pytest
from infra_support import (
    REGION,
    Synthesized,
    definition_of,
    function_by_handler,
    resolve,
    resources_of_type,
    role_permissions,
)

from facerec.storage.aws import TRAINING_LOCK
from functions.training.ended import FAILURES_PREFIX
from infra.training_workflow import LOCK_KEYS, MODEL_KEYS, TRAINING_FAILURES_PREFIX

TRAINING_ORDER = [
    ("GatherEmbeddings", "functions.training.gather.handler"),
    ("TrainClassifier", "functions.training.fit.handler"),
    ("EvaluateFaceNet", "functions.training.evaluate.handler"),
    ("EvaluateRekognition", "functions.training.evaluate_rekognition.handler"),
    ("PublishModel", "functions.training.publish.handler"),
    ("WriteReport", "functions.training.write_report.handler"),
]
ENDED = "functions.training.ended.handler"
# Throttling and passing service errors of Lambda, Rekognition, DynamoDB and S3 Vectors.
THROTTLING = {
    "Lambda.TooManyRequestsException",
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "TooManyRequestsException",
    "ServiceUnavailableException",
    "InternalServerException",
    "RequestTimeoutException",
    "InternalServerError",
    "RequestLimitExceeded",
}
STATE_TYPES = {"Task", "Pass", "Choice", "Wait", "Succeed", "Fail", "Parallel", "Map"}


def state_machine(s: Synthesized, purpose: str) -> tuple[str, dict]:
    name = s.config.resource_name(purpose)
    found = [
        (logical_id, resource["Properties"])
        for logical_id, resource in resources_of_type(
            s.service_json, "AWS::StepFunctions::StateMachine"
        ).items()
        if resource["Properties"]["StateMachineName"] == name
    ]
    assert len(found) == 1, name
    return found[0]


def function_arn(s: Synthesized, handler: str) -> str:
    logical_id, _ = function_by_handler(s.service_json, handler)
    return f"arn:aws:lambda:{REGION}:{s.config.account}:function:{logical_id}"


def check_asl(definition: dict) -> None:
    """The rules Step Functions enforces on a definition that matter here: known state types,
    every transition and catcher names a state of the same scope, each non-terminal state
    has a Next, each state is reachable, and nested processors are valid themselves."""
    states = definition["States"]
    assert definition["StartAt"] in states
    reachable, frontier = set(), [definition["StartAt"]]
    while frontier:
        name = frontier.pop()
        if name in reachable:
            continue
        reachable.add(name)
        state = states[name]
        assert state["Type"] in STATE_TYPES, name
        successors = [catcher["Next"] for catcher in state.get("Catch", [])]
        if state["Type"] in ("Succeed", "Fail"):
            assert "Next" not in state and "End" not in state, name
        elif state["Type"] == "Choice":
            assert state["Choices"] and "Next" not in state and "End" not in state, name
            successors += [rule["Next"] for rule in state["Choices"]]
            successors += [state["Default"]] if "Default" in state else []
        else:
            assert ("Next" in state) != bool(state.get("End")), name
            successors += [state["Next"]] if "Next" in state else []
        for successor in successors:
            assert successor in states, f"{name} -> {successor}"
        frontier += successors
        for retrier in state.get("Retry", []):
            assert retrier["ErrorEquals"] and retrier.get("MaxAttempts", 3) >= 1
        if "ItemProcessor" in state:
            check_asl(state["ItemProcessor"])
    assert reachable == set(states), f"unreachable: {set(states) - reachable}"


def test_training_definition_is_valid_asl(synthesized):
    logical_id, _ = state_machine(synthesized, "training")
    check_asl(definition_of(synthesized.service_json, logical_id))


def training_states(s: Synthesized) -> dict[str, dict]:
    logical_id, _ = state_machine(s, "training")
    return definition_of(s.service_json, logical_id)["States"]


def test_training_begins_with_the_execution_name_and_the_lock_lease_in_the_state(synthesized):
    logical_id, _ = state_machine(synthesized, "training")
    definition = definition_of(synthesized.service_json, logical_id)
    assert definition["StartAt"] == "Begin"
    timeout = synthesized.config.training_timeout.to_seconds()
    assert definition["TimeoutSeconds"] == timeout
    assert definition["States"]["Begin"] == {
        "Type": "Pass",
        "Comment": definition["States"]["Begin"]["Comment"],
        "Parameters": {"name.$": "$$.Execution.Name", "lease_seconds": timeout},
        "ResultPath": "$.execution",
        "Next": TRAINING_ORDER[0][0],
    }


def test_training_runs_the_six_steps_in_order_then_succeeds(synthesized):
    logical_id, _ = state_machine(synthesized, "training")
    definition = definition_of(synthesized.service_json, logical_id)
    states = definition["States"]
    order, name = [], states[definition["StartAt"]]["Next"]
    while states[name]["Type"] == "Task" and "Next" in states[name]:
        order.append(name)
        name = states[name]["Next"]
    assert order == [state for state, _ in TRAINING_ORDER]
    assert states[name]["Type"] == "Succeed"


@pytest.mark.parametrize(("state", "handler"), TRAINING_ORDER)
def test_each_step_passes_the_whole_state_to_its_own_function(synthesized, state, handler):
    logical_id, _ = state_machine(synthesized, "training")
    step = definition_of(synthesized.service_json, logical_id)["States"][state]
    # payload_response_only: the function ARN itself, input = the whole state, output = $.
    assert step["Resource"] == function_arn(synthesized, handler)
    assert step["ResultPath"] == "$"
    assert "Parameters" not in step and "InputPath" not in step and "OutputPath" not in step


@pytest.mark.parametrize(("state", "handler"), TRAINING_ORDER)
def test_each_step_retries_throttling_with_backoff_and_catches_everything(
    synthesized, state, handler
):
    step = training_states(synthesized)[state]
    throttling = [r for r in step["Retry"] if set(r["ErrorEquals"]) == THROTTLING]
    assert len(throttling) == 1
    assert throttling[0]["BackoffRate"] == 2 and throttling[0]["MaxAttempts"] >= 3
    assert throttling[0]["JitterStrategy"] == "FULL"
    assert any("Lambda.ServiceException" in r["ErrorEquals"] for r in step["Retry"])
    # the report comes after publishing: its failure cannot fail a published model
    caught = (
        ("$.report_error", "ReportFailed")
        if state == "WriteReport"
        else ("$.error", "RecordFailure")
    )
    assert step["Catch"] == [
        {"ErrorEquals": ["States.ALL"], "ResultPath": caught[0], "Next": caught[1]}
    ]


def test_a_report_that_fails_is_kept_in_the_state_and_the_training_succeeds(synthesized):
    states = training_states(synthesized)
    assert states["WriteReport"]["Next"] == "Trained"
    report_failed = states["ReportFailed"]
    assert report_failed["Type"] == "Pass" and report_failed["Next"] == "Trained"
    assert set(report_failed) == {"Type", "Comment", "Next"}  # the state passes unchanged
    assert states["Trained"] == {"Type": "Succeed"}


@pytest.mark.parametrize("purpose", ["training", "reindex", "forget"])
def test_every_task_has_a_timeout_just_above_its_functions(synthesized, purpose):
    template = synthesized.service_json
    logical_id, _ = state_machine(synthesized, purpose)
    definition = definition_of(template, logical_id)
    tasks, frontier = [], [definition["States"]]
    while frontier:
        for state in frontier.pop().values():
            tasks += [state] if state["Type"] == "Task" else []
            frontier += [state["ItemProcessor"]["States"]] if "ItemProcessor" in state else []
    assert tasks
    functions = {
        f"arn:aws:lambda:{REGION}:{synthesized.config.account}:function:{logical_id}": resource
        for logical_id, resource in resources_of_type(template, "AWS::Lambda::Function").items()
    }
    for task in tasks:
        if task["Resource"] in functions:  # a Lambda step: its function's timeout + 1 minute
            function_timeout = functions[task["Resource"]]["Properties"]["Timeout"]
            assert task["TimeoutSeconds"] == function_timeout + 60, task["Resource"]
        else:  # the failure record: one S3 put
            assert task["Resource"] == "arn:aws:states:::aws-sdk:s3:putObject"
            assert task["TimeoutSeconds"] == 60


@pytest.mark.parametrize(("state", "handler"), TRAINING_ORDER)
def test_training_functions_get_lambdas_longest_timeout_and_the_evaluation_limits(
    synthesized, state, handler
):
    config = synthesized.config
    _, properties = function_by_handler(synthesized.service_json, handler)
    settings = config.report if state == "WriteReport" else config.training
    assert properties["Timeout"] == 15 * 60
    assert properties["MemorySize"] == settings.memory_mb
    variables = properties["Environment"]["Variables"]
    # Rekognition is searched for a seeded sample of the held-out faces, and FaceNet's
    # identify path timed on the photos of one: both bounded inside the 15 minutes.
    assert variables["REKOGNITION_EVALUATION_FACES"] == str(config.rekognition_evaluation_faces)
    assert variables["REPORT_TIMED_PHOTOS"] == str(config.report_timed_photos)


def test_prod_trains_with_more_memory_and_searches_a_larger_sample_than_dev(dev, prod):
    for handler in ("functions.training.fit.handler", "functions.training.evaluate.handler"):
        memory = [
            function_by_handler(s.service_json, handler)[1]["MemorySize"] for s in (dev, prod)
        ]
        assert memory == [3008, 6144]
    searched = [
        function_by_handler(s.service_json, "functions.training.evaluate_rekognition.handler")[1][
            "Environment"
        ]["Variables"]["REKOGNITION_EVALUATION_FACES"]
        for s in (dev, prod)
    ]
    assert searched == ["1000", "2000"]


def test_a_failure_is_recorded_in_the_reports_bucket_and_fails_with_its_cause(synthesized):
    logical_id, _ = state_machine(synthesized, "training")
    states = definition_of(synthesized.service_json, logical_id)["States"]
    record = states["RecordFailure"]
    assert record["Resource"] == "arn:aws:states:::aws-sdk:s3:putObject"
    assert record["Parameters"] == {
        "Bucket": synthesized.config.bucket_name("reports"),
        "Key.$": "States.Format('training/failures/{}.json', $$.Execution.Name)",
        "Body.$": "States.JsonToString($.error)",
        "ContentType": "application/json",
    }
    assert record["Next"] == "TrainingFailed"
    # Even if the record cannot be written, fail with the step's own error.
    assert record["Catch"] == [
        {"ErrorEquals": ["States.ALL"], "ResultPath": None, "Next": "TrainingFailed"}
    ]
    assert states["TrainingFailed"] == {
        "Type": "Fail",
        "ErrorPath": "$.error.Error",
        "CausePath": "$.error.Cause",
    }


def test_training_role_invokes_its_six_functions_and_writes_only_failure_records(synthesized):
    template = synthesized.service_json
    _, properties = state_machine(synthesized, "training")
    permissions = role_permissions(template, properties["RoleArn"]["Fn::GetAtt"][0])
    steps = [function_by_handler(template, handler)[0] for _, handler in TRAINING_ORDER]
    for logical_id in steps:
        assert permissions.pop(f"<{logical_id}.Arn>") == {"lambda:InvokeFunction"}
        assert permissions.pop(f"<{logical_id}.Arn>:*") == {"lambda:InvokeFunction"}
    failures = f"{synthesized.bucket_arn('reports')}/training/failures/*"
    assert permissions.pop(failures) == {"s3:putObject"}
    # Logs delivery and X-Ray: actions with no resource-level permissions.
    assert {action.split(":")[0] for action in permissions.pop("*")} == {"logs", "xray"}
    assert permissions == {}


@pytest.mark.parametrize("purpose", ["training", "reindex", "forget"])
def test_workflows_log_everything_but_execution_data_and_are_traced(synthesized, purpose):
    _, properties = state_machine(synthesized, purpose)
    assert properties["StateMachineType"] == "STANDARD"
    assert properties["TracingConfiguration"] == {"Enabled": True}
    logging = properties["LoggingConfiguration"]
    assert logging["Level"] == "ALL"
    assert logging["IncludeExecutionData"] is False  # states carry keys, keys name people
    log_group = logging["Destinations"][0]["CloudWatchLogsLogGroup"]["LogGroupArn"]
    retention = synthesized.service_json["Resources"][log_group["Fn::GetAtt"][0]]
    assert (
        retention["Properties"]["RetentionInDays"]
        == {"dev": 14, "prod": 180}[synthesized.config.name]
    )


def test_reindex_definition_is_valid_asl(synthesized):
    logical_id, _ = state_machine(synthesized, "reindex")
    check_asl(definition_of(synthesized.service_json, logical_id))


def test_reindex_is_a_distributed_map_over_the_faces_bucket_configured_per_environment(
    synthesized,
):
    config = synthesized.config
    logical_id, _ = state_machine(synthesized, "reindex")
    definition = definition_of(synthesized.service_json, logical_id)
    reindex = definition["States"][definition["StartAt"]]
    assert reindex["Type"] == "Map"
    assert reindex["ItemProcessor"]["ProcessorConfig"] == {
        "Mode": "DISTRIBUTED",
        "ExecutionType": "STANDARD",
    }
    assert reindex["ItemReader"] == {
        "Resource": "arn:aws:states:::s3:listObjectsV2",
        "Parameters": {"Bucket": config.bucket_name("faces")},
    }
    assert reindex["ItemBatcher"] == {
        "MaxItemsPerBatch": config.reindex_items_per_batch,
        "BatchInput": {"bucket": config.bucket_name("faces")},
    }
    assert reindex["MaxConcurrency"] == config.reindex_max_concurrency
    assert reindex["ToleratedFailurePercentage"] == config.reindex_tolerated_failure_percentage
    assert reindex["ResultWriter"] == {
        "Resource": "arn:aws:states:::s3:putObject",
        "Parameters": {"Bucket": config.bucket_name("reports"), "Prefix": "reindex/"},
    }
    assert reindex["Catch"] == [
        {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "ReindexFailed"}
    ]
    assert definition["States"]["ReindexFailed"]["CausePath"] == "$.error.Cause"


def test_prod_reindexes_wider_and_tolerates_fewer_failures_than_dev(dev, prod):
    assert prod.config.reindex_max_concurrency > dev.config.reindex_max_concurrency
    assert (
        prod.config.reindex_tolerated_failure_percentage
        < dev.config.reindex_tolerated_failure_percentage
    )


def test_each_reindex_batch_invokes_the_reindex_handler_with_retries(synthesized):
    logical_id, _ = state_machine(synthesized, "reindex")
    definition = definition_of(synthesized.service_json, logical_id)
    processor = definition["States"][definition["StartAt"]]["ItemProcessor"]
    batch = processor["States"][processor["StartAt"]]
    assert batch["Type"] == "Task"
    assert batch["Resource"] == function_arn(synthesized, "functions.reindex.handler.handler")
    assert any(set(r["ErrorEquals"]) == THROTTLING for r in batch["Retry"])
    assert batch.get("End") is True


def test_reindex_role_lists_faces_writes_results_and_runs_its_own_map(synthesized):
    template = synthesized.service_json
    logical_id, properties = state_machine(synthesized, "reindex")
    permissions = role_permissions(template, properties["RoleArn"]["Fn::GetAtt"][0])
    function = function_by_handler(template, "functions.reindex.handler.handler")[0]
    assert permissions.pop(f"<{function}.Arn>") == {"lambda:InvokeFunction"}
    assert permissions.pop(f"<{function}.Arn>:*") == {"lambda:InvokeFunction"}
    assert permissions.pop(synthesized.bucket_arn("faces")) == {"s3:ListBucket"}
    # the map's results, under its own prefix of the reports bucket only
    assert permissions.pop(f"{synthesized.bucket_arn('reports')}/reindex/*") == {
        "s3:AbortMultipartUpload",
        "s3:GetObject",
        "s3:ListMultipartUploadParts",
        "s3:PutObject",
    }
    assert {action.split(":")[0] for action in permissions.pop("*")} == {"logs", "xray"}
    # Child executions of this state machine only.
    assert permissions.pop(f"<{logical_id}>") == {"states:StartExecution"}
    for resource, actions in permissions.items():
        assert resource.startswith(f"arn:aws:states:{REGION}:{synthesized.config.account}:"), (
            resource
        )
        assert logical_id in resource
        assert actions <= {
            "states:DescribeExecution",
            "states:StopExecution",
            "states:RedriveExecution",
        }


# ---- one training at a time, and every end recorded ----------------------------------------


def statements(template: dict, handler: str) -> list[dict]:
    """Every statement of the policies attached to ``handler``'s role, resources resolved."""
    _, properties = function_by_handler(template, handler)
    role = properties["Role"]["Fn::GetAtt"][0]
    return [
        {**statement, "Resource": resolve(statement["Resource"])}
        for policy in resources_of_type(template, "AWS::IAM::Policy").values()
        if {"Ref": role} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def test_the_lock_and_model_keys_are_the_catalogs_and_the_failure_prefix_is_shared():
    assert TRAINING_LOCK["pk"] in LOCK_KEYS
    assert MODEL_KEYS == ("MODEL", "MODEL#*")  # storage/aws.py: MODEL/CURRENT, MODEL#<id>/META
    assert FAILURES_PREFIX == TRAINING_FAILURES_PREFIX


@pytest.mark.parametrize(
    ("handler", "grants"),
    [
        ("functions.training.gather.handler", [({"dynamodb:PutItem"}, LOCK_KEYS)]),
        (
            "functions.training.publish.handler",
            [
                ({"dynamodb:GetItem", "dynamodb:PutItem"}, MODEL_KEYS),
                ({"dynamodb:DeleteItem"}, LOCK_KEYS),
            ],
        ),
        (ENDED, [({"dynamodb:DeleteItem"}, LOCK_KEYS)]),
    ],
)
def test_training_functions_write_only_the_lock_and_model_items_of_the_catalog(
    synthesized, handler, grants
):
    catalog = synthesized.table_arn("catalog")
    found = [
        statement
        for statement in statements(synthesized.service_json, handler)
        if statement["Resource"] == catalog
    ]
    conditioned = [
        (
            {statement["Action"]}
            if isinstance(statement["Action"], str)
            else set(statement["Action"]),
            tuple(statement["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]),
        )
        for statement in found
        if "Condition" in statement
    ]
    assert conditioned == grants
    writes = {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"}
    writes.add("dynamodb:BatchWriteItem")
    for statement in found:
        if "Condition" not in statement:  # gather's reads of the faces
            assert not writes & set(statement["Action"]), handler
            assert handler == "functions.training.gather.handler"


def test_an_execution_that_fails_times_out_or_is_aborted_reaches_training_ended(synthesized):
    template = synthesized.service_json
    machine, _ = state_machine(synthesized, "training")
    ended, properties = function_by_handler(template, ENDED)
    assert (properties["MemorySize"], properties["Timeout"]) == (512, 60)
    [rule] = [
        resource["Properties"]
        for resource in resources_of_type(template, "AWS::Events::Rule").values()
        if resource["Properties"].get("EventPattern", {}).get("source") == ["aws.states"]
    ]
    assert rule["EventPattern"] == {
        "source": ["aws.states"],
        "detail-type": ["Step Functions Execution Status Change"],
        "detail": {
            "stateMachineArn": [{"Ref": machine}],
            "status": ["FAILED", "TIMED_OUT", "ABORTED"],
        },
    }
    assert [target["Arn"] for target in rule["Targets"]] == [{"Fn::GetAtt": [ended, "Arn"]}]
    permissions = [
        resource["Properties"]
        for resource in resources_of_type(template, "AWS::Lambda::Permission").values()
        if resource["Properties"]["FunctionName"] == {"Fn::GetAtt": [ended, "Arn"]}
    ]
    assert [permission["Principal"] for permission in permissions] == ["events.amazonaws.com"]


def test_training_ended_writes_failure_records_and_releases_the_lock_only(synthesized):
    template = synthesized.service_json
    _, properties = function_by_handler(template, ENDED)
    permissions = role_permissions(template, properties["Role"]["Fn::GetAtt"][0])
    failures = f"{synthesized.bucket_arn('reports')}/{TRAINING_FAILURES_PREFIX}*"
    assert permissions.pop(failures) == {"s3:PutObject"}
    assert permissions.pop(synthesized.table_arn("catalog")) == {"dynamodb:DeleteItem"}
    assert permissions.pop("*") == {"xray:PutTelemetryRecords", "xray:PutTraceSegments"}
    [log_group] = permissions
    assert permissions[log_group] == {"logs:CreateLogStream", "logs:PutLogEvents"}


# ---- forget ----------------------------------------------------------------------------------

FORGET_ORDER = [
    ("ForgetGroupFaces", "functions.forget.group_faces.handler"),
    ("ForgetPerson", "functions.forget.person.handler"),
    ("Retrain", "functions.forget.retrain.handler"),
]


def test_forget_runs_group_faces_then_the_person_then_retrains_only_when_needed(synthesized):
    logical_id, _ = state_machine(synthesized, "forget")
    definition = definition_of(synthesized.service_json, logical_id)
    check_asl(definition)
    states = definition["States"]
    assert definition["StartAt"] == "ForgetGroupFaces"
    for name, handler in FORGET_ORDER:
        assert states[name]["Resource"] == function_arn(synthesized, handler), name
        assert {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "ForgetFailed"} in (
            states[name]["Catch"]
        )
        retried = {error for retry in states[name]["Retry"] for error in retry["ErrorEquals"]}
        assert retried >= THROTTLING, name
    assert states["ForgetGroupFaces"]["Next"] == "ForgetPerson"
    assert states["ForgetPerson"]["Next"] == "CurrentModelDeleted"
    choice = states["CurrentModelDeleted"]
    assert choice["Choices"] == [
        {"Variable": "$.retrain_options", "IsPresent": True, "Next": "Retrain"}
    ]
    assert choice["Default"] == "Forgotten" and states["Retrain"]["Next"] == "Forgotten"
    assert states["ForgetFailed"] == {
        "Type": "Fail",
        "ErrorPath": "$.error.Error",
        "CausePath": "$.error.Cause",
    }
    assert definition["TimeoutSeconds"] == 3600


def test_forget_role_invokes_only_its_three_functions(synthesized):
    template = synthesized.service_json
    _, properties = state_machine(synthesized, "forget")
    permissions = role_permissions(template, properties["RoleArn"]["Fn::GetAtt"][0])
    for _, handler in FORGET_ORDER:
        function = function_by_handler(template, handler)[0]
        assert permissions.pop(f"<{function}.Arn>") == {"lambda:InvokeFunction"}
        assert permissions.pop(f"<{function}.Arn>:*") == {"lambda:InvokeFunction"}
    assert {action.split(":")[0] for action in permissions.pop("*")} == {"logs", "xray"}
    assert permissions == {}
