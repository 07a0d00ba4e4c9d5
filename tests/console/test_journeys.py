"""What an administrator does in the console, in chromium, against the real processes."""
from __future__ import annotations

import csv
import io

import openpyxl
import pytest
from playwright.sync_api import expect

from service.catalog import links
from service.people import employees
from tests.conftest import wait_for
from tests.console.conftest import (ADMIN, ADMIN_PASSWORD, ANNA, BO, CECILIA, HLR, SETTINGS_ONLY,
                                    SETTINGS_PASSWORD, screenshot, sign_in)

pytestmark = pytest.mark.e2e

LIVE_S = 90_000  # ms: a backfill on this shared machine, through the queue and the simulator


def backfill_done(conn, link_id: int) -> dict:
    return wait_for(lambda: conn.execute(
        "SELECT backfill_state, backfill_granted, backfill_unmatched FROM links WHERE id = %s"
        " AND backfill_state = 'done'", (link_id,)).fetchone(), timeout=90, interval=0.3,
        message="the backfill done")


def linked(conn, org) -> int:
    """A link of HLR vuxen to HLR made as the API makes it; returns its id once backfilled."""
    link = links.create_link(conn, HLR, org["hlr"]["id"], actor="test")
    backfill_done(conn, link["id"])
    return link["id"]


def test_sign_in_link_a_course_watch_the_backfill_then_revoke_the_new_grant(org, page, conn):
    base = org["base"]
    page.goto(f"{base}/links")
    assert page.url.startswith(f"{base}/login")  # signed out: to the sign-in page
    assert page.locator("html").get_attribute("lang") == "sv"
    sign_in(page, base)
    assert page.url == f"{base}/links"
    expect(page.get_by_role("heading", level=1)).to_have_text("Kopplingar")
    # Courses are offered, guides never.
    expect(page.get_by_label("HLR vuxen (4711)")).to_be_visible()
    expect(page.get_by_text("Så loggar du in")).to_have_count(0)

    page.get_by_label("Sök publicerade kurser på namn").fill("hlr")
    page.get_by_role("button", name="Sök", exact=True).click()
    expect(page.get_by_text("Brandskydd grund")).to_have_count(0)
    page.get_by_label("HLR vuxen (4711)").check()
    page.get_by_label("HLR", exact=True).check()
    page.get_by_role("button", name="Skapa kopplingar").click()
    expect(page.get_by_role("status").first).to_contain_text("1 koppling(ar) skapade")

    # The page polls the progress fragment by itself until the backfill is done.
    row = page.locator("tr", has_text="HLR vuxen")
    expect(row.locator(".state")).to_have_text("klar", timeout=LIVE_S)
    expect(row.locator(".counts")).to_have_text(
        "behandlade 4 av 4 · registrerade 2 · omatchade 1 · misslyckade 0")
    screenshot(page, "links")

    # The new grant on Anna's profile, found by searching her name.
    page.get_by_role("link", name="Medarbetare").click()
    page.get_by_label("Sök på namn eller e-post").fill("anna")
    page.get_by_role("button", name="Sök").click()
    page.get_by_role("link", name="Andersson, Anna").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Anna Andersson")
    current = page.locator("#grant-1, tr", has_text="HLR").first
    expect(current).to_contain_text("går snart ut")  # 60 days valid, passed 30 days ago
    expect(page.locator("tr.outcome-granted")).to_contain_text("Registrerad: det här resultatet gav kompetensen.")
    screenshot(page, "employee")

    # Revoking needs a reason: the error summary names the field and links to it.
    page.get_by_role("button", name="Återkalla").click()
    summary = page.locator(".error-summary")
    expect(summary).to_contain_text("Ange varför registreringen återkallas")
    field_id = summary.get_by_role("link").get_attribute("href").lstrip("#")
    assert page.locator(f"#{field_id}").get_attribute("name") == "reason"
    screenshot(page, "employee-error")
    page.get_by_label("Skäl att återkalla HLR").fill("Registrerad på fel person")
    page.get_by_role("button", name="Återkalla").click()
    expect(page.get_by_role("status").first).to_contain_text("Registreringen av HLR är återkallad.")
    past = page.locator("section", has=page.get_by_role("heading", name="Tidigare registreringar"))
    expect(past).to_contain_text("återkallad")
    expect(past).to_contain_text("Registrerad på fel person")
    expect(past).to_contain_text(f"user:{ADMIN}")
    # The change is audited with the console user as actor, as the API would have.
    assert conn.execute("SELECT actor FROM audit_log WHERE action = 'grant.revoke'").fetchone() == \
        {"actor": f"user:{ADMIN}"}
    assert conn.execute("SELECT actor FROM audit_log WHERE action = 'link.create'").fetchone() == \
        {"actor": f"user:{ADMIN}"}


def test_correcting_an_email_on_the_unmatched_page_grants_at_once(org, page, conn):
    employees.create_employees(conn, [{"email": "cecilia.ostrm@kommun.se", "first_name": "Cecilia",
                                       "last_name": "Öström"}], actor="test", tz="Europe/Stockholm")
    linked(conn, org)
    sign_in(page, org["base"])
    page.get_by_role("link", name="Omatchade").click()
    card = page.locator("section.card", has=page.get_by_role("heading", name=CECILIA))
    expect(card).to_contain_text("1 resultat, kurser 4711")
    screenshot(page, "unmatched")
    card.get_by_label("Medarbetarens nuvarande e-postadress").fill("cecilia.ostrm@kommun.se")
    card.get_by_role("button", name=f"Ändra den till {CECILIA}").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Cecilia Öström")
    expect(page.get_by_text(CECILIA, exact=True)).to_be_visible()
    expect(page.locator("section", has=page.get_by_role("heading", name="Aktuella registreringar"))
           ).to_contain_text("HLR")
    page.get_by_role("link", name="Omatchade").click()
    expect(page.get_by_text("Inga omatchade resultat.")).to_be_visible()


def test_the_expiring_report_downloads_as_csv_and_xlsx(org, page, conn):
    linked(conn, org)
    sign_in(page, org["base"])
    page.get_by_role("link", name="Rapporter").click()
    page.get_by_label("Går ut inom (dagar)").fill("45")
    page.get_by_role("button", name="Visa").click()
    expect(page.get_by_text("2 registrering(ar) går ut inom 45 dagar")).to_be_visible()
    screenshot(page, "reports-expiring")

    with page.expect_download() as got:
        page.get_by_role("link", name="CSV").click()
    text = open(got.value.path(), encoding="utf-8-sig").read()
    rows = list(csv.DictReader(io.StringIO(text), delimiter=";"))
    assert sorted(r["employee_email"] for r in rows) == sorted([ANNA, BO])
    assert {r["competence_name"] for r in rows} == {"HLR"}
    assert got.value.suggested_filename.startswith("expiring-") and got.value.suggested_filename.endswith(".csv")

    with page.expect_download() as got:
        page.get_by_role("link", name="Excel (XLSX)").click()
    with open(got.value.path(), "rb") as book:
        sheet = openpyxl.load_workbook(book).active
    values = list(sheet.values)
    header = list(values[0])
    assert header[:3] == ["grant_id", "employee_id", "employee_email"]
    assert sorted(r[header.index("employee_email")] for r in values[1:]) == sorted([ANNA, BO])

    page.get_by_role("link", name="Täckning per kompetens").click()
    expect(page.locator("tr", has_text="HLR").first).to_contain_text("2")
    screenshot(page, "reports-coverage")


def test_a_user_with_only_the_settings_permission_cannot_reach_the_links(org, page, conn):
    base = org["base"]
    sign_in(page, base, SETTINGS_ONLY, SETTINGS_PASSWORD)
    assert page.url == f"{base}/competences"
    nav = page.get_by_role("navigation", name="Huvudmeny")
    expect(nav.get_by_role("link")).to_have_text(["Kompetensträd", "Medarbetare"])
    for path in ("/links", "/reports/expiring", "/ops", "/audit", "/unmatched"):
        answer = page.goto(f"{base}{path}")
        assert answer.status == 403, path
        expect(page.get_by_role("heading", level=1)).to_have_text("Inte tillåtet")
    # The profile shows no grants nor results (integrations), only what settings allow.
    page.goto(f"{base}/employees/{org['staff'][ANNA]}")
    expect(page.get_by_role("heading", name="Rätta e-postadressen")).to_be_visible()
    expect(page.get_by_role("heading", name="Aktuella registreringar")).to_have_count(0)
    assert page.request.post(f"{base}/employees/{org['staff'][ANNA]}/grants/1/revoke",
                             form={"reason": "x"}).status in (400, 403)


def test_a_form_posted_without_its_csrf_token_is_refused(org, page, conn):
    base = org["base"]
    sign_in(page, base)
    page.goto(f"{base}/competences")
    form = page.locator("form", has=page.get_by_label("Namn", exact=True))
    form.evaluate("f => f.querySelector('input[name=csrf_token]').remove()")
    page.get_by_label("Namn", exact=True).fill("Smuggling")
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        page.get_by_role("button", name="Lägg till").click()
    assert posted.value.status == 400
    expect(page.get_by_role("heading", level=1)).to_have_text("Formuläret har gått ut")
    assert conn.execute("SELECT count(*) AS n FROM competences WHERE name = 'Smuggling'").fetchone()["n"] == 0
    # The same request with the session's cookie but no token, from outside the page.
    assert page.request.post(f"{base}/links", form={"course_id": str(HLR),
                                                     "competence_id": str(org["hlr"]["id"])}).status == 400
    assert conn.execute("SELECT count(*) AS n FROM links").fetchone()["n"] == 0
    # With the token the form works.
    page.goto(f"{base}/competences")
    page.get_by_label("Namn", exact=True).fill("Förflyttning")
    page.get_by_label("Förälder (en huvudgrupp för en grupp, en grupp för en kompetens)").select_option(
        label="Grupp: Akut och säkerhet")
    page.get_by_role("button", name="Lägg till").click()
    expect(page.get_by_role("status").first).to_contain_text("Förflyttning är tillagd.")


def test_five_wrong_passwords_slow_the_sign_in_down(org, page, conn):
    base = org["base"]
    for attempt in range(5):
        page.goto(f"{base}/login")
        page.get_by_label("Användarnamn").fill(ADMIN)
        page.get_by_label("Lösenord").fill(f"fel-{attempt}")
        with page.expect_response(lambda r: r.request.method == "POST") as posted:
            page.get_by_role("button", name="Logga in").click()
        assert posted.value.status == 401
        expect(page.locator(".error-summary")).to_contain_text("Användarnamnet eller lösenordet är fel")
    # The sixth attempt is refused, even with the right password, and says for how long.
    page.get_by_label("Användarnamn").fill(ADMIN)
    page.get_by_label("Lösenord").fill(ADMIN_PASSWORD)
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        page.get_by_role("button", name="Logga in").click()
    assert posted.value.status == 429
    expect(page.locator(".error-summary")).to_contain_text("För många misslyckade inloggningar. Vänta 15 minuter")
    assert page.url.startswith(f"{base}/login")
    screenshot(page, "login-slowed-down")
    # Another user name from the same address is refused too (the address counts).
    page.get_by_label("Användarnamn").fill(SETTINGS_ONLY)
    page.get_by_label("Lösenord").fill(SETTINGS_PASSWORD)
    page.get_by_role("button", name="Logga in").click()
    expect(page.locator(".error-summary")).to_contain_text("För många misslyckade inloggningar")


def test_names_sort_the_swedish_way_english_on_choice_and_sign_out(org, page, conn):
    base = org["base"]
    sign_in(page, base)
    page.goto(f"{base}/employees")
    names = page.locator("tbody tr td:first-child a").all_inner_texts()
    assert names == ["Andersson, Anna", "Ek, Bo", "Zorn, Zelda", "Åberg, Örjan", "Ärlig, Åsa"]
    screenshot(page, "employees")
    page.get_by_role("link", name="English").click()
    assert page.locator("html").get_attribute("lang") == "en"
    expect(page.get_by_role("heading", level=1)).to_have_text("Employees")
    page.goto(f"{base}/links")  # the choice is remembered
    expect(page.get_by_role("heading", level=1)).to_have_text("Links")
    page.get_by_role("link", name="Svenska").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Kopplingar")
    page.get_by_role("button", name="Logga ut").click()
    expect(page.get_by_role("status").first).to_contain_text("Du är utloggad.")
    page.goto(f"{base}/employees")
    assert page.url.startswith(f"{base}/login")
