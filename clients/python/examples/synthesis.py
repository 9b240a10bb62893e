"""Worked example: the half-yearly synthesis of an early access, and the quarterly report.

Writes the framework's synthesis for the first half of 2026, saves its Word document, then loads
its efficacy table into pandas and prints the change of each protocol measure; runs the third
quarter's report of the filière and prints persistence at 12 months per drug, with polars.

    OBSERVATORY_ADDRESS=127.0.0.1:50051 OBSERVATORY_TLS=0 OBSERVATORY_TOKEN=obs_... \
        python examples/synthesis.py 0193a000-0000-7000-8000-000000000002 MHEMO
"""

import sys
from pathlib import Path

from observatory_client import Observatory, ObservatoryError


def main(framework_id: str, filiere: str, out: Path) -> None:
    with Observatory.from_env() as obs:
        try:
            run = obs.run_synthesis(framework_id=framework_id, start="2026-01-01", end="2026-06-30", language="en")
        except ObservatoryError as e:
            # INVALID_ARGUMENT names each field: e.violations[i].field, .reason, .description.
            sys.exit(f"refused: {e}")
        run = obs.wait(run)
        out.mkdir(parents=True, exist_ok=True)
        obs.download(run, "synthesis.docx", out / "synthesis.docx")
        print(f"synthesis {run.id}: {out / 'synthesis.docx'} (snapshot {run.snapshot_hash[:12]})")

        efficacy = obs.table(run, "efficacy")
        # Counts masked to protect small ones read "<10" or "suppressed": keep the shown ones.
        shown = efficacy[efficacy["timepoint"] != "baseline"]
        shown = shown[~shown["patients"].str.startswith("<") & (shown["patients"] != "suppressed")]
        for row in shown.itertuples():
            print(
                f"  {row.measure_code} at {row.timepoint}: {row.patients} patients, mean change "
                f"{row.change_mean} (95% CI {row.change_ci_low} to {row.change_ci_high})"
            )

        report = obs.wait(obs.run_report("2026-Q3", filiere=filiere))
        import polars as pl

        persistence = obs.table(report, "persistence_drug", library="polars")
        at_12 = persistence.filter(pl.col("months") == "12").select("drug_atc", "courses", "survival", "ci_low", "ci_high")
        print(f"report {report.id}: persistence at 12 months per drug")
        print(at_12)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: synthesis.py FRAMEWORK_ID FILIERE")
    main(sys.argv[1], sys.argv[2], Path("synthesis-output"))
