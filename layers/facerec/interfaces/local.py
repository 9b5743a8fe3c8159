"""The local composition root: the embedded default (a workspace folder whose folders are the
buckets and whose SQLite file is the tables), the analyser and the engines, and the flows
over them. The CLI and the local server build one; the Lambda functions build their own
(functions/services.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from facerec.core.errors import FaceRecError, ImageError, NotEnoughData
from facerec.core.naming import ingest_key
from facerec.core.settings import TrainOptions
from facerec.engines.base import Engine, UnavailableEngine
from facerec.engines.facenet import FaceNetEngine, TrainedModel
from facerec.engines.hybrid import HybridEngine
from facerec.engines.nearest import CatalogIdentifier, NearestEngine, model_calibration
from facerec.flows import forget, train
from facerec.flows.enrol import Enrolment, PhotoInput, PhotoOutcome, read_labelled_folder
from facerec.flows.evaluate import evaluate_photos, run_engine, summarise
from facerec.flows.strangers import stranger_embeddings
from facerec.interfaces.http import IdentifyService
from facerec.storage.local import local_stores
from facerec.storage.ports import labelled_faces
from facerec.vision.analyser import FaceAnalyser

LOCAL_REKOGNITION_REASON = (
    "Amazon Rekognition needs an AWS account; the local server runs FaceNet only "
    "(deploy the stack to compare both engines)"
)


class LocalDeployment:
    """One workspace with one analyser. ``routing_threshold`` overrides the hybrid engine's
    (None: the model's); ``facenet_min_probability`` makes FaceNet answers under it
    "unknown" (0: never)."""

    def __init__(
        self,
        workspace: Path,
        analyser: FaceAnalyser,
        routing_threshold: float | None = None,
        facenet_min_probability: float = 0.0,
    ):
        self.workspace, self.analyser, self.settings = workspace, analyser, analyser.settings
        self.stores = local_stores(workspace, analyser.embedder.stamp)
        self.enrolment = Enrolment(analyser, self.stores)
        self.current_model = train.CurrentModel(self.stores.catalog, self.stores.models)
        facenet = FaceNetEngine(
            self.current_model, facenet_min_probability, analyser.embedder.stamp
        )
        rekognition = UnavailableEngine("rekognition", LOCAL_REKOGNITION_REASON)
        self.engines: dict[str, Engine] = {
            "facenet": facenet,
            "nearest": NearestEngine(
                CatalogIdentifier(
                    self.stores.catalog,
                    self.labelled_faces,
                    lambda: model_calibration(self.current_model),
                )
            ),
            "rekognition": rekognition,
            "hybrid": HybridEngine(
                facenet, rekognition, lambda: self.current_model().metadata, routing_threshold
            ),
        }

    def labelled_faces(self):
        return labelled_faces(self.stores.catalog, self.settings.crop_method)

    def enrol(
        self,
        items: Iterable[PhotoInput],
        on_outcome: Callable[[PhotoOutcome], None] = lambda outcome: None,
    ) -> list[PhotoOutcome]:
        """Upload each photo into the workspace's ingest folder (as ``aws s3 cp`` puts it in
        the ingest bucket), then enrol it; enrolment only reads the upload."""
        return self.enrolment.enrol(self._uploaded(items), on_outcome)

    def ingest_folder(
        self,
        root: Path,
        on_outcome: Callable[[PhotoOutcome], None] = lambda outcome: None,
        on_skip: Callable[[str, str], None] = lambda path, reason: None,
    ) -> list[PhotoOutcome]:
        """Enrol the photos of ``root/<Person>/<photo>`` (read_labelled_folder). A file refused
        unread (not a regular file inside ``root``, over the size limit) is rejected with only
        its reason quarantined, never the bytes it leads to."""
        refused: list[PhotoOutcome] = []

        def refuse(person: str, name: str, error: ImageError) -> None:
            try:
                key = ingest_key(person, name)
            except FaceRecError:
                key = f"{person}/{name}"
            refused.append(self.enrolment.refuse_unread(key, error))
            on_outcome(refused[-1])

        photos = read_labelled_folder(root, on_skip, refuse, self.settings.image_limits)
        return refused + self.enrol(photos, on_outcome)

    def _uploaded(self, items: Iterable[PhotoInput]) -> Iterator[PhotoInput]:
        for item in items:
            try:
                key = ingest_key(item.person, item.name)
            except FaceRecError:
                yield item  # no safe key to store it under: enrolment quarantines it
                continue
            ingest = self.stores.ingest
            if not ingest.exists(key) or ingest.get(key) != item.data:
                ingest.put(key, item.data)
            yield item

    def train(
        self,
        options: TrainOptions = TrainOptions(),
        strangers: Path | None = None,
        on_skip: Callable[[str, str], None] = lambda path, reason: None,
    ) -> tuple[TrainedModel, dict | None]:
        """flows.train.train on this workspace; ``strangers``: a folder of photos of people
        never enrolled, every face in them calibrates "unknown" (flows.strangers; files that
        are not usable photos go to ``on_skip(path, reason)``)."""
        vectors = (
            None if strangers is None else stranger_embeddings(self.analyser, strangers, on_skip)
        )
        return train.train(
            self.stores, self.settings.crop_method, self.analyser.describe(), options, vectors
        )

    def forget(self, person: str) -> dict:
        """flows.forget.forget, retraining here at once (``retrained``: the new model's id,
        or ``not_retrained``: why not, e.g. fewer than 2 people left)."""

        def retrain(options: TrainOptions) -> dict:
            try:
                return {"retrained": self.train(options)[0].model_id}
            except NotEnoughData as error:
                return {"not_retrained": str(error)}

        return forget.forget(self.stores, person, retrain)

    def evaluate_holdout(self) -> dict:
        """The current model's FaceNet answers on the faces it held out, evaluated again."""
        model = self.current_model()
        training_set = train.gather(self.stores.catalog, self.settings.crop_method)
        _, faces = train.held_out(model, training_set, self.stores.faces.get)
        run = run_engine(self.engines["facenet"], faces)
        return {
            **summarise(run, faces, model.metadata["labels"])["evaluation"],
            "model_id": model.model_id,
        }

    def evaluate_photos(self, items: Iterable[PhotoInput]) -> dict:
        """The current model's FaceNet answers on labelled photos that are not enrolled."""
        labels = self.current_model().metadata["labels"]
        return evaluate_photos(
            self.analyser, self.stores.catalog, self.engines["facenet"], labels, items
        )

    def identify_service(self) -> IdentifyService:
        return IdentifyService(self.analyser, self.engines, self.stores.ingest)
