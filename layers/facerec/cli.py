"""``facerec``: enrol, train, evaluate and identify on the embedded default (no AWS account).

Exit codes: 0 done; 1 error (message on stderr); 2 bad usage; 3 done, but some photos were
rejected or had no face (``ingest``, ``evaluate DIR``, ``identify``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

from facerec.errors import FaceRecError

REPO_ROOT = Path(__file__).resolve().parents[2]
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3


@contextmanager
def _native_stderr_muted():
    """TensorFlow's C++ runtime prints start-up notices on file descriptor 2 before its
    log level applies; mute them while the models load (Python errors still surface)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


class App:
    """Holds the paths and builds the (slow to load) pipeline once, on first use."""

    def __init__(self, workspace: Path, cache_dir: Path, crop_method: str):
        self.workspace, self.cache_dir, self.crop_method = workspace, cache_dir, crop_method
        self._pipeline = None

    @property
    def pipeline(self):
        if self._pipeline is None:
            from facerec.assets import AssetPaths, verify_weights

            verify_weights(AssetPaths(self.cache_dir).weights)  # a clear error before muting
            with _native_stderr_muted():
                from facerec.pipeline import PipelineSettings
                from facerec.runtime import local_pipeline

                self._pipeline = local_pipeline(
                    self.workspace, self.cache_dir, PipelineSettings(crop_method=self.crop_method)
                )
        return self._pipeline


def _describe(outcome) -> str:
    if outcome.status == "enrolled":
        detail = f"{outcome.faces} face(s)"
        if outcome.faces > 1:
            detail += f", labelled face {outcome.labelled_face} chosen by {outcome.rule} rule"
    else:
        detail = outcome.reason
    return f"{outcome.status:<9} {outcome.key}  {detail}"


def cmd_ingest(app: App, args) -> int:
    from tqdm import tqdm

    from facerec.pipeline import read_labelled_folder

    if not args.directory.is_dir():
        raise FaceRecError(f"{args.directory} is not a folder; expected DIR/<Person>/<photo>")
    skipped: list[str] = []
    total = sum(1 for path in args.directory.rglob("*") if path.is_file())
    progress = tqdm(
        total=total,
        unit="photo",
        desc="ingest",
        file=sys.stderr,
        disable=args.quiet or not sys.stderr.isatty(),
    )

    def report(outcome) -> None:
        progress.update(1)
        if not (args.quiet and outcome.status in ("enrolled", "unchanged")):
            progress.write(_describe(outcome))

    def skip(path: str, reason: str) -> None:
        progress.update(1)
        skipped.append(path)
        progress.write(f"{'skipped':<9} {path}  {reason}")

    outcomes = app.pipeline.enrol(read_labelled_folder(args.directory, skip), on_outcome=report)
    progress.close()
    statuses = Counter(outcome.status for outcome in outcomes)
    reasons = Counter(outcome.code for outcome in outcomes if outcome.status == "rejected")
    faces = sum(outcome.faces for outcome in outcomes if outcome.status == "enrolled")
    print(
        f"\n{len(outcomes) + len(skipped)} files: {statuses['enrolled']} enrolled "
        f"({faces} faces found), {statuses['unchanged']} unchanged, "
        f"{statuses['duplicate']} duplicates, {statuses['no_face']} with no face, "
        f"{statuses['rejected']} rejected, {len(skipped)} not in a person folder"
    )
    for code, count in reasons.most_common():
        print(f"  rejected {code}: {count}")
    problems = statuses["no_face"] + statuses["rejected"] + len(skipped)
    return EXIT_PARTIAL if problems else EXIT_OK


def cmd_train(app: App, args) -> int:
    from facerec.evaluation import render_markdown
    from facerec.pipeline import TrainOptions

    model, evaluation = app.pipeline.train(
        TrainOptions(C=args.C, select_c=args.select_c, test_size=args.test_size, seed=args.seed)
    )
    meta = model.metadata
    print(
        f"model {model.model_id}: {len(meta['labels'])} people, "
        f"{meta['split']['train_faces']} training faces, C = {meta['classifier']['C']}, "
        f"{meta['cv']['folds']}-fold CV accuracy {meta['cv']['mean']:.3f} "
        f"(+/- {meta['cv']['std']:.3f}), crop {meta['crop']['method']}"
    )
    if evaluation is not None:
        print(
            render_markdown(
                evaluation, f"Held-out {args.test_size:.0%} ({evaluation['faces']} faces)"
            )
        )
    return EXIT_OK


def cmd_evaluate(app: App, args) -> int:
    from facerec.evaluation import render_markdown
    from facerec.pipeline import read_labelled_folder

    pipeline = app.pipeline
    if args.directory is None:
        evaluation, title = pipeline.evaluate_holdout(), "Held-out part of the enrolled photos"
    else:
        skipped = []
        evaluation = pipeline.evaluate_photos(
            read_labelled_folder(args.directory, lambda path, reason: skipped.append(path))
        )
        title = f"Photos in {args.directory}"
        evaluation["notes"] = [
            f"{len(evaluation['refused'])} of {evaluation['photos']} photos "
            "could not be used (counted as misses in photo accuracy)"
        ]
        evaluation["notes"] += [
            f"refused {item['photo']}: {item['reason']}" for item in evaluation["refused"]
        ]
    print(render_markdown(evaluation, title))
    if args.json:
        args.json.write_text(json.dumps(evaluation, indent=2, ensure_ascii=False))
        print(f"evaluation written to {args.json}")
    return EXIT_PARTIAL if evaluation.get("refused") else EXIT_OK


def cmd_identify(app: App, args) -> int:
    results, failed = {}, 0
    pipeline = app.pipeline
    pipeline.current_model()  # missing weights or model stop here, before any photo
    for photo in args.photos:
        try:
            results[str(photo)] = pipeline.identify(photo.read_bytes())
        except (FaceRecError, OSError) as error:
            failed += 1
            code = getattr(error, "code", "unreadable")
            results[str(photo)] = {"error": code, "message": str(error)}
    if args.json:
        print(json.dumps(results, indent=2, ensure_ascii=False))
    else:
        for photo, result in results.items():
            if "error" in result:
                print(f"{photo}: {result['error']}: {result['message']}")
                continue
            for face in result["faces"]:
                box = face["box"]
                print(
                    f"{photo}: {face['person']} (probability {face['probability']:.2f}) at "
                    f"x={box['left']} y={box['top']} w={box['width']} h={box['height']}"
                )
    return EXIT_PARTIAL if failed else EXIT_OK


def cmd_demo(app: App, args) -> int:
    from facerec.assets import AssetPaths

    sample = AssetPaths(app.cache_dir).sample_set
    print(f"== 1/4 ingest {sample / 'train'}")
    cmd_ingest(app, argparse.Namespace(directory=sample / "train", quiet=True))
    print("\n== 2/4 train on every enrolled photo (the val part is the test set)")
    cmd_train(app, argparse.Namespace(C=10.0, select_c=False, test_size=0.0, seed=42))
    print(f"\n== 3/4 evaluate on {sample / 'val'}")
    report = app.workspace / "demo-evaluation.json"
    cmd_evaluate(app, argparse.Namespace(directory=sample / "val", json=report))
    print("\n== 4/4 identify one val photo of each person")
    photos = [sorted(folder.glob("*.jpg"))[0] for folder in sorted((sample / "val").iterdir())]
    cmd_identify(app, argparse.Namespace(photos=photos, json=False))
    print(f"\nworkspace: {app.workspace} ({app.pipeline.catalog.counts()})")
    return EXIT_OK


def cmd_status(app: App, args) -> int:
    from facerec.storage.local import SqliteCatalog

    catalog = SqliteCatalog(app.workspace / "catalog.sqlite")
    print(json.dumps(catalog.counts()))
    model = catalog.current_model()
    print(f"current model: {model.model_id if model else 'none'}")
    return EXIT_OK


def cmd_serve(app: App, args) -> int:
    from facerec.server import serve

    return serve(app.pipeline, args.host, args.port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facerec", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--workspace",
        type=Path,
        default=Path(os.environ.get("FACEREC_WORKSPACE", "workspace")),
        help="embedded-default storage folder (default: ./workspace)",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(os.environ.get("FACEREC_CACHE_DIR", REPO_ROOT / ".cache")),
        help="where `make setup` put the weights and the sample set",
    )
    parser.add_argument(
        "--crop",
        choices=("aligned", "margin"),
        default="aligned",
        help="face crop: 5-landmark alignment (default, measured better) or "
        "the thesis's box + 32 px margin",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    ingest = commands.add_parser("ingest", help="enrol labelled photos from DIR/<Person>/<photo>")
    ingest.add_argument("directory", type=Path)
    ingest.add_argument("--quiet", action="store_true", help="print only problems and the summary")
    ingest.set_defaults(run=cmd_ingest)

    train = commands.add_parser("train", help="train the SVC on the enrolled faces")
    train.add_argument("--C", type=float, default=10.0, help="SVC regularisation (default 10)")
    train.add_argument(
        "--select-c",
        action="store_true",
        help="choose C by cross-validation over the thesis's grid",
    )
    train.add_argument(
        "--test-size",
        type=float,
        default=0.25,
        help="held-out fraction for evaluation (default 0.25; 0 = train on all)",
    )
    train.add_argument("--seed", type=int, default=42)
    train.set_defaults(run=cmd_train)

    evaluate = commands.add_parser("evaluate", help="evaluate the current model")
    evaluate.add_argument(
        "directory",
        type=Path,
        nargs="?",
        help="labelled photos to test on (default: the held-out part)",
    )
    evaluate.add_argument("--json", type=Path, help="also write the evaluation as JSON here")
    evaluate.set_defaults(run=cmd_evaluate)

    identify = commands.add_parser("identify", help="name every face in photos")
    identify.add_argument("photos", type=Path, nargs="+")
    identify.add_argument("--json", action="store_true", help="print JSON")
    identify.set_defaults(run=cmd_identify)

    demo = commands.add_parser("demo", help="the whole flow on the bundled 5-person sample set")
    demo.set_defaults(run=cmd_demo)

    status = commands.add_parser("status", help="what the workspace holds")
    status.set_defaults(run=cmd_status)

    serve = commands.add_parser("serve", help="POST /identify on localhost (docs/openapi.yaml)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080)
    serve.set_defaults(run=cmd_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    app = App(args.workspace, args.cache_dir, args.crop)
    try:
        return args.run(app, args)
    except FaceRecError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
