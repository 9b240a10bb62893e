"""Errors of the observatory, as the server states them."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.rpc import error_details_pb2, status_pb2

_DETAILS = "grpc-status-details-bin"


@dataclass(frozen=True)
class FieldViolation:
    """One invalid field of a request: its path in the request, why (a stable code), and a
    sentence for a reader."""

    field: str
    reason: str
    description: str


class ObservatoryError(Exception):
    """A call the server refused or could not answer: its gRPC status code, message and, for
    INVALID_ARGUMENT, every invalid field."""

    def __init__(self, code: grpc.StatusCode, message: str, violations: list[FieldViolation]):
        self.code = code
        self.message = message
        self.violations = violations
        listed = "; ".join(f"{v.field}: {v.reason} ({v.description})" for v in violations)
        super().__init__(f"{code.name}: {message}" + (f" [{listed}]" if listed else ""))

    @property
    def fields(self) -> list[str]:
        """The paths of the invalid fields."""
        return [v.field for v in self.violations]


class RunFailed(Exception):
    """A report or synthesis run that ended without succeeding."""

    def __init__(self, run_id: str, status: str, error: str):
        self.run_id = run_id
        self.status = status
        self.error = error
        super().__init__(f"run {run_id} ended {status}: {error}")


class OutputCorrupted(Exception):
    """A downloaded output whose size or SHA-256 is not the one the server announced."""


def from_rpc_error(error: grpc.RpcError) -> ObservatoryError:
    """Reads the status, message and google.rpc.BadRequest details of a failed call."""
    code: grpc.StatusCode = error.code() if isinstance(error, grpc.Call) else grpc.StatusCode.UNKNOWN
    message: str = error.details() if isinstance(error, grpc.Call) else str(error)
    violations: list[FieldViolation] = []
    trailing = error.trailing_metadata() if isinstance(error, grpc.Call) else None
    for key, value in trailing or ():
        if key != _DETAILS or not isinstance(value, bytes):
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            bad = error_details_pb2.BadRequest()
            if detail.Unpack(bad):
                violations.extend(
                    FieldViolation(v.field, v.reason, v.description) for v in bad.field_violations
                )
    return ObservatoryError(code, message or "", violations)
