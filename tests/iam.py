"""What IAM would answer to every AWS call a function makes, checked offline.

moto enforces no IAM and botocore's Stubber answers whatever is queued, so a handler test
passes whatever its role allows. ``CallChecker`` closes that gap: attached to a boto3 session
or client, it records each call (botocore's ``before-parameter-build`` event: service,
operation, parameters; ``after-call``: the HTTP status), turns it into the IAM requests it
needs (``requests_for``: action, resource ARN and, for DynamoDB items, the partition keys as
``dynamodb:LeadingKeys``), and evaluates them against the statements of the calling
function's role in the synthesized template (``Policy``): actions and resources matched with
IAM's ``*`` and ``?`` wildcards, String conditions on the request's context keys, Allow
needed, a Deny wins. Calls made inside ``acting_as(handler)`` are that function's; leaving
the block after a call its role does not allow, or one this module cannot map, fails with
the function, the action and the resource.

The mapping follows the service references (botocore's model documentation quotes them):
HeadObject needs s3:GetObject, a missing key answers 404 only with s3:ListBucket on the bucket
(else 403), ListObjectsV2 needs s3:ListBucket, ListObjectVersions s3:ListBucketVersions,
DeleteObjects s3:DeleteObject per key and a versioned delete s3:DeleteObjectVersion; a Query
or Scan on a DynamoDB index is authorised on ``table/<table>/index/<index>``; QueryVectors
with metadata (or a filter) and ListVectors with data or metadata need s3vectors:GetVectors.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache

from tests.infra.infra_support import resolve

LEADING_KEYS = "dynamodb:LeadingKeys"


@dataclass(frozen=True, order=True)
class Request:
    """One authorisation IAM makes: ``action`` (``service:Action``) on ``resource`` (an ARN),
    with the request's condition ``context`` (``(key, values)`` pairs)."""

    action: str
    resource: str
    context: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def __str__(self) -> str:
        keys = "".join(f" ({key}: {', '.join(values)})" for key, values in self.context)
        return f"{self.action} on {self.resource}{keys}"


class Unmapped(LookupError):
    """A call this module does not know the IAM requests of (extend ``requests_for``)."""


@dataclass(frozen=True)
class Deployment:
    """Where the calls go: partition, region and account of the ARNs, and each table's
    partition key attribute (``tables[name][""]``, and ``tables[name][index]`` per index)."""

    region: str
    account: str
    tables: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    partition: str = "aws"

    def s3(self, bucket: str, key: str | None = None) -> str:
        """A bucket, or one object of it."""
        return f"arn:{self.partition}:s3:::{bucket}" + ("" if key is None else f"/{key}")

    def table(self, name: str, index: str | None = None) -> str:
        arn = f"arn:{self.partition}:dynamodb:{self.region}:{self.account}:table/{name}"
        return arn if index is None else f"{arn}/index/{index}"

    def partition_key(self, table: str, index: str | None = None) -> str:
        try:
            return self.tables[table][index or ""]
        except KeyError:
            raise Unmapped(f"no key schema for table {table} (index {index})") from None

    def collection(self, collection_id: str) -> str:
        where = f"{self.partition}:rekognition:{self.region}:{self.account}"
        return f"arn:{where}:collection/{collection_id}"

    def vector_index(self, params: Mapping) -> str:
        """The index a call names, by ARN or by bucket and index name."""
        if params.get("indexArn"):
            return params["indexArn"]
        return (
            f"arn:{self.partition}:s3vectors:{self.region}:{self.account}:bucket/"
            f"{params['vectorBucketName']}/index/{params['indexName']}"
        )


def table_keys(template: dict) -> dict[str, dict[str, str]]:
    """Table name -> {"": partition key attribute, index name: its partition key attribute}
    for every DynamoDB table of a (data stack's) template."""
    tables = {}
    for resource in template["Resources"].values():
        if resource["Type"] not in ("AWS::DynamoDB::Table", "AWS::DynamoDB::GlobalTable"):
            continue
        properties = resource["Properties"]
        keys = {"": _hash_key(properties["KeySchema"])}
        for index in properties.get("GlobalSecondaryIndexes", []):
            keys[index["IndexName"]] = _hash_key(index["KeySchema"])
        tables[properties["TableName"]] = keys
    return tables


def _hash_key(schema: list[dict]) -> str:
    (name,) = [key["AttributeName"] for key in schema if key["KeyType"] == "HASH"]
    return name


# ---- calls -> IAM requests --------------------------------------------------------------------


def _s3(operation: str, params: Mapping, where: Deployment) -> list[Request]:
    bucket = params["Bucket"]
    if operation in ("GetObject", "HeadObject"):
        action = "s3:GetObjectVersion" if params.get("VersionId") else "s3:GetObject"
        return [Request(action, where.s3(bucket, params["Key"]))]
    if operation == "PutObject":
        extra = {"Tagging": "s3:PutObjectTagging", "ACL": "s3:PutObjectAcl"}
        actions = ["s3:PutObject", *(extra[name] for name in extra if name in params)]
        return [Request(action, where.s3(bucket, params["Key"])) for action in actions]
    if operation == "DeleteObject":
        return [_delete(bucket, params, where)]
    if operation == "DeleteObjects":
        return [_delete(bucket, item, where) for item in params["Delete"]["Objects"]]
    if operation in ("ListObjectsV2", "ListObjects"):
        return [Request("s3:ListBucket", where.s3(bucket))]
    if operation == "ListObjectVersions":
        return [Request("s3:ListBucketVersions", where.s3(bucket))]
    raise Unmapped(f"s3.{operation}")


def _delete(bucket: str, item: Mapping, where: Deployment) -> Request:
    action = "s3:DeleteObjectVersion" if item.get("VersionId") else "s3:DeleteObject"
    return Request(action, where.s3(bucket, item["Key"]))


def _value(attribute) -> str:
    """A key attribute as the call sends it (``{"S": "x"}``) -> ``"x"``."""
    ((_, value),) = attribute.items()
    return str(value)


def _item_request(action: str, table: str, keys: list[Mapping], where: Deployment) -> Request:
    """``action`` on ``table`` for the items of these keys (or whole items)."""
    attribute = where.partition_key(table)
    leading = tuple(sorted({_value(key[attribute]) for key in keys}))
    return Request(action, where.table(table), ((LEADING_KEYS, leading),))


def _query_request(params: Mapping, where: Deployment) -> Request:
    """A Query: the partition key is the attribute compared with ``=`` in the condition."""
    table, index = params["TableName"], params.get("IndexName")
    attribute = where.partition_key(table, index)
    names = params.get("ExpressionAttributeNames", {})
    values = params.get("ExpressionAttributeValues", {})
    expression = params.get("KeyConditionExpression")
    if not isinstance(expression, str):
        raise Unmapped("dynamodb.Query without a KeyConditionExpression")
    leading = [
        _value(values[value])
        for name, value in re.findall(r"([#\w]+)\s*=\s*(:\w+)", expression)
        if names.get(name, name) == attribute
    ]
    return Request("dynamodb:Query", where.table(table, index), ((LEADING_KEYS, tuple(leading)),))


def _written(write: Mapping) -> Mapping:
    """The item of a BatchWriteItem PutRequest, or the key of a DeleteRequest."""
    if "PutRequest" in write:
        return write["PutRequest"]["Item"]
    return write["DeleteRequest"]["Key"]


DYNAMODB_TRANSACT = {
    "Put": ("PutItem", "Item"),
    "Update": ("UpdateItem", "Key"),
    "Delete": ("DeleteItem", "Key"),
    "ConditionCheck": ("ConditionCheckItem", "Key"),
    "Get": ("GetItem", "Key"),
}


def _dynamodb(operation: str, params: Mapping, where: Deployment) -> list[Request]:
    action = f"dynamodb:{operation}"
    if operation in ("GetItem", "UpdateItem", "DeleteItem"):
        return [_item_request(action, params["TableName"], [params["Key"]], where)]
    if operation == "PutItem":
        return [_item_request(action, params["TableName"], [params["Item"]], where)]
    if operation == "Query":
        return [_query_request(params, where)]
    if operation == "Scan":
        return [Request(action, where.table(params["TableName"], params.get("IndexName")))]
    if operation == "DescribeTable":
        return [Request(action, where.table(params["TableName"]))]
    if operation == "BatchGetItem":
        return [
            _item_request(action, table, request["Keys"], where)
            for table, request in params["RequestItems"].items()
        ]
    if operation == "BatchWriteItem":
        return [
            _item_request(action, table, [_written(write) for write in writes], where)
            for table, writes in params["RequestItems"].items()
        ]
    if operation in ("TransactWriteItems", "TransactGetItems"):
        requests = []
        for item in params["TransactItems"]:
            ((kind, body),) = item.items()
            name, key = DYNAMODB_TRANSACT[kind]
            requests.append(
                _item_request(f"dynamodb:{name}", body["TableName"], [body[key]], where)
            )
        return requests
    raise Unmapped(f"dynamodb.{operation}")


REKOGNITION_ON_COLLECTION = (
    "CreateCollection",
    "DeleteCollection",
    "DeleteFaces",
    "DescribeCollection",
    "IndexFaces",
    "ListFaces",
    "SearchFaces",
    "SearchFacesByImage",
)


def _rekognition(operation: str, params: Mapping, where: Deployment) -> list[Request]:
    if operation in REKOGNITION_ON_COLLECTION:
        return [Request(f"rekognition:{operation}", where.collection(params["CollectionId"]))]
    raise Unmapped(f"rekognition.{operation}")


def _s3vectors(operation: str, params: Mapping, where: Deployment) -> list[Request]:
    index = where.vector_index(params)
    reads = {
        "QueryVectors": any(
            params.get(name) for name in ("returnMetadata", "filter", "queryTexts")
        ),
        "ListVectors": any(params.get(name) for name in ("returnData", "returnMetadata")),
        "GetVectors": False,
        "PutVectors": False,
        "DeleteVectors": False,
    }
    if operation not in reads:
        raise Unmapped(f"s3vectors.{operation}")
    requests = [Request(f"s3vectors:{operation}", index)]
    if reads[operation]:
        requests.append(Request("s3vectors:GetVectors", index))
    return requests


def _stepfunctions(operation: str, params: Mapping, where: Deployment) -> list[Request]:
    """StartExecution and ListExecutions act on the state machine, StopExecution and
    DescribeExecution on one execution (``...:execution:<machine name>:<name>``)."""
    if operation in ("StartExecution", "ListExecutions"):
        return [Request(f"states:{operation}", params["stateMachineArn"])]
    if operation in ("StopExecution", "DescribeExecution"):
        return [Request(f"states:{operation}", params["executionArn"])]
    raise Unmapped(f"stepfunctions.{operation}")


SERVICES: dict[str, Callable[[str, Mapping, Deployment], list[Request]]] = {
    "s3": _s3,
    "dynamodb": _dynamodb,
    "rekognition": _rekognition,
    "s3vectors": _s3vectors,
    "stepfunctions": _stepfunctions,
}


def requests_for(service: str, operation: str, params: Mapping, where: Deployment) -> list[Request]:
    """The IAM requests a call needs (``service`` is botocore's service name, ``params`` as
    botocore sends them, DynamoDB values typed); Unmapped for a call this module does not
    know."""
    if service not in SERVICES:
        raise Unmapped(f"{service}.{operation}")
    return SERVICES[service](operation, params, where)


def requests_for_answer(
    service: str, operation: str, params: Mapping, status: int, where: Deployment
) -> list[Request]:
    """What the answer adds: a missing object is a 404 (which the adapters read as "missing")
    only with s3:ListBucket on the bucket; without it S3 answers 403."""
    if service == "s3" and operation in ("GetObject", "HeadObject") and status == 404:
        return [Request("s3:ListBucket", where.s3(params["Bucket"]))]
    return []


# ---- policies ---------------------------------------------------------------------------------


@cache
def _wildcard(pattern: str, kind: str) -> re.Pattern:
    """IAM's ``*`` (any characters) and ``?`` (one character) in an ``action`` (matched
    case-insensitively), an ``arn`` or a ``string`` (StringLike). In an ARN both stay inside
    one colon-separated segment, except a ``*`` ending a segment, which may run past colons."""
    arn = kind == "arn"
    parts = []
    for position, character in enumerate(pattern):
        following = pattern[position + 1 : position + 2]
        if character == "*":
            parts.append("[^:]*" if arn and following not in ("", ":") else ".*")
        elif character == "?":
            parts.append("[^:]" if arn else ".")
        else:
            parts.append(re.escape(character))
    flags = re.DOTALL | (re.IGNORECASE if kind == "action" else 0)
    return re.compile("".join(parts), flags)


CONDITION_OPERATORS = ("StringEquals", "StringLike")
CONDITION_QUALIFIERS = ("", "ForAllValues", "ForAnyValue")
CONDITION_KEYS = (LEADING_KEYS,)


def _check_condition(condition: Mapping) -> None:
    """Refuse what ``_condition_holds`` does not evaluate."""
    for operator, tests in condition.items():
        qualifier, _, name = operator.rpartition(":")
        if name not in CONDITION_OPERATORS or qualifier not in CONDITION_QUALIFIERS:
            raise ValueError(f"condition operator {operator} is not evaluated here")
        for key in tests:
            if key.lower() not in {known.lower() for known in CONDITION_KEYS}:
                raise ValueError(f"condition key {key} is not evaluated here")


def _condition_holds(condition: Mapping, request: Request) -> bool:
    """IAM's rules: operators and keys all hold (AND), a key's values any (OR); ForAllValues
    holds when every value of the request's key matches (also when the key is absent),
    ForAnyValue when one does, a plain operator when the key is present and one matches."""
    context = {key.lower(): values for key, values in request.context}
    for operator, tests in condition.items():
        qualifier, _, name = operator.rpartition(":")
        for key, allowed in tests.items():
            allowed = allowed if isinstance(allowed, list) else [allowed]
            values = context.get(key.lower())

            def matches(value: str, allowed=allowed, name=name) -> bool:
                if name == "StringLike":
                    return any(_wildcard(a, "string").fullmatch(value) for a in allowed)
                return value in allowed

            if qualifier == "ForAllValues":
                holds = all(matches(value) for value in values or ())
            else:
                holds = any(matches(value) for value in values or ())
            if not holds:
                return False
    return True


@dataclass(frozen=True)
class Statement:
    effect: str  # Allow or Deny
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    condition: Mapping = field(default_factory=dict)

    def applies_to(self, request: Request) -> bool:
        """Actions match case-insensitively, resources (ARNs) case-sensitively, and the
        condition holds for the request's context."""
        return (
            any(_wildcard(action, "action").fullmatch(request.action) for action in self.actions)
            and any(_wildcard(arn, "arn").fullmatch(request.resource) for arn in self.resources)
            and _condition_holds(self.condition, request)
        )


@dataclass(frozen=True)
class Policy:
    """The statements of every policy attached to one role."""

    statements: tuple[Statement, ...]

    def allows(self, request: Request) -> bool:
        """Allowed by a statement and denied by none (identity policies only: the buckets'
        own policies deny plain HTTP alone, which boto3 never uses)."""
        effects = {s.effect for s in self.statements if s.applies_to(request)}
        return effects == {"Allow"}


def _listed(value) -> tuple:
    return tuple(value) if isinstance(value, list) else (value,)


def role_policy(template: dict, role_logical_id: str) -> Policy:
    """Every statement the template attaches to the role (its inline ``Policies`` and each
    ``AWS::IAM::Policy`` or ``ManagedPolicy`` naming it), resources resolved as the infra tests
    resolve them (``infra_support.resolve``). Managed policy ARNs, principals, Not* elements
    and conditions other than String operators on dynamodb:LeadingKeys are refused: they are
    not evaluated here."""
    role = template["Resources"][role_logical_id]["Properties"]
    if role.get("ManagedPolicyArns"):
        raise ValueError(f"{role_logical_id}: managed policy ARNs cannot be evaluated offline")
    documents = [policy["PolicyDocument"] for policy in role.get("Policies", [])]
    for resource in template["Resources"].values():
        properties = resource.get("Properties", {})
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy") and {
            "Ref": role_logical_id
        } in properties.get("Roles", []):
            documents.append(properties["PolicyDocument"])
    statements = []
    for document in documents:
        for statement in document["Statement"]:
            unsupported = set(statement) - {"Effect", "Action", "Resource", "Sid", "Condition"}
            if unsupported:
                raise ValueError(f"{role_logical_id}: {sorted(unsupported)} not evaluated here")
            condition = statement.get("Condition", {})
            _check_condition(condition)
            statements.append(
                Statement(
                    statement["Effect"],
                    _listed(statement["Action"]),
                    _listed(resolve(statement["Resource"])),
                    condition,
                )
            )
    return Policy(tuple(statements))


def with_state_machine_arns(template: dict, where: Deployment) -> dict:
    """``template`` with each state machine's Ref as its ARN and its Name attribute as its
    name (both are known before deployment: the names are fixed), so that policies and
    environment variables name state machines and executions as AWS will."""
    machines = {
        logical_id: resource["Properties"]["StateMachineName"]
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::StepFunctions::StateMachine"
    }

    def substitute(value):
        if isinstance(value, list):
            return [substitute(item) for item in value]
        if not isinstance(value, dict):
            return value
        if set(value) == {"Ref"} and value["Ref"] in machines:
            name = machines[value["Ref"]]
            return (
                f"arn:{where.partition}:states:{where.region}:{where.account}:stateMachine:{name}"
            )
        if set(value) == {"Fn::GetAtt"} and value["Fn::GetAtt"][0] in machines:
            logical_id, attribute = value["Fn::GetAtt"]
            if attribute == "Name":
                return machines[logical_id]
        return {key: substitute(item) for key, item in value.items()}

    return substitute(template)


def function_policies(template: dict) -> dict[str, Policy]:
    """The handler each function's image runs (``ImageConfig.Command``) -> its role's policy."""
    policies = {}
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::Lambda::Function":
            continue
        properties = resource["Properties"]
        (handler,) = properties["ImageConfig"]["Command"]
        role_logical_id, _ = properties["Role"]["Fn::GetAtt"]
        policies[handler] = role_policy(template, role_logical_id)
    return policies


# ---- recording --------------------------------------------------------------------------------


@dataclass
class Call:
    """One AWS call made as ``function``: the requests it needs, or why none are known."""

    function: str
    name: str  # service.Operation
    requests: list[Request] = field(default_factory=list)
    unmapped: str = ""


class CallChecker:
    """Records the calls of every session or client it is attached to and checks those made
    inside ``acting_as(handler)`` against that handler's ``Policy``."""

    def __init__(self, policies: Mapping[str, Policy], where: Deployment):
        self.policies, self.where = policies, where
        self.calls: list[Call] = []
        self.function: str | None = None  # shared by the threads a handler starts

    def attach(self, target) -> None:
        """Record the calls of a boto3 session (the clients it creates from now on) or of one
        client."""
        events = target.events if hasattr(target, "events") else target.meta.events
        # unique ids: a client created from an attached session is not recorded twice
        events.register("before-parameter-build", self._before, unique_id=f"iam-{id(self)}-b")
        events.register("after-call", self._after, unique_id=f"iam-{id(self)}-a")

    def _before(self, params, model, context, **_) -> None:
        if self.function is None:
            return  # the test's own set-up and inspection
        service, operation = model.service_model.service_name, model.name
        call = Call(self.function, f"{service}.{operation}")
        try:
            call.requests = requests_for(service, operation, params, self.where)
        except Unmapped as error:
            call.unmapped = str(error)
        context["iam_call"] = (call, service, operation, params)
        self.calls.append(call)

    def _after(self, http_response, model, context, **_) -> None:
        if "iam_call" in context:
            call, service, operation, params = context.pop("iam_call")
            status = http_response.status_code
            call.requests += requests_for_answer(service, operation, params, status, self.where)

    @contextmanager
    def acting_as(self, handler: str) -> Iterator[None]:
        """Calls in this block are ``handler``'s; on leaving it, any call its role does not
        allow (or that cannot be mapped) fails the test."""
        policy = self.policies[handler]
        start = len(self.calls)
        self.function = handler
        try:
            yield
        finally:
            self.function = None
        problems = []
        for call in self.calls[start:]:
            if call.unmapped:
                problems.append(f"{call.name}: no IAM mapping in tests/iam.py ({call.unmapped})")
            problems += [f"{call.name}: {r}" for r in call.requests if not policy.allows(r)]
        assert not problems, f"the role of {handler} does not allow:\n  " + "\n  ".join(
            sorted(set(problems))
        )

    def requests(self, handler: str) -> set[Request]:
        """Every IAM request ``handler``'s calls needed so far."""
        return {r for call in self.calls if call.function == handler for r in call.requests}
