"""Cross-checks a written report against independent implementations.

1. Persistence on treatment: the durations are rebuilt here from the report's own snapshot
   (episodes and cohorts Parquet files) following the published definition, and each cohort is
   fitted with lifelines' KaplanMeierFitter. Every published (not suppressed) survival estimate,
   95% interval (lifelines' exponential Greenwood, i.e. the log(-log) scale), number at risk
   and median must agree within the published rounding (2 decimals).
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
MASKED = ("suppressed",)


def fail(message):
    print(f"crosscheck: {message}", file=sys.stderr)
    sys.exit(1)


def durations(report: Path) -> pd.DataFrame:
    """Time on treatment and event flag per episode, as the report defines them."""
    manifest = json.loads((report / "manifest.json").read_text())
    period_end = pd.Timestamp(manifest["period_to"])
    episodes = pq.read_table(report / "snapshot/episodes.parquet").to_pandas()
    cohorts = pq.read_table(report / "snapshot/cohorts.parquet").to_pandas()[["cohort_id", "cohort"]]
    first = pd.to_datetime(episodes["first_administration_date"])
    end = pd.to_datetime(episodes["end_date"])
    started = first.notna() & (first <= period_end)
    ended = end.notna() & (end <= period_end)
    event = (
        ended
        & episodes["status"].isin(["STOPPED", "SWITCHED", "DECEASED"])
        & (episodes["stop_reason"].fillna("") != "COMMON_LAW")
    )
    until = end.where(ended, period_end)
    frame = pd.DataFrame(
        {
            "cohort_id": episodes["cohort_id"],
            "days": (until - first).dt.days,
            "event": event.astype(int),
        }
    )[started]
    return frame.merge(cohorts, on="cohort_id", how="left")


def is_masked(value: str) -> bool:
    """A small count (`<10`) or a masked one (`suppressed`)."""
    return value in MASKED or value.startswith("<")


def published(report: Path):
    with open(report / "tables/persistence.csv", newline="", encoding="utf-8") as f:
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


def check_persistence(report: Path) -> None:
    data = durations(report)
    rows = published(report)
    if not rows:
        fail("the persistence table is empty")
    compared = {"survival": 0, "interval": 0, "at_risk": 0, "median": 0}
    errors = []
    fitted = {}
    for cohort, group in data.groupby("cohort"):
        kmf = KaplanMeierFitter()
        kmf.fit(group["days"], event_observed=group["event"])
        fitted[cohort] = (kmf, group)
    for row in rows:
        cohort, months = row["cohort"], int(row["months"])
        if cohort not in fitted:
            fail(f"cohort {cohort!r} is published but has no episode in the snapshot")
        kmf, group = fitted[cohort]
        # Months to days rounded half away from zero (24 months = 730.5 days -> 731).
        horizon = math.floor(months * DAYS_PER_MONTH + 0.5)
        what = f"{cohort} at {months} months"
        if not is_masked(row["episodes"]):
            if int(row["episodes"]) != len(group):
                errors.append(f"{what}: {row['episodes']} episodes published, {len(group)} in the snapshot")
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
            f"{cohort} median", errors,
        )
    if errors:
        fail("Kaplan-Meier figures differ from lifelines:\n  " + "\n  ".join(errors))
    # The comparison must have had something to compare.
    if compared["survival"] < 10 or compared["interval"] < 10 or compared["at_risk"] < 10:
        fail(f"too few published values to compare: {compared}")
    print(f"crosscheck: persistence agrees with lifelines {lifelines_version()} ({compared})")


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
    if "observatory" not in title.lower():
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
    check_persistence(report)
    check_html(report)


if __name__ == "__main__":
    main()
