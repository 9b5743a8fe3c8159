"""Every error the package raises on purpose below its interfaces (the HTTP layer adds its
own ``ApiError`` for malformed requests). ``code`` is a stable machine-readable reason."""

from __future__ import annotations


class FaceRecError(Exception):
    """Base class; the CLI turns these into one-line messages and a non-zero exit code."""

    code = "error"


class AssetError(FaceRecError):
    """Weights or sample set missing or corrupt; the message names the command that fixes it."""

    code = "asset"


class ImageError(FaceRecError):
    """A photo that cannot be used; subclasses say why."""

    code = "bad_image"


class EmptyImage(ImageError):
    code = "empty_file"


class NotAnImage(ImageError):
    code = "not_an_image"


class UnsupportedFormat(ImageError):
    code = "unsupported_format"


class CorruptImage(ImageError):
    code = "corrupt_image"


class ImageTooSmall(ImageError):
    code = "image_too_small"


class ImageTooLarge(ImageError):
    code = "image_too_large"


class NoFaceFound(ImageError):
    code = "no_face"


class TooManyFaces(ImageError):
    code = "too_many_faces"


class InvalidLabel(FaceRecError):
    """A person name that cannot be stored safely (empty, path traversal, control characters)."""

    code = "invalid_label"


class NameCollision(FaceRecError):
    """Another photo of the person has the same name stem, so their crops would collide."""

    code = "name_collision"


class NotEnoughData(FaceRecError):
    """Too few people or photos to split, cross-validate or train."""

    code = "not_enough_data"


class ModelNotFound(FaceRecError):
    code = "model_not_found"


class ModelIntegrityError(FaceRecError):
    """A model artifact refused before it is used: its sha256 is not the one recorded when it
    was published, or it is not in the current format (e.g. an old pickle); names the file."""

    code = "model_integrity"


class WorkspaceError(FaceRecError):
    """The workspace cannot be written (read-only, or not the user's): names the path."""

    code = "workspace_unwritable"


class WorkspaceFull(WorkspaceError):
    """The disk holding the workspace is full: names the path; nothing half-written is kept."""

    code = "disk_full"


class EngineUnavailable(FaceRecError):
    """The engine cannot answer here (e.g. Rekognition without an AWS account)."""

    code = "engine_unavailable"


class FaceNotIndexed(FaceRecError):
    """Rekognition refused to index the crop (quality filter, no face, face too small)."""

    code = "not_indexed"


class CropNotCatalogued(FaceRecError):
    """A crop event arrived before its photo's record (align writes crops first): retry."""

    code = "crop_not_catalogued"


class VectorStoreError(FaceRecError):
    """S3 Vectors refused a call in a way the caller cannot fix by retrying (a missing bucket
    or index, a vector of the wrong dimension): a deployment or programming error."""

    code = "vector_store"


class NotFittedError(ValueError, AttributeError):
    """An estimator used before ``fit`` (as scikit-learn's error of that name)."""
