"""A client of the observatory's ReportService for analysts: run a report or a framework's
synthesis, wait for it, download its outputs (checked against their SHA-256) and load its
tables into pandas or polars."""

from __future__ import annotations

import hashlib
import io
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import grpc

from observatory_client._proto.observatory.v1 import common_pb2, reports_pb2, reports_pb2_grpc
from observatory_client.errors import OutputCorrupted, RunFailed, from_rpc_error

if TYPE_CHECKING:
    from observatory_client._proto.observatory.v1.reports_pb2_grpc import ReportServiceStub

ENDED = {"SUCCEEDED", "FAILED", "INTERRUPTED"}


@dataclass(frozen=True)
class Output:
    file: str
    rows: int
    sha256: str


@dataclass(frozen=True)
class Run:
    """A report or synthesis run as the server last told it."""

    id: str
    status: str
    period: str
    period_from: str
    period_to: str
    filiere: str
    synthesis: bool
    framework_id: str
    cohort_id: str
    language: str
    stage: str
    error: str
    snapshot_hash: str
    outputs: dict[str, Output]

    @classmethod
    def from_message(cls, run: reports_pb2.ReportRun) -> Run:
        status = reports_pb2.ReportRunStatus.Name(run.status).removeprefix("REPORT_RUN_STATUS_")
        return cls(
            id=run.run_id,
            status=status,
            period=run.period,
            period_from=run.period_from,
            period_to=run.period_to,
            filiere=run.filiere,
            synthesis=run.synthesis,
            framework_id=run.synthesis_framework_id,
            cohort_id=run.cohort_id,
            language=run.language,
            stage=run.stage,
            error=run.error,
            snapshot_hash=run.manifest.snapshot_hash,
            outputs={o.file: Output(o.file, o.rows, o.sha256) for o in run.manifest.outputs},
        )

    @property
    def ended(self) -> bool:
        return self.status in ENDED

    def tables(self) -> list[str]:
        """Names of the run's published tables."""
        return sorted(
            f.removeprefix("tables/").removesuffix(".parquet")
            for f in self.outputs
            if f.startswith("tables/") and f.endswith(".parquet")
        )


class _Bearer(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Adds the token to every call."""

    def __init__(self, token: str):
        self._header = ("authorization", f"Bearer {token}")

    def _with_token(self, details: Any) -> Any:
        metadata = list(details.metadata or []) + [self._header]
        return details._replace(metadata=metadata)

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._with_token(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._with_token(details), request)


def _range(start: date | str | None, end: date | str | None) -> common_pb2.DateRange | None:
    if start is None and end is None:
        return None
    return common_pb2.DateRange(
        **{"from": str(start) if start is not None else "", "to": str(end) if end is not None else ""}
    )


class Observatory:
    """A connection to the observatory's gRPC API with an analyst's (or data manager's) token.

    `address` is `host:port`; `tls` is True for the system's roots, or channel credentials, or
    False for a plain-text connection (a server on loopback or behind a TLS proxy).
    """

    def __init__(
        self,
        address: str,
        token: str,
        *,
        tls: bool | grpc.ChannelCredentials = True,
        timeout: float = 30.0,
    ):
        if isinstance(tls, grpc.ChannelCredentials):
            channel = grpc.secure_channel(address, tls)
        elif tls:
            channel = grpc.secure_channel(address, grpc.ssl_channel_credentials())
        else:
            channel = grpc.insecure_channel(address)
        self._channel = channel
        self._timeout = timeout
        intercepted = grpc.intercept_channel(channel, _Bearer(token))
        self.reports: ReportServiceStub = reports_pb2_grpc.ReportServiceStub(intercepted)

    @classmethod
    def from_env(cls) -> Observatory:
        """From OBSERVATORY_ADDRESS, OBSERVATORY_TOKEN and OBSERVATORY_TLS (1 or 0, default 1)."""
        address = os.environ["OBSERVATORY_ADDRESS"]
        token = os.environ["OBSERVATORY_TOKEN"]
        tls = os.environ.get("OBSERVATORY_TLS", "1") not in ("0", "false", "no")
        return cls(address, token, tls=tls)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Observatory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: Any, request: Any) -> Any:
        try:
            return method(request, timeout=self._timeout)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None

    def run_report(
        self,
        period: str | None = None,
        *,
        start: date | str | None = None,
        end: date | str | None = None,
        filiere: str = "",
        cohort_id: str = "",
        threshold: int = 0,
        french_csv: bool = False,
        idempotency_key: str | None = None,
    ) -> Run:
        """Starts the periodic report of `period` ("2026-Q3", "2026-09", "2026") or of the days
        `start` to `end`. Sending the same `idempotency_key` again returns the same run."""
        request = reports_pb2.RunReportRequest(
            period=period or "",
            range=_range(start, end),
            filiere=filiere,
            cohort_id=cohort_id,
            suppression_threshold=threshold,
            french_csv=french_csv,
            idempotency_key=idempotency_key or str(uuid.uuid4()),
        )
        return Run.from_message(self._call(self.reports.RunReport, request))

    def run_synthesis(
        self,
        *,
        framework_id: str | None = None,
        cohort_id: str | None = None,
        period: str | None = None,
        start: date | str | None = None,
        end: date | str | None = None,
        language: Literal["fr", "en"] = "fr",
        threshold: int = 0,
        french_csv: bool = False,
        idempotency_key: str | None = None,
    ) -> Run:
        """Starts the periodic synthesis of a framework (or of one cohort)."""
        request = reports_pb2.RunSynthesisRequest(
            period=period or "",
            range=_range(start, end),
            language=language,
            suppression_threshold=threshold,
            french_csv=french_csv,
            idempotency_key=idempotency_key or str(uuid.uuid4()),
        )
        if framework_id is not None:
            request.framework_id = framework_id
        if cohort_id is not None:
            request.cohort_id = cohort_id
        return Run.from_message(self._call(self.reports.RunSynthesis, request))

    def run(self, run_id: str) -> Run:
        """A run as it stands."""
        return Run.from_message(self._call(self.reports.GetReportRun, reports_pb2.GetReportRunRequest(run_id=run_id)))

    def runs(self, page_size: int = 50) -> Iterator[Run]:
        """Every run the token may see, newest first."""
        token = ""
        while True:
            request = reports_pb2.ListReportRunsRequest(
                page=common_pb2.PageRequest(page_size=page_size, page_token=token)
            )
            page = self._call(self.reports.ListReportRuns, request)
            yield from (Run.from_message(r) for r in page.runs)
            token = page.next_page_token
            if not token:
                return

    def wait(self, run: Run | str, *, timeout: float = 900.0, poll: float = 2.0) -> Run:
        """Polls a run until it ends; raises RunFailed unless it succeeded, TimeoutError when it
        does not end within `timeout` seconds."""
        run_id = run.id if isinstance(run, Run) else run
        deadline = time.monotonic() + timeout
        while True:
            current = self.run(run_id)
            if current.ended:
                if current.status != "SUCCEEDED":
                    raise RunFailed(current.id, current.status, current.error)
                return current
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} still {current.status} after {timeout} s")
            time.sleep(poll)

    def download(self, run: Run | str, file: str, dest: Path | str | None = None) -> bytes:
        """One published output ("synthesis.docx", "tables/activity.parquet", "manifest.json"),
        checked against the size and SHA-256 the server announces; written to `dest` too when
        given."""
        run_id = run.id if isinstance(run, Run) else run
        request = reports_pb2.DownloadReportFileRequest(run_id=run_id, file=file)
        data = io.BytesIO()
        size, sha = 0, ""
        try:
            for chunk in self.reports.DownloadReportFile(request, timeout=self._timeout * 10):
                if chunk.offset == 0:
                    size, sha = chunk.size_bytes, chunk.sha256
                if chunk.offset != data.tell():
                    raise OutputCorrupted(f"{file}: chunk at {chunk.offset}, expected {data.tell()}")
                data.write(chunk.data)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None
        content = data.getvalue()
        if len(content) != size or hashlib.sha256(content).hexdigest() != sha:
            raise OutputCorrupted(f"{file}: {len(content)} bytes, announced {size} with SHA-256 {sha}")
        if dest is not None:
            Path(dest).write_bytes(content)
        return content

    def table(self, run: Run | str, name: str, *, library: Literal["pandas", "polars"] = "pandas") -> Any:
        """A published table as a pandas or polars data frame. Counts masked to protect small
        ones read "<10" or "suppressed": count columns are text."""
        content = self.download(run, f"tables/{name}.parquet")
        if library == "pandas":
            import pandas as pd

            return pd.read_parquet(io.BytesIO(content))
        if library == "polars":
            import polars as pl

            return pl.read_parquet(io.BytesIO(content))
        raise ValueError(f"library: pandas or polars, not {library!r}")
