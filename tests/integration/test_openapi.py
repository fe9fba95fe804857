"""The web API answers as its OpenAPI description says (frontend_server/openapi.py), in front of a
real TorchServe.

schemathesis generates requests from the description, valid and invalid ones (the image fields
hold the page's sample photos, whole or cut short, or random bytes: tests/support/api_photos.py),
and checks every answer with ``CHECKS``. Then each sample photo in each form of answer goes
through the same checks, so that every successful answer is checked whatever the generator drew.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from itertools import product
from pathlib import Path

import requests
import schemathesis

from handler.protocol import OUTPUTS
from tests.support.images import SAMPLE_PHOTOS

ROOT = Path(__file__).resolve().parents[2]
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
    "negative_data_rejection",
    "unsupported_method",
)
"""No 5xx; the status, media type, headers and body described; an invalid request refused; an
undescribed method refused with the Allow header. Not positive_data_acceptance: it expects any
bytes the image fields' schema allows (random ones too) to be segmented."""
MAX_EXAMPLES = 300
"""Per operation: about 1,000 requests in all, 25 s on a 2-core machine."""
SEED = 20261203
"""Fixed, so that a run can be repeated (schemathesis prints its reproduction of a failure)."""


def readable(output: str) -> str:
    """schemathesis' report without its curl reproductions (a photo each, as escaped bytes)."""
    return "\n".join(line[:300] for line in output.splitlines() if not line.startswith("    curl"))


def test_generated_requests_are_answered_as_described(proxy: str, tmp_path: Path) -> None:
    har = tmp_path / "requests.har"
    run = subprocess.run(
        [
            Path(sys.executable).parent / "st",
            "run",
            f"{proxy}/api/openapi.json",
            f"--checks={','.join(CHECKS)}",
            f"--max-examples={MAX_EXAMPLES}",
            f"--seed={SEED}",
            "--workers=1",  # two cores: more would only queue in TorchServe
            "--generation-database=none",
            "--no-color",
            "--report=har",
            f"--report-har-path={har}",
        ],
        cwd=tmp_path,  # schemathesis keeps a cache folder where it runs
        env={
            **os.environ,
            "SCHEMATHESIS_HOOKS": "tests.support.api_photos",
            "PYTHONPATH": str(ROOT),
        },
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, readable(run.stdout + run.stderr)
    paths = requests.get(f"{proxy}/api/openapi.json", timeout=10).json()["paths"]
    described = sum(len(ops) for path, ops in paths.items() if path != "/api/openapi.json")
    assert f"Tested: {described}" in run.stdout, readable(run.stdout)  # the document: not run
    print(run.stdout[run.stdout.index("SUMMARY") :])  # pytest -rP shows it
    segmented = [
        entry
        for entry in json.loads(har.read_text())["log"]["entries"]
        if entry["request"]["method"] == "POST"
        and entry["request"]["url"].startswith(f"{proxy}/api/segment")
        and entry["response"]["status"] == 200
    ]
    assert segmented, "no generated upload held a photo the model segmented"


def test_each_photo_in_each_form_is_answered_as_described(proxy: str) -> None:
    segment = schemathesis.openapi.from_url(f"{proxy}/api/openapi.json")["/api/segment"]["POST"]
    checks = schemathesis.checks.CHECKS.get_by_names(CHECKS)
    version = requests.get(f"{proxy}/api/model", timeout=30).json()["default_version"]
    queries = [{"output": output} for output in OUTPUTS]
    queries += [{"output": "polygons", "tolerance": 1.5}, {"output": "mask", "version": version}]
    failures = []
    for photo, query in product(SAMPLE_PHOTOS, queries):
        case = segment.Case(
            query=query,
            body={"file": photo},
            media_type="multipart/form-data",
            multipart_content_types={"file": "image/jpeg"},
        )
        response = case.call(base_url=proxy)
        assert response.status_code == 200, (query, response.text)
        try:
            case.validate_response(response, checks=checks)
        except BaseExceptionGroup as group:  # schemathesis' FailureGroup: one per check failed
            failures += [
                f"{query}: {failure.title}: {failure.message}" for failure in group.exceptions
            ]
    assert not failures, "\n".join(failures)
