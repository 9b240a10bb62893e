"""Cross-checks a written report against independent implementations.

1. Persistence on treatment: the courses of treatment are rebuilt here from the report's own
   snapshot (episodes and cohorts Parquet files) following the published definition (episodes of
   one drug chained across changes of pathway and transfers), and each cohort, then each drug,
   is fitted with lifelines' KaplanMeierFitter. Every published (not suppressed) count of
   courses, survival estimate, 95% interval (lifelines' exponential Greenwood, i.e. the
   log(-log) scale), number at risk, median and median interval must agree within the
   published rounding (2 decimals). The stays on each pathway are rebuilt and checked the same
   way (`journey_pathways`), and the time to common law against lifelines'
   AalenJohansenFitter (`journey_common_law`: share, interval, at risk, median).
2. The HTML report opens in headless Chromium with every network route closed (a dead proxy,
   no name resolution): it must fetch nothing, and every chart must be laid out with a size
   and drawn marks.

Usage: crosscheck.py REPORT_DIR
"""

import csv
import json
import math
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
from lifelines import KaplanMeierFitter

DAYS_PER_MONTH = 30.4375
HORIZONS = (6, 12, 24)
TOLERANCE = 0.005 + 1e-9  # published values carry 2 decimals
MASKED = ("suppressed", "withheld")


def fail(message):
    print(f"crosscheck: {message}", file=sys.stderr)
    sys.exit(1)


TRANSFER_DAYS = 60


def rebuild_courses(report: Path):
    """The courses of treatment, each as its episodes ordered by request date.

    A course is a patient's episodes of one drug chained across changes of pathway (an episode
    replacing another of the same drug) and transfers (an episode of the same drug requested
    within 60 days after the end of one transferred to another centre); one-shot treatments are
    no course. It runs from its first administration to the end of its last episode (by request
    date), an event when that one was stopped (not for common law), switched or ended by death.
    """
    manifest = json.loads((report / "manifest.json").read_text())
    period_end = pd.Timestamp(manifest["period_to"])
    episodes = pq.read_table(report / "snapshot/episodes.parquet").to_pandas()
    cohorts = pq.read_table(report / "snapshot/cohorts.parquet").to_pandas()[["cohort_id", "cohort"]]
    cohort_name = dict(zip(cohorts["cohort_id"], cohorts["cohort"]))
    episodes = episodes[~episodes["single_administration"].fillna(False).astype(bool)]
    records = {}
    for row in episodes.itertuples(index=False):
        records[row.episode_key] = row
    transferred = {}
    for row in records.values():
        if row.status == "TRANSFERRED" and pd.notna(row.end_date):
            transferred.setdefault((row.patient_key, row.drug_atc), []).append(row)
    parent = {}
    for key, row in records.items():
        previous = records.get(row.previous_episode_key) if pd.notna(row.previous_episode_key) else None
        if previous is not None and previous.drug_atc == row.drug_atc:
            parent[key] = previous.episode_key
            continue
        request = pd.Timestamp(row.request_date)
        candidates = [
            t
            for t in transferred.get((row.patient_key, row.drug_atc), [])
            if t.episode_key != key
            and pd.Timestamp(t.end_date) <= request <= pd.Timestamp(t.end_date) + pd.Timedelta(days=TRANSFER_DAYS)
        ]
        if candidates:
            parent[key] = max(candidates, key=lambda t: pd.Timestamp(t.end_date)).episode_key

    def root(key):
        seen = set()
        while key in parent and key not in seen:
            seen.add(key)
            key = parent[key]
        return key

    courses = {}
    for key in records:
        courses.setdefault(root(key), []).append(records[key])
    return period_end, cohort_name, [
        sorted(members, key=lambda m: (pd.Timestamp(m.request_date), m.episode_key))
        for members in courses.values()
    ]


def date(value):
    return pd.Timestamp(value) if pd.notna(value) else None


def durations(report: Path) -> pd.DataFrame:
    """Time on treatment and event flag per course, as the `persistence` tables define them."""
    period_end, cohort_name, courses = rebuild_courses(report)
    rows = []
    for members in courses:
        firsts = [pd.Timestamp(m.first_administration_date) for m in members if pd.notna(m.first_administration_date)]
        if not firsts or min(firsts) > period_end:
            continue
        start = min(firsts)
        ordered = sorted(members, key=lambda m: (pd.Timestamp(m.request_date), m.episode_key))
        first_episode, last = ordered[0], ordered[-1]
        end = pd.Timestamp(last.end_date) if pd.notna(last.end_date) else None
        ended = end is not None and end <= period_end
        event = (
            ended
            and last.status in ("STOPPED", "SWITCHED", "DECEASED")
            and (last.stop_reason if isinstance(last.stop_reason, str) else "") != "COMMON_LAW"
        )
        until = end if ended else period_end
        rows.append(
            {
                "cohort": cohort_name.get(first_episode.cohort_id),
                "drug_atc": first_episode.drug_atc,
                "days": (until - start).days,
                "event": int(event),
                "episodes": len(members),
            }
        )
    return pd.DataFrame(rows)


EVENTS = ("STOPPED", "SWITCHED", "DECEASED")


def stays(report: Path) -> pd.DataFrame:
    """Stays on one pathway within the courses, as `journey_pathways` defines them."""
    period_end, _, courses = rebuild_courses(report)
    rows = []
    for members in courses:
        runs = []
        for member in members:
            if runs and runs[-1][-1].pathway == member.pathway:
                runs[-1].append(member)
            else:
                runs.append([member])
        for index, run in enumerate(runs):
            firsts = [date(m.first_administration_date) for m in run if date(m.first_administration_date)]
            if not firsts or min(firsts) > period_end:
                continue
            last = run[-1]
            end = date(last.end_date)
            ended = end is not None and end <= period_end
            left = ended and (index < len(runs) - 1 or last.status in EVENTS)
            rows.append(
                {
                    "drug_atc": run[0].drug_atc,
                    "pathway": run[0].pathway,
                    "days": ((end if ended else period_end) - min(firsts)).days,
                    "event": int(left),
                }
            )
    return pd.DataFrame(rows)


def to_common_law(report: Path) -> pd.DataFrame:
    """Time from first derogatory administration to common law, as `journey_common_law` does:
    1 reached, 2 ended first (competing), 0 censored."""
    period_end, _, courses = rebuild_courses(report)
    rows = []
    for members in courses:
        derogatory = [date(m.first_administration_date) for m in members
                      if m.pathway != "COMMON_LAW" and date(m.first_administration_date)]
        if not derogatory or min(derogatory) > period_end:
            continue
        start = min(derogatory)
        common = [date(m.first_administration_date) for m in members
                  if m.pathway == "COMMON_LAW" and date(m.first_administration_date)]
        last = members[-1]
        end = date(last.end_date)
        reached_at = min(common) if common else (
            end if last.stop_reason == "COMMON_LAW" and last.pathway != "COMMON_LAW" else None
        )
        ended = end is not None and end <= period_end
        if reached_at is not None and start <= reached_at <= period_end:
            days, event = (reached_at - start).days, 1
        elif ended:
            days, event = (end - start).days, 2 if last.status in EVENTS else 0
        else:
            days, event = (period_end - start).days, 0
        rows.append({"drug_atc": members[0].drug_atc, "days": days, "event": event})
    return pd.DataFrame(rows)


def is_masked(value: str) -> bool:
    """A small count (`<10`) or a masked one (`suppressed`)."""
    return value in MASKED or value.startswith("<")


def published(report: Path, table: str):
    with open(report / f"tables/{table}.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def close(published_value: str, reference: float, what: str, errors: list) -> bool:
    """Compares one published value; returns whether it was compared."""
    if is_masked(published_value):
        return False
    if published_value == "":
        if not math.isfinite(reference):
            return True
        errors.append(f"{what}: published nothing, lifelines gives {reference:.4f}")
        return True
    if not math.isfinite(reference):
        errors.append(f"{what}: published {published_value}, lifelines gives {reference}")
        return True
    if abs(float(published_value) - reference) > TOLERANCE:
        errors.append(f"{what}: published {published_value}, lifelines gives {reference:.4f}")
    return True


def median_interval(kmf) -> tuple:
    """Lifelines' 95% interval of the median, in days (infinite when not reached)."""
    from lifelines.utils import median_survival_times

    bounds = median_survival_times(kmf.confidence_interval_)
    return float(bounds.iloc[0, 0]), float(bounds.iloc[0, 1])


def check_persistence(report: Path, data: pd.DataFrame, table: str, group_column: str, count: str = "courses") -> None:
    rows = published(report, table)
    if not rows:
        fail(f"the {table} table is empty")
    compared = {"survival": 0, "interval": 0, "at_risk": 0, "median": 0, "median_interval": 0, "courses": 0}
    errors = []
    fitted = {}
    for group_name, group in data.groupby(group_column):
        kmf = KaplanMeierFitter()
        kmf.fit(group["days"], event_observed=group["event"])
        fitted[group_name] = (kmf, group)
    for row in rows:
        group_name = row[group_column] if group_column in row else f"{row['drug_atc']}/{row['pathway']}"
        months = int(row["months"])
        if group_name not in fitted:
            fail(f"{group_column} {group_name!r} is published in {table} but has no course in the snapshot")
        kmf, group = fitted[group_name]
        # Months to days rounded half away from zero (24 months = 730.5 days -> 731).
        horizon = math.floor(months * DAYS_PER_MONTH + 0.5)
        what = f"{table}: {group_name} at {months} months"
        if not is_masked(row[count]):
            compared["courses"] += 1
            if int(row[count]) != len(group):
                errors.append(f"{what}: {row[count]} {count} published, {len(group)} rebuilt")
        if not is_masked(row["at_risk"]):
            compared["at_risk"] += 1
            at_risk = int((group["days"] >= horizon).sum())
            if int(row["at_risk"]) != at_risk:
                errors.append(f"{what}: {row['at_risk']} at risk published, {at_risk} recomputed")
        survival = float(kmf.survival_function_at_times(horizon).iloc[0])
        compared["survival"] += close(row["survival"], survival, f"{what} survival", errors)
        ci = kmf.confidence_interval_survival_function_
        ci = ci[ci.index <= horizon].iloc[-1]
        low, high = float(ci.iloc[0]), float(ci.iloc[1])
        if survival < 1.0 and math.isfinite(low):
            compared["interval"] += close(row["ci_low"], low, f"{what} lower bound", errors)
            compared["interval"] += close(row["ci_high"], high, f"{what} upper bound", errors)
        median = kmf.median_survival_time_
        compared["median"] += close(
            row["median_months"], median / DAYS_PER_MONTH if math.isfinite(median) else math.inf,
            f"{table}: {group_name} median", errors,
        )
        # The median's interval: lifelines reads it off the pointwise band (Brookmeyer-Crowley).
        m_low, m_high = median_interval(kmf)
        for column, value in (("median_ci_low", m_low), ("median_ci_high", m_high)):
            compared["median_interval"] += close(
                row[column], value / DAYS_PER_MONTH if math.isfinite(value) else math.inf,
                f"{table}: {group_name} {column}", errors,
            )
    if errors:
        fail("Kaplan-Meier figures differ from lifelines:\n  " + "\n  ".join(errors))
    # The comparison must have had something to compare.
    if compared["survival"] < 10 or compared["interval"] < 10 or compared["at_risk"] < 10 or compared["courses"] < 3:
        fail(f"too few published values to compare in {table}: {compared}")
    print(f"crosscheck: {table} agrees with lifelines {lifelines_version()} ({compared})")


def check_courses(data: pd.DataFrame) -> None:
    """The seeded journeys must exercise the chaining: courses of several episodes exist."""
    chained = int((data["episodes"] > 1).sum())
    if chained < 10:
        fail(f"only {chained} courses span several episodes: the chaining is not exercised")
    print(f"crosscheck: {len(data)} courses rebuilt, {chained} of them across several episodes")


def check_common_law(report: Path, data: pd.DataFrame) -> None:
    """Aalen-Johansen cumulative incidence of common law, stops competing, against lifelines."""
    import warnings

    from lifelines import AalenJohansenFitter

    rows = published(report, "journey_common_law")
    if not rows:
        fail("the journey_common_law table is empty")
    reached = int((data["event"] == 1).sum())
    if reached < 10:
        fail(f"only {reached} courses reached common law: the journey is not exercised")
    compared = {"share": 0, "interval": 0, "at_risk": 0, "courses": 0, "median": 0}
    errors = []
    fitted = {}
    for drug, group in data.groupby("drug_atc"):
        fitter = AalenJohansenFitter(calculate_variance=True, seed=0)
        with warnings.catch_warnings():
            # lifelines jitters tied times of different events; the estimate does not depend
            # on their order.
            warnings.simplefilter("ignore")
            fitter.fit(group["days"], group["event"], event_of_interest=1)
        fitted[drug] = (fitter, group)
    for row in rows:
        drug, months = row["drug_atc"], int(row["months"])
        if drug not in fitted:
            fail(f"drug {drug!r} is published in journey_common_law but has no course")
        fitter, group = fitted[drug]
        horizon = math.floor(months * DAYS_PER_MONTH + 0.5)
        what = f"journey_common_law: {drug} at {months} months"
        if not is_masked(row["courses"]):
            compared["courses"] += 1
            if int(row["courses"]) != len(group):
                errors.append(f"{what}: {row['courses']} courses published, {len(group)} rebuilt")
        if not is_masked(row["at_risk"]):
            compared["at_risk"] += 1
            at_risk = int((group["days"] >= horizon).sum())
            if int(row["at_risk"]) != at_risk:
                errors.append(f"{what}: {row['at_risk']} at risk published, {at_risk} recomputed")
        # Read just past the horizon: lifelines may have jittered an event of that very day.
        cif = fitter.cumulative_density_
        upto = cif[cif.index <= horizon + 0.01]
        share = float(upto.iloc[-1, 0]) if len(upto) else 0.0
        compared["share"] += close(row["common_law_share"], share, f"{what} share", errors)
        bounds = fitter.confidence_interval_
        bounds = bounds[bounds.index <= horizon + 0.01]
        if len(bounds) and 0.0 < share < 1.0:
            low, high = sorted(float(v) for v in bounds.iloc[-1])
            if math.isfinite(low):
                compared["interval"] += close(row["ci_low"], low, f"{what} lower bound", errors)
                compared["interval"] += close(row["ci_high"], high, f"{what} upper bound", errors)
        half = cif[cif.iloc[:, 0] >= 0.5]
        median = math.floor(float(half.index[0]) + 0.5) / DAYS_PER_MONTH if len(half) else math.inf
        compared["median"] += close(row["median_months"], median, f"journey_common_law: {drug} median", errors)
    if errors:
        fail("Aalen-Johansen figures differ from lifelines:\n  " + "\n  ".join(errors))
    if compared["share"] < 6 or compared["interval"] < 6:
        fail(f"too few published values to compare in journey_common_law: {compared}")
    print(f"crosscheck: journey_common_law agrees with lifelines' Aalen-Johansen ({compared}; {reached} courses reached common law)")


def lifelines_version() -> str:
    import lifelines

    return lifelines.__version__


def check_html(report: Path) -> None:
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    with tempfile.TemporaryDirectory() as profile:
        for argument in (
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            # No network at all: a dead proxy for every scheme, and no name resolution.
            "--proxy-server=http://127.0.0.1:9",
            "--proxy-bypass-list=<-loopback>",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            f"--user-data-dir={profile}",
            "--window-size=1280,2000",
        ):
            options.add_argument(argument)
        service = webdriver.ChromeService(executable_path="/usr/bin/chromedriver")
        driver = webdriver.Chrome(options=options, service=service)
        try:
            driver.get((report / "report.html").resolve().as_uri())
            title = driver.title
            fetched = driver.execute_script(
                "return performance.getEntriesByType('resource').map(e => e.name)"
            )
            charts = driver.execute_script(
                """return Array.from(document.querySelectorAll('svg')).map(svg => {
                     const box = svg.getBoundingClientRect();
                     const marks = svg.querySelectorAll('rect, polyline, line, path, circle');
                     const drawn = Array.from(marks).filter(m => {
                       const b = m.getBoundingClientRect();
                       return b.width > 0 || b.height > 0;
                     });
                     return {width: box.width, height: box.height, marks: drawn.length,
                             title: (svg.querySelector('title') || {}).textContent || ''};
                   })"""
            )
            tables = driver.execute_script("return document.querySelectorAll('table').length")
            driver.save_screenshot(str(report / "report.png"))
        finally:
            driver.quit()
    # French by default ("Rapport de l'observatoire..."), English on request.
    if "observatoire" not in title.lower() and "observatory" not in title.lower():
        fail(f"unexpected page title {title!r}")
    if fetched:
        fail(f"the report fetched resources: {fetched}")
    if len(charts) < 3:
        fail(f"expected at least 3 charts, found {len(charts)}")
    for chart in charts:
        if chart["width"] <= 0 or chart["height"] <= 0 or chart["marks"] == 0:
            fail(f"a chart is not drawn: {chart}")
    manifest = json.loads((report / "manifest.json").read_text())
    expected_tables = sum(1 for o in manifest["outputs"] if o["file"].endswith(".csv"))
    if tables < expected_tables:
        fail(f"the page shows {tables} tables, the report has {expected_tables}")
    print(
        f"crosscheck: report.html renders offline in Chromium with {len(charts)} charts "
        f"({', '.join(c['title'] for c in charts)}) and {tables} tables"
    )


def main() -> None:
    if len(sys.argv) != 2:
        fail("usage: crosscheck.py REPORT_DIR")
    report = Path(sys.argv[1])
    data = durations(report)
    check_courses(data)
    check_persistence(report, data, "persistence", "cohort")
    check_persistence(report, data, "persistence_drug", "drug_atc")
    pathway_stays = stays(report)
    pathway_stays["segment"] = pathway_stays["drug_atc"] + "/" + pathway_stays["pathway"]
    check_persistence(report, pathway_stays, "journey_pathways", "segment", count="stays")
    check_common_law(report, to_common_law(report))
    check_html(report)


if __name__ == "__main__":
    main()
