"""Training step 6: the comparison report of the model just published, from the runs the
evaluation steps stored (analysis.comparison), with FaceNet's identify path timed here on
the photos of at most ``settings.report_timed_photos`` held-out faces (a seeded sample; this
function is sized as the identify function): ``<model_id>/
comparison.html`` and ``.json`` in the reports bucket. It runs after publishing, so its
failure never holds a model back; the report says whether the model was promoted."""

from __future__ import annotations

from facerec.analysis.comparison import MEASURED_LOCALLY, compare_model
from facerec.analysis.report.html import PUBLICATION, SECTIONS, save
from facerec.core.costs import DEFAULT_LAMBDA_MEMORY_MB
from facerec.engines.facenet import FaceNetEngine
from functions.logs import get_logger, log
from functions.services import load_at_init, services
from functions.training import state as saved

logger = get_logger(__name__)
load_at_init()  # in Lambda: MTCNN and FaceNet load in the init phase


def handler(state: dict, context=None) -> dict:
    app = services()
    model, stores, memory_mb = saved.model(app, state), app.stores, app.settings.function_memory_mb
    facenet = FaceNetEngine(lambda: model)  # the model just trained, promoted or not
    where = f"the training workflow's write_report Lambda function at {memory_mb} MB"
    comparison = compare_model(
        stores,
        app.analyser,
        facenet,
        model,
        saved.runs(app, state),
        memory_mb or DEFAULT_LAMBDA_MEMORY_MB,
        measured_in=where if memory_mb else MEASURED_LOCALLY,
        max_photos=app.settings.report_timed_photos,
    )
    comparison["publication"] = {key: state[key] for key in ("promoted", "reason")}
    comparison["publication"]["evaluation_key"] = state["report_key"]
    keys, numbers = save(
        stores.reports, comparison, stores.faces.get, sections=(PUBLICATION, *SECTIONS)
    )
    ran = {name: engine["ran"] for name, engine in numbers["engines"].items()}
    log(logger, "report written", model_id=model.model_id, ran=ran)
    return {**state, **keys}
