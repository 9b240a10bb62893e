"""FHIR R4 export check: every resource the observatory exports is validated by an independent
FHIR library (fhir.resources, its R4B models, whose fields and cardinalities for these resource
types are those of R4), then checked for what that library does not check: the codes of the
required bindings, the references between resources, the manifest's counts; and the gRPC
stream (ExportFhir) gives the same resources as the command line.

Usage: fhir_check.py HOST:PORT GENERATED_DIR EXPORT_DIR
with a data manager's token in OBSERVATORY_TOKEN_DATA_MANAGER, a partner of a centre in
OBSERVATORY_TOKEN_PARTNER and the command line's export already written to EXPORT_DIR.
"""

import json
import os
import sys
from collections import Counter, defaultdict

import grpc
from fhir.resources.R4B import get_fhir_model_class

target, generated, export_dir = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path.insert(0, generated)

from observatory.v1 import exchange_pb2, exchange_pb2_grpc  # noqa: E402

channel = grpc.insecure_channel(target)
grpc.channel_ready_future(channel).result(timeout=60)


def check(condition, what):
    if not condition:
        raise SystemExit(f"fhir: {what}")


# The codes of the required bindings the library does not check (FHIR R4 value sets).
REQUIRED_CODES = {
    ("Patient", "gender"): {"male", "female", "other", "unknown"},
    ("MedicationRequest", "status"): {"active", "on-hold", "cancelled", "completed", "entered-in-error",
                                      "stopped", "draft", "unknown"},
    ("MedicationRequest", "intent"): {"proposal", "plan", "order", "original-order", "reflex-order",
                                      "filler-order", "instance-order", "option"},
    ("MedicationAdministration", "status"): {"in-progress", "not-done", "on-hold", "completed",
                                             "entered-in-error", "stopped", "unknown"},
    ("AdverseEvent", "actuality"): {"actual", "potential"},
    ("ResearchStudy", "status"): {"active", "administratively-completed", "approved", "closed-to-accrual",
                                  "closed-to-accrual-and-intervention", "completed", "disapproved", "in-review",
                                  "temporarily-closed-to-accrual",
                                  "temporarily-closed-to-accrual-and-intervention", "withdrawn"},
    ("ResearchSubject", "status"): {"candidate", "eligible", "follow-up", "ineligible", "not-registered",
                                    "off-study", "on-study", "on-study-intervention", "on-study-observation",
                                    "pending-on-study", "potential-candidate", "screening", "withdrawn"},
    ("Consent", "status"): {"draft", "proposed", "active", "rejected", "inactive", "entered-in-error"},
    ("CodeSystem", "status"): {"draft", "active", "retired", "unknown"},
    ("CodeSystem", "content"): {"not-present", "example", "fragment", "complete", "supplement"},
}
AE_OUTCOMES = {"resolved", "recovering", "ongoing", "resolvedWithSequelae", "fatal", "unknown"}
CONDITION_VERIFICATION = {"unconfirmed", "provisional", "differential", "confirmed", "refuted", "entered-in-error"}


def load(directory):
    """The export in `directory`: its manifest and its resources by type, each validated."""
    manifest = json.load(open(os.path.join(directory, "manifest.json"), encoding="utf-8"))
    for key in ("transactionTime", "request", "requiresAccessToken", "output", "error"):
        check(key in manifest, f"the manifest has {key}")
    resources = {}
    for entry in manifest["output"]:
        path = os.path.join(directory, entry["url"])
        lines = [line for line in open(path, encoding="utf-8").read().split("\n") if line]
        check(len(lines) == entry["count"], f"{entry['url']}: {len(lines)} lines, the manifest says {entry['count']}")
        model = get_fhir_model_class(entry["type"])
        parsed = []
        for n, line in enumerate(lines, 1):
            data = json.loads(line)
            check(data["resourceType"] == entry["type"], f"{entry['url']}:{n}: one resource type per file")
            model.model_validate(data)
            parsed.append(data)
        resources[entry["type"]] = parsed
    return manifest, resources


def check_codes_and_references(resources):
    ids = defaultdict(set)
    for rtype, items in resources.items():
        for r in items:
            check(r["id"] not in ids[rtype], f"{rtype}/{r['id']} twice")
            ids[rtype].add(r["id"])
            for (t, field), allowed in REQUIRED_CODES.items():
                if t == rtype and field in r:
                    check(r[field] in allowed, f"{rtype}/{r['id']}.{field} = {r[field]!r}")
    for r in resources.get("AdverseEvent", []):
        outcome = r["outcome"]["coding"][0]["code"]
        check(outcome in AE_OUTCOMES, f"AdverseEvent/{r['id']} outcome {outcome!r}")
        serious = r["seriousness"]["coding"][0]["code"]
        criteria = [e for e in r.get("extension", []) if e["url"].endswith("/seriousness-criteria")]
        check(serious == "serious" or not criteria, f"AdverseEvent/{r['id']}: criteria on a non-serious event")
    for r in resources.get("Condition", []):
        code = r["verificationStatus"]["coding"][0]["code"]
        check(code in CONDITION_VERIFICATION, f"Condition/{r['id']} verification {code!r}")
    for r in resources.get("Consent", []):
        check("policyRule" in r or "policy" in r, f"Consent/{r['id']}: ppc-1, a policy or policyRule")
        check(r["provision"]["type"] in {"deny", "permit"}, f"Consent/{r['id']} provision type")
    off_label = [r for r in resources.get("MedicationRequest", [])
                 if any(e["url"].endswith("/ihe-ext-offLabel") for e in r.get("extension", []))]
    regimes = {e["valueCoding"]["code"] for r in resources.get("MedicationRequest", [])
               for e in r["extension"] if e["url"].endswith("/access-regime")}
    code_system = next(c for c in resources["CodeSystem"] if c["id"] == "access-regime")
    check(regimes <= {c["code"] for c in code_system["concept"]}, f"access regimes {regimes} in the CodeSystem")
    for r in off_label:
        ext = next(e for e in r["extension"] if e["url"].endswith("/ihe-ext-offLabel"))
        flags = [x for x in ext["extension"] if x["url"] == "isOffLabelUse"]
        check(len(flags) == 1 and flags[0]["valueBoolean"] is True, f"MedicationRequest/{r['id']}: isOffLabelUse")

    # Every reference names a resource of the export (a full export: nothing points outside).
    def walk(value):
        if isinstance(value, dict):
            if "reference" in value and isinstance(value["reference"], str):
                yield value["reference"]
            for v in value.values():
                yield from walk(v)
        elif isinstance(value, list):
            for v in value:
                yield from walk(v)

    dangling = []
    for rtype, items in resources.items():
        for r in items:
            for ref in walk(r):
                t, _, i = ref.partition("/")
                if i not in ids.get(t, ()):
                    dangling.append(f"{rtype}/{r['id']} -> {ref}")
    check(not dangling, f"references to resources not exported: {dangling[:5]}")
    return ids


def stream(role, request):
    """The resources and manifest ExportFhir streams to `role`."""
    token = os.environ[f"OBSERVATORY_TOKEN_{role}"]
    stub = exchange_pb2_grpc.ExchangeServiceStub(channel)
    lines, manifest = defaultdict(list), None
    for part in stub.ExportFhir(request, metadata=[("authorization", f"Bearer {token}")], timeout=120):
        check(manifest is None, "the manifest comes last")
        if part.HasField("lines"):
            text = part.lines.ndjson.decode()
            check(text.endswith("\n"), "a part holds whole lines")
            got = [line for line in text.split("\n") if line]
            check(len(got) == part.lines.count, "a part's count is its lines")
            lines[part.lines.resource_type].extend(got)
        else:
            manifest = json.loads(part.manifest)
    check(manifest is not None, "the stream ends with its manifest")
    for entry in manifest["output"]:
        check(len(lines[entry["type"]]) == entry["count"], f"streamed {entry['type']}: the manifest's count")
    return lines, manifest


def comparable(line):
    """A resource without what depends on the instant of the export."""
    return json.dumps(json.loads(line), sort_keys=True)


manifest, resources = load(export_dir)
counts = {t: len(items) for t, items in resources.items()}
for needed in ("Patient", "Condition", "Consent", "MedicationRequest", "MedicationAdministration",
               "ResearchStudy", "ResearchSubject", "AdverseEvent", "CodeSystem"):
    check(counts.get(needed, 0) > 0, f"the seeded export holds {needed} resources: {counts}")
ids = check_codes_and_references(resources)
check(any(any(e["url"].endswith("/ihe-ext-offLabel") for e in r.get("extension", []))
          for r in resources["MedicationRequest"]), "an off-label prescription carries the IHE extension")
check(any("extension" in r for r in resources["AdverseEvent"]), "a serious event carries its criteria")

# The data manager's stream: the same resources as the command line's export of the whole
# registry (every seeded cohort is MHEMO's or FILNEMUS's, and the token reads MHEMO's only).
streamed, streamed_manifest = stream("DATA_MANAGER", exchange_pb2.ExportFhirRequest())
check(streamed_manifest["request"].startswith("observatory.v1.ExchangeService/ExportFhir"), "the manifest names the call")
files = {t: set(map(comparable, lines)) for t, lines in streamed.items()}
whole = {t: {comparable(json.dumps(r)) for r in items} for t, items in resources.items()}
check(files["CodeSystem"] == whole["CodeSystem"], "the CodeSystems are the same")
for t in ("Patient", "MedicationRequest", "AdverseEvent"):
    check(files.get(t) and files[t] < whole[t], f"{t}: the filière's part of the registry, no more")
check_codes_and_references({t: [json.loads(line) for line in lines] for t, lines in streamed.items()})

# One cohort: its study and its subjects only.
study = next(r for r in resources["ResearchStudy"] if any(
    s["study"]["reference"] == f"ResearchStudy/{r['id']}" for s in resources["ResearchSubject"]))
one, _ = stream("DATA_MANAGER", exchange_pb2.ExportFhirRequest(cohort_id=study["id"]))
check([json.loads(line)["id"] for line in one["ResearchStudy"]] == [study["id"]], "one cohort, one study")
check(all(json.loads(line)["study"]["reference"] == f"ResearchStudy/{study['id']}" for line in one["ResearchSubject"]),
      "one cohort's subjects only")

# A partner of a centre of no seeded patient: reference data only, nothing patient-level.
nothing, _ = stream("PARTNER", exchange_pb2.ExportFhirRequest())
check(not nothing.get("Patient") and not nothing.get("AdverseEvent"), "another centre's partner gets no patient")
print(f"fhir: {sum(counts.values())} resources valid ({dict(sorted(counts.items()))}); stream, scope and cohort checked")
