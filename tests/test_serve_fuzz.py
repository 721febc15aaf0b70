"""Schemathesis over the OpenAPI schema of `genlab serve`: generated requests, valid and not, never get a 5xx."""

import os

import pytest
import schemathesis
from conftest import tiny_chat_config, tiny_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genlab.config import config_from_dict
from genlab.pipeline import train_config
from genlab.serve.app import create_app
from genlab.serve.keys import KeyStore
from genlab.serve.limits import Limits

TOKEN = {}


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    train_config(tiny_config("vae", name="digits"), root)
    corpus = root / "corpus"
    corpus.write_text("\n%\n".join(f"The quick brown fox {i} jumps." for i in range(40)) + "\n")
    train_config(config_from_dict({"name": "fox", "family": "gpt", "model": {"layers": 1, "heads": 2, "width": 16},
                                   "data": {"source": "fortune", "path": str(corpus), "block_size": 16},
                                   "train": {"steps": 5, "batch_size": 8, "val_every": 0}}), root)
    train_config(tiny_chat_config(root, steps=5), root)
    store = KeyStore(root / "keys.json")
    TOKEN["value"] = store.add("fuzz")[1]
    limits = Limits(requests_per_minute=1e9, burst=10**9, concurrent=64, max_images=8, max_new_tokens=16,
                    max_text_samples=2)
    return create_app([root / "digits", root / "fox", root / "talk"], store, limits)


FUZZ_EXAMPLES = int(os.environ.get("GENLAB_FUZZ_EXAMPLES", "40"))


def test_no_request_gets_a_server_error(api):
    """Every operation of the schema, 40 generated cases each (bodies from the schema, model names mostly
    real), with the key and without. Derandomized so CI is repeatable; hunt with fresh cases by running
    `GENLAB_FUZZ_EXAMPLES=2000 GENLAB_FUZZ_RANDOM=1 pytest tests/test_serve_fuzz.py`."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", api)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/models", "/v1/models/{name}/images", "/v1/models/{name}/text",
                                              "/v1/completions", "/v1/chat/completions"}
    for op in operations:

        @given(case=op.as_strategy(), name=st.sampled_from(["digits", "fox", "talk", "fox", "missing"]))
        @settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
                  database=None, derandomize=not os.environ.get("GENLAB_FUZZ_RANDOM"))
        def check(case, name):
            if case.path_parameters and "name" in case.path_parameters:
                case.path_parameters["name"] = name  # mostly real models, so requests reach them
            if isinstance(case.body, dict) and "model" in case.body:
                case.body["model"] = name  # OpenAI's routes name the model in the body
            for headers in ({"Authorization": f"Bearer {TOKEN['value']}"}, {}):
                response = case.call(headers=headers)
                assert response.status_code < 500, (case.method, case.formatted_path, case.body,
                                                     response.text[:300])

        check()


def test_non_finite_and_huge_numbers_in_every_numeric_field_are_4xx(api):
    """JSON allows NaN, Infinity and integers of any size in practice; every numeric field of every request body
    in the schema gets each of them (the rest of the body valid), and the answer is a 4xx with a message."""
    from fastapi.testclient import TestClient

    client = TestClient(api)
    schema = client.get("/openapi.json").json()
    auth = {"Authorization": f"Bearer {TOKEN['value']}", "content-type": "application/json"}
    checked = 0
    for path, methods in schema["paths"].items():
        body_ref = methods.get("post", {}).get("requestBody", {}).get("content", {}).get("application/json", {})
        ref = body_ref.get("schema", {}).get("$ref")
        if ref is None:
            continue
        fields = schema["components"]["schemas"][ref.split("/")[-1]]["properties"]
        for field, spec in fields.items():
            kinds = {spec.get("type")} | {a.get("type") for a in spec.get("anyOf", [])}
            if not kinds & {"integer", "number"}:
                continue
            for name in ("digits", "fox", "talk"):
                model = f', "model": "{name}"' if "model" in fields else ""  # OpenAI's routes: in the body
                for raw in ("NaN", "Infinity", "-Infinity", "1" + "0" * 30, "-" + "9" * 25):
                    r = client.post(path.replace("{name}", name), content=f'{{"{field}": {raw}{model}}}',
                                    headers=auth)
                    body = r.json()  # genlab's {"detail"}, or OpenAI's {"error": {"message"}} on its routes
                    message = body.get("detail") or body.get("error", {}).get("message")
                    assert 400 <= r.status_code < 500 and message, (path, name, field, raw, r.text[:200])
                    checked += 1
    assert checked >= 5 * 2 * 10  # images: n, seed, label, steps, guidance, eta; text: n, seed, max_tokens, ...
