"""What each engine costs: Rekognition's tiered price per image, Lambda's per GB-second and
request, as the thesis lists them (us-east-1), and the costs of one face in hybrid routing."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_LAMBDA_MEMORY_MB = 3008  # the identify_faces function (infra/config.py)
HYBRID_MONTHLY_IMAGES = 1_000_000  # the volume whose average price a routed face pays
# Warm identify of one photo, p50 (bench/RESULTS.md): the training workflow does not time
# FaceNet's identify path, so its hybrid costs use this figure.
IDENTIFY_SECONDS = 0.122


@dataclass(frozen=True)
class Prices:
    """USD, us-east-1, as the thesis lists them.

    ``rekognition_tiers``: (images in the tier per month, None for the rest; USD per image)."""

    region: str = "us-east-1"
    rekognition_tiers: tuple[tuple[int | None, float], ...] = (
        (1_000_000, 0.001),
        (9_000_000, 0.0008),
        (90_000_000, 0.0006),
        (None, 0.0004),
    )
    face_storage_month: float = 0.00001
    lambda_gb_second: float = 0.0000166667
    lambda_request: float = 0.20 / 1_000_000


PRICES = Prices()


def rekognition_image_cost(images: int, prices: Prices = PRICES) -> float:
    """USD for ``images`` Rekognition images in one month, each tier at its own price."""
    if images < 0:
        raise ValueError(f"images must be >= 0; got {images}")
    cost, left = 0.0, images
    for size, price in prices.rekognition_tiers:
        taken = left if size is None else min(left, size)
        cost += taken * price
        left -= taken
    return cost


def lambda_cost(invocations: int, seconds: float, memory_mb: int, prices: Prices = PRICES) -> dict:
    """USD for ``invocations`` Lambda calls of ``seconds`` each at ``memory_mb`` (GB = MB/1024):
    ``{"compute", "requests", "total"}``."""
    compute = invocations * seconds * memory_mb / 1024 * prices.lambda_gb_second
    requests = invocations * prices.lambda_request
    return {"compute": compute, "requests": requests, "total": compute + requests}


def plain_usd(value: float) -> str:
    """A price without scientific notation: 1e-05 -> "0.00001"."""
    return f"{value:.10f}".rstrip("0").rstrip(".")


def hybrid_costs(
    facenet_seconds: float = IDENTIFY_SECONDS,
    memory_mb: int = DEFAULT_LAMBDA_MEMORY_MB,
    monthly_images: int = HYBRID_MONTHLY_IMAGES,
    prices: Prices = PRICES,
) -> tuple[float, float]:
    """USD (FaceNet per face, Rekognition per routed face): one Lambda invocation of
    ``facenet_seconds`` at ``memory_mb``, and the average price per image at
    ``monthly_images`` images a month."""
    facenet = lambda_cost(1, facenet_seconds, memory_mb, prices)["total"]
    return facenet, rekognition_image_cost(monthly_images, prices) / monthly_images
