"""POST /identify: signed requests only, the body validated before Lambda runs, logged and
throttled per environment."""

from __future__ import annotations

from infra_support import function_by_handler, resources_of_type

IDENTIFY = "functions.identify_faces.handler.handler"


def only(template: dict, resource_type: str) -> tuple[str, dict]:
    resources = resources_of_type(template, resource_type)
    assert len(resources) == 1, resource_type
    ((logical_id, resource),) = resources.items()
    return logical_id, resource["Properties"]


def test_one_regional_rest_api_with_a_single_post_identify(synthesized):
    template = synthesized.service_json
    _, api = only(template, "AWS::ApiGateway::RestApi")
    assert api["EndpointConfiguration"] == {"Types": ["REGIONAL"]}
    assert api["Name"] == f"facerec-{synthesized.config.name}"
    _, resource = only(template, "AWS::ApiGateway::Resource")
    assert resource["PathPart"] == "identify"
    _, method = only(template, "AWS::ApiGateway::Method")
    assert method["HttpMethod"] == "POST"


def test_the_api_description_states_the_size_limits(synthesized):
    _, api = only(synthesized.service_json, "AWS::ApiGateway::RestApi")
    assert "413" in api["Description"] and "6 MB" in api["Description"]
    assert "s3_key" in api["Description"]


def test_post_identify_needs_a_sigv4_signature(synthesized):
    _, method = only(synthesized.service_json, "AWS::ApiGateway::Method")
    assert method["AuthorizationType"] == "AWS_IAM"


def test_the_body_is_validated_against_the_request_model(synthesized):
    template = synthesized.service_json
    _, method = only(template, "AWS::ApiGateway::Method")
    validator_id, validator = only(template, "AWS::ApiGateway::RequestValidator")
    model_id, model = only(template, "AWS::ApiGateway::Model")
    assert method["RequestValidatorId"] == {"Ref": validator_id}
    assert validator["ValidateRequestBody"] is True
    assert method["RequestModels"] == {"application/json": {"Ref": model_id}}
    schema = model["Schema"]
    assert schema["$schema"] == "http://json-schema.org/draft-04/schema#"
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert schema["oneOf"] == [{"required": ["image"]}, {"required": ["s3_key"]}]
    assert schema["properties"]["image"]["type"] == "string"
    assert schema["properties"]["s3_key"]["maxLength"] == 1024
    assert schema["properties"]["engines"] == {
        "type": "string",
        "enum": ["facenet", "rekognition", "both"],
        "description": schema["properties"]["engines"]["description"],
    }


def test_gateway_answers_bad_bodies_400_and_huge_ones_413_in_the_contracts_shape(synthesized):
    responses = {
        properties["Properties"]["ResponseType"]: properties["Properties"]
        for properties in resources_of_type(
            synthesized.service_json, "AWS::ApiGateway::GatewayResponse"
        ).values()
    }
    assert responses["BAD_REQUEST_BODY"]["StatusCode"] == "400"
    assert (
        '"code": "invalid_request"'
        in (responses["BAD_REQUEST_BODY"]["ResponseTemplates"]["application/json"])
    )
    assert responses["REQUEST_TOO_LARGE"]["StatusCode"] == "413"
    assert (
        '"code": "payload_too_large"'
        in (responses["REQUEST_TOO_LARGE"]["ResponseTemplates"]["application/json"])
    )


def test_the_method_proxies_to_the_identify_function_only(synthesized):
    template = synthesized.service_json
    identify, _ = function_by_handler(template, IDENTIFY)
    _, method = only(template, "AWS::ApiGateway::Method")
    integration = method["Integration"]
    assert integration["Type"] == "AWS_PROXY"
    assert integration["IntegrationHttpMethod"] == "POST"
    assert {"Fn::GetAtt": [identify, "Arn"]} in integration["Uri"]["Fn::Join"][1]
    api_permissions = [
        resource["Properties"]
        for resource in resources_of_type(template, "AWS::Lambda::Permission").values()
        if resource["Properties"]["Principal"] == "apigateway.amazonaws.com"
    ]
    assert api_permissions
    for permission in api_permissions:
        assert permission["FunctionName"] == {"Fn::GetAtt": [identify, "Arn"]}
        source = permission["SourceArn"]["Fn::Join"][1]
        assert source[-1].endswith("/POST/identify")  # this method only, not the whole API


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
