"""Against a real AWS account (`pytest --run-aws`, with credentials and a region where S3
Vectors runs): the vector gallery in a temporary vector bucket gives the same labels and
open-set scores as the in-process gallery on the same vectors (which also checks that S3
Vectors' cosine distance is 1 - cosine similarity), and forgets a person. Skipped by
default; never faked."""

from __future__ import annotations

import contextlib
import uuid

import boto3
import numpy as np
import pytest

from facerec.engines.gallery import Gallery
from facerec.engines.nearest import VectorNearest
from facerec.engines.openset import open_set_scores
from facerec.storage.vectors import VectorGallery
from tests.factories import unit_vector

pytestmark = pytest.mark.aws


def test_search_matches_the_in_process_gallery_and_forget_empties_it():
    client = boto3.client("s3vectors")
    bucket = f"facerec-test-{uuid.uuid4().hex[:12]}"
    client.create_vector_bucket(vectorBucketName=bucket)
    indexes = ("faces", "centroids")
    try:
        for index in indexes:
            client.create_index(
                vectorBucketName=bucket,
                indexName=index,
                dataType="float32",
                dimension=128,
                distanceMetric="cosine",
            )
        rng = np.random.default_rng(0)
        centres = unit_vector(rng.normal(size=(6, 128)))
        people = np.repeat([f"person_{n}" for n in range(6)], 4)
        faces = unit_vector(centres[np.repeat(np.arange(6), 4)] + 0.4 * rng.normal(size=(24, 128)))
        keys = [f"{person}/photo{n}-0.png" for n, person in enumerate(people)]
        store = VectorGallery(client, bucket, *indexes)
        store.put_faces(keys, people, faces)
        for person in np.unique(people):
            store.put_centroid(person, faces[people == person])
        queries = unit_vector(centres + 0.4 * rng.normal(size=(6, 128)))

        labels, scores = VectorNearest(store, None, cohort=3).search(queries)

        gallery = Gallery().add(np.array(keys), people, faces)
        expected = gallery.search(queries, 1)[0][:, 0]
        assert labels.tolist() == expected.tolist()
        np.testing.assert_allclose(
            scores, open_set_scores(gallery, queries, expected, cohort=3), atol=1e-4
        )

        store.delete_faces([key for key in keys if key.startswith("person_0/")])
        store.delete_centroid("person_0")
        labels, _ = store.search(queries[:1], cohort=3)
        assert labels[0] != "person_0"
    finally:
        for index in indexes:
            with contextlib.suppress(client.exceptions.NotFoundException):
                client.delete_index(vectorBucketName=bucket, indexName=index)
        client.delete_vector_bucket(vectorBucketName=bucket)
