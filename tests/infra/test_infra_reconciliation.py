"""The reconciliation as synthesized: a daily schedule invokes its function, which may repair
exactly what the chain makes (embeddings, vectors, FaceIds) and delete orphan crops."""

from __future__ import annotations

from infra_support import function_by_handler, resolve, resources_of_type, role_permissions

HANDLER = "functions.reconcile.handler.handler"


def test_a_daily_schedule_invokes_the_reconcile_function(synthesized):
    template = synthesized.service_json
    logical_id, _ = function_by_handler(template, HANDLER)
    rules = [
        rule["Properties"]
        for rule in resources_of_type(template, "AWS::Events::Rule").values()
        if "ScheduleExpression" in rule["Properties"]
    ]
    assert [rule["ScheduleExpression"] for rule in rules] == ["rate(1 day)"]
    (target,) = rules[0]["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [logical_id, "Arn"]}
    assert "DeadLetterConfig" in target  # an invocation EventBridge could not make is kept


def test_the_reconcile_function_may_repair_and_nothing_more(synthesized):
    template = synthesized.service_json
    _, properties = function_by_handler(template, HANDLER)
    granted = role_permissions(template, properties["Role"]["Fn::GetAtt"][0])
    faces = synthesized.bucket_arn("faces")
    rekognition = {
        action for actions in granted.values() for action in actions if action.startswith("rek")
    }
    assert rekognition == {"rekognition:IndexFaces", "rekognition:DeleteFaces"}
    assert "s3:DeleteObject" in granted[f"{faces}/*"]
    assert not any(
        "s3:PutObject" in actions for resource, actions in granted.items() if "faces" in resource
    )
    for index in synthesized.vector_index_arns:
        assert {"s3vectors:PutVectors", "s3vectors:GetVectors"} <= granted[index]
    assert not any("states:" in action for actions in granted.values() for action in actions)
    assert resolve(properties["ImageConfig"]["Command"]) == [HANDLER]
