"""The settings objects and the only place their defaults are written: image limits, the
detector, crops, analysis and training options. Frozen, so they are safe as defaults."""

from __future__ import annotations

from dataclasses import dataclass

EMBEDDING_SIZE = 128  # FaceNet's output: float32 unit vectors
DEFAULT_FAR = 0.01  # the false-accept rate an "unknown" threshold is calibrated to
CROP_METHODS = ("margin", "aligned")
DEFAULT_CROP_METHOD = "aligned"  # measured better on LFW (docs/adr/0002)
# FaceNet's weights as served by ONNX Runtime: as converted, or quantized to 8-bit integers.
PRECISIONS = ("fp32", "int8")
DEFAULT_PRECISION = "int8"  # within tolerance of fp32 on LFW, about 4x faster (bench/RESULTS.md)
CLASSIFIER_CHOICES = ("auto", "svc", "ovr")  # engines.classifier.choose_classifier
# "auto" fits the thesis's SVC up to this many people and OneVsRestSVM above. Past it the
# SVC's pairwise weights cost identify milliseconds (one BLAS thread, one face: 0.3 ms at 100
# people, 3.6 ms at 200, 18 ms at 400) and its calibrated fit minutes (bench/SCALE.md).
SVC_MAX_PEOPLE = 100


@dataclass(frozen=True)
class ImageLimits:
    """Accepted photos: formats (Pillow names), byte size, side lengths and pixel count."""

    formats: tuple[str, ...] = ("JPEG", "PNG")
    max_bytes: int = 15 * 1024 * 1024
    min_side: int = 80
    max_pixels: int = 40_000_000


DEFAULT_LIMITS = ImageLimits()


@dataclass(frozen=True)
class DetectorSettings:
    """MTCNN settings. ``min_confidence`` filters ONet scores (0.8 is MTCNN's own ONet threshold;
    a sunglasses photo in the sample set scores 0.84); ``batch_size`` photos per call.

    ``max_pixels``, the detection budget: MTCNN's memory grows with the pixels it scans (about
    115 MB a megapixel), so a larger photo is scanned downscaled to this many pixels (faces
    then need ``min_face_size`` px at that scale) and a call holds at most this many pixels
    in all (one photo at least). Boxes stay in the photo's own pixels; crops are cut from it.
    """

    min_face_size: int = 20
    min_confidence: float = 0.80
    batch_size: int = 16
    max_pixels: int = 2_500_000


@dataclass(frozen=True)
class AnalysisSettings:
    """How faces are found, cropped and embedded, and enrolment's limits. Defaults are the
    thesis's figures; ``crop_method`` is the measured better one; ``precision`` is FaceNet's
    (PRECISIONS)."""

    crop_method: str = DEFAULT_CROP_METHOD
    precision: str = DEFAULT_PRECISION
    margin: int = 32
    crop_size: int = 160
    max_faces: int = 100
    chunk_photos: int = 64
    min_reference_similarity: float = 0.5
    image_limits: ImageLimits = DEFAULT_LIMITS
    detector: DetectorSettings = DetectorSettings()


@dataclass(frozen=True)
class TrainOptions:
    """``classifier``: "svc" (the thesis's one-vs-one SVC), "ovr" (one-vs-rest SVMs, for
    thousands of people) or "auto" (the SVC up to SVC_MAX_PEOPLE people);
    ``test_size`` 0 trains on everything (no held-out evaluation); ``far`` is the
    false-accept rate the "unknown" threshold is calibrated to."""

    C: float = 10.0
    select_c: bool = False
    test_size: float = 0.25
    seed: int = 42
    far: float = DEFAULT_FAR
    classifier: str = "auto"

    @classmethod
    def of(cls, metadata: dict) -> TrainOptions:
        """The options a model was trained with (its C as chosen), to train it again."""
        split = metadata["split"]
        far = (metadata.get("open_set") or {}).get("far_target", DEFAULT_FAR)
        choice = metadata["classifier"].get("choice", "auto")
        C = metadata["classifier"]["C"]
        return cls(C, False, split["test_size"], split["seed"], far, choice)

    @classmethod
    def from_request(cls, values: dict) -> TrainOptions:
        """Options from a workflow input or request (``C``, ``select_c``, ``test_size``,
        ``seed``, ``far``, ``classifier``; each optional). ValueError names a value out of
        range."""
        defaults = cls()
        options = cls(
            C=float(values.get("C", defaults.C)),
            select_c=bool(values.get("select_c", defaults.select_c)),
            test_size=float(values.get("test_size", defaults.test_size)),
            seed=int(values.get("seed", defaults.seed)),
            far=float(values.get("far", defaults.far)),
            classifier=str(values.get("classifier", defaults.classifier)),
        )
        if options.classifier not in CLASSIFIER_CHOICES:
            raise ValueError(
                f"classifier must be one of {', '.join(CLASSIFIER_CHOICES)}; "
                f"got {options.classifier!r}"
            )
        if not 0 <= options.test_size < 1:
            raise ValueError(f"test_size must be in [0, 1); got {options.test_size}")
        if not 0 < options.far < 1:
            raise ValueError(f"far must be in (0, 1); got {options.far}")
        if options.C <= 0:
            raise ValueError(f"C must be positive; got {options.C}")
        return options
