"""The client against a live observatory (clients/python/run starts one, seeded): reports and
syntheses run, wait, download with their checksums, load into pandas and polars; refusals name
their fields; the worked example runs."""

import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import grpc
import pytest

from observatory_client import Observatory, ObservatoryError, OutputCorrupted, Run

FRAMEWORK = "0193a000-0000-7000-8000-000000000002"  # concizumab's early access, MHEMO


@pytest.fixture(scope="module")
def obs():
    with Observatory(os.environ["OBSERVATORY_ADDRESS"], os.environ["OBSERVATORY_TOKEN"], tls=False) as o:
        yield o


@pytest.fixture(scope="module")
def report(obs) -> Run:
    return obs.wait(obs.run_report("2026-Q3", filiere="MHEMO", idempotency_key="pytest-report"))


def test_a_report_runs_and_its_tables_load_into_pandas_and_polars(obs, report):
    assert report.status == "SUCCEEDED" and len(report.snapshot_hash) == 64
    assert "activity" in report.tables() and "persistence_drug" in report.tables()
    activity = obs.table(report, "activity")
    # Names beside codes.
    assert list(activity.columns[:9]) == [
        "pathway", "drug_atc", "drug_name", "orpha_code", "disease_name", "centre_finess", "centre_name",
        "region_code", "region_name",
    ]
    assert len(activity) > 0
    assert all(str(d).startswith("B02") for d in activity["drug_atc"]), "only MHEMO drugs"
    persistence = obs.table(report, "persistence_drug", library="polars")
    assert persistence.height > 0 and "median_ci_low" in persistence.columns
    # Published counts are never below the threshold.
    for value in activity["active_patients"]:
        assert value in ("<10", "suppressed") or int(value) >= 10


def test_the_same_idempotency_key_answers_the_same_run(obs, report):
    again = obs.run_report("2026-Q3", filiere="MHEMO", idempotency_key="pytest-report")
    assert again.id == report.id
    assert any(r.id == report.id for r in obs.runs())


def test_a_synthesis_runs_and_its_word_document_downloads(obs):
    run = obs.wait(obs.run_synthesis(framework_id=FRAMEWORK, start="2026-01-01", end="2026-06-30", language="en"))
    assert run.synthesis and run.framework_id == FRAMEWORK and run.language == "en"
    docx = obs.download(run, "synthesis.docx")
    with zipfile.ZipFile(io.BytesIO(docx)) as z:
        document = z.read("word/document.xml").decode()
    assert "Periodic synthesis" in document and "Benefit/risk reading" in document
    efficacy = obs.table(run, "efficacy")
    assert set(efficacy["timepoint"]) >= {"baseline", "M6"}


def test_refusals_name_their_fields(obs):
    with pytest.raises(ObservatoryError) as refused:
        obs.run_report("2026-Q5", filiere="MHEMO")
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.fields == ["period"]
    assert refused.value.violations[0].reason == "BAD_FORMAT"
    with pytest.raises(ObservatoryError) as refused:
        obs.run_synthesis(framework_id=FRAMEWORK, start="2026-01-01", end="2026-06-30", language="de")  # type: ignore[arg-type]
    assert "language" in refused.value.fields
    with pytest.raises(ObservatoryError) as refused:
        obs.download("0193a000-0000-7000-8000-0000000000ff", "manifest.json")
    assert refused.value.code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.NOT_FOUND)


def test_an_output_that_is_not_published_cannot_be_fetched(obs, report):
    with pytest.raises(ObservatoryError) as refused:
        obs.download(report, "snapshot/episodes.parquet")
    assert refused.value.fields == ["file"]
    assert issubclass(OutputCorrupted, Exception)


def test_the_worked_example_runs(tmp_path):
    example = Path(__file__).resolve().parent.parent / "examples" / "synthesis.py"
    env = dict(os.environ, OBSERVATORY_TLS="0")
    done = subprocess.run(
        [sys.executable, str(example), FRAMEWORK, "MHEMO"], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr
    assert "synthesis" in done.stdout and "persistence at 12 months" in done.stdout
    assert (tmp_path / "synthesis-output" / "synthesis.docx").stat().st_size > 1000
