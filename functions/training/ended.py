"""After an execution of the training workflow failed, timed out or was aborted (Step
Functions' "Execution Status Change" event through EventBridge): its failure record
``training/failures/<execution name>.json`` in the reports bucket, and its training lock
released. A failing step already recorded its error from inside the state machine (the
RecordFailure state); a timeout of the whole machine, an abort or an error no state can catch
is recorded only here. EventBridge delivers these events on a best-effort basis: a lock whose
release is lost expires with the state machine's timeout."""

from __future__ import annotations

import json

from functions.logs import get_logger, log
from functions.services import services

logger = get_logger(__name__)

FAILURES_PREFIX = "training/failures/"  # infra/training_workflow.py writes the same records


def handler(event: dict, context=None) -> dict:
    app = services()
    detail = event["detail"]
    name, status = detail["name"], detail["status"]
    record = {
        "Error": detail.get("error") or f"States.{status}",
        "Cause": detail.get("cause") or f"the execution ended as {status}",
        "status": status,
        "execution_arn": detail["executionArn"],
    }
    key = f"{FAILURES_PREFIX}{name}.json"
    app.stores.reports.put(key, json.dumps(record, indent=2).encode())
    released = app.catalog.unlock_training(name)
    log(logger, "training ended", status=status, lock_released=released)
    return {"failure_key": key, "lock_released": released}
