"""POST /identify, DELETE /people/{name} and GET /forgets/{forget_id}: signed requests only,
the body or the path validated before Lambda runs, logged and throttled per environment."""

from __future__ import annotations

import json

import pytest
from infra_support import function_by_handler, resources_of_type

IDENTIFY = "functions.identify_faces.handler.handler"
FORGET = "functions.forget.request.handler"


def only(template: dict, resource_type: str) -> tuple[str, dict]:
    resources = resources_of_type(template, resource_type)
    assert len(resources) == 1, resource_type
    ((logical_id, resource),) = resources.items()
    return logical_id, resource["Properties"]


def method(template: dict, http_method: str) -> tuple[str, dict]:
    """(logical id, properties) of the one method with this HTTP method."""
    found = [
        (logical_id, resource["Properties"])
        for logical_id, resource in resources_of_type(template, "AWS::ApiGateway::Method").items()
        if resource["Properties"]["HttpMethod"] == http_method
    ]
    assert len(found) == 1, http_method
    return found[0]


def validator(template: dict, name: str) -> tuple[str, dict]:
    found = [
        (logical_id, resource["Properties"])
        for logical_id, resource in resources_of_type(
            template, "AWS::ApiGateway::RequestValidator"
        ).items()
        if resource["Properties"]["Name"] == name
    ]
    assert len(found) == 1, name
    return found[0]


def live_alias(template: dict) -> tuple[str, dict]:
    """(logical id, properties) of identify's ``live`` alias."""
    found = [
        (logical_id, resource["Properties"])
        for logical_id, resource in resources_of_type(template, "AWS::Lambda::Alias").items()
        if resource["Properties"]["Name"] == "live"
    ]
    assert len(found) == 1
    return found[0]


def paths(template: dict) -> dict[str, str]:
    """Resource logical id -> its full path (``/people/{name}``)."""
    resources = resources_of_type(template, "AWS::ApiGateway::Resource")

    def path(logical_id: str) -> str:
        properties = resources[logical_id]["Properties"]
        parent = properties["ParentId"]
        prefix = path(parent["Ref"]) if "Ref" in parent else ""
        return f"{prefix}/{properties['PathPart']}"

    return {logical_id: path(logical_id) for logical_id in resources}


def test_one_regional_rest_api_with_identify_forget_and_its_status(synthesized):
    template = synthesized.service_json
    _, api = only(template, "AWS::ApiGateway::RestApi")
    assert api["EndpointConfiguration"] == {"Types": ["REGIONAL"]}
    assert api["Name"] == f"facerec-{synthesized.config.name}"
    routes = paths(template)
    assert sorted(routes.values()) == [
        "/forgets",
        "/forgets/{forget_id}",
        "/identify",
        "/people",
        "/people/{name}",
    ]
    methods = {
        (routes[properties["ResourceId"]["Ref"]], properties["HttpMethod"])
        for properties in (
            resource["Properties"]
            for resource in resources_of_type(template, "AWS::ApiGateway::Method").values()
        )
    }
    assert methods == {
        ("/identify", "POST"),
        ("/people/{name}", "DELETE"),
        ("/forgets/{forget_id}", "GET"),
    }


def test_the_api_description_states_the_size_limits(synthesized):
    _, api = only(synthesized.service_json, "AWS::ApiGateway::RestApi")
    assert "413" in api["Description"] and "6 MB" in api["Description"]
    assert "s3_key" in api["Description"]


@pytest.mark.parametrize("http_method", ["POST", "DELETE", "GET"])
def test_every_method_needs_a_sigv4_signature(synthesized, http_method):
    _, properties = method(synthesized.service_json, http_method)
    assert properties["AuthorizationType"] == "AWS_IAM"


def test_the_body_is_validated_against_the_request_model(synthesized):
    template = synthesized.service_json
    _, post = method(template, "POST")
    validator_id, identify_validator = validator(template, "identify-body")
    model_id, model = only(template, "AWS::ApiGateway::Model")
    assert post["RequestValidatorId"] == {"Ref": validator_id}
    assert identify_validator["ValidateRequestBody"] is True
    # Whatever the content type: a body API Gateway passed on unchecked could be one that
    # Lambda's 6 MB invocation limit refuses (what the model holds: test_infra_api_contract).
    assert post["RequestModels"] == {"$default": {"Ref": model_id}}
    assert model["Schema"]["$schema"] == "http://json-schema.org/draft-04/schema#"


def test_gateway_answers_bad_bodies_400_and_huge_ones_413_in_the_contracts_shape(synthesized):
    responses = {
        properties["Properties"]["ResponseType"]: properties["Properties"]
        for properties in resources_of_type(
            synthesized.service_json, "AWS::ApiGateway::GatewayResponse"
        ).values()
    }
    answers = {
        response_type: (properties["StatusCode"], properties["ResponseTemplates"])
        for response_type, properties in responses.items()
    }
    for response_type, status, code in [
        ("BAD_REQUEST_BODY", "400", "invalid_request"),
        ("REQUEST_TOO_LARGE", "413", "payload_too_large"),
    ]:
        answer_status, templates = answers[response_type]
        assert answer_status == status
        # No $variable: API Gateway sends the text as it is, valid JSON in the error shape.
        assert "$" not in templates["application/json"]
        body = json.loads(templates["application/json"])
        assert body["code"] == code and "s3_key" in body["message"]


def test_delete_people_requires_the_name_in_the_path_and_has_no_body(synthesized):
    template = synthesized.service_json
    _, delete = method(template, "DELETE")
    validator_id, people_validator = validator(template, "people-path")
    assert delete["RequestValidatorId"] == {"Ref": validator_id}
    assert people_validator["ValidateRequestParameters"] is True
    assert people_validator["ValidateRequestBody"] is False
    assert delete["RequestParameters"] == {"method.request.path.name": True}
    assert "RequestModels" not in delete
    assert paths(template)[delete["ResourceId"]["Ref"]] == "/people/{name}"


def test_the_forget_status_requires_its_id_in_the_path_and_has_no_body(synthesized):
    template = synthesized.service_json
    _, get = method(template, "GET")
    validator_id, _ = validator(template, "people-path")
    assert get["RequestValidatorId"] == {"Ref": validator_id}
    assert get["RequestParameters"] == {"method.request.path.forget_id": True}
    assert "RequestModels" not in get
    assert paths(template)[get["ResourceId"]["Ref"]] == "/forgets/{forget_id}"


@pytest.mark.parametrize(
    ("http_method", "handler", "source_suffix"),
    [
        ("POST", IDENTIFY, "/POST/identify"),
        ("DELETE", FORGET, "/DELETE/people/*"),
        ("GET", FORGET, "/GET/forgets/*"),
    ],
)
def test_each_method_proxies_to_its_own_function_only(
    synthesized, http_method, handler, source_suffix
):
    template = synthesized.service_json
    function, _ = function_by_handler(template, handler)
    # Identify is invoked through its alias (provisioned concurrency), forget unqualified.
    target = (
        {"Ref": live_alias(template)[0]}
        if handler == IDENTIFY
        else {"Fn::GetAtt": [function, "Arn"]}
    )
    _, properties = method(template, http_method)
    integration = properties["Integration"]
    assert integration["Type"] == "AWS_PROXY"
    assert integration["IntegrationHttpMethod"] == "POST"  # Lambda is always invoked by POST
    assert "TimeoutInMillis" not in integration  # API Gateway's default, 29 s
    assert target in integration["Uri"]["Fn::Join"][1]
    api_permissions = [
        resource["Properties"]
        for resource in resources_of_type(template, "AWS::Lambda::Permission").values()
        if resource["Properties"]["Principal"] == "apigateway.amazonaws.com"
        and resource["Properties"]["FunctionName"]
        in (target, {"Fn::GetAtt": [function, "Arn"]}, {"Ref": function})
    ]
    assert api_permissions
    assert all(permission["FunctionName"] == target for permission in api_permissions)
    # each permission names one method, never the whole API; this method has one
    sources = [permission["SourceArn"]["Fn::Join"][1][-1] for permission in api_permissions]
    assert all("/*/*" not in source for source in sources)
    assert any(source.endswith(source_suffix) for source in sources)


def test_the_stage_logs_access_and_errors_but_never_bodies_and_is_throttled(synthesized):
    template = synthesized.service_json
    config = synthesized.config
    _, stage = only(template, "AWS::ApiGateway::Stage")
    assert stage["StageName"] == config.name
    assert stage["TracingEnabled"] is True
    assert "$context.requestId" in stage["AccessLogSetting"]["Format"]
    assert stage["MethodSettings"] == [
        {
            "DataTraceEnabled": False,
            "HttpMethod": "*",
            "LoggingLevel": "ERROR",
            "MetricsEnabled": True,
            "ResourcePath": "/*",
            "ThrottlingBurstLimit": config.api_burst_limit,
            "ThrottlingRateLimit": config.api_rate_limit,
        }
    ]
    access_log_group = stage["AccessLogSetting"]["DestinationArn"]["Fn::Join"][1][-1]["Ref"]
    assert template["Resources"][access_log_group]["Type"] == "AWS::Logs::LogGroup"


def test_the_identify_url_is_an_output(synthesized):
    outputs = synthesized.service_json["Outputs"]
    assert outputs["IdentifyUrl"]["Value"]["Fn::Join"][1][-1].endswith("/identify")
    assert {"TrainingStateMachineArn", "ReindexStateMachineArn", "DeadLetterQueueUrl"} <= set(
        outputs
    )


def test_the_account_level_logging_role_outlives_any_one_stack(synthesized):
    # dev and prod may share an account, and with it API Gateway's CloudWatch role setting.
    template = synthesized.service_json
    account_id, account = only(template, "AWS::ApiGateway::Account")
    role_id = account["CloudWatchRoleArn"]["Fn::GetAtt"][0]
    assert template["Resources"][role_id]["DeletionPolicy"] == "Retain"
    assert template["Resources"][account_id]["DeletionPolicy"] == "Retain"


def test_identify_is_published_as_a_version_behind_its_live_alias(synthesized):
    template = synthesized.service_json
    function, _ = function_by_handler(template, IDENTIFY)
    _, alias = live_alias(template)
    assert alias["FunctionName"] == {"Ref": function}
    version_id, attribute = alias["FunctionVersion"]["Fn::GetAtt"]
    assert attribute == "Version"
    version = template["Resources"][version_id]
    assert version["Type"] == "AWS::Lambda::Version"
    assert version["Properties"]["FunctionName"] == {"Ref": function}


def test_provisioned_concurrency_is_the_configs_and_only_in_prod(synthesized):
    _, alias = live_alias(synthesized.service_json)
    wanted = synthesized.config.identify_provisioned_concurrency
    if wanted:
        assert alias["ProvisionedConcurrencyConfig"] == {"ProvisionedConcurrentExecutions": wanted}
    else:
        assert "ProvisionedConcurrencyConfig" not in alias
    assert (wanted > 0) is (synthesized.config.name == "prod")
