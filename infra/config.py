"""One frozen configuration per environment, chosen with ``cdk synth -c env=dev|prod``.

Everything that differs between environments lives here, so a reviewer reads one file to know
what prod gets that dev does not: retention of data, point-in-time recovery, concurrency,
log retention and the limits of the re-index workflow.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_logs as logs

ENVIRONMENTS = ("dev", "prod")

# Synth must not depend on credentials. A placeholder account keeps
# `cdk synth` offline and deterministic; at deploy time the CLI sets CDK_DEFAULT_ACCOUNT from
# the caller's credentials, or `-c account=...` names it.
PLACEHOLDER_ACCOUNT = "111111111111"
DEFAULT_REGION = "us-east-1"


class UnknownEnvironmentError(ValueError):
    """The ``env`` context names no known environment."""


@dataclass(frozen=True)
class FunctionSettings:
    """Size and limits of one Lambda function.

    ``reserved_concurrency`` None means "no reservation": a new account's Lambda quota is
    often 10 concurrent executions, and any reservation then fails the deploy.
    """

    memory_mb: int
    timeout: Duration
    reserved_concurrency: int | None = None


@dataclass(frozen=True)
class EnvironmentConfig:
    name: str
    account: str
    region: str
    # Stateful resources: keep them (prod) or delete them with the stack (dev).
    retain_data: bool
    point_in_time_recovery: bool
    log_retention: logs.RetentionDays
    # Functions.
    align_faces: FunctionSettings
    embed_faces: FunctionSettings
    index_faces: FunctionSettings
    identify_faces: FunctionSettings
    # Execution environments of identify's `live` alias kept initialised (MTCNN, FaceNet and
    # the current model loaded, each network run once) before any request; 0 = none.
    identify_provisioned_concurrency: int
    training: FunctionSettings
    # The training workflow's comparison report: it times FaceNet's identify path, so it gets
    # the identify function's memory (the cost model prices that path at this memory).
    report: FunctionSettings
    reindex: FunctionSettings
    # DELETE /people/{name}: S3, DynamoDB, Rekognition and S3 Vectors deletes, then a retraining.
    forget: FunctionSettings
    # Asynchronous invocations (EventBridge -> Lambda): Lambda's own retries, then the DLQ.
    async_retry_attempts: int
    async_max_event_age: Duration
    # EventBridge delivery retries (the Invoke call itself failing), then the same DLQ.
    event_retry_attempts: int
    event_max_age: Duration
    # Runtime settings passed to every function (see docs/contract.md).
    rekognition_min_similarity: float  # 0-100, Rekognition's scale
    facenet_min_probability: float  # 0-1; under it FaceNet answers "unknown"
    crop_method: str
    # FaceNet's precision, "fp32" or "int8"; a change needs the gallery re-embedded (re-index).
    embedding_precision: str
    log_level: str
    # Workflows.
    training_timeout: Duration
    # The training workflow searches Rekognition for at most this many held-out faces (a
    # seeded sample; FaceNet and the nearest face answer every one) and times FaceNet's
    # identify path on the photos of at most ``report_timed_photos`` of them.
    rekognition_evaluation_faces: int
    report_timed_photos: int
    reindex_max_concurrency: int
    reindex_tolerated_failure_percentage: int
    reindex_items_per_batch: int
    reindex_timeout: Duration
    # API stage throttling (requests per second, burst).
    api_rate_limit: float
    api_burst_limit: int

    @property
    def removal_policy(self) -> RemovalPolicy:
        return RemovalPolicy.RETAIN if self.retain_data else RemovalPolicy.DESTROY

    @property
    def collection_id(self) -> str:
        return f"facerec-{self.name}"

    def bucket_name(self, purpose: str) -> str:
        """``facerec-<env>-<account>-<region>-<purpose>``: globally unique, and known before
        deploy, so the stateless stack names its buckets without cross-stack references."""
        return f"facerec-{self.name}-{self.account}-{self.region}-{purpose}"

    def resource_name(self, purpose: str) -> str:
        """``facerec-<env>-<purpose>``, for tables and state machines (unique per region)."""
        return f"facerec-{self.name}-{purpose}"

    def stack_name(self, part: str) -> str:
        """``FaceRec-<env>-<part>``: no user, branch or account in the name."""
        return f"FaceRec-{self.name}-{part}"


_DEV = EnvironmentConfig(
    name="dev",
    account=PLACEHOLDER_ACCOUNT,
    region=DEFAULT_REGION,
    retain_data=False,
    point_in_time_recovery=False,
    log_retention=logs.RetentionDays.TWO_WEEKS,
    # MTCNN + FaceNet in ONNX Runtime peak at about 0.3 GB in one process (bench/RESULTS.md);
    # the memory buys CPU (Lambda gives about 2 vCPUs at 3008 MB, the largest size a new
    # account can always use), which detection and embedding use.
    align_faces=FunctionSettings(memory_mb=3008, timeout=Duration.minutes(3)),
    embed_faces=FunctionSettings(memory_mb=3008, timeout=Duration.minutes(2)),
    index_faces=FunctionSettings(memory_mb=2048, timeout=Duration.minutes(1)),
    # API Gateway gives an integration at most 29 s.
    identify_faces=FunctionSettings(memory_mb=3008, timeout=Duration.seconds(29)),
    # A cold start loads both networks in the init phase (about 3 s with the imports, on 2
    # busy cores) and the current model in the first request; dev accepts that rather than
    # pay for idle environments.
    identify_provisioned_concurrency=0,
    training=FunctionSettings(memory_mb=3008, timeout=Duration.minutes(15)),
    # Time FaceNet's identify path on report_timed_photos held-out photos, read the stored
    # runs, draw the plots (its failure never holds a published model back).
    report=FunctionSettings(memory_mb=3008, timeout=Duration.minutes(15)),
    reindex=FunctionSettings(memory_mb=3008, timeout=Duration.minutes(15)),
    # No model is loaded. Behind the API, whose integration gives up after 29 s: a person with
    # many photos or model versions may take longer, and the function still finishes.
    forget=FunctionSettings(memory_mb=1024, timeout=Duration.minutes(5)),
    async_retry_attempts=2,
    async_max_event_age=Duration.hours(6),
    event_retry_attempts=10,
    event_max_age=Duration.hours(6),
    rekognition_min_similarity=90.0,
    facenet_min_probability=0.0,
    crop_method="aligned",
    embedding_precision="int8",
    log_level="INFO",
    training_timeout=Duration.hours(2),
    # 25 % of 100,000 faces is 25,000 held out: one SearchFacesByImage call each would take
    # 83 min at the lowest default quota (5 TPS; 5-50 by region), past Lambda's 15, and cost
    # 25 USD a training at 0.001 USD an image. 1,000 calls: 200 s at 5 TPS (100 s at the ~10
    # sequential calls a second one function makes), 1 USD; the standard error of an accuracy
    # near 0.99 is sqrt(0.99 * 0.01 / 1,000) = 0.0031 (95 % interval +-0.6 points).
    rekognition_evaluation_faces=1_000,
    # Every held-out photo would be 25,000 S3 reads and identify calls (31 ms median warm, p95
    # 39 ms, bench/RESULTS.md; 0.44 s with TensorFlow): 200 take under 90 s even at 0.44 s,
    # and their mean's standard error is about 1.2 % (a p95 28 % above the median: a
    # spread of ~17 % of the mean, / sqrt(200)).
    report_timed_photos=200,
    reindex_max_concurrency=5,
    reindex_tolerated_failure_percentage=10,
    reindex_items_per_batch=25,
    reindex_timeout=Duration.hours(12),
    api_rate_limit=5,
    api_burst_limit=10,
)

_PROD = replace(
    _DEV,
    name="prod",
    retain_data=True,
    point_in_time_recovery=True,
    log_retention=logs.RetentionDays.SIX_MONTHS,
    # Reservations bound the cost of a burst of uploads and keep IndexFaces under the
    # Rekognition TPS quota; they need an account whose Lambda quota is above 1000.
    align_faces=replace(_DEV.align_faces, reserved_concurrency=20),
    embed_faces=replace(_DEV.embed_faces, reserved_concurrency=20),
    index_faces=replace(_DEV.index_faces, reserved_concurrency=5),
    identify_faces=replace(_DEV.identify_faces, reserved_concurrency=20),
    # Two warm environments (about 32 USD a month each at 3008 MB in us-east-1, billed while
    # idle); requests beyond them start on-demand environments that load in the request.
    identify_provisioned_concurrency=2,
    training=replace(_DEV.training, memory_mb=6144),
    # 2,000 calls: 400 s at 5 TPS, 2 USD a training; standard error at 0.99: 0.0022 (+-0.44
    # points). Halving it again takes 8,000 calls: 1,600 s at 5 TPS, past Lambda's 900 s.
    rekognition_evaluation_faces=2_000,
    reindex=replace(_DEV.reindex, reserved_concurrency=20),
    reindex_max_concurrency=20,
    reindex_tolerated_failure_percentage=5,
    reindex_items_per_batch=50,
    api_rate_limit=50,
    api_burst_limit=100,
)

_CONFIGS = {"dev": _DEV, "prod": _PROD}


def load_config(
    name: str | None, *, account: str | None = None, region: str | None = None
) -> EnvironmentConfig:
    """The config of environment ``name`` (``dev`` or ``prod``), with the account and region
    overridden when given (None keeps the placeholder account and the default region)."""
    if name not in _CONFIGS:
        given = "no environment given" if name is None else f"unknown environment {name!r}"
        raise UnknownEnvironmentError(
            f"{given}: pass -c env=dev or -c env=prod (allowed: {', '.join(ENVIRONMENTS)})"
        )
    config = _CONFIGS[name]
    return replace(config, account=account or config.account, region=region or config.region)
