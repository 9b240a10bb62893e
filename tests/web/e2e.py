"""End-to-end check of the web front in headless Chromium (driven by tests/web/run).

A prescriber who has never seen the observatory signs in with a token, registers a patient,
declares an AAC treatment, grants its authorisation, initiates it, records a follow-up visit
with a disease measure and an adverse event, and stops it. The same records are then read back
through the gRPC API and found in the audit trail; a prescriber of another centre reaches none
of them; a form without its CSRF secret and the cookie of a revoked token are refused; a double
submission creates one patient; an analyst starts a report, follows it and downloads a table,
then writes a framework's periodic synthesis and downloads its Word document.
Every main page passes axe-core (WCAG 2 A and AA rules), injected from a local copy.
"""

import argparse
import datetime
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

parser = argparse.ArgumentParser()
parser.add_argument("--binary", required=True)
parser.add_argument("--grpc", required=True)
parser.add_argument("--web", required=True)
parser.add_argument("--generated", required=True)
parser.add_argument("--database", required=True)
args = parser.parse_args()
sys.path.insert(0, args.generated)

import grpc  # noqa: E402
from selenium import webdriver  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

from observatory.v1 import (  # noqa: E402
    reference_pb2,
    reference_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
)

WEB = args.web
SCREENSHOTS = os.environ.get("OBSERVATORY_SCREENSHOTS", "")
AXE = open(os.environ["OBSERVATORY_AXE_JS"], encoding="utf-8").read()
TODAY = datetime.date.today()


def check(condition, what):
    if not condition:
        raise SystemExit(f"web ({args.database}): {what}")


def cli(*argv):
    """Runs the observatory's command line; returns (stdout, stderr)."""
    p = subprocess.run([args.binary, *argv], capture_output=True, text=True, check=True)
    return p.stdout.strip(), p.stderr.strip()


def token(*argv):
    """A new token: (secret, id)."""
    secret, said = cli("token", "create", *argv)
    token_id = said.split()[1]
    return secret, token_id


def meta(secret):
    return [("authorization", f"Bearer {secret}")]


channel = grpc.insecure_channel(args.grpc)
grpc.channel_ready_future(channel).result(timeout=30)
reference = reference_pb2_grpc.ReferenceServiceStub(channel)
registry = registry_pb2_grpc.RegistryServiceStub(channel)

# Two MHEMO centres of the seeded registry: the prescriber's, and another one.
admin, _ = token("--role", "admin", "--expires", "1d")
centres = reference.ListCentres(
    reference_pb2.ListCentresRequest(filiere="MHEMO"), metadata=meta(admin)
).centres
check(len(centres) >= 2, "the seeded registry has two MHEMO centres")
home_centre, other_centre = centres[0].finess, centres[1].finess
prescriber, prescriber_id = token("--role", "prescriber", "--centre", home_centre, "--expires", "1d")
elsewhere, _ = token("--role", "prescriber", "--centre", other_centre, "--expires", "1d")
analyst, _ = token("--role", "analyst", "--filiere", "MHEMO", "--expires", "1d")
national, _ = token("--role", "national_analyst", "--expires", "1d")
manager, _ = token("--role", "data_manager", "--filiere", "MHEMO", "--expires", "1d")


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    profile = tempfile.mkdtemp()
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        # Nothing but this server: every other host unresolvable.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        f"--user-data-dir={profile}",
        "--window-size=1280,1600",
        "--lang=fr-FR",
    ):
        options.add_argument(argument)
    service = webdriver.ChromeService(executable_path="/usr/bin/chromedriver")
    return webdriver.Chrome(options=options, service=service)


accessibility = []


def audit_page(driver, name, screenshot=True):
    """axe-core on the page as it is; screenshots when asked."""
    driver.execute_script(AXE)
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})"
        ".then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}))))"
        ".catch(e => done([{id: 'axe-error', help: String(e), nodes: []}]));"
    )
    for v in result:
        accessibility.append(f"{name}: {v['id']} ({v.get('impact')}): {v['help']} at {v['nodes']}")
    fetched = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    foreign = [u for u in fetched if not u.startswith(WEB)]
    check(not foreign, f"{name} fetched from elsewhere: {foreign}")
    if SCREENSHOTS and screenshot:
        os.makedirs(SCREENSHOTS, exist_ok=True)
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1280, min(max(height, 800), 4000))
        driver.save_screenshot(os.path.join(SCREENSHOTS, f"{name}.png"))
        driver.set_window_size(1280, 1600)


def click_and_wait(driver, element):
    """Clicks a submit button and waits for the next page to load."""
    old = driver.find_element(By.TAG_NAME, "html")
    element.click()
    WebDriverWait(driver, 30).until(lambda d: _stale(old))
    WebDriverWait(driver, 30).until(lambda d: d.execute_script("return document.readyState") == "complete")


def _stale(element):
    try:
        element.is_enabled()
        return False
    except Exception:
        return True


def sign_in(driver, secret):
    driver.delete_all_cookies()
    driver.get(f"{WEB}/sign-in")
    driver.find_element(By.ID, "token").send_keys(secret)
    click_and_wait(driver, driver.find_element(By.CSS_SELECTOR, "form[action='/sign-in'] button"))


def set_value(driver, element_id, value):
    el = driver.find_element(By.ID, element_id)
    driver.execute_script("arguments[0].value = arguments[1]", el, value)


def submit_form_with(driver, field, value):
    """Clicks the button of the form that holds the hidden field `field` = `value`."""
    click_and_wait(driver, driver.find_element(
        By.XPATH, f"//form[.//input[@name='{field}' and @value='{value}']]//button[@type='submit']"
    ))


def body(driver):
    return driver.find_element(By.TAG_NAME, "body").text


def session_cookie(driver):
    return next(c["value"] for c in driver.get_cookies() if c["name"] == "obs_session")


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


opener = urllib.request.build_opener(NoRedirect)


def http(method, path, cookie, form=None, headers=None):
    """A request outside the browser: (status, headers, body)."""
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    req = urllib.request.Request(f"{WEB}{path}", data=data, method=method)
    req.add_header("Cookie", f"obs_session={cookie}")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with opener.open(req, timeout=30) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


driver = browser()
try:
    # --- The prescriber's journey -------------------------------------------------------------
    driver.get(f"{WEB}/patients")
    check("/sign-in" in driver.current_url, "a page asks for sign-in first")
    audit_page(driver, "sign-in")
    sign_in(driver, prescriber)
    check(driver.current_url.endswith("/patients"), f"signed in, the prescriber lands on the patients ({driver.current_url})")
    cookie = next(c for c in driver.get_cookies() if c["name"] == "obs_session")
    check(cookie["httpOnly"] and cookie.get("sameSite") == "Strict", f"the session cookie is HttpOnly and SameSite=Strict: {cookie}")
    audit_page(driver, "patients")

    click_and_wait(driver, driver.find_element(By.LINK_TEXT, "Inscrire un patient"))
    audit_page(driver, "patient-new")
    # A refused form keeps what was typed and names the field.
    driver.find_element(By.ID, "idmr").send_keys("123")
    click_and_wait(driver, driver.find_element(By.CSS_SELECTOR, "form[action='/patients'] button[type='submit']"))
    check(driver.find_element(By.ID, "idmr").get_attribute("value") == "123", "a refused form keeps what was typed")
    check(driver.find_elements(By.ID, "idmr-error"), "the refused field shows its error beside it")
    check(driver.find_element(By.ID, "idmr").get_attribute("aria-invalid") == "true", "the refused field is marked invalid")
    idmr = "".join(random.choice("0123456789") for _ in range(20))
    field = driver.find_element(By.ID, "idmr")
    field.clear()
    field.send_keys(idmr)
    Select(driver.find_element(By.ID, "sex")).select_by_value("MALE")
    set_value(driver, "birth_year_month", "2014-05")
    Select(driver.find_element(By.ID, "region_code")).select_by_value("11")
    Select(driver.find_element(By.ID, "diagnoses[0].orpha_code")).select_by_value("98878")
    click_and_wait(driver, driver.find_element(By.CSS_SELECTOR, "form[action='/patients'] button[type='submit']"))
    check("/patients/" in driver.current_url, f"the registration opens the patient's page ({driver.current_url})")
    patient_id = driver.current_url.rsplit("/", 1)[1]
    check(idmr in body(driver), "the patient's page shows the IdMR")
    audit_page(driver, "patient")
    # The case is put to the centre's local RCP, which gives its opinion; the treatment is
    # declared on it.
    driver.find_element(By.XPATH, "//summary[contains(., 'Présenter le dossier en RCP')]").click()
    Select(driver.find_element(By.ID, "level")).select_by_value("LOCAL")
    Select(driver.find_element(By.ID, "drug_atc")).select_by_value("B02BX07")
    Select(driver.find_element(By.ID, "indication_orpha_code")).select_by_value("98878")
    click_and_wait(driver, driver.find_element(By.XPATH, "//form[contains(@action, '/rcp')]//button"))
    check("Avis attendu" in body(driver), f"the case is put to the RCP, its opinion awaited ({body(driver)[:300]})")
    driver.find_element(By.XPATH, "//summary[contains(., \"Enregistrer l'avis de la RCP\")]").click()
    set_value(driver, "meeting_date", TODAY.isoformat())
    Select(driver.find_element(By.ID, "opinion")).select_by_value("FAVOURABLE")
    click_and_wait(driver, driver.find_element(By.XPATH, "//form[contains(@action, '/rcp/opinion')]//button"))
    check("Avis attendu" not in body(driver), "the RCP's opinion is recorded")
    audit_page(driver, "patient-rcp")

    click_and_wait(driver, driver.find_element(By.LINK_TEXT, "Déclarer un traitement"))
    cohort = Select(driver.find_element(By.ID, "cohort"))
    aac = next(o for o in cohort.options if "Concizumab AAC" in o.text)
    cohort.select_by_value(aac.get_attribute("value"))
    click_and_wait(driver, driver.find_element(By.XPATH, "//button[contains(., 'Choisir cette cohorte')]"))
    check("Demande d'autorisation" in body(driver), "an AAC declaration asks for the authorisation request")
    audit_page(driver, "episode-new")
    Select(driver.find_element(By.ID, "indication_orpha_code")).select_by_index(1)
    Select(driver.find_element(By.ID, "prescriber_rpps")).select_by_index(1)
    Select(driver.find_element(By.ID, "rcp_review_id")).select_by_index(1)
    driver.find_element(By.ID, "authorisation.reference").send_keys("AAC-2026-00042")
    driver.find_element(By.ID, "dosage.dose").send_keys("0,15")
    driver.find_element(By.ID, "dosage.unit").send_keys("mg/kg")
    driver.find_element(By.ID, "dosage.frequency").send_keys("une fois par jour")
    Select(driver.find_element(By.ID, "dosage.route")).select_by_value("SUBCUTANEOUS")
    click_and_wait(driver, driver.find_element(By.XPATH, "//button[contains(., 'Déclarer le traitement')]"))
    check("/episodes/" in driver.current_url, f"the declaration opens the episode ({driver.current_url})")
    episode_id = driver.current_url.rsplit("/", 1)[1]
    check("Déposée" in body(driver), "the authorisation request is filed")
    check("Favorable" in body(driver), "the treatment carries the RCP's opinion it was declared on")

    set_value(driver, "grant.valid_to", (TODAY + datetime.timedelta(days=300)).isoformat())
    driver.find_element(By.ID, "grant.reference").send_keys("AAC-2026-00042")
    submit_form_with(driver, "transition", "grant")
    check("Accordée" in body(driver), "the authorisation is granted")
    audit_page(driver, "episode-declared")
    submit_form_with(driver, "transition", "initiate")
    check("Initié" in body(driver), "the treatment is initiated")

    Select(driver.find_element(By.ID, "efficacy")).select_by_value("IMPROVED")
    Select(driver.find_element(By.ID, "adherence")).select_by_value("GOOD")
    driver.find_element(By.ID, "weight_kg").send_keys("31,5")
    driver.find_element(By.ID, "measure.ABR").send_keys("2,5")
    click_and_wait(driver, driver.find_element(By.XPATH, "//button[contains(., 'Enregistrer la visite')]"))
    check("ABR 2.5" in body(driver), "the visit and its measure are recorded")

    driver.find_element(By.ID, "meddra_pt_code").send_keys("10019211")
    Select(driver.find_element(By.ID, "outcome")).select_by_value("RECOVERED")
    Select(driver.find_element(By.ID, "causality")).select_by_value("POSSIBLY_RELATED")
    click_and_wait(driver, driver.find_element(By.XPATH, "//button[contains(., \"Enregistrer l'événement\")]"))
    check("10019211" in body(driver), "the adverse event is recorded")
    # Reported to the regional pharmacovigilance centre afterwards: completed, with a reason.
    driver.find_element(By.XPATH, "//summary[contains(., 'Compléter ou corriger')]").click()
    set_value(driver, "fix_event.pv_declaration_date", TODAY.isoformat())
    driver.find_element(By.ID, "fix_event.pv_reference").send_keys("CRPV-PARIS-2026-118")
    driver.find_element(By.ID, "fix_event.pv_receiver").send_keys("CRPV de Paris")
    click_and_wait(driver, driver.find_element(By.XPATH, "//form[contains(@action, '/adverse-events/update')]//button"))
    check(driver.find_elements(By.ID, "fix_event.reason-error"), "a correction without a reason is refused")
    driver.find_element(By.ID, "fix_event.reason").send_keys("déclaré au CRPV")
    click_and_wait(driver, driver.find_element(By.XPATH, "//form[contains(@action, '/adverse-events/update')]//button"))
    check("CRPV-PARIS-2026-118" in body(driver), "the adverse event's declaration is completed")
    check("CRPV de Paris" in body(driver), "the declaration names who it went to")
    audit_page(driver, "episode")
    # The event as a pharmacovigilance case: its sheet to print, its E2B(R3) message to send.
    episode_url = driver.current_url
    sheet_link = driver.find_element(By.XPATH, "//a[starts-with(@href, '/cases?event=') and contains(@href, 'format=html')]")
    e2b_path = driver.find_element(
        By.XPATH, "//a[starts-with(@href, '/cases?event=') and contains(@href, 'format=e2b')]").get_attribute("href")
    click_and_wait(driver, sheet_link)
    check("Fiches de cas de pharmacovigilance" in body(driver) and "CRPV de Paris" in body(driver)
          and "CRPV-PARIS-2026-118" in body(driver), "the event's case sheet names its declaration")
    status, headers, xml = http("GET", e2b_path.replace(WEB, ""), session_cookie(driver))
    check(status == 200 and xml.startswith(b"<?xml") and b"PORR_IN049016UV" in xml
          and b'extension="CRPV de Paris"' in xml, f"the event's E2B(R3) message is downloaded ({status})")
    driver.get(episode_url)
    click_and_wait(driver, driver.find_element(By.LINK_TEXT, "Pharmacovigilance"))
    audit_page(driver, "cases")
    set_value(driver, "period.from", TODAY.replace(day=1).isoformat())
    set_value(driver, "period.to", TODAY.isoformat())
    click_and_wait(driver, driver.find_element(By.XPATH, "//button[contains(., 'Exporter')]"))
    check("CRPV-PARIS-2026-118" in body(driver), "the period's case sheets hold the event")
    driver.get(episode_url)
    # The dosage was typed wrong: corrected from the form filled with what is recorded.
    driver.find_element(By.XPATH, "//summary[contains(., 'Corriger ce traitement')]").click()
    check(driver.find_element(By.ID, "fix_episode.dosage.unit").get_attribute("value") == "mg/kg",
          "the correction form opens with what is recorded")
    set_value(driver, "fix_episode.dosage.dose", "0,2")
    click_and_wait(driver, driver.find_element(By.XPATH, "//form[contains(@action, '/episodes/') and contains(@action, '/update')]//button"))
    check(driver.find_elements(By.ID, "fix_episode.reason-error"), "an episode correction without a reason is refused")
    driver.find_element(By.ID, "fix_episode.reason").send_keys("posologie relue sur l'ordonnance")
    click_and_wait(driver, driver.find_element(By.XPATH, "//form[contains(@action, '/episodes/') and contains(@action, '/update')]//button"))
    check("0.2 mg/kg" in body(driver), "the episode's dosage is corrected")
    audit_page(driver, "episode-corrected")
    driver.find_element(By.XPATH, "//summary[contains(., 'Corriger une visite')]").click()
    set_value(driver, "fix_visit.weight_kg", "32")
    driver.find_element(By.ID, "fix_visit.reason").send_keys("poids du dossier hospitalier")
    click_and_wait(driver, driver.find_element(By.XPATH, "//form[contains(@action, '/follow-ups/update')]//button"))
    check("32 kg" in body(driver), "the visit's weight is corrected")
    # A serious event names its seriousness criteria, as a valid pharmacovigilance case does.
    driver.find_element(By.ID, "meddra_pt_code").send_keys("10022086")
    driver.find_element(By.ID, "serious").click()
    Select(driver.find_element(By.ID, "outcome")).select_by_value("RECOVERING")
    Select(driver.find_element(By.ID, "causality")).select_by_value("POSSIBLY_RELATED")
    click_and_wait(driver, driver.find_element(By.XPATH, "//button[contains(., \"Enregistrer l'événement\")]"))
    check(driver.find_elements(By.ID, "case_details.seriousness-error"), "a serious event without criteria is refused")
    driver.find_element(By.ID, "criterion-HOSPITALISATION").click()
    Select(driver.find_element(By.ID, "case_details.action_taken")).select_by_value("WITHDRAWN")
    Select(driver.find_element(By.ID, "case_details.reporter")).select_by_value("PHYSICIAN")
    driver.find_element(By.ID, "case_details.batch").send_keys("LOT-24A17")
    click_and_wait(driver, driver.find_element(By.XPATH, "//button[contains(., \"Enregistrer l'événement\")]"))
    check("Hospitalisation (ou sa prolongation)" in body(driver), "the serious event and its criterion are recorded")

    Select(driver.find_element(By.ID, "stop.reason")).select_by_value("ADVERSE_EVENT")
    submit_form_with(driver, "transition", "stop")
    check("Arrêté" in body(driver), "the treatment is stopped")

    click_and_wait(driver, driver.find_element(By.XPATH, "//a[@href='/history/EPISODE/" + episode_id + "']"))
    check("Version 5" in body(driver), "the history shows every version of the episode, its correction included")
    check(f"prescriber:{prescriber_id}" in body(driver), "the history names who wrote each version")
    audit_page(driver, "history")
    driver.get(f"{WEB}/patients/{patient_id}")
    check("Suivi du dossier" in body(driver) and "Fait" in body(driver), "the patient's record status matrix is shown")
    driver.find_element(By.XPATH, "//summary[contains(., 'Corriger le dossier')]").click()
    Select(driver.find_element(By.ID, "region_code")).select_by_value("84")
    driver.find_element(By.ID, "reason").send_keys("déménagement à Lyon")
    click_and_wait(driver, driver.find_element(By.XPATH, "//button[contains(., 'Enregistrer la correction')]"))
    check("Auvergne" in body(driver), "the patient's region is corrected")
    check("4 · Historique" in body(driver), "the correction is a new version (after the RCP request and opinion)")
    audit_page(driver, "patient-status")
    click_and_wait(driver, driver.find_element(By.LINK_TEXT, "À faire"))
    check("Autorisations qui expirent" in body(driver) and "Visites de suivi en retard" in body(driver),
          "the worklist shows its three lists")
    click_and_wait(driver, driver.find_element(By.LINK_TEXT, "90 jours"))
    check("Traitements déclarés jamais initiés" in body(driver), "the worklist looks 90 days ahead")
    audit_page(driver, "worklist")

    # --- A switch: another patient's AAC treatment replaced by a common-law one ------------------
    click_and_wait(driver, driver.find_element(By.LINK_TEXT, "Patients"))
    click_and_wait(driver, driver.find_element(By.LINK_TEXT, "Inscrire un patient"))
    switcher = "".join(random.choice("0123456789") for _ in range(20))
    driver.find_element(By.ID, "idmr").send_keys(switcher)
    Select(driver.find_element(By.ID, "sex")).select_by_value("MALE")
    set_value(driver, "birth_year_month", "2012-02")
    click_and_wait(driver, driver.find_element(By.CSS_SELECTOR, "form[action='/patients'] button[type='submit']"))
    click_and_wait(driver, driver.find_element(By.LINK_TEXT, "Déclarer un traitement"))
    cohort = Select(driver.find_element(By.ID, "cohort"))
    cohort.select_by_value(next(o for o in cohort.options if "Concizumab AAC" in o.text).get_attribute("value"))
    click_and_wait(driver, driver.find_element(By.XPATH, "//button[contains(., 'Choisir cette cohorte')]"))
    Select(driver.find_element(By.ID, "indication_orpha_code")).select_by_value("98878")
    Select(driver.find_element(By.ID, "prescriber_rpps")).select_by_index(1)
    click_and_wait(driver, driver.find_element(By.XPATH, "//button[contains(., 'Déclarer le traitement')]"))
    first_episode = driver.current_url.rsplit("/", 1)[1]
    set_value(driver, "grant.valid_to", (TODAY + datetime.timedelta(days=200)).isoformat())
    driver.find_element(By.ID, "grant.reference").send_keys("AAC-2026-00043")
    submit_form_with(driver, "transition", "grant")
    submit_form_with(driver, "transition", "initiate")
    click_and_wait(driver, driver.find_element(By.LINK_TEXT, "Déclarer le traitement qui le remplace"))
    check("remplacera" in body(driver), "the declaration says which treatment it replaces")
    cohort = Select(driver.find_element(By.ID, "cohort"))
    cohort.select_by_value(next(o for o in cohort.options if "Emicizumab common law" in o.text).get_attribute("value"))
    click_and_wait(driver, driver.find_element(By.XPATH, "//button[contains(., 'Choisir cette cohorte')]"))
    Select(driver.find_element(By.ID, "indication_orpha_code")).select_by_value("98878")
    Select(driver.find_element(By.ID, "prescriber_rpps")).select_by_index(1)
    click_and_wait(driver, driver.find_element(By.XPATH, "//button[contains(., 'Déclarer le traitement')]"))
    check("/episodes/" in driver.current_url and first_episode not in driver.current_url, "the new treatment is declared")
    replaced = registry.GetEpisode(registry_pb2.GetRequest(id=first_episode), metadata=meta(prescriber))
    check(replaced.status == registry_pb2.EPISODE_STATUS_SWITCHED, f"the replaced treatment is closed as switched ({replaced.status})")

    # --- On a phone's width: nothing wider than the screen but the tables, which scroll --------
    driver.set_window_size(390, 844)
    driver.get(f"{WEB}/episodes/{episode_id}")
    overflow = driver.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
    check(overflow <= 1, f"the episode page fits a phone's width ({overflow} px too wide)")
    audit_page(driver, "episode-narrow", screenshot=False)
    if SCREENSHOTS:
        driver.save_screenshot(os.path.join(SCREENSHOTS, "episode-narrow.png"))
    driver.set_window_size(1280, 1600)

    # --- The same records over gRPC, and in the audit trail -------------------------------------
    episode = registry.GetEpisode(registry_pb2.GetRequest(id=episode_id), metadata=meta(prescriber))
    check(episode.status == registry_pb2.EPISODE_STATUS_STOPPED, "gRPC reads the stopped episode")
    check(episode.stop_reason == registry_pb2.STOP_REASON_ADVERSE_EVENT, "gRPC reads the stop reason")
    check(episode.patient_id == patient_id and episode.dosage.unit == "mg/kg", "gRPC reads the declaration")
    visits = registry.ListFollowUps(registry_pb2.ListByEpisodeRequest(episode_id=episode_id), metadata=meta(prescriber))
    check(len(visits.follow_ups) == 1 and visits.follow_ups[0].measures[0].value == 2.5, "gRPC reads the visit")
    events = registry.ListAdverseEvents(registry_pb2.ListByEpisodeRequest(episode_id=episode_id), metadata=meta(prescriber))
    check(len(events.adverse_events) == 2 and events.adverse_events[0].meddra_pt_code == "10019211", "gRPC reads the events")
    serious = events.adverse_events[1]
    check(list(serious.case_details.seriousness) == [registry_pb2.SERIOUSNESS_CRITERION_HOSPITALISATION]
          and serious.case_details.batch == "LOT-24A17"
          and serious.case_details.action_taken == registry_pb2.DRUG_ACTION_WITHDRAWN, "gRPC reads the case fields typed in the form")
    trail, _ = cli("audit", "export", "--from", "2000-01-01", "--to", "2100-01-01")
    actions = {}
    for line in trail.splitlines():
        e = json.loads(line)
        if e.get("actor") == f"prescriber:{prescriber_id}":
            actions.setdefault(e["action"], 0)
            actions[e["action"]] += 1
    for action in ("SignIn", "RegisterPatient", "UpdatePatient", "UpdateAdverseEvent", "GetPatient", "DeclareEpisode", "TransitionAuthorisation",
                   "TransitionEpisode", "RecordFollowUp", "RecordAdverseEvent", "GetEpisode", "GetHistory",
                   "ListPatients", "GetWorklist"):
        check(actions.get(action), f"the audit trail records the prescriber's {action} ({sorted(actions)})")

    # --- Bounds of the session ------------------------------------------------------------------
    driver.get(f"{WEB}/patients?pathway=AAC&status=STOPPED")
    check(idmr in body(driver), "the patient is found among the stopped AAC treatments")
    driver.get(f"{WEB}/patients?pathway=OFF_LABEL")
    check(idmr not in body(driver), "and not among the off-label ones")
    session = session_cookie(driver)
    status, _, _ = http("POST", "/patients", session, {"idmr": "12345678901234567890", "sex": "MALE"})
    check(status == 403, f"a POST without its CSRF secret is refused ({status})")
    status, _, _ = http("POST", "/sign-out", session, {"csrf": "0" * 64})
    check(status == 403, f"a POST with a wrong CSRF secret is refused ({status})")
    driver.get(f"{WEB}/patients/new")
    csrf = driver.find_element(By.NAME, "csrf").get_attribute("value")
    key = driver.find_element(By.NAME, "idempotency_key").get_attribute("value")
    status, _, _ = http("POST", "/patients", session, {"csrf": csrf, "subject": "idmr"},
                        headers={"Origin": "https://elsewhere.example", "Sec-Fetch-Site": "cross-site"})
    check(status == 403, f"a POST from another site is refused ({status})")
    twice = "".join(random.choice("0123456789") for _ in range(20))
    form = {"csrf": csrf, "idempotency_key": key, "subject": "idmr", "idmr": twice, "sex": "FEMALE",
            "birth_year_month": "2010-01"}
    first = http("POST", "/patients", session, form)
    second = http("POST", "/patients", session, form)
    check(first[0] == 303 and second[0] == 303, f"both submissions answer ({first[0]}, {second[0]})")
    check(first[1]["location"] == second[1]["location"], "a double submission creates one patient")
    found = registry.ListPatients(registry_pb2.ListPatientsRequest(pseudonym=twice), metadata=meta(prescriber))
    check(len(found.patients) == 1, "one patient for a double submission")

    # --- Another centre's prescriber sees none of it ----------------------------------------------
    sign_in(driver, elsewhere)
    driver.get(f"{WEB}/patients/{patient_id}")
    check("introuvable" in body(driver), "another centre's prescriber cannot open the patient")
    driver.get(f"{WEB}/episodes/{episode_id}")
    check("introuvable" in body(driver) and "10019211" not in body(driver), "nor the episode")
    driver.get(f"{WEB}/history/EPISODE/{episode_id}")
    check("introuvable" in body(driver), "nor its history")
    driver.get(f"{WEB}/patients?q={idmr}")
    check("Aucun patient" in body(driver), "nor find the patient by IdMR")
    driver.get(f"{WEB}/patients?pathway=AAC&status=STOPPED")
    check(idmr not in body(driver), "nor among the stopped AAC treatments")

    # --- A revoked token ends its sessions --------------------------------------------------------
    cli("token", "revoke", prescriber_id)
    status, headers, _ = http("GET", "/patients", session)
    check(status == 303 and "ended=token" in headers.get("location", ""), f"a revoked token's cookie is refused ({status})")
    status, _, _ = http("POST", "/patients", session, form)
    check(status == 401, f"a revoked token's cookie cannot write ({status})")

    # --- The analyst ------------------------------------------------------------------------------
    sign_in(driver, analyst)
    check(driver.current_url.endswith("/reports"), f"the analyst lands on the reports ({driver.current_url})")
    check("secret statistique" in body(driver), "the suppression threshold is stated")
    audit_page(driver, "reports")
    set_value(driver, "period", f"{TODAY.year}")
    click_and_wait(driver, driver.find_element(By.XPATH, "//button[contains(., 'Lancer')]"))
    check("/reports/" in driver.current_url, "the run's page opens")
    deadline = time.time() + 240
    while "Terminé" not in body(driver) and time.time() < deadline:
        check("Échec" not in body(driver), f"the report run failed: {body(driver)}")
        time.sleep(2)
        driver.refresh()
    check("Terminé" in body(driver), "the report run succeeds")
    audit_page(driver, "report")
    link = driver.find_element(By.XPATH, "//a[contains(@href, '.csv')]").get_attribute("href")
    status, headers, content = http("GET", urllib.parse.urlparse(link).path, session_cookie(driver))
    check(status == 200 and headers.get("content-type", "").startswith("text/csv"), f"a table downloads as CSV ({status})")
    check(b"\n" in content and len(content) > 10, "the table has a header and rows")
    status, headers, content = http("GET", urllib.parse.urlparse(driver.current_url).path + "/files/report.xlsx",
                                    session_cookie(driver))
    check(status == 200 and content[:2] == b"PK", "the workbook downloads as XLSX")
    driver.get(driver.current_url + "/files/report.html")
    check(len(body(driver)) > 100, "the HTML report opens")

    # The periodic synthesis of concizumab's early access (an MHEMO framework), from its page.
    driver.get(f"{WEB}/frameworks/0193a000-0000-7000-8000-000000000002")
    check("Synthèse périodique du cadre" in body(driver), "the framework's page offers its synthesis")
    # A synthesis every 6 months from 2023-12-01, none written yet: the first period is due, and
    # the form holds its dates.
    check("Prochaine synthèse due 01/12/2023 → 31/05/2024" in body(driver)
          and driver.find_element(By.ID, "range.from").get_attribute("value") == "2023-12-01",
          f"the page names the next synthesis due and fills the form with it ({body(driver)[:900]})")
    audit_page(driver, "framework_synthesis")
    set_value(driver, "range.to", "")
    click_and_wait(driver, driver.find_element(By.XPATH, "//button[contains(., 'Rédiger la synthèse')]"))
    check(driver.find_elements(By.ID, "range.to-error"), "a synthesis with no end date is refused, by field")
    set_value(driver, "range.from", f"{TODAY.year - 1}-01-01")
    set_value(driver, "range.to", f"{TODAY.year - 1}-12-31")
    click_and_wait(driver, driver.find_element(By.XPATH, "//button[contains(., 'Rédiger la synthèse')]"))
    check("/reports/" in driver.current_url, "the synthesis run's page opens")
    deadline = time.time() + 240
    while "Terminé" not in body(driver) and time.time() < deadline:
        check("Échec" not in body(driver), f"the synthesis run failed: {body(driver)}")
        time.sleep(2)
        driver.refresh()
    check("Terminé" in body(driver) and "Synthèse de" in body(driver), "the synthesis run succeeds")
    audit_page(driver, "synthesis_run")
    status, headers, content = http("GET", urllib.parse.urlparse(driver.current_url).path + "/files/synthesis.docx",
                                    session_cookie(driver))
    check(status == 200 and content[:2] == b"PK"
          and "wordprocessingml" in headers.get("content-type", ""), f"the Word document downloads ({status})")
    driver.get(driver.current_url + "/files/synthesis.html")
    check("Synthèse périodique" in body(driver), "the synthesis opens as a page")

    # --- The national analyst: a report over every filière, which the MHEMO analyst never sees --
    sign_in(driver, national)
    check("Toutes les filières (national)" in body(driver), "the national analyst may run a national report")
    set_value(driver, "period", f"{TODAY.year}")
    Select(driver.find_element(By.ID, "filiere")).select_by_value("")
    click_and_wait(driver, driver.find_element(By.XPATH, "//button[contains(., 'Lancer')]"))
    national_run = urllib.parse.urlparse(driver.current_url).path
    check(national_run.startswith("/reports/") and "Toutes les filières" in body(driver),
          f"the national run's page opens ({body(driver)[:400]})")
    sign_in(driver, analyst)
    check(national_run.rsplit("/", 1)[1] not in driver.page_source, "the MHEMO analyst does not list the national run")
    status, _, _ = http("GET", national_run, session_cookie(driver))
    check(status in (403, 404), f"the MHEMO analyst cannot open the national run ({status})")

    # --- The data manager: cohorts --------------------------------------------------------------
    sign_in(driver, manager)
    click_and_wait(driver, driver.find_element(By.LINK_TEXT, "Cohortes"))
    audit_page(driver, "cohorts")
    driver.find_element(By.ID, "name").send_keys("Emicizumab hors AMM, Willebrand (test)")
    Select(driver.find_element(By.ID, "pathway")).select_by_value("OFF_LABEL")
    Select(driver.find_element(By.ID, "drug_atc")).select_by_value("B02BX06")
    click_and_wait(driver, driver.find_element(By.XPATH, "//button[contains(., 'Créer la cohorte')]"))
    check(driver.find_elements(By.CSS_SELECTOR, "#form-errors"), "a cohort without a disease is refused, and says why")
    check(driver.find_element(By.ID, "name").get_attribute("value").startswith("Emicizumab"), "the refused form keeps its values")
    driver.find_element(By.ID, "orpha-903").click()
    click_and_wait(driver, driver.find_element(By.XPATH, "//button[contains(., 'Créer la cohorte')]"))
    check("Emicizumab hors AMM, Willebrand (test)" in body(driver), "the data manager creates a cohort")
    click_and_wait(driver, driver.find_element(
        By.XPATH, "//button[@aria-label='Clore Emicizumab hors AMM, Willebrand (test)']"))
    check(driver.find_elements(By.XPATH, "//button[@aria-label='Rouvrir Emicizumab hors AMM, Willebrand (test)']"),
          "the data manager closes the cohort")

    # --- The admin: tokens and the audit trail ----------------------------------------------------
    sign_in(driver, admin)
    check(driver.current_url.endswith("/centres"), f"the admin lands on the centres ({driver.current_url})")
    click_and_wait(driver, driver.find_element(By.LINK_TEXT, "Jetons"))
    Select(driver.find_element(By.ID, "role")).select_by_value("prescriber")
    click_and_wait(driver, driver.find_element(By.XPATH, "//button[contains(., 'Créer le jeton')]"))
    check(driver.find_elements(By.ID, "centres-error"), "a prescriber's token without a centre is refused, by field")
    driver.find_element(By.ID, "centres").send_keys(home_centre)
    token_form = {f.get_attribute("name"): f.get_attribute("value")
                  for f in driver.find_elements(By.CSS_SELECTOR, "form[action='/admin/tokens'] input")}
    click_and_wait(driver, driver.find_element(By.XPATH, "//button[contains(., 'Créer le jeton')]"))
    new_secret = driver.find_element(By.ID, "new-secret").text
    # The same form sent again (a double click): no second token.
    before = cli("token", "list")[0].count("prescriber")
    token_form.update({"role": "prescriber", "centres": home_centre})
    status, _, replay = http("POST", "/admin/tokens", session_cookie(driver), token_form)
    shown = replay.decode()
    shown = shown[shown.find("<main"):][:600]
    check(status == 200 and "déjà été envoyé" in shown, f"a second submission is a replay ({status}, {sorted(token_form)}, {shown})")
    check(cli("token", "list")[0].count("prescriber") == before, "a double submission makes one token")
    check(new_secret.startswith("obs_"), "the new token's secret is shown once")
    # No screenshot: the page shows a secret.
    audit_page(driver, "admin-tokens", screenshot=False)
    found = registry.ListPatients(registry_pb2.ListPatientsRequest(), metadata=meta(new_secret))
    check(len(found.patients) >= 1, "the token made in the page works over gRPC")
    new_id = driver.find_element(By.XPATH, "//div[@role='status']//p[@class='help']/code").text
    click_and_wait(driver, driver.find_element(By.XPATH, f"//form[@action='/admin/tokens/{new_id}/revoke']//button"))
    try:
        registry.ListPatients(registry_pb2.ListPatientsRequest(), metadata=meta(new_secret))
        check(False, "a token revoked in the page no longer works")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.UNAUTHENTICATED, f"a revoked token is UNAUTHENTICATED ({e.code()})")
    click_and_wait(driver, driver.find_element(By.LINK_TEXT, "Centres"))
    audit_page(driver, "centres")
    click_and_wait(driver, driver.find_element(By.LINK_TEXT, home_centre))
    driver.find_element(By.ID, "name").send_keys("CRMR maladies hémorragiques (renommé)")
    click_and_wait(driver, driver.find_element(By.XPATH, "//button[contains(., 'Enregistrer la correction')]"))
    check(driver.find_elements(By.ID, "reason-error"), "a correction without a reason is refused")
    driver.find_element(By.ID, "reason").send_keys("nom du décret de labellisation")
    click_and_wait(driver, driver.find_element(By.XPATH, "//button[contains(., 'Enregistrer la correction')]"))
    check("CRMR maladies hémorragiques (renommé)" in body(driver), "the admin corrects a centre")
    audit_page(driver, "centre")
    click_and_wait(driver, driver.find_element(By.XPATH, f"//a[@href='/history/CENTRE/{home_centre}']"))
    check("nom du décret de labellisation" in body(driver), "the correction's reason is in the centre's history")
    click_and_wait(driver, driver.find_element(By.LINK_TEXT, "Cadres"))
    audit_page(driver, "frameworks")
    Select(driver.find_element(By.ID, "pathway")).select_by_value("CPC")
    Select(driver.find_element(By.ID, "drug_atc")).select_by_value("B02BX06")
    driver.find_element(By.ID, "indication").send_keys("Maladie de Willebrand sévère (test)")
    driver.find_element(By.ID, "f-orpha-903").click()
    driver.find_element(By.ID, "decision_reference").send_keys("CPC-TEST-2026-01")
    set_value(driver, "valid_from", TODAY.isoformat())
    driver.find_element(By.ID, "source").send_keys("décision de test, non publiée")
    click_and_wait(driver, driver.find_element(By.XPATH, "//button[contains(., 'Déclarer le cadre')]"))
    check("/frameworks/" in driver.current_url, f"the admin declares a framework ({body(driver)[:400]})")
    audit_page(driver, "framework")
    Select(driver.find_element(By.ID, "step")).select_by_value("suspend")
    click_and_wait(driver, driver.find_element(By.XPATH, "//button[contains(., \"Enregistrer l'étape\")]"))
    check("Suspendu" in body(driver), f"the admin suspends the framework ({body(driver)[:600]})")
    # A protocol amendment: a new version, a synthesis every 6 months; the status stays.
    Select(driver.find_element(By.ID, "step")).select_by_value("amend_protocol")
    set_value(driver, "protocol_version", "2")
    set_value(driver, "synthesis_months", "40")
    click_and_wait(driver, driver.find_element(By.XPATH, "//button[contains(., \"Enregistrer l'étape\")]"))
    check(driver.find_elements(By.ID, "synthesis_months-error"), "an interval over 36 months is refused, by field")
    set_value(driver, "synthesis_months", "6")
    click_and_wait(driver, driver.find_element(By.XPATH, "//button[contains(., \"Enregistrer l'étape\")]"))
    text = body(driver)
    check("v2" in text and "tous les 6 mois" in text and "Suspendu" in text,
          f"the admin amends the framework's protocol ({text[:600]})")
    click_and_wait(driver, driver.find_element(By.LINK_TEXT, "Audit"))
    click_and_wait(driver, driver.find_element(By.XPATH, "//button[contains(., 'Vérifier')]"))
    check("Le journal est intact" in body(driver), "the audit trail verifies from the page")
    audit_page(driver, "admin-audit")
    status, headers, content = http(
        "GET", f"/admin/audit/export?from={TODAY - datetime.timedelta(days=1)}&to={TODAY}", session_cookie(driver))
    lines = [json.loads(x) for x in content.splitlines() if x.strip()]
    check(status == 200 and any(e["action"] == "RevokeToken" for e in lines), f"the trail exports as JSON lines ({status})")
    click_and_wait(driver, driver.find_element(By.LINK_TEXT, "Référentiels"))
    text = body(driver)
    check("Listes livrées" in text and "Maladies (ORPHA), Médicaments (ATC)" in text and "diseases.csv" in text,
          f"the admin sees the reference releases, the shipped lists in force ({text[:600]})")
    audit_page(driver, "admin-reference")
finally:
    driver.quit()

check(not accessibility, "accessibility violations:\n  " + "\n  ".join(accessibility))
print(f"web ({args.database}): journey, scope, CSRF, revocation, idempotency, report and accessibility checks pass")
