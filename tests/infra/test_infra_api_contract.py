"""The API as API Gateway will check it: the request model read from the synthesized template
(AWS::ApiGateway::Model) and validated with a JSON Schema draft 4 validator, as API Gateway
does, against every example of docs/openapi.yaml, every engine value and the size limits;
and each verdict compared with what the function itself accepts
(``facerec.interfaces.http.IdentifyRequest.from_dict``: a test may import the runtime, infra
may not)."""

from __future__ import annotations

import json

import pytest
from infra_support import resources_of_type
from jsonschema import Draft4Validator

from facerec.core.errors import InvalidLabel
from facerec.core.naming import MAX_NAME_LENGTH, validate_person_name
from facerec.interfaces.http import (
    ENGINE_CHOICES,
    ENGINES,
    FORGET_ID,
    MAX_BODY_BYTES,
    MAX_IMAGE_BASE64,
    ApiError,
    IdentifyRequest,
    forget_accepted,
    forget_status,
    new_forget_id,
    valid_forget_id,
)
from infra.rest_api import OpenApi
from tests.support import api_event

SPEC = OpenApi.load().document  # docs/openapi.yaml
IMAGE = "/9j/4AAQSkZJRgABAQAAAQABAAA="  # the first 20 bytes of a JPEG, base64
LAMBDA_INVOKE_LIMIT = 6 * 2**20  # bytes of one synchronous invocation's event
API_GATEWAY_LIMIT = 10 * 2**20  # bytes of a REST API request body


def request_model(template: dict) -> dict:
    (model,) = resources_of_type(template, "AWS::ApiGateway::Model").values()
    return model["Properties"]["Schema"]


@pytest.fixture(scope="module")
def model(dev, prod) -> Draft4Validator:
    """The synthesized request model (the same in both environments), checked as a schema."""
    schema = request_model(dev.service_json)
    assert request_model(prod.service_json) == schema
    Draft4Validator.check_schema(schema)
    return Draft4Validator(schema)


def function_accepts(body) -> bool:
    try:
        IdentifyRequest.from_dict(body)
    except ApiError:
        return False
    return True


def gateway_response(template: dict, response_type: str) -> tuple[str, dict]:
    """(status, JSON body) API Gateway answers for ``response_type``."""
    for resource in resources_of_type(template, "AWS::ApiGateway::GatewayResponse").values():
        properties = resource["Properties"]
        if properties["ResponseType"] == response_type:
            return properties["StatusCode"], json.loads(
                properties["ResponseTemplates"]["application/json"]
            )
    raise AssertionError(f"no {response_type} gateway response")


# ---- the model ------------------------------------------------------------------------------


def without(value, keyword: str):
    """``value`` with ``keyword`` removed from every object in it."""
    if isinstance(value, dict):
        return {key: without(item, keyword) for key, item in value.items() if key != keyword}
    if isinstance(value, list):
        return [without(item, keyword) for item in value]
    return value


def test_the_model_is_the_specs_identify_request_in_draft_4(model):
    # Only OpenAPI's "format" (byte: base64, no draft-4 format) is left out.
    spec = SPEC["components"]["schemas"]["IdentifyRequest"]
    assert model.schema == {
        **without(spec, "format"),
        "$schema": "http://json-schema.org/draft-04/schema#",
        "title": "IdentifyRequest",
    }


def test_a_keyword_the_model_cannot_carry_fails_the_synth():
    body = {"schema": {"type": "string", "nullable": True}}
    spec = OpenApi(
        {"paths": {"/x": {"post": {"requestBody": {"content": {"application/json": body}}}}}}
    )
    with pytest.raises(ValueError, match="'nullable' has no draft-4 translation"):
        spec.request_model("/x", "post")


# ---- the examples -----------------------------------------------------------------------------

EXAMPLES = SPEC["paths"]["/identify"]["post"]["requestBody"]["content"]["application/json"][
    "examples"
]


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_every_example_of_the_spec_passes_the_gateway_and_the_function(model, name):
    body = EXAMPLES[name]["value"]
    assert model.is_valid(body), list(model.iter_errors(body))
    assert function_accepts(body)


def test_the_examples_show_each_way_to_choose_engines():
    chosen = [example["value"].get("engines") for example in EXAMPLES.values()]
    assert None in chosen  # the default
    assert any(isinstance(value, str) for value in chosen)
    assert any(isinstance(value, list) for value in chosen)


# ---- engines ----------------------------------------------------------------------------------

ENGINE_VALUES = [
    *ENGINE_CHOICES,  # every name and choice: facenet ... both, all
    *([name] for name in ENGINES),
    list(ENGINES),
    ["hybrid", "nearest"],
    ["facenet", "facenet"],
    # refused
    "every",
    "Facenet",
    "",
    [],
    ["both"],
    ["facenet", "dlib"],
    ["facenet", 3],
    3,
    None,
    {"facenet": True},
]


@pytest.mark.parametrize("engines", ENGINE_VALUES, ids=json.dumps)
def test_the_gateway_and_the_function_agree_on_every_engine_value(model, engines):
    # Defect 3: the deployed model knew facenet, rekognition and both only.
    for body in ({"image": IMAGE, "engines": engines}, {"s3_key": "a/b.jpg", "engines": engines}):
        assert model.is_valid(body) is function_accepts(body)


def test_the_spec_names_the_functions_engines():
    engines = SPEC["components"]["schemas"]["IdentifyRequest"]["properties"]["engines"]
    names, listed = engines["oneOf"]
    assert names["enum"] == list(ENGINE_CHOICES)
    assert listed["items"]["enum"] == list(ENGINES)


# ---- the rest of the body ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"image": "A" * MAX_IMAGE_BASE64},
        {"image": "A" * (MAX_IMAGE_BASE64 + 4)},
        {"image": ""},
        {"s3_key": "k" * 1024},
        {"s3_key": "k" * 1025},
        {"s3_key": ""},
        {"s3_key": 12},
        {"image": 12},
        {},
        {"engines": "facenet"},
        {"image": IMAGE, "s3_key": "a/b.jpg"},
        {"image": IMAGE, "colour": "red"},
        [IMAGE],
        "image",
    ],
    ids=lambda body: json.dumps(body)[:40],
)
def test_the_gateway_and_the_function_agree_on_shape_and_sizes(model, body):
    assert model.is_valid(body) is function_accepts(body)


def test_the_model_leaves_base64_to_the_function(model):
    # Draft 4 has no base64 format, and a pattern over 5 MB strings is costly: the function
    # answers 400 invalid_base64.
    body = {"image": "not base64!"}
    assert model.is_valid(body)
    with pytest.raises(ApiError) as refused:
        IdentifyRequest.from_dict(body)
    assert (refused.value.status, refused.value.code) == (400, "invalid_base64")


def test_the_image_limit_is_the_functions():
    image = SPEC["components"]["schemas"]["IdentifyRequest"]["properties"]["image"]
    assert image["maxLength"] == MAX_IMAGE_BASE64


# ---- sizes: what a caller gets ----------------------------------------------------------------


def test_every_body_the_model_passes_fits_one_lambda_invocation(model):
    # The largest body without padding: the longest image with the longest engines value.
    body = {"image": "A" * MAX_IMAGE_BASE64, "engines": list(ENGINES)}
    assert model.is_valid(body)
    raw = json.dumps(body)
    assert len(raw) <= MAX_BODY_BYTES
    # The event around it (headers, request context) is a few KB; the function allows 64 KiB.
    assert len(json.dumps(api_event(raw)).encode()) + 64 * 2**10 < LAMBDA_INVOKE_LIMIT


@pytest.mark.parametrize("size", [6 * 2**20, 8 * 2**20, API_GATEWAY_LIMIT - 100])
def test_a_body_between_6_and_10_mb_gets_the_gateways_400_that_names_the_limit(dev, model, size):
    body = {"image": "A" * (size - len('{"image": ""}'))}
    assert len(json.dumps(body)) == size
    assert not model.is_valid(body)
    assert not function_accepts(body)
    status, answer = gateway_response(dev.service_json, "BAD_REQUEST_BODY")
    assert (status, answer["code"]) == ("400", "invalid_request")
    assert f"at most {MAX_IMAGE_BASE64} characters" in answer["message"]
    assert "s3_key" in answer["message"]


def test_a_body_over_10_mb_gets_the_gateways_413(synthesized):
    status, answer = gateway_response(synthesized.service_json, "REQUEST_TOO_LARGE")
    assert (status, answer["code"]) == ("413", "payload_too_large")
    assert "10 MB" in answer["message"] and "s3_key" in answer["message"]


def test_the_400_message_states_every_engine_value(synthesized):
    _, answer = gateway_response(synthesized.service_json, "BAD_REQUEST_BODY")
    for name in ENGINE_CHOICES:
        assert name in answer["message"]


# ---- DELETE /people/{name} --------------------------------------------------------------------


def test_the_person_parameter_is_the_functions_name_rule(synthesized):
    (parameter,) = SPEC["paths"]["/people/{name}"]["delete"]["parameters"]
    assert (parameter["in"], parameter["required"]) == ("path", True)
    assert parameter["schema"]["maxLength"] == MAX_NAME_LENGTH
    assert validate_person_name("a" * MAX_NAME_LENGTH) == "a" * MAX_NAME_LENGTH
    with pytest.raises(InvalidLabel):
        validate_person_name("a" * (MAX_NAME_LENGTH + 1))
    # API Gateway checks that a required path parameter is there, nothing more.
    (delete,) = [
        resource["Properties"]
        for resource in resources_of_type(
            synthesized.service_json, "AWS::ApiGateway::Method"
        ).values()
        if resource["Properties"]["HttpMethod"] == "DELETE"
    ]
    assert delete["RequestParameters"] == {"method.request.path.name": True}


# ---- the forget's status: GET /forgets/{forget_id} ---------------------------------------------


def spec_validator(name: str) -> Draft4Validator:
    """A validator of the spec's ``components/schemas/<name>`` (its $refs resolved)."""
    return Draft4Validator(
        {"$ref": f"#/components/schemas/{name}", "components": SPEC["components"]}
    )


def test_the_forget_id_parameter_is_the_functions_id_rule():
    (parameter,) = SPEC["paths"]["/forgets/{forget_id}"]["get"]["parameters"]
    assert (parameter["in"], parameter["required"]) == ("path", True)
    assert parameter["schema"]["pattern"] == f"^{FORGET_ID.pattern}$"
    forget_id = new_forget_id()
    assert valid_forget_id(forget_id) and len(forget_id) == parameter["schema"]["maxLength"]
    for bad in ("", "A" * 32, "0" * 31, "0" * 33, "../" + "0" * 29):
        assert not valid_forget_id(bad)


def test_the_forget_answers_and_examples_follow_the_spec():
    accepted = SPEC["paths"]["/people/{name}"]["delete"]["responses"]["202"]
    status = SPEC["paths"]["/forgets/{forget_id}"]["get"]["responses"]["200"]
    spec_validator("ForgetAccepted").validate(accepted["content"]["application/json"]["example"])
    spec_validator("ForgetStatus").validate(status["content"]["application/json"]["example"])
    code, body = forget_accepted(new_forget_id(), "Ada Lovelace")
    assert code == 202 and "Location" in accepted["headers"]
    spec_validator("ForgetAccepted").validate(body)
    finished = forget_status(body["forget_id"], "Ada Lovelace", "SUCCEEDED", deleted={})
    failed = forget_status(body["forget_id"], "Ada Lovelace", "FAILED")
    running = forget_status(body["forget_id"], "Ada Lovelace", "RUNNING")
    for answer in (running, failed):
        spec_validator("ForgetStatus").validate(answer)
    assert (
        "deleted" in finished
        and "error" in failed
        and set(running)
        == {
            "forget_id",
            "person",
            "status",
        }
    )
    with pytest.raises(ValueError):
        forget_status(body["forget_id"], "Ada Lovelace", "ABORTED")
