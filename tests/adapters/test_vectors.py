"""facerec.storage.vectors.VectorGallery against botocore's Stubber (moto has no QueryVectors): the
exact S3 Vectors requests, and open-set scores equal to facerec.engines.openset's on a Gallery built
from the same vectors."""

from __future__ import annotations

import boto3
import numpy as np
import pytest
from botocore.stub import Stubber

from facerec.core.errors import VectorStoreError
from facerec.engines.gallery import Gallery
from facerec.engines.nearest import VectorNearest
from facerec.engines.openset import open_set_scores
from facerec.storage.vectors import VectorGallery
from tests.factories import unit_vector

BUCKET, FACES, CENTROIDS = "facerec-test-vectors", "faces", "centroids"
PEOPLE = ("Ada_Lovelace", "Alan_Turing", "Grace_Hopper", "Katherine_Johnson", "Margaret_Hamilton")


@pytest.fixture
def stubbed():
    client = boto3.client(
        "s3vectors",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    with Stubber(client) as stubber:
        yield VectorGallery(client, BUCKET, FACES, CENTROIDS), stubber
        stubber.assert_no_pending_responses()


def enrolled(seed: int = 0) -> tuple[list[str], list[str], np.ndarray]:
    """Three faces per person, each person's faces clustered round a direction of their own."""
    rng = np.random.default_rng(seed)
    directions = unit_vector(rng.normal(size=(len(PEOPLE), 128)))
    keys, people, vectors = [], [], []
    for person, direction in zip(PEOPLE, directions, strict=True):
        for n in range(3):
            keys.append(f"{person}/photo{n}-0.png")
            people.append(person)
            vectors.append(direction + 0.4 * rng.normal(size=128) / np.sqrt(128))
    return keys, people, unit_vector(np.array(vectors))


def floats(vector) -> list[float]:
    return np.asarray(vector, dtype=np.float32).tolist()


def query_request(index: str, vector, top_k: int, metadata: bool) -> dict:
    return {
        "vectorBucketName": BUCKET,
        "indexName": index,
        "topK": top_k,
        "queryVector": {"float32": floats(vector)},
        "returnMetadata": metadata,
        "returnDistance": True,
    }


# ---- writes --------------------------------------------------------------------------------


def test_put_faces_sends_keys_people_and_float32_data_in_batches_of_500(stubbed):
    gallery, stubber = stubbed
    rng = np.random.default_rng(1)
    vectors = unit_vector(rng.normal(size=(501, 128)))
    keys = [f"Ada_Lovelace/photo{n}-0.png" for n in range(501)]
    people = ["Ada_Lovelace"] * 501
    for batch in (slice(0, 500), slice(500, 501)):
        stubber.add_response(
            "put_vectors",
            {},
            {
                "vectorBucketName": BUCKET,
                "indexName": FACES,
                "vectors": [
                    {
                        "key": key,
                        "data": {"float32": floats(vector)},
                        "metadata": {"person": "Ada_Lovelace"},
                    }
                    for key, vector in zip(keys[batch], vectors[batch], strict=True)
                ],
            },
        )
    assert gallery.put_faces(keys, people, vectors) == 501


def test_delete_faces_batches_keys_by_500(stubbed):
    gallery, stubber = stubbed
    keys = [f"Alan_Turing/photo{n}-0.png" for n in range(1001)]
    for batch in (slice(0, 500), slice(500, 1000), slice(1000, 1001)):
        stubber.add_response(
            "delete_vectors",
            {},
            {"vectorBucketName": BUCKET, "indexName": FACES, "keys": keys[batch]},
        )
    assert gallery.delete_faces(keys) == 1001
    assert gallery.delete_faces([]) == 0  # no call at all


def test_put_centroid_stores_the_normalised_mean_the_gallery_computes(stubbed):
    gallery, stubber = stubbed
    keys, people, vectors = enrolled()
    mine = vectors[:3]
    expected = Gallery().add(keys, people, vectors).centroids(["Ada_Lovelace"])[0]
    stubber.add_response(
        "put_vectors",
        {},
        {
            "vectorBucketName": BUCKET,
            "indexName": CENTROIDS,
            "vectors": [{"key": "Ada_Lovelace", "data": {"float32": floats(expected)}}],
        },
    )
    centroid = gallery.put_centroid("Ada_Lovelace", mine)
    assert centroid.dtype == np.float32 and centroid.shape == (128,)
    np.testing.assert_allclose(centroid, expected, atol=1e-6)
    assert abs(np.linalg.norm(centroid) - 1) < 1e-6


def test_delete_centroid_deletes_the_persons_key(stubbed):
    gallery, stubber = stubbed
    stubber.add_response(
        "delete_vectors",
        {},
        {"vectorBucketName": BUCKET, "indexName": CENTROIDS, "keys": ["Grace_Hopper"]},
    )
    gallery.delete_centroid("Grace_Hopper")


@pytest.mark.parametrize(
    ("call", "args"),
    [
        ("put_faces", (["a/b-0.png"], ["a"], np.ones((1, 64)))),
        ("put_faces", (["a/b-0.png", "c"], ["a"], unit_vector(np.ones((1, 128))))),
        ("put_faces", (["a/b-0.png"], [""], unit_vector(np.ones((1, 128))))),
        ("put_centroid", ("a", np.zeros((0, 128)))),
        ("nearest_face", (np.ones(128),)),  # not unit length
        ("nearest_centroids", (np.ones(128), 3)),
    ],
)
def test_bad_shapes_are_refused_before_any_call(stubbed, call, args):
    gallery, _ = stubbed
    with pytest.raises(ValueError):
        getattr(gallery, call)(*args)


# ---- search --------------------------------------------------------------------------------


def stub_search(stubber, keys, people, vectors, queries, cohort) -> None:
    """The responses S3 Vectors gives (exact nearest neighbours, cosine distance = 1 - cos),
    queued in the order VectorGallery.search asks, with the exact requests it must send."""
    centroids = Gallery().add(keys, people, vectors).centroids(list(PEOPLE))
    labels = []
    for query in queries:
        nearest = int(np.argmax(vectors @ query))
        labels.append(people[nearest])
        stubber.add_response(
            "query_vectors",
            {
                "vectors": [
                    {
                        "key": keys[nearest],
                        "distance": float(1 - vectors[nearest] @ query),
                        "metadata": {"person": people[nearest]},
                    }
                ],
                "distanceMetric": "cosine",
            },
            query_request(FACES, query, 1, metadata=True),
        )
    wanted = sorted(set(labels))
    stubber.add_response(
        "get_vectors",
        {
            "vectors": [
                {"key": name, "data": {"float32": floats(centroids[PEOPLE.index(name)])}}
                for name in wanted
            ]
        },
        {
            "vectorBucketName": BUCKET,
            "indexName": CENTROIDS,
            "keys": wanted,
            "returnData": True,
            "returnMetadata": False,
        },
    )
    for query in queries:
        similarities = centroids @ query
        order = np.argsort(-similarities)[: cohort + 1]
        stubber.add_response(
            "query_vectors",
            {
                "vectors": [
                    {"key": PEOPLE[i], "distance": float(1 - similarities[i])} for i in order
                ],
                "distanceMetric": "cosine",
            },
            query_request(CENTROIDS, query, cohort + 1, metadata=False),
        )


@pytest.mark.parametrize("cohort", [0, 2, 20])  # 20: more than the 4 other people enrolled
def test_search_gives_the_open_set_scores_of_the_in_process_gallery(stubbed, cohort):
    gallery, stubber = stubbed
    keys, people, vectors = enrolled()
    rng = np.random.default_rng(7)
    # Two probes near enrolled faces, two strangers.
    queries = unit_vector(
        np.vstack([vectors[[1, 7]] + 0.3 * rng.normal(size=(2, 128)) / np.sqrt(128)])
    )
    queries = np.vstack([queries, unit_vector(rng.normal(size=(2, 128)))])
    stub_search(stubber, keys, people, vectors, queries, cohort)

    labels, scores = VectorNearest(gallery, None, cohort).search(queries)

    reference = Gallery().add(keys, people, vectors)
    expected_labels = reference.search(queries, 1)[0][:, 0]
    expected_scores = open_set_scores(reference, queries, expected_labels, cohort)
    assert labels.tolist() == expected_labels.tolist()
    assert labels[:2].tolist() == ["Ada_Lovelace", "Grace_Hopper"]
    assert scores.dtype == np.float32 and scores.shape == (4,)
    np.testing.assert_allclose(scores, expected_scores, atol=1e-5)


def test_an_empty_faces_index_answers_unknown_with_minus_infinity(stubbed):
    gallery, stubber = stubbed
    query = unit_vector(np.ones((1, 128)))
    stubber.add_response(
        "query_vectors",
        {"vectors": [], "distanceMetric": "cosine"},
        query_request(FACES, query[0], 1, metadata=True),
    )
    labels, scores = VectorNearest(gallery, None).search(query)
    assert labels.tolist() == ["unknown"]
    assert scores.dtype == np.float32 and scores.tolist() == [-np.inf]


def test_a_label_whose_centroid_is_not_written_yet_scores_minus_infinity(stubbed):
    gallery, stubber = stubbed
    query = unit_vector(np.ones((1, 128)))
    stubber.add_response(
        "query_vectors",
        {
            "vectors": [
                {"key": "Ada_Lovelace/a-0.png", "distance": 0.1, "metadata": {"person": "Ada"}}
            ],
            "distanceMetric": "cosine",
        },
        query_request(FACES, query[0], 1, metadata=True),
    )
    stubber.add_response("get_vectors", {"vectors": []})
    labels, scores = VectorNearest(gallery, None).search(query)
    assert labels.tolist() == ["Ada"] and scores.tolist() == [-np.inf]


def test_a_missing_index_is_a_clear_error(stubbed):
    gallery, stubber = stubbed
    stubber.add_client_error(
        "query_vectors",
        service_error_code="NotFoundException",
        service_message="The specified index could not be found",
        http_status_code=404,
    )
    with pytest.raises(VectorStoreError, match=r"'facerec-test-vectors'.*'faces' does not exist"):
        VectorNearest(gallery, None).search(unit_vector(np.ones((1, 128))))


def test_throttling_is_left_to_the_caller(stubbed):
    gallery, stubber = stubbed
    stubber.add_client_error(
        "put_vectors", service_error_code="TooManyRequestsException", http_status_code=429
    )
    with pytest.raises(gallery.client.exceptions.TooManyRequestsException):
        gallery.put_centroid("Ada_Lovelace", unit_vector(np.ones((1, 128))))


# ---- settings and services ---------------------------------------------------------------------


def test_the_functions_settings_name_the_vector_bucket_and_indexes():
    from functions.settings import Settings, SettingsError
    from tests.support import ENV

    settings = Settings.from_env(ENV)
    assert (settings.vector_bucket, settings.face_vector_index) == (ENV["VECTOR_BUCKET"], "faces")
    assert settings.centroid_vector_index == "centroids"
    # only the forget functions get one each
    assert settings.training_state_machine_arn == settings.forget_state_machine_arn == ""
    arn = "arn:aws:states:us-east-1:123456789012:stateMachine:facerec-test-training"
    with_arn = Settings.from_env({**ENV, "TRAINING_STATE_MACHINE_ARN": arn})
    assert with_arn.training_state_machine_arn == arn
    forget = arn.replace("training", "forget")
    assert Settings.from_env(
        {**ENV, "FORGET_STATE_MACHINE_ARN": forget}
    ).forget_state_machine_arn == (forget)
    for name in ("VECTOR_BUCKET", "FACE_VECTOR_INDEX", "CENTROID_VECTOR_INDEX"):
        environ = {key: value for key, value in ENV.items() if key != name}
        with pytest.raises(SettingsError, match=name):
            Settings.from_env(environ)


def test_services_build_the_vector_gallery_on_an_s3vectors_client(assets):
    from functions.services import Services
    from functions.settings import Settings
    from tests.support import ENV

    session = boto3.session.Session(
        region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    settings = Settings.from_env({**ENV, "MODELS_DIR": str(assets.models)})
    services = Services(settings, session=session)
    vectors = services.stores.vectors
    assert vectors is services.stores.vectors  # built once per container
    assert vectors.client is services.s3vectors
    assert vectors.client.meta.service_model.service_name == "s3vectors"
    assert (vectors.bucket_name, vectors.faces_index, vectors.centroids_index) == (
        ENV["VECTOR_BUCKET"],
        "faces",
        "centroids",
    )
    assert services.stepfunctions.meta.service_model.service_name == "stepfunctions"
