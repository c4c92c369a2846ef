"""Malformed requests to the studio's JSON API: each gets a 4xx with a sentence that names the fix, never a 500,
and nothing is changed by a request that was refused (no settings saved for a training that did not start)."""

from __future__ import annotations

import io
import json
import random

import numpy as np
import pytest

pytest.importorskip("aiohttp")
requests = pytest.importorskip("requests")
soundfile = pytest.importorskip("soundfile")

from tests.studio.test_studio import StudioProcess  # noqa: E402

WRONG_VALUES = ["abc", "", [1], {"a": 1}, True, None, -1, 0, 1e308, "x" * 100_000, [[[[[]]]]]]
NOT_OBJECTS = [b"not json", b"{", b"[]", b"1", b"null", b'"text"', b"\xff\xfe", b""]


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    server = StudioProcess(tmp_path_factory.mktemp("fuzz") / "project")
    t = np.arange(2 * 22050) / 22050
    audio = io.BytesIO()
    soundfile.write(audio, (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), 22050, format="WAV")
    added = server.send("POST", "/api/recordings", files={"file": ("take.1.wav", audio.getvalue())})
    assert added.status_code == 200, added.text
    yield server
    server.stop()


def refused(response) -> str:
    """The error sentence of a 4xx answer (fails on a 2xx or a 5xx)."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    error = response.json()["error"]
    assert isinstance(error, str) and len(error) > 10
    return error


JSON_ROUTES = [("POST", "/api/train"), ("POST", "/api/deploy"), ("POST", "/api/status"),
               ("PUT", "/api/recordings/take.1/regions"), ("POST", "/api/midi/learn"), ("POST", "/api/midi/controls")]


@pytest.mark.parametrize(("method", "path"), JSON_ROUTES)
@pytest.mark.parametrize("body", NOT_OBJECTS)
def test_a_body_that_is_not_a_json_object_is_refused_with_what_to_send(studio, method, path, body):
    error = refused(studio.send(method, path, data=body, headers={"X-Studio-Token": studio.token,
                                                                   "Content-Type": "application/json"}))
    assert "JSON" in error


@pytest.mark.parametrize(("method", "path", "key"), [
    ("POST", "/api/train", "minutes"), ("POST", "/api/train", "advanced"), ("POST", "/api/deploy", "hosts"),
    ("POST", "/api/deploy", "run"), ("POST", "/api/status", "hosts"), ("PUT", "/api/recordings/take.1/regions", "regions"),
    ("POST", "/api/midi/learn", "target"), ("POST", "/api/midi/controls", "set"),
])
def test_every_field_with_a_wrong_type_or_size_is_refused(studio, method, path, key):
    for value in WRONG_VALUES:
        response = studio.send(method, path, data=json.dumps({key: value}),
                               headers={"X-Studio-Token": studio.token, "Content-Type": "application/json"})
        if response.status_code == 200:  # a value of the right type that is simply allowed (regions: [])
            continue
        refused(response)


def test_random_json_objects_never_get_a_500(studio):
    rng = random.Random(3)
    atoms = [0, 1, -1, 0.5, 1e30, "", "a", "@room", "--out", "run-20260101-000000", None, True, [], {}]
    keys = ["minutes", "advanced", "hosts", "run", "regions", "target", "set", "x"]
    for _ in range(150):
        body = {rng.choice(keys): rng.choice(atoms + [[rng.choice(atoms) for _ in range(3)]]) for _ in range(3)}
        for method, path in JSON_ROUTES:
            if path == "/api/train" and isinstance(body.get("minutes"), int | float) and 0.2 <= body["minutes"] <= 120 \
                    and not body.get("advanced"):
                continue  # a valid training request: not what this test is about
            response = studio.send(method, path, json=body)
            assert response.status_code < 500, (method, path, body, response.text[:300])


def test_an_upload_that_is_not_a_file_is_refused(studio):
    assert "multipart" in refused(studio.send("POST", "/api/recordings", data=b"raw bytes"))
    assert "no file" in refused(studio.send("POST", "/api/recordings", files={"note": (None, "text only")}))


def test_a_training_that_did_not_start_saves_no_settings(tmp_path):
    server = StudioProcess(tmp_path / "project")  # no recordings: nothing to learn from
    try:
        before = server.get("/api/state").json()["settings"]
        assert "nothing to learn from" in refused(server.send("POST", "/api/train", json={"minutes": 7.5}))
        assert server.get("/api/state").json()["settings"] == before
    finally:
        server.stop()
