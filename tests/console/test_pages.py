"""More of the console in chromium: without JavaScript, by keyboard, the destructive
confirmations, the tree's settings and the dead-letter replay (docs/console.md)."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.console.conftest import ANNA, sign_in
from tests.console.test_journeys import linked

pytestmark = pytest.mark.e2e


def test_the_links_page_works_without_javascript(org, browser, conn):
    context = browser.new_context(java_script_enabled=False, locale="sv-SE")
    page = context.new_page()
    try:
        sign_in(page, org["base"])
        expect(page.get_by_role("link", name="Uppdatera förloppet")).to_be_visible()
        page.get_by_label("Brandskydd grund (4712)").check()
        page.get_by_label("Brandskydd", exact=True).check()
        page.get_by_role("button", name="Skapa kopplingar").click()
        expect(page.get_by_role("status").first).to_contain_text("1 koppling(ar) skapade")
        # Nothing polls: reloading by the link shows the backfill's state as it is now.
        page.get_by_role("link", name="Uppdatera förloppet").click()
        expect(page.locator("tr", has_text="Brandskydd grund").locator(".state")).to_have_count(1)
        # Without a choice the error summary names both fields and links to them.
        page.get_by_role("button", name="Skapa kopplingar").click()
        summary = page.locator(".error-summary")
        expect(summary.get_by_role("link")).to_have_text(["Välj minst en kurs", "Välj minst en kompetens"])
        assert summary.get_by_role("link").first.get_attribute("href") == "#course_id"
    finally:
        context.close()


def test_keyboard_only_sign_in_and_a_skip_link_first(org, page):
    base = org["base"]
    page.goto(f"{base}/login")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Hoppa till innehållet"
    page.get_by_label("Användarnamn").focus()
    page.keyboard.type("admin")
    page.keyboard.press("Tab")
    page.keyboard.type("rätt-lösenord-1")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{base}/links")
    # The focus ring is visible: the focused link's outline is not "none".
    page.get_by_role("link", name="Kompetensträd").focus()
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("none", "")


def test_deleting_a_link_keeps_its_grants_and_deleting_a_competence_says_how_many_go(org, page, conn):
    link_id = linked(conn, org)
    base = org["base"]
    sign_in(page, base)
    page.locator("tr", has_text="HLR vuxen").get_by_role("link", name="Ta bort").click()
    expect(page.get_by_text("Registreringarna som kopplingen har gjort finns kvar")).to_be_visible()
    page.get_by_role("button", name="Ja, ta bort kopplingen").click()
    expect(page.get_by_role("status").first).to_contain_text("Registreringarna den gjorde finns kvar.")
    assert conn.execute("SELECT count(*) AS n FROM links WHERE id = %s", (link_id,)).fetchone()["n"] == 0
    assert conn.execute("SELECT count(*) AS n FROM grants").fetchone()["n"] == 2

    page.get_by_role("link", name="Kompetensträd").click()
    page.locator("tr", has_text="HLR").get_by_role("link", name="Ta bort").first.click()
    expect(page.locator(".notice")).to_have_text(
        "2 registrering(ar) av den tas bort, med 0 koppling(ar). Det går inte att ångra.")
    page.get_by_role("button", name="Ja, ta bort").click()
    expect(page.get_by_role("status").first).to_contain_text("HLR är borttagen, med 2 registrering(ar)")
    assert conn.execute("SELECT count(*) AS n FROM grants").fetchone()["n"] == 0
    # A group with children is refused, and says why.
    page.locator("tr", has_text="Akut och säkerhet").get_by_role("link", name="Ta bort").click()
    page.get_by_role("button", name="Ja, ta bort").click()
    expect(page.get_by_role("alert").first).to_contain_text("har fortfarande undernivåer")


def test_rename_a_competence_and_set_its_validity_and_renewal_window(org, page, conn):
    base = org["base"]
    sign_in(page, base)
    page.goto(f"{base}/competences/{org['fire']['id']}")
    page.get_by_label("Namn").fill("Brandskydd grund")
    page.get_by_label("Giltig i (dagar; tomt: går aldrig ut)").fill("noll")
    page.get_by_role("button", name="Spara").click()
    expect(page.locator(".error-summary")).to_contain_text("Ange ett helt antal dagar från 1 till 36600")
    page.get_by_label("Giltig i (dagar; tomt: går aldrig ut)").fill("730")
    page.get_by_label("Förnyelsefönster (dagar före slutet; tomt: inget)").fill("60")
    page.get_by_role("button", name="Spara").click()
    expect(page.get_by_role("status").first).to_contain_text("Brandskydd grund är sparad.")
    row = conn.execute("SELECT name, default_valid_days, renewal_window_days FROM competences WHERE id = %s",
                       (org["fire"]["id"],)).fetchone()
    assert row == {"name": "Brandskydd grund", "default_valid_days": 730, "renewal_window_days": 60}
    assert conn.execute("SELECT actor FROM audit_log WHERE action = 'competence.update'").fetchone() == \
        {"actor": "user:admin"}


def test_correct_an_email_on_the_profile_and_replay_dead_letters(org, page, conn):
    base = org["base"]
    sign_in(page, base)
    page.goto(f"{base}/employees/{org['staff'][ANNA]}")
    page.get_by_label("E-post", exact=True).fill("inte en adress")
    page.get_by_role("button", name="Spara e-postadressen").click()
    expect(page.locator(".error-summary")).to_contain_text("Ange en e-postadress i formen namn@exempel.se")
    page.get_by_label("E-post", exact=True).fill("bo.ek@kommun.se")  # Bo's
    page.get_by_role("button", name="Spara e-postadressen").click()
    expect(page.locator(".error-summary")).to_contain_text("används redan av en annan medarbetare")
    page.get_by_label("E-post", exact=True).fill("anna.a@kommun.se")
    page.get_by_role("button", name="Spara e-postadressen").click()
    expect(page.get_by_role("status").first).to_contain_text("E-postadressen är sparad.")

    conn.execute("INSERT INTO dead_letters (queue, payload, error) VALUES ('x.backfill', %s, 'test')",
                 ('{"link_id": 999999}',))
    page.get_by_role("link", name="Drift").click()
    expect(page.get_by_text("1 misslyckade meddelande(n) väntar på omkörning.")).to_be_visible()
    page.get_by_role("button", name="Kör om alla misslyckade meddelanden").click()
    expect(page.get_by_role("status").first).to_contain_text("1 meddelande(n) har lagts tillbaka i sin kö.")
    assert conn.execute("SELECT replayed_at IS NOT NULL AS done FROM dead_letters").fetchone() == {"done": True}
