"""``facerec``: enrol, train, evaluate and identify on the embedded default (no AWS account).

Exit codes: 0 done; 1 error, one line on stderr (a full disk, a read-only workspace, a
missing or corrupt model or weights file: each names its file); 2 bad usage; 3 done, but some
photos were rejected or had no face (``ingest``, ``evaluate DIR``, ``identify``); 141 the
reader of stdout left early (a closed pipe, as for a tool ended by SIGPIPE).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from contextlib import closing
from pathlib import Path

from facerec.core.errors import FaceRecError, ModelIntegrityError, WorkspaceError
from facerec.core.settings import (
    CLASSIFIER_CHOICES,
    CROP_METHODS,
    DEFAULT_CROP_METHOD,
    DEFAULT_PRECISION,
    PRECISIONS,
    SVC_MAX_PEOPLE,
    TrainOptions,
)

REPO_ROOT = Path(__file__).resolve().parents[3]  # layers/facerec/interfaces/cli.py
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3
EXIT_BROKEN_PIPE = 128 + 13  # as a shell reports a tool ended by SIGPIPE
# An evaluation of more people than this prints its worst classes and largest confusions, not
# every class and the whole matrix (`--json FILE` keeps everything).
TERMINAL_CLASSES = 20


class App:
    """Holds the paths and builds the local deployment (slow to load: the models) once, on
    first use. ``routing_threshold``: the hybrid engine's override (None: the model's)."""

    def __init__(
        self,
        workspace: Path,
        cache_dir: Path,
        crop_method: str,
        routing_threshold: float | None = None,
        precision: str = DEFAULT_PRECISION,
    ):
        self.workspace, self.cache_dir, self.crop_method = workspace, cache_dir, crop_method
        self.routing_threshold, self.precision = routing_threshold, precision
        self._local = None

    @property
    def local(self):
        if self._local is None:
            from facerec.core.settings import AnalysisSettings
            from facerec.interfaces.local import LocalDeployment
            from facerec.vision.analyser import build_analyser
            from facerec.vision.assets import AssetPaths

            settings = AnalysisSettings(crop_method=self.crop_method, precision=self.precision)
            analyser = build_analyser(AssetPaths(self.cache_dir).models, settings)
            self._local = LocalDeployment(self.workspace, analyser, self.routing_threshold)
        return self._local

    def close(self) -> None:
        """Close the deployment's catalog, if one was opened (its SQLite write-ahead log is
        checkpointed now, not whenever the garbage collector gets to it)."""
        if self._local is not None:
            self._local.stores.catalog.close()


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

    if not args.directory.is_dir():
        raise FaceRecError(f"{args.directory} is not a folder; expected DIR/<Person>/<photo>")
    skipped: list[str] = []
    total = sum(1 for path in args.directory.rglob("*") if not path.is_dir())
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

    outcomes = app.local.ingest_folder(args.directory, on_outcome=report, on_skip=skip)
    progress.close()
    statuses = Counter(outcome.status for outcome in outcomes)
    reasons = Counter(outcome.code for outcome in outcomes if outcome.status == "rejected")
    faces = sum(outcome.faces for outcome in outcomes if outcome.status == "enrolled")
    print(
        f"\n{len(outcomes) + len(skipped)} files: {statuses['enrolled']} enrolled "
        f"({faces} faces found), {statuses['unchanged']} unchanged, "
        f"{statuses['duplicate']} duplicates, {statuses['no_face']} with no face, "
        f"{statuses['rejected']} rejected, {len(skipped)} skipped (not a photo in a person folder)"
    )
    for code, count in reasons.most_common():
        print(f"  rejected {code}: {count}")
    problems = statuses["no_face"] + statuses["rejected"] + len(skipped)
    return EXIT_PARTIAL if problems else EXIT_OK


def cmd_train(app: App, args) -> int:
    from facerec.core.metrics import render_markdown

    skipped: list[str] = []
    model, evaluation = app.local.train(
        TrainOptions(
            C=args.C,
            select_c=args.select_c,
            test_size=args.test_size,
            seed=args.seed,
            far=args.far,
            classifier=args.classifier,
        ),
        args.strangers,
        lambda path, reason: skipped.append(path),
    )
    meta = model.metadata
    print(
        f"model {model.model_id}: {len(meta['labels'])} people, "
        f"{meta['split']['train_faces']} training faces, C = {meta['classifier']['C']}, "
        f"{meta['cv']['folds']}-fold CV accuracy {meta['cv']['mean']:.3f} "
        f"(+/- {meta['cv']['std']:.3f}), crop {meta['crop']['method']}"
    )
    calibration = meta["open_set"]
    print(
        f'"unknown" calibrated to a {calibration["far_target"]:g} false-accept rate on '
        f"{calibration['impostor_scores']} {calibration['method']} scores"
        + (f" ({len(skipped)} files in {args.strangers} skipped)" if skipped else "")
    )
    if evaluation is not None:
        print(
            render_markdown(
                evaluation,
                f"Held-out {args.test_size:.0%} ({evaluation['faces']} faces)",
                TERMINAL_CLASSES,
            )
        )
    return EXIT_OK


def cmd_evaluate(app: App, args) -> int:
    from facerec.core.metrics import render_markdown
    from facerec.flows.enrol import read_labelled_folder

    local = app.local
    if args.directory is None:
        evaluation, title = local.evaluate_holdout(), "Held-out part of the enrolled photos"
    else:
        skipped = []
        evaluation = local.evaluate_photos(
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
    print(render_markdown(evaluation, title, TERMINAL_CLASSES))
    if args.json:
        args.json.write_text(json.dumps(evaluation, indent=2, ensure_ascii=False))
        print(f"evaluation written to {args.json}")
    return EXIT_PARTIAL if evaluation.get("refused") else EXIT_OK


def cmd_identify(app: App, args) -> int:
    from tqdm import tqdm

    from facerec.flows.identify import identify_photos
    from facerec.interfaces.http import ENGINE_CHOICES
    from facerec.vision.images import read_photo

    results, failed = {}, 0
    engines = ENGINE_CHOICES[args.engine]
    needs_model = "facenet" in engines or "hybrid" in engines
    if needs_model:
        _check_model_matches_run(app)  # before the models load
    local = app.local
    if needs_model:
        local.current_model()  # missing weights or model stop here, before any photo
    limits = local.settings.image_limits

    def read(photo: Path) -> bytes | Exception:
        try:
            return read_photo(photo, limits)
        except (FaceRecError, OSError) as error:
            return error

    def text(photo: Path, result: dict) -> list[str]:
        if "error" in result:
            return [f"{photo}: {result['error']}: {result['message']}"]
        lines = []
        for face in result["faces"]:
            box = face["box"]
            answers = "; ".join(
                f"{engine} {_describe_answer(face[engine])}" for engine in engines if engine in face
            )
            lines.append(
                f"{photo}: x={box['left']} y={box['top']} w={box['width']} "
                f"h={box['height']}: {answers}"
            )
        return lines

    progress = tqdm(
        total=len(args.photos),
        unit="photo",
        desc="identify",
        file=sys.stderr,
        disable=not (args.progress or sys.stderr.isatty()),
    )
    answered = identify_photos(local.analyser, local.engines, engines, map(read, args.photos))
    with closing(answered), closing(progress):
        for photo, outcome in zip(args.photos, answered, strict=True):
            if isinstance(outcome, Exception):
                failed += 1
                code = getattr(outcome, "code", "unreadable")
                outcome = {"error": code, "message": str(outcome)}
            results[str(photo)] = outcome
            progress.update(1)
            if args.jsonl:
                line = json.dumps({"photo": str(photo), **outcome}, ensure_ascii=False)
                progress.write(line, file=sys.stdout)
            elif not args.json:
                for line in text(photo, outcome):
                    progress.write(line, file=sys.stdout)
            sys.stdout.flush()
    if args.json:
        print(json.dumps(results, indent=2, ensure_ascii=False))
    return EXIT_PARTIAL if failed else EXIT_OK


def _check_model_matches_run(app: App) -> None:
    """Refuse a current model trained on other crops than this run's ``--crop``, or on
    embeddings of another ``--precision``: its SVC and threshold would score this run's
    embeddings wrongly."""
    from facerec.flows.train import model_keys
    from facerec.storage.local import local_stores
    from facerec.vision.embedding import trained_precision

    stores = local_stores(app.workspace)
    with closing(stores.catalog):
        model = stores.catalog.current_model()
    if model is None:
        return  # refused later, as no model at all
    key = model_keys(model.model_id)["metadata"]
    try:
        metadata = json.loads(stores.models.get(key))
        trained, precision = metadata["crop"]["method"], trained_precision(metadata)
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ModelIntegrityError(
            f"model metadata {key!r} in the models store is not the JSON training wrote "
            "(no crop method): damaged; restore it or retrain (`facerec train`)"
        ) from None
    if trained != app.crop_method:
        raise FaceRecError(
            f"the current model {model.model_id} was trained on {trained} crops; this run "
            f"uses --crop {app.crop_method}: run identify with --crop {trained} "
            f"(or train a model with --crop {app.crop_method})"
        )
    if precision != app.precision:
        raise FaceRecError(
            f"the current model {model.model_id} was trained on {precision} embeddings; this "
            f"run uses --precision {app.precision}: run identify with --precision {precision}, "
            f"or switch: `facerec --precision {app.precision} reembed`, then `facerec "
            f"--precision {app.precision} train`"
        )


def _describe_answer(answer: dict) -> str:
    """One engine's answer for one face, for the terminal: ``Alice (score 0.52)``, or for an
    unknown face with a best match ``unknown (score 0.21; closest: Alice 0.21)``."""
    scores = [
        f"{name} {answer[name]:.2f}"
        for name in ("probability", "score", "similarity")
        if answer.get(name) is not None
    ]
    parts = [", ".join(scores)] if scores else []
    candidate = answer.get("candidate")
    if candidate is not None:
        score = "" if candidate["score"] is None else f" {candidate['score']:.2f}"
        parts.append(f"closest: {candidate['person']}{score}")
    via = f" via {answer['engine']}" if "engine" in answer else ""
    return f"{answer['person']}{via} ({'; '.join(parts)})"


def cmd_forget(app: App, args) -> int:
    from facerec.flows.forget import found_anything

    deleted = app.local.forget(args.person)
    print(json.dumps(deleted, indent=2, ensure_ascii=False))
    if not found_anything(deleted):  # exit 0 still: the person is gone, as asked
        print(f"nobody named {deleted['person']!r} was found: nothing deleted", file=sys.stderr)
    return EXIT_OK


def cmd_demo(app: App, args) -> int:
    from facerec.vision.assets import AssetPaths

    sample = AssetPaths(app.cache_dir).sample_set
    print(f"== 1/5 ingest {sample / 'train'}")
    cmd_ingest(app, _arguments("ingest", sample / "train", "--quiet"))
    print("\n== 2/5 train, holding out a seeded 25 % of the enrolled faces")
    cmd_train(app, _arguments("train"))
    print(f"\n== 3/5 evaluate on {sample / 'val'} (photos never enrolled)")
    evaluation = app.workspace / "demo-evaluation.json"
    cmd_evaluate(app, _arguments("evaluate", sample / "val", "--json", evaluation))
    print("\n== 4/5 identify one val photo of each person, with every engine")
    photos = [sorted(folder.glob("*.jpg"))[0] for folder in sorted((sample / "val").iterdir())]
    cmd_identify(app, _arguments("identify", *photos, "--engine", "all"))
    print(f"\nworkspace: {app.workspace} ({app.local.stores.catalog.counts()})")
    print("\n== 5/5 compare the engines on the held-out faces: the report")
    return cmd_report(app, report_defaults())


def _arguments(command: str, *argv) -> argparse.Namespace:
    """A subcommand's arguments as the command line would give them (its defaults)."""
    return build_parser().parse_args([command, *map(str, argv)])


def _rekognition_run(args, training_faces, held_out, read_crop):
    """Rekognition's run on the held-out faces and the gallery indexed for it, or a run that
    says why it did not run (not requested, no collection, no credentials, an AWS error)."""
    from facerec.analysis.comparison import rekognition_unavailable, run_rekognition
    from facerec.flows.evaluate import EngineRun

    if "rekognition" not in args.engines:
        return EngineRun("rekognition", reason="not requested (--engines facenet)"), None
    if not args.collection:
        reason = (
            "no collection given: run `facerec report --collection ID` with AWS credentials "
            "(the collection is created if absent; --cleanup removes what the report indexed)"
        )
        return EngineRun("rekognition", reason=reason), None
    import boto3

    session = boto3.session.Session()
    reason = rekognition_unavailable(session)
    if reason:
        return EngineRun("rekognition", reason=reason), None
    print(f"indexing {len(training_faces)} training crops into collection {args.collection}")
    client = session.client("rekognition")
    return run_rekognition(client, args.collection, training_faces, held_out, read_crop)


def cmd_report(app: App, args) -> int:
    from facerec.analysis.comparison import compare_model
    from facerec.analysis.report.html import render
    from facerec.analysis.report.numbers import duration
    from facerec.flows import train
    from facerec.storage.rekognition import FaceCollection, cleanup

    local = app.local
    stores, model = local.stores, local.current_model()
    training_set = train.gather(stores.catalog, local.settings.crop_method)
    _, held_out = train.held_out(model, training_set, stores.faces.get)
    runs = train.load_runs(stores.reports, model.model_id, ("facenet", "nearest"))
    if "facenet" not in runs:  # a model published before its runs were stored
        runs = train.evaluate(model, training_set, stores.faces.get)
    held_out_ids = {face.face_id for face in held_out}
    training = [face for face in local.labelled_faces() if face.face_id not in held_out_ids]
    runs["rekognition"], gallery = _rekognition_run(args, training, held_out, stores.faces.get)
    try:
        facenet = local.engines["facenet"]
        comparison = compare_model(
            stores, local.analyser, facenet, model, runs, args.lambda_memory_mb, args.volumes
        )
    finally:
        if args.cleanup and gallery is not None:
            import boto3

            collection = FaceCollection(boto3.client("rekognition"), gallery.collection_id)
            done = cleanup(collection, gallery)
            print(
                f"cleanup: {done['faces_deleted']} faces deleted from {gallery.collection_id}"
                + (", collection deleted" if done["collection_deleted"] else "")
            )
    html, numbers = render(comparison, stores.faces.get, args.target_wrong_rate)
    out = args.out or stores.reports.root / model.model_id / "comparison.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    numbers_path = out.with_suffix(".json")
    numbers_path.write_text(json.dumps(numbers, indent=2, ensure_ascii=False), encoding="utf-8")
    for name, engine_numbers in numbers["engines"].items():
        if engine_numbers["ran"]:
            print(
                f"{name}: accuracy {engine_numbers['accuracy_all']:.3f} "
                f"({engine_numbers['correct']} of {engine_numbers['held_out_faces']} held-out "
                f"faces), {len(engine_numbers['refusals'])} refused, "
                f"{duration(engine_numbers['seconds']['mean'])} per call"
            )
        else:
            print(f"{name}: not run: {engine_numbers['reason']}")
    print(f"numbers: {numbers_path}\nreport: {out}")
    return EXIT_OK


def _engines(value: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in value.split(",") if name.strip())
    unknown = sorted(set(names) - {"facenet", "rekognition"})
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"engines are facenet and rekognition, comma-separated; got {value!r}"
        )
    return names


def _volumes(value: str) -> tuple[int, ...]:
    try:
        volumes = tuple(int(item.replace("_", "")) for item in value.split(","))
    except ValueError:
        volumes = ()
    if not volumes or min(volumes) <= 0:
        raise argparse.ArgumentTypeError(
            f"volumes are positive photo counts a month, comma-separated; got {value!r}"
        )
    return volumes


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    from facerec.analysis.comparison import DEFAULT_VOLUMES
    from facerec.analysis.report.numbers import DEFAULT_TARGET_WRONG_RATE
    from facerec.core.costs import DEFAULT_LAMBDA_MEMORY_MB

    parser.add_argument(
        "--engines",
        type=_engines,
        default=("facenet", "rekognition"),
        help="engines to compare, comma-separated (default facenet,rekognition); FaceNet "
        "always runs, Rekognition only with AWS credentials and --collection",
    )
    parser.add_argument(
        "--collection", help="Rekognition collection for the training crops (created if absent)"
    )
    parser.add_argument(
        "--cleanup",
        action="store_true",
        help="delete the faces the report indexed (and the collection if it created it)",
    )
    parser.add_argument("--out", type=Path, help="HTML file (default: the workspace's reports)")
    parser.add_argument(
        "--volumes",
        type=_volumes,
        default=DEFAULT_VOLUMES,
        help="photos a month for the cost model, comma-separated (default: the price tiers)",
    )
    parser.add_argument(
        "--lambda-memory-mb",
        type=int,
        default=DEFAULT_LAMBDA_MEMORY_MB,
        help=f"memory of the FaceNet identify Lambda (default {DEFAULT_LAMBDA_MEMORY_MB})",
    )
    parser.add_argument(
        "--target-wrong-rate",
        type=float,
        default=DEFAULT_TARGET_WRONG_RATE,
        help="threshold target: at most this fraction of wrong answers accepted (default 0.01)",
    )


def report_defaults() -> argparse.Namespace:
    """The report command's defaults (the demo's report)."""
    parser = argparse.ArgumentParser()
    add_report_arguments(parser)
    return parser.parse_args([])


def cmd_reconcile(app: App, args) -> int:
    from facerec.flows.reconcile import delete_orphan, find_gaps, repair
    from facerec.storage.local import local_stores

    stores = local_stores(app.workspace)
    gaps = find_gaps(stores)
    for gap in gaps:
        print(f"{', '.join(gap.missing):<9} {gap.crop_key}")
    steps = {} if args.dry_run else {"orphan": delete_orphan(stores)}
    result = repair(gaps, steps)
    print(json.dumps(result, ensure_ascii=False))
    unrepaired = sum(result["found"].values()) - sum(result["repaired"].values())
    return EXIT_PARTIAL if unrepaired else EXIT_OK


def cmd_reembed(app: App, args) -> int:
    from tqdm import tqdm

    from facerec.flows.reembed import reembed_stale

    local = app.local
    with tqdm(unit="face", desc="reembed", file=sys.stderr, disable=args.quiet) as progress:

        def advance(done: int, total: int) -> None:
            progress.total = total
            progress.update(done - progress.n)

        result = reembed_stale(
            local.stores.catalog, local.stores.faces, local.analyser.embedder, advance
        )
    print(json.dumps({**result, "embedding_model": local.analyser.embedder.stamp}))
    if result["reembedded"]:
        print(
            f"re-embedded at {app.precision}; train again to use them: "
            f"`facerec --precision {app.precision} train`",
            file=sys.stderr,
        )
    return EXIT_OK


def cmd_status(app: App, args) -> int:
    from facerec.storage.local import SqliteCatalog

    path = app.workspace / "catalog.sqlite"
    try:
        catalog = SqliteCatalog(path)
    except WorkspaceError:  # a read-only workspace: status only reads
        if not path.is_file():
            raise
        catalog = SqliteCatalog(path, read_only=True)
    with closing(catalog):
        print(json.dumps(catalog.counts()))
        model = catalog.current_model()
    print(f"current model: {model.model_id if model else 'none'}")
    return EXIT_OK


def cmd_serve(app: App, args) -> int:
    from facerec.interfaces.local import LocalDeployment
    from facerec.interfaces.server import check_bind, serve

    check_bind(args.host, auth=not args.no_auth)  # before the models load
    analyser = app.local.analyser
    return serve(
        lambda: LocalDeployment(app.workspace, analyser, app.routing_threshold),
        app.workspace,
        args.host,
        args.port,
        auth=not args.no_auth,
        allowed_hosts=args.allow_host,
        threads=args.threads,
    )


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
        choices=CROP_METHODS,
        default=DEFAULT_CROP_METHOD,
        help="face crop: 5-landmark alignment (default, measured better) or "
        "the thesis's box + 32 px margin",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=os.environ.get("FACEREC_PRECISION", DEFAULT_PRECISION),
        help=f"FaceNet's weights in ONNX Runtime (default {DEFAULT_PRECISION}: about 4x faster "
        "than fp32 within 0.003 of its LFW accuracy, bench/RESULTS.md); a gallery embedded "
        "at another precision is re-embedded by `facerec reembed`",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    ingest = commands.add_parser("ingest", help="enrol labelled photos from DIR/<Person>/<photo>")
    ingest.add_argument("directory", type=Path)
    ingest.add_argument("--quiet", action="store_true", help="print only problems and the summary")
    ingest.set_defaults(run=cmd_ingest)

    train = commands.add_parser("train", help="train the classifier on the enrolled faces")
    defaults = TrainOptions()
    train.add_argument(
        "--classifier",
        choices=CLASSIFIER_CHOICES,
        default=defaults.classifier,
        help=(
            "svc: the thesis's one-vs-one SVC; ovr: one linear SVM per person, for thousands "
            f"of people; auto (default): the SVC up to {SVC_MAX_PEOPLE} people"
        ),
    )
    train.add_argument(
        "--C", type=float, default=defaults.C, help=f"SVM regularisation (default {defaults.C:g})"
    )
    train.add_argument(
        "--select-c",
        action="store_true",
        help="choose C by cross-validation over the thesis's grid",
    )
    train.add_argument(
        "--test-size",
        type=float,
        default=defaults.test_size,
        help=f"held-out fraction for evaluation (default {defaults.test_size:g}; 0 = train on all)",
    )
    train.add_argument("--seed", type=int, default=defaults.seed)
    train.add_argument(
        "--far",
        type=float,
        default=defaults.far,
        help=(
            "false-accept rate both engines' unknown thresholds are calibrated to, FaceNet's "
            f"and the nearest engine's (default {defaults.far:g}; kept in the model)"
        ),
    )
    train.add_argument(
        "--strangers",
        type=Path,
        metavar="DIR",
        help=(
            "photos of people never enrolled: every face in them calibrates both thresholds "
            "(at least ceil(10 / far) faces; default: leave-one-person-out, no strangers)"
        ),
    )
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
    output = identify.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print one JSON document at the end")
    output.add_argument(
        "--jsonl",
        action="store_true",
        help='print one JSON object per photo as it is answered, in order: {"photo": PATH, '
        '...} with its faces, or {"photo": PATH, "error": CODE, "message": ...}',
    )
    identify.add_argument(
        "--progress",
        action="store_true",
        help="show a progress bar on stderr even when it is not a terminal",
    )
    identify.add_argument(
        "--engine",
        choices=("facenet", "nearest", "hybrid", "all"),
        default="facenet",
        help="facenet: the SVC with a calibrated unknown (default); nearest: the closest "
        "enrolled faces, no training needed; hybrid: FaceNet, and Rekognition for faces it "
        "is not sure of (Rekognition needs the cloud: locally FaceNet's answer is kept)",
    )
    identify.add_argument(
        "--routing-threshold",
        type=float,
        help="hybrid: route faces whose open-set score is below this "
        "(default: the model's, chosen at training)",
    )
    identify.set_defaults(run=cmd_identify)

    forget = commands.add_parser(
        "forget",
        help="delete a person everywhere (photos, crops, embeddings, models that knew them) "
        "and retrain on the others",
    )
    forget.add_argument("person", help="the person's name, as their photo folder is named")
    forget.set_defaults(run=cmd_forget)

    report = commands.add_parser(
        "report",
        help="compare the engines on the current model's held-out faces: HTML report and JSON",
    )
    add_report_arguments(report)
    report.set_defaults(run=cmd_report)

    demo = commands.add_parser("demo", help="the whole flow on the bundled 5-person sample set")
    demo.set_defaults(run=cmd_demo)

    reconcile = commands.add_parser(
        "reconcile",
        help="list what enrolment left half-done (crops missing or held by no photo) and "
        "repair it (orphan crops deleted); exit 3 when something is left to repair",
    )
    reconcile.add_argument("--dry-run", action="store_true", help="list only, repair nothing")
    reconcile.set_defaults(run=cmd_reconcile)

    reembed = commands.add_parser(
        "reembed",
        help="embed every enrolled face again, from its stored crop, with this run's "
        "--precision (after switching precision; then train again)",
    )
    reembed.add_argument("--quiet", action="store_true", help="no progress bar")
    reembed.set_defaults(run=cmd_reembed)

    status = commands.add_parser("status", help="what the workspace holds")
    status.set_defaults(run=cmd_status)

    serve = commands.add_parser(
        "serve",
        help="the identify API on this machine (docs/openapi.yaml), with a bearer token in "
        "<workspace>/serve-token",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument(
        "--no-auth",
        action="store_true",
        help="serve without the token (refused unless --host is a loopback address)",
    )
    serve.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a Host header name to accept besides localhost, 127.0.0.1, ::1 and --host "
        "(repeatable; e.g. the machine's name when binding 0.0.0.0)",
    )
    serve.add_argument(
        "--threads",
        type=int,
        choices=range(1, 33),
        default=4,
        metavar="N",
        help="requests answered at once, 1 to 32 (default 4: the lowest latency under load on "
        "2 cores, bench/LOAD.md)",
    )
    serve.set_defaults(run=cmd_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    app = App(
        args.workspace,
        args.cache_dir,
        args.crop,
        getattr(args, "routing_threshold", None),
        args.precision,
    )
    try:
        code = args.run(app, args)
        sys.stdout.flush()  # a closed pipe is found here, not at interpreter exit
        return code
    except FaceRecError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader left (`facerec status | head -1`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no flush at exit
        return EXIT_BROKEN_PIPE
    except OSError as error:  # a file the command needed (a missing model file): one line
        print(f"error: {_os_error_line(error)}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        app.close()


def _os_error_line(error: OSError) -> str:
    """An OSError as one line naming its file; a full disk or an unwritable place as the
    storage's WorkspaceError says it."""
    from facerec.storage.local import refusal

    refused = refusal(error)
    if refused is not None:
        return str(refused)
    return f"{error.filename}: {error.strerror}" if error.filename else str(error)


if __name__ == "__main__":
    sys.exit(main())
