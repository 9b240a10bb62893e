"""Interoperability check: a client generated from proto/ by Python grpcio-tools drives a
running observatory through an AAC journey, reads every version back, imports records and reads
the change feed as a partner system, then runs a report and streams one of its outputs.

Usage: client.py HOST:PORT GENERATED_DIR
with the tokens of each role in
OBSERVATORY_TOKEN_{ADMIN,DATA_MANAGER,PRESCRIBER,ANALYST,PARTNER,ELSEWHERE}.
"""

import hashlib
import os
import sys
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

target, generated = sys.argv[1], sys.argv[2]
sys.path.insert(0, generated)

from observatory.v1 import (  # noqa: E402
    common_pb2,
    exchange_pb2,
    exchange_pb2_grpc,
    reference_pb2,
    reference_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
    reports_pb2,
    reports_pb2_grpc,
)

channel = grpc.insecure_channel(target)
grpc.channel_ready_future(channel).result(timeout=30)


class Bearer(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
             grpc.StreamStreamClientInterceptor):
    """Adds `authorization: Bearer <token>` to every call."""

    def __init__(self, token):
        self.header = ("authorization", f"Bearer {token}")

    def _with_token(self, details):
        metadata = list(details.metadata or []) + [self.header]
        return details._replace(metadata=metadata)

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._with_token(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._with_token(details), request)

    def intercept_stream_stream(self, continuation, details, requests):
        return continuation(self._with_token(details), requests)


def as_role(role):
    return grpc.intercept_channel(channel, Bearer(os.environ[f"OBSERVATORY_TOKEN_{role}"]))


reference = reference_pb2_grpc.ReferenceServiceStub(as_role("ADMIN"))
manager = registry_pb2_grpc.RegistryServiceStub(as_role("DATA_MANAGER"))
registry = registry_pb2_grpc.RegistryServiceStub(as_role("PRESCRIBER"))
reports = reports_pb2_grpc.ReportServiceStub(as_role("ANALYST"))


def check(condition, what):
    if not condition:
        raise SystemExit(f"interop check failed: {what}")


# Health answers without a token; everything else needs one.
health = health_pb2_grpc.HealthStub(channel).Check(
    health_pb2.HealthCheckRequest(service="observatory.v1.RegistryService"))
check(health.status == health_pb2.HealthCheckResponse.SERVING, "health is SERVING")
try:
    registry_pb2_grpc.RegistryServiceStub(channel).ListCohorts(registry_pb2.ListCohortsRequest())
    check(False, "a call without a token is refused")
except grpc.RpcError as e:
    check(e.code() == grpc.StatusCode.UNAUTHENTICATED, f"a call without a token: {e.code()}")
try:
    manager.RegisterPatient(registry_pb2.RegisterPatientRequest())
    check(False, "a data manager may not register patients")
except grpc.RpcError as e:
    check(e.code() == grpc.StatusCode.PERMISSION_DENIED, f"a call outside the role: {e.code()}")
responses = reflection_pb2_grpc.ServerReflectionStub(as_role("ANALYST")).ServerReflectionInfo(
    iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
services = [s.name for r in responses for s in r.list_services_response.service]
check("observatory.v1.RegistryService" in services, f"reflection lists the registry: {services}")

reference.CreateCentre(reference_pb2.CreateCentreRequest(
    idempotency_key="py-centre", finess="750100125", name="CRMR hemophilie",
    type=reference_pb2.CENTRE_TYPE_CRMR_COORDINATING, region_code="11", filieres=["MHEMO"]))
reference.CreatePrescriber(reference_pb2.CreatePrescriberRequest(
    idempotency_key="py-prescriber", rpps="10000000017", specialty="haematology", centre_finess="750100125"))
cohort = manager.CreateCohort(registry_pb2.CreateCohortRequest(
    idempotency_key="py-cohort", name="Concizumab AAC", filiere="MHEMO", pathway=common_pb2.PATHWAY_AAC,
    drug_atc="B02BX07", orpha_codes=["98878"], follow_up_months=3))
patient = registry.RegisterPatient(registry_pb2.RegisterPatientRequest(
    idempotency_key="py-patient",
    identity=registry_pb2.Identity(last_name="Zyxwvutsonne", first_name="Quiltrude", birth_date="2013-06-07",
                                   sex=registry_pb2.SEX_FEMALE),
    region_code="11"))
check(patient.pseudonym_kind == registry_pb2.PSEUDONYM_KIND_HMAC, "identity becomes an HMAC pseudonym")

# The declaration continues the caller's trace (W3C trace context in the metadata).
declared = registry.DeclareEpisode(registry_pb2.DeclareEpisodeRequest(
    idempotency_key="py-episode", patient_id=patient.meta.id, cohort_id=cohort.meta.id,
    pathway=common_pb2.PATHWAY_AAC, indication_orpha_code="98878", prescriber_rpps="10000000017",
    request_date="2026-01-12", authorisation=registry_pb2.AuthorisationRequest(submitted_date="2026-01-12")),
    metadata=[("traceparent", f"00-{os.environ['OBSERVATORY_INTEROP_TRACE']}-00f067aa0ba902b7-01")])
episode_id, auth_id = declared.episode.meta.id, declared.authorisation.meta.id

T = registry_pb2.TransitionAuthorisationRequest
registry.TransitionAuthorisation(T(id=auth_id, expected_version=1, grant=T.Grant(
    decision_date="2026-01-15", valid_from="2026-01-15", valid_to="2027-01-14", reference="AAC-PY-1")))
registry.TransitionEpisode(registry_pb2.TransitionEpisodeRequest(
    id=episode_id, expected_version=1,
    initiate=registry_pb2.TransitionEpisodeRequest.Initiate(first_administration_date="2026-01-20")))
registry.TransitionAuthorisation(T(id=auth_id, expected_version=2, submit_renewal=T.DatedStep(date="2026-10-01")))
renewed = registry.TransitionAuthorisation(T(id=auth_id, expected_version=3, renew=T.Grant(
    decision_date="2026-11-01", valid_from="2027-01-15", valid_to="2028-01-14")))
check(renewed.status == registry_pb2.AUTHORISATION_STATUS_RENEWED and renewed.renewals == 1, "renewed")

registry.RecordFollowUp(registry_pb2.RecordFollowUpRequest(
    idempotency_key="py-fu", episode_id=episode_id, visit_date="2026-04-20",
    efficacy=registry_pb2.EFFICACY_ASSESSMENT_STABLE, adherence=registry_pb2.ADHERENCE_GOOD,
    measures=[registry_pb2.Measure(code="ABR", value=2.0)]))
registry.RecordAdverseEvent(registry_pb2.RecordAdverseEventRequest(
    idempotency_key="py-ae", episode_id=episode_id, onset_date="2026-05-02", meddra_pt_code="10019211",
    serious=False, outcome=registry_pb2.AE_OUTCOME_RECOVERED, causality=registry_pb2.CAUSALITY_UNLIKELY))
stopped = registry.TransitionEpisode(registry_pb2.TransitionEpisodeRequest(
    id=episode_id, expected_version=3,
    stop=registry_pb2.TransitionEpisodeRequest.Stop(date="2026-11-02", reason=registry_pb2.STOP_REASON_PATIENT_CHOICE)))
check(stopped.status == registry_pb2.EPISODE_STATUS_STOPPED, "stopped")

episode_versions = registry.GetHistory(registry_pb2.GetHistoryRequest(
    kind=registry_pb2.RECORD_KIND_EPISODE, id=episode_id)).versions
check([v.episode.status for v in episode_versions] == [
    registry_pb2.EPISODE_STATUS_DECLARED, registry_pb2.EPISODE_STATUS_INITIATED,
    registry_pb2.EPISODE_STATUS_ONGOING, registry_pb2.EPISODE_STATUS_STOPPED], "episode history")
auth_versions = registry.GetHistory(registry_pb2.GetHistoryRequest(
    kind=registry_pb2.RECORD_KIND_AUTHORISATION, id=auth_id)).versions
check(len(auth_versions) == 4 and all(v.authorisation.meta.recorded_by for v in auth_versions), "authorisation history")

# A prescriber at another centre reaches none of it: refused as if it did not exist, and
# listed nothing.
elsewhere = registry_pb2_grpc.RegistryServiceStub(as_role("ELSEWHERE"))
for read in (lambda: elsewhere.GetEpisode(registry_pb2.GetRequest(id=episode_id)),
             lambda: elsewhere.GetPatient(registry_pb2.GetRequest(id=patient.meta.id))):
    try:
        read()
        check(False, "a prescriber elsewhere reads the episode")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.PERMISSION_DENIED, f"PERMISSION_DENIED, got {e.code()}")
check(not elsewhere.ListEpisodes(registry_pb2.ListEpisodesRequest()).episodes, "nothing listed elsewhere")

# A bad request names its field.
try:
    registry.GetEpisode(registry_pb2.GetRequest(id="not-an-id"))
    check(False, "a malformed id is refused")
except grpc.RpcError as e:
    check(e.code() == grpc.StatusCode.INVALID_ARGUMENT, f"INVALID_ARGUMENT, got {e.code()}")

# A partner system of the centre: an import over the bidirectional stream (one item refused,
# with its field named from the item), a second import using the first one's ids, then the
# change feed, in commit order, with the records of the centre.
exchange = exchange_pb2_grpc.ExchangeServiceStub(as_role("PARTNER"))
E = exchange_pb2
results = list(exchange.Import(iter([
    E.ImportItem(reference="ehr-17", register_patient=registry_pb2.RegisterPatientRequest(
        idempotency_key="py-import-17", idmr="00000000000000000017", sex=registry_pb2.SEX_MALE,
        birth_year_month="2015-02", region_code="11")),
    E.ImportItem(reference="ehr-18", register_patient=registry_pb2.RegisterPatientRequest(
        idempotency_key="py-import-18", idmr="00000000000000000018", sex=registry_pb2.SEX_MALE,
        birth_year_month="2015-02", region_code="99")),
])))
check([(r.index, r.reference) for r in results] == [(0, "ehr-17"), (1, "ehr-18")], "import answers in order")
check(results[0].WhichOneof("outcome") == "written", f"first item written: {results[0]}")
check([v.field for v in results[1].error.violations] == ["register_patient.region_code"],
      f"refused item names its field: {results[1]}")
imported = results[0].written.patient.meta.id
episodes = list(exchange.Import(iter([E.ImportItem(reference="ehr-17-aac", declare_episode=registry_pb2.DeclareEpisodeRequest(
    idempotency_key="py-import-episode", patient_id=imported, cohort_id=cohort.meta.id,
    pathway=common_pb2.PATHWAY_AAC, indication_orpha_code="98878", prescriber_rpps="10000000017",
    request_date="2026-02-03", authorisation=registry_pb2.AuthorisationRequest(submitted_date="2026-02-03")))])))
check(episodes[0].WhichOneof("outcome") == "written", f"imported episode written: {episodes[0]}")
changes = list(exchange.WatchChanges(E.WatchChangesRequest()))
positions = [c.position for c in changes]
check(positions == sorted(set(positions)), "the feed is in commit order")
fed = {getattr(c.record, c.record.WhichOneof("record")).meta.id for c in changes}
for wanted in (patient.meta.id, episode_id, auth_id, imported, episodes[0].written.episode.meta.id):
    check(wanted in fed, f"{wanted} in the partner's feed")
later = list(exchange.WatchChanges(E.WatchChangesRequest(after_position=positions[-1])))
check(later == [], "nothing after the last position")

# A report of the year, followed to its end, and one output streamed and checked.
run = reports.RunReport(reports_pb2.RunReportRequest(period="2026", idempotency_key="py-report-2026"))
for _ in range(600):
    run = reports.GetReportRun(reports_pb2.GetReportRunRequest(run_id=run.run_id))
    if run.status not in (reports_pb2.REPORT_RUN_STATUS_QUEUED, reports_pb2.REPORT_RUN_STATUS_RUNNING):
        break
    time.sleep(0.2)
check(run.status == reports_pb2.REPORT_RUN_STATUS_SUCCEEDED, f"report run succeeded: {run.error}")
output = next(o for o in run.manifest.outputs if o.file == "tables/activity.csv")
chunks = list(reports.DownloadReportFile(reports_pb2.DownloadReportFileRequest(run_id=run.run_id, file=output.file)))
data = b"".join(c.data for c in chunks)
check(chunks[0].sha256 == output.sha256 and chunks[0].size_bytes == len(data), "download header")
check(hashlib.sha256(data).hexdigest() == output.sha256, "downloaded bytes match the manifest")
# Two patients in the registry: the report publishes no count below 10.
check(b"<10" in data and b",1," not in data, "small counts are masked")
try:
    list(reports.DownloadReportFile(reports_pb2.DownloadReportFileRequest(run_id=run.run_id, file="snapshot/patients.parquet")))
    check(False, "the snapshot cannot be downloaded")
except grpc.RpcError as e:
    check(e.code() == grpc.StatusCode.INVALID_ARGUMENT, f"INVALID_ARGUMENT, got {e.code()}")

print("interop: 1 passed, 0 failed")
