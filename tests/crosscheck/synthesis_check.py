"""Cross-checks a written synthesis (observatory synthesis) against independent computations on
its own snapshot: DuckDB for counts, medians, quartiles and patient-years; pandas and scipy for
the protocol measures (baseline, timepoints, mean change and its Student interval); scipy for the
exact (Garwood) Poisson intervals of the safety rates, in the synthesis and in the periodic
report. Published values carry 2 decimals; a masked value is not compared.

Usage: synthesis_check.py SYNTHESIS_DIR REPORT_DIR
"""

import csv
import json
import math
import sys
from pathlib import Path

import duckdb
import pandas as pd
import scipy
from scipy import stats

TOLERANCE = 0.005 + 1e-9
DAYS_PER_MONTH = 30.4375
BASELINE_DAYS = 90
TIMEPOINTS = ((6, 60), (12, 90), (24, 120))
FRAMEWORK_PATHWAYS = ("AAP_PRE", "AAP_POST", "CPC", "ATU_COHORT", "RTU", "DIRECT")


def fail(message):
    print(f"synthesis-check: {message}", file=sys.stderr)
    sys.exit(1)


def table(directory: Path, name: str):
    with open(directory / f"tables/{name}.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def shown(value: str) -> bool:
    return value not in ("", "suppressed") and not value.startswith("<")


def close(published: str, reference: float, what: str, errors: list, counted: dict, key: str):
    if not shown(published):
        return
    counted[key] = counted.get(key, 0) + 1
    if reference is None or (isinstance(reference, float) and math.isnan(reference)):
        errors.append(f"{what}: published {published}, nothing computed")
    elif abs(float(published) - float(reference)) > TOLERANCE:
        errors.append(f"{what}: published {published}, computed {reference}")


def check_synthesis(out: Path) -> None:
    manifest = json.loads((out / "manifest.json").read_text())
    framework = manifest["target"]["id"]
    period_from, period_to = manifest["period_from"], manifest["period_to"]
    cumulative_from = manifest["cumulative_from"]
    snap = out / "snapshot"
    db = duckdb.connect()
    for name in ("episodes", "cohorts", "authorisation_events", "adverse_events"):
        db.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{snap / (name + '.parquet')}')")
    # Ids are checked by the server (UUIDs): safe to inline in a view.
    if not all(ch in "0123456789abcdef-" for ch in framework):
        fail(f"unexpected framework id {framework!r}")
    db.execute(
        f"CREATE VIEW scope AS SELECT e.* FROM episodes e JOIN cohorts c USING (cohort_id) WHERE c.framework_id = '{framework}'"
    )
    errors, counted = [], {}
    windows = {"period": (period_from, period_to), "cumulative": (cumulative_from, period_to)}
    published = {row["window"]: row for row in table(out, "patients")}
    framed = "(" + ", ".join(f"'{p}'" for p in FRAMEWORK_PATHWAYS) + ")"
    for window, (start, end) in windows.items():
        row = published[window]
        one = lambda sql: db.execute(sql, [start, end]).fetchone()[0]  # noqa: E731
        figures = {
            "requested": one("SELECT count(DISTINCT patient_key) FROM scope WHERE request_date BETWEEN ? AND ?"),
            "initiated": one(
                "SELECT count(DISTINCT patient_key) FROM scope WHERE first_administration_date BETWEEN ? AND ?"
            ),
            "on_treatment": db.execute(
                "SELECT count(DISTINCT patient_key) FROM scope WHERE first_administration_date <= ? "
                "AND (end_date IS NULL OR end_date >= ?)",
                [end, start],
            ).fetchone()[0],
            "stopped": one(
                "SELECT count(DISTINCT patient_key) FROM scope WHERE end_date BETWEEN ? AND ? "
                "AND status IN ('STOPPED', 'SWITCHED')"
            ),
            "refused": one(
                "SELECT count(DISTINCT s.patient_key) FROM authorisation_events a JOIN scope s USING (episode_key) "
                "WHERE a.status = 'REFUSED' AND a.decision_date BETWEEN ? AND ?"
            ),
            "granted": db.execute(
                "SELECT count(DISTINCT patient_key) FROM ("
                " SELECT s.patient_key FROM authorisation_events a JOIN scope s USING (episode_key)"
                " WHERE a.status = 'GRANTED' AND a.decision_date BETWEEN ? AND ?"
                f" UNION ALL SELECT patient_key FROM scope WHERE pathway IN {framed} AND request_date BETWEEN ? AND ?)",
                [start, end, start, end],
            ).fetchone()[0],
        }
        for column, value in figures.items():
            close(row[column], value, f"patients.{window}.{column}", errors, counted, "counts")
        years = db.execute(
            "SELECT sum(date_diff('day', greatest(first_administration_date, CAST(? AS DATE)),"
            " least(coalesce(end_date, CAST(? AS DATE)), CAST(? AS DATE))) + 1) / 365.25 FROM scope"
            " WHERE first_administration_date <= ? AND (end_date IS NULL OR end_date >= ?)",
            [start, end, end, end, start],
        ).fetchone()[0]
        close(row["patient_years"], round(years or 0.0, 2), f"patients.{window}.patient_years", errors, counted, "patient_years")

    # Request to first administration: DuckDB's continuous quantiles interpolate linearly.
    for row in table(out, "time_to_treatment"):
        start, end = windows[row["window"]]
        n, median, q1, q3 = db.execute(
            "SELECT count(*), quantile_cont(d, 0.5), quantile_cont(d, 0.25), quantile_cont(d, 0.75) FROM ("
            " SELECT date_diff('day', request_date, first_administration_date) AS d FROM scope"
            " WHERE first_administration_date BETWEEN ? AND ?)",
            [start, end],
        ).fetchone()
        close(row["episodes"], n, f"time_to_treatment.{row['window']}.episodes", errors, counted, "counts")
        for column, value in (("median_days", median), ("q1_days", q1), ("q3_days", q3)):
            close(row[column], value, f"time_to_treatment.{row['window']}.{column}", errors, counted, "medians")

    # Adverse events per window.
    for row in table(out, "safety_summary"):
        start, end = windows[row["window"]]
        all_, serious, fatal, declared = db.execute(
            "SELECT count(*), count(*) FILTER (WHERE serious), count(*) FILTER (WHERE outcome = 'FATAL'),"
            " count(*) FILTER (WHERE pv_declared) FROM adverse_events a JOIN scope s USING (episode_key)"
            " WHERE a.onset_date BETWEEN ? AND ?",
            [start, end],
        ).fetchone()
        for column, value in (
            ("adverse_events", all_),
            ("serious", serious),
            ("fatal", fatal),
            ("declared_to_pharmacovigilance", declared),
        ):
            close(row[column], value, f"safety_summary.{row['window']}.{column}", errors, counted, "counts")

    check_efficacy(out, db, period_to, errors, counted)
    check_poisson(out, "synthesis safety", errors, counted)
    if errors:
        fail("the synthesis differs from the independent computation:\n  " + "\n  ".join(errors))
    if counted.get("counts", 0) < 10 or counted.get("medians", 0) < 3 or counted.get("efficacy", 0) < 3:
        fail(f"too few published values to compare: {counted}")
    print(f"synthesis-check: the synthesis of {framework} agrees with DuckDB {duckdb.__version__} "
          f"and scipy {scipy.__version__} ({counted})")


def check_efficacy(out: Path, db, period_to: str, errors: list, counted: dict) -> None:
    """Baseline and timepoint values rebuilt with pandas; mean change and Student interval."""
    snap = out / "snapshot"
    first = db.execute(
        "SELECT arg_min(episode_key, (first_administration_date, episode_key)) AS episode_key,"
        " min(first_administration_date) AS first FROM scope"
        " WHERE first_administration_date <= ? GROUP BY patient_key",
        [period_to],
    ).df()
    measures = pd.read_parquet(snap / "measures.parquet")
    measures = measures[pd.to_datetime(measures["visit_date"]) <= pd.Timestamp(period_to)]
    merged = measures.merge(first, on="episode_key")
    merged["offset"] = (pd.to_datetime(merged["visit_date"]) - pd.to_datetime(merged["first"])).dt.days
    rows = {(r["measure_code"], r["timepoint"]): r for r in table(out, "efficacy")}
    results = {}
    for (code, _), points in merged.groupby(["measure_code", "episode_key"]):
        base = points[(points["offset"] <= 0) & (points["offset"] >= -BASELINE_DAYS)]
        if base.empty:
            continue
        baseline = float(base.sort_values("offset").iloc[-1]["value"])
        results.setdefault((code, "baseline"), []).append((baseline, None))
        for months, window in TIMEPOINTS:
            target = round(months * DAYS_PER_MONTH)
            near = points[(points["offset"] > 0) & ((points["offset"] - target).abs() <= window)]
            if near.empty:
                continue
            near = near.assign(distance=(near["offset"] - target).abs()).sort_values(["distance", "offset"])
            results.setdefault((code, f"M{months}"), []).append((baseline, float(near.iloc[0]["value"])))
    for key, pairs in results.items():
        row = rows.get(key)
        if row is None:
            errors.append(f"efficacy {key}: computed {len(pairs)} patients, not published")
            continue
        what = f"efficacy.{key[0]}.{key[1]}"
        close(row["patients"], len(pairs), f"{what}.patients", errors, counted, "counts")
        close(row["baseline_mean"], sum(b for b, _ in pairs) / len(pairs), f"{what}.baseline_mean", errors, counted, "efficacy")
        if key[1] == "baseline":
            continue
        changes = [v - b for b, v in pairs]
        mean = sum(changes) / len(changes)
        close(row["change_mean"], mean, f"{what}.change_mean", errors, counted, "efficacy")
        if len(changes) >= 2:
            sem = stats.sem(changes)
            low, high = stats.t.interval(0.95, len(changes) - 1, loc=mean, scale=sem)
            close(row["change_ci_low"], low, f"{what}.change_ci_low", errors, counted, "efficacy")
            close(row["change_ci_high"], high, f"{what}.change_ci_high", errors, counted, "efficacy")


def check_poisson(out: Path, what: str, errors: list, counted: dict) -> None:
    """Rates per 100 patient-years and their exact intervals, from the published counts."""
    for row in table(out, "safety"):
        for count in ("adverse_events", "serious_adverse_events"):
            if not shown(row[count]) or not shown(row["patient_years"]):
                continue
            k, years = int(row[count]), float(row["patient_years"])
            if years <= 0:
                continue
            low = stats.chi2.ppf(0.025, 2 * k) / 2 if k > 0 else 0.0
            high = stats.chi2.ppf(0.975, 2 * k + 2) / 2
            # The published patient-years are rounded: compare with the margin that rounding allows.
            for column, value in ((f"{count}_rate", k), (f"{count}_ci_low", low), (f"{count}_ci_high", high)):
                published = row[column]
                if not shown(published):
                    continue
                counted["poisson"] = counted.get("poisson", 0) + 1
                reference = 100 * value / years
                margin = TOLERANCE + reference * 0.005 / years
                if abs(float(published) - reference) > margin:
                    errors.append(f"{what} {row['drug_atc']}/{row['meddra_soc_code']} {column}: published {published}, scipy {reference:.4f}")


def main() -> None:
    if len(sys.argv) != 3:
        fail("usage: synthesis_check.py SYNTHESIS_DIR REPORT_DIR")
    synthesis, report = Path(sys.argv[1]), Path(sys.argv[2])
    check_synthesis(synthesis)
    errors, counted = [], {}
    check_poisson(report, "report safety", errors, counted)
    if errors:
        fail("exact Poisson intervals differ from scipy:\n  " + "\n  ".join(errors))
    if counted.get("poisson", 0) < 6:
        fail(f"too few published rates to compare in the report: {counted}")
    print(f"synthesis-check: the report's safety rates agree with scipy's chi-square quantiles ({counted})")


if __name__ == "__main__":
    main()
