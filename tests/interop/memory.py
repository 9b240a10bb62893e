"""Memory bound check: requests of up to 4 MiB built to cost the most memory when decoded (huge
repeated fields, merged message fields, a 4 MB string) are sent to the running server; its peak
resident memory (VmHWM, reset first through /proc/PID/clear_refs) may grow by at most 64 MB, and
each request is refused with INVALID_ARGUMENT.

Usage: memory.py HOST:PORT GENERATED_DIR SERVER_PID
with the tokens of OBSERVATORY_TOKEN_{PRESCRIBER,DATA_MANAGER}.
"""

import os
import sys

import grpc

target, generated, pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
sys.path.insert(0, generated)

from observatory.v1 import common_pb2, registry_pb2  # noqa: E402

LIMIT_KB = 64 * 1024
MESSAGE_MAX = 4 * 1024 * 1024


def varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field(message, name):
    return message.DESCRIPTOR.fields_by_name[name].number


def length_delimited(number, payload):
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def fill(base, unit):
    """`base` then `unit` as many times as fits in 4 MiB."""
    return base + unit * ((MESSAGE_MAX - len(base) - 16) // len(unit))


def vm_hwm_kb():
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise SystemExit("memory: no VmHWM for the server")


declaration = registry_pb2.DeclareEpisodeRequest(
    idempotency_key="memory-axes",
    patient_id="01939a2c-0000-7000-8000-000000000000",
    cohort_id="01939a2c-0000-7000-8000-000000000000",
    pathway=common_pb2.PATHWAY_OFF_LABEL,
    indication_orpha_code="98878",
    prescriber_rpps="10000000017",
    request_date="2026-01-12",
).SerializeToString()
off_label = field(registry_pb2.DeclareEpisodeRequest, "off_label")
axes = field(registry_pb2.OffLabelJustification, "axes")
patient = registry_pb2.RegisterPatientRequest(
    idempotency_key="memory-diagnoses", idmr="12345678901234567890",
    sex=registry_pb2.SEX_MALE, birth_year_month="2010-05").SerializeToString()
cohort = registry_pb2.CreateCohortRequest(
    idempotency_key="memory-codes", name="Memory", filiere="MHEMO",
    pathway=common_pb2.PATHWAY_AAC, drug_atc="B02BX07", follow_up_months=3).SerializeToString()

packed = b"\x01" * (MESSAGE_MAX - len(declaration) - 32)
cases = [
    ("DeclareEpisode", "PRESCRIBER", "packed off-label axes",
     declaration + length_delimited(off_label, length_delimited(axes, packed))),
    ("DeclareEpisode", "PRESCRIBER", "merged off-label justifications of one axis",
     fill(declaration, length_delimited(off_label, varint(axes << 3) + b"\x01"))),
    ("RegisterPatient", "PRESCRIBER", "empty diagnoses",
     fill(patient, length_delimited(field(registry_pb2.RegisterPatientRequest, "diagnoses"), b""))),
    ("CreateCohort", "DATA_MANAGER", "empty ORPHA codes",
     fill(cohort, length_delimited(field(registry_pb2.CreateCohortRequest, "orpha_codes"), b""))),
    ("CreateCohort", "DATA_MANAGER", "a 4 MB name",
     cohort + length_delimited(field(registry_pb2.CreateCohortRequest, "name"), b"n" * (MESSAGE_MAX - 64))),
]

channel = grpc.insecure_channel(target, options=[("grpc.max_send_message_length", 8 * 1024 * 1024)])
grpc.channel_ready_future(channel).result(timeout=30)
with open(f"/proc/{pid}/clear_refs", "w") as refs:
    refs.write("5")
base = vm_hwm_kb()
for method, role, label, body in cases:
    assert len(body) <= MESSAGE_MAX, (label, len(body))
    call = channel.unary_unary(f"/observatory.v1.RegistryService/{method}")
    token = os.environ[f"OBSERVATORY_TOKEN_{role}"]
    try:
        call(body, metadata=[("authorization", f"Bearer {token}")], timeout=60)
        raise SystemExit(f"memory: {method} with {label} was served")
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.INVALID_ARGUMENT:
            raise SystemExit(f"memory: {method} with {label}: {e.code()} {e.details()}")
peak = vm_hwm_kb()
grown = peak - base
print(f"memory: {len(cases)} requests of up to 4 MiB raised the server's peak RSS by {grown // 1024} MB "
      f"({base // 1024} MB before, {peak // 1024} MB after)")
if grown > LIMIT_KB:
    raise SystemExit(f"memory: the peak grew by {grown // 1024} MB, more than {LIMIT_KB // 1024} MB")
