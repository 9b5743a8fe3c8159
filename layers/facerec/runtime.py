"""Build the pipeline over the embedded default (folders + SQLite) from a few paths."""

from __future__ import annotations

from pathlib import Path

from facerec.assets import AssetPaths
from facerec.detection import FaceDetector
from facerec.embedding import FaceNetEmbedder
from facerec.pipeline import FaceAnalyser, Pipeline, PipelineSettings
from facerec.storage.local import LocalWorkspace


def build_analyser(weights: Path, settings: PipelineSettings = PipelineSettings()) -> FaceAnalyser:
    """Load MTCNN and FaceNet (the weights are checked against their sha256 first)."""
    embedder = FaceNetEmbedder(weights)
    return FaceAnalyser(FaceDetector(settings.detector), embedder, settings)


def local_pipeline(
    workspace: Path,
    cache_dir: Path,
    settings: PipelineSettings = PipelineSettings(),
    analyser: FaceAnalyser | None = None,
) -> Pipeline:
    """The pipeline over ``workspace`` (created if absent); models come from ``cache_dir``."""
    store = LocalWorkspace(workspace)
    analyser = analyser or build_analyser(AssetPaths(cache_dir).weights, settings)
    return Pipeline(
        analyser,
        store.catalog,
        store.ingest,
        store.faces,
        store.quarantine,
        store.models,
        store.reports,
    )
