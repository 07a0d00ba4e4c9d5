"""axe-core on every console page, signed in with both permissions: no serious or critical
violation (docs/console.md, "Accessibility"). Each page's screenshot goes to docs/console/."""
from __future__ import annotations

import pytest
from axe_playwright_python.sync_playwright import Axe

from tests.console.conftest import screenshot, sign_in
from tests.console.test_journeys import linked

pytestmark = pytest.mark.e2e


def serious(page) -> list[str]:
    found = Axe().run(page).response["violations"]
    return [f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']][:3]}"
            for v in found if v["impact"] in ("serious", "critical")]


def test_every_page_has_no_serious_accessibility_violation(org, page, conn):
    base = org["base"]
    page.goto(f"{base}/login")
    problems = {"/login": serious(page)}
    screenshot(page, "login")
    link_id = linked(conn, org)
    sign_in(page, base)
    anna = org["staff"]["anna.andersson@kommun.se"]
    pages = {
        "/links": "links-page", f"/links/{link_id}/delete": "link-delete",
        "/competences": "competences", f"/competences/{org['hlr']['id']}": "competence-edit",
        f"/competences/{org['hlr']['id']}/delete": "competence-delete",
        "/employees": None, f"/employees/{anna}": None,
        "/reports/expiring": None, "/reports/coverage": None,
        "/unmatched": None, "/audit": "audit", "/ops": "ops",
        "/links?lang=en": None,
    }
    for path, name in pages.items():
        answer = page.goto(f"{base}{path}")
        assert answer.status == 200, path
        problems[path] = serious(page)
        if name:
            screenshot(page, name)
    # A form with errors: the summary and the invalid fields are checked too.
    page.goto(f"{base}/competences")
    page.get_by_role("button", name="Add").click()
    problems["/competences (errors)"] = serious(page)
    screenshot(page, "competences-error")
    assert {path: found for path, found in problems.items() if found} == {}
