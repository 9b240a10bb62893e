"""Python client of the treatment access observatory (observatory.v1 gRPC API).

    from observatory_client import Observatory

    with Observatory("observatory.example.fr:443", token) as obs:
        run = obs.wait(obs.run_report("2026-Q3", filiere="MHEMO"))
        activity = obs.table(run, "activity")            # pandas
        persistence = obs.table(run, "persistence", library="polars")
"""

from observatory_client.client import Observatory, Output, Run
from observatory_client.errors import FieldViolation, ObservatoryError, OutputCorrupted, RunFailed

__all__ = ["FieldViolation", "Observatory", "ObservatoryError", "Output", "OutputCorrupted", "Run", "RunFailed"]
__version__ = "0.1.0"
