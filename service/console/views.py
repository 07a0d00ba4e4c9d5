"""The console's pages (docs/console.md): thin views over the admin API's domain functions.

Each view checks the permission the API's blueprint of the same data needs
(service/access/auth.py), calls the same domain function as the JSON API, and renders a page;
a form is posted, then redirected (POST/redirect/GET). Every change is audited as
`user:<username>`.
"""
from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo
from urllib.parse import urlsplit

from flask import (Blueprint, abort, current_app, flash, g, redirect, render_template, request,
                   session, url_for)
from flask_babel import gettext as _
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import CSRFError, CSRFProtect

from service.access.auth import PERMISSION_BY_BLUEPRINT
from service.access.tokens import INTEGRATIONS, SETTINGS
from service.catalog import competences as catalog_competences
from service.catalog import courses as catalog_courses
from service.catalog import links as catalog_links
from service.console import users
from service.grants import grants as grants_grants
from service.ingest import rejected as ingest_rejected
from service.ops import audit as ops_audit
from service.ops import queues as ops_queues
from service.people import employees as people_employees
from service.people import unmatched as people_unmatched
from service.people.email import email_shape_problem, unmatchable_reason
from service.platform import errors as platform_errors
from service.platform import export, tenancy
from service.platform.api import readable_dates
from service.platform.web import services, time_zone
from service.reports import reports
from service.reports.api import MAX_WITHIN_DAYS, CoverageSchema, ExpiringSchema

log = logging.getLogger(__name__)

bp = Blueprint("console", __name__, template_folder="templates", static_folder="static",
               static_url_path="/console/static")
csrf = CSRFProtect()

IDLE_LIMIT_S = 8 * 3600  # a session ends after 8 hours without a request (docs/console.md)
PAGE_SIZE = 50
BACKFILL_LIVE = ("pending", "running")
PUBLIC = {"console.login", "console.static"}

# The permission of each page: the API blueprint that serves the same data decides it.
PAGE_PERMISSION = {
    "links": PERMISSION_BY_BLUEPRINT["links"],
    "competences": PERMISSION_BY_BLUEPRINT["competences"],
    "employees": PERMISSION_BY_BLUEPRINT["employees"],
    "reports": PERMISSION_BY_BLUEPRINT["reports"],
    "unmatched": PERMISSION_BY_BLUEPRINT["unmatched"],
    "audit": PERMISSION_BY_BLUEPRINT["audit"],
    "ops": PERMISSION_BY_BLUEPRINT["operations"],
}


def nav_entries():
    """The navigation: (page, endpoint, label), only the pages the user may open."""
    entries = [
        ("links", "console.links", _("Links")),
        ("competences", "console.competences", _("Competence tree")),
        ("employees", "console.employees", _("Employees")),
        ("reports", "console.report_expiring", _("Reports")),
        ("unmatched", "console.unmatched", _("Unmatched")),
        ("audit", "console.audit", _("Log")),
        ("ops", "console.ops", _("Operations")),
    ]
    return [e for e in entries if can(PAGE_PERMISSION[e[0]])]


def can(permission: str) -> bool:
    user = g.get("user")
    return bool(user) and permission in (user["permissions"] or [])


def need(page: str) -> None:
    """403 unless the user holds the page's permission (the same as the API's)."""
    if not can(PAGE_PERMISSION[page]):
        abort(403)


def actor() -> str:
    """The audit log's actor of a change made in the console."""
    return f"user:{g.user['username']}"


def tz() -> str:
    """The signed-in user's tenant's time zone (docs/tenants.md)."""
    return time_zone()


@contextmanager
def connection():
    """One transaction of the app's pool, as the API's views have (`transaction`)."""
    with services().pool.connection() as conn:
        readable_dates(conn)
        yield conn


def page_number() -> int:
    try:
        return max(1, int(request.args.get("page", "1")))
    except ValueError:
        return 1


def pages(total: int | None, page: int) -> dict:
    last = max(1, -(-(total or 0) // PAGE_SIZE))
    return {"page": page, "last": last, "total": total or 0}


# --- the gate: sign-in, session expiry, CSRF, tenant -----------------------------------------

class ConsoleSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions; a request without the console's cookie (every webhook
    and API call) gets a new empty session without the signing serializer Flask would build
    for it (about a twentieth of a webhook's CPU). One that is then written is signed as ever."""

    def open_session(self, app, request):
        if app.secret_key and self.get_cookie_name(app) not in request.cookies:
            return self.session_class()
        return super().open_session(app, request)


def init_app(app) -> None:
    """Register the console at / with its CSRF protection, sessions and translations."""
    from flask_babel import Babel

    settings = app.extensions["competence_bridge"].settings
    app.secret_key = settings.secret_key or None
    app.session_interface = ConsoleSessions()
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=not settings.demo,  # demo: plain http on this machine
        SESSION_COOKIE_NAME="cb_console",
        PERMANENT_SESSION_LIFETIME=timedelta(seconds=IDLE_LIMIT_S),
        # Only the console's forms are checked (below); the JSON API and the webhooks carry
        # tokens and signatures, never a session cookie, and stay outside.
        WTF_CSRF_CHECK_DEFAULT=False,
        WTF_CSRF_TIME_LIMIT=IDLE_LIMIT_S,
        WTF_CSRF_SSL_STRICT=False,  # Referer checks break behind proxies; the token is checked
        BABEL_DEFAULT_LOCALE="sv",
        BABEL_DEFAULT_TIMEZONE=settings.time_zone,
        BABEL_TRANSLATION_DIRECTORIES=str(_translations()),
    )
    csrf.init_app(app)
    Babel(app, locale_selector=locale)
    app.register_blueprint(bp)
    if tenancy.unbind not in app.teardown_request_funcs.get(None, []):
        app.teardown_request(tenancy.unbind)


def _translations():
    from pathlib import Path

    return Path(__file__).parent / "translations"


LANGUAGES = ("sv", "en")


def locale() -> str:
    """Swedish unless English was chosen (`?lang=en`, then remembered in a cookie)."""
    chosen = request.args.get("lang") or request.cookies.get("lang")
    return chosen if chosen in LANGUAGES else "sv"


@bp.after_request
def remember_language(response):
    chosen = request.args.get("lang")
    if chosen in LANGUAGES:
        response.set_cookie("lang", chosen, max_age=365 * 86400, samesite="Lax", httponly=True,
                            secure=not services().settings.demo)
    if request.endpoint != "console.static":
        response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("X-Frame-Options", "DENY")
    return response


@bp.before_request
def gate():
    """Signed out: to /login. Signed in: the user (their permissions as they are now) and tenant."""
    if not current_app.secret_key:
        abort(503)
    if request.method == "POST":
        csrf.protect()
    if request.endpoint in PUBLIC:
        return None
    user_id, seen = session.get("user_id"), session.get("seen", 0)
    now = time.time()
    if user_id is not None and now - seen > IDLE_LIMIT_S:
        session.clear()
        flash(_("Your session has ended after 8 hours without activity. Please sign in again."), "info")
        user_id = None
    user = None
    if user_id is not None:
        # The user's tenant, from the signed session; the user is read under it, so a user
        # of another tenant is not found (docs/tenants.md).
        tenancy.bind(session.get("tenant_id"))
        if session.get("tenant_id") != tenancy.DEFAULT_ID:  # `default`'s is TIME_ZONE
            g.tenant_time_zone = session.get("time_zone")
        with connection() as conn:
            user = users.get_user(conn, user_id)
    if user is None:
        session.pop("user_id", None)
        return redirect(url_for("console.login", next=request.full_path.rstrip("?")))
    g.user = user
    session["seen"] = now
    session.permanent = True
    return None


@bp.app_template_global()
def csrf_field():
    from flask_wtf.csrf import generate_csrf
    from markupsafe import Markup, escape

    return Markup(f'<input type="hidden" name="csrf_token" value="{escape(generate_csrf())}">')


@bp.app_template_global()
def lang_url(code: str) -> str:
    """This page in another language, its other query parameters kept."""
    args = request.args.to_dict()
    args["lang"] = code
    if request.endpoint and request.endpoint.startswith("console.") and request.method == "GET":
        return url_for(request.endpoint, **(request.view_args or {}), **args)
    return url_for("console.home", lang=code)


@bp.context_processor
def page_context():
    return {"nav": nav_entries() if g.get("user") else [], "can": can, "INTEGRATIONS": INTEGRATIONS,
            "SETTINGS": SETTINGS, "lang": locale(), "current_user": g.get("user")}


@bp.app_template_filter("day")
def day_filter(value) -> str:
    """Dates as 2026-11-30; times as 2026-11-30 14:05 in the organisation's time zone."""
    if value is None:
        return "–"
    if isinstance(value, datetime):
        return value.astimezone(ZoneInfo(tz())).strftime("%Y-%m-%d %H:%M")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _error_page(code: int, title: str, text: str):
    return render_template("error.html", code=code, title=title, text=text), code


@bp.errorhandler(403)
def forbidden(_exc):
    return _error_page(403, _("Not allowed"), _("Your account lacks the permission for this page."))


@bp.errorhandler(404)
def not_found(_exc):
    return _error_page(404, _("Not found"), _("There is nothing at this address."))


@bp.errorhandler(503)
def unavailable(_exc):
    return _error_page(503, _("Unavailable"), _("The console is not available right now. Try again later."))


@bp.errorhandler(CSRFError)
def csrf_refused(_exc):
    return _error_page(400, _("The form has expired"),
                       _("The form was sent without a valid security token. Go back, reload the page and try again."))


def _safe_next(target: str | None) -> str:
    """Only a path of this site (no other host) is a place to go after signing in."""
    if not target:
        return url_for("console.home")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return url_for("console.home")
    return target


# --- sign-in ---------------------------------------------------------------------------------

def client_address() -> str:
    """The address a sign-in came from (docs/console.md, "Rate limit").

    Behind the proxy of deploy/nginx (or an ingress), every request comes from a loopback or
    private address; then the proxy's last X-Forwarded-For entry (the address it saw) is the
    client's, so that one client's failures do not lock everyone out.
    """
    import ipaddress

    peer = request.remote_addr or "unknown"
    forwarded = [a.strip() for a in request.headers.get("X-Forwarded-For", "").split(",") if a.strip()]
    try:
        behind_proxy = ipaddress.ip_address(peer).is_private  # loopback counts as private
    except ValueError:
        behind_proxy = False
    return forwarded[-1][:100] if behind_proxy and forwarded else peer


@bp.route("/login", methods=["GET", "POST"])
def login():
    errors, username, status = {}, "", 200
    if request.method == "POST":
        username = request.form.get("username", "").strip()
        password = request.form.get("password", "")
        if not username:
            errors["username"] = _("Enter your user name")
        if not password:
            errors["password"] = _("Enter your password")
        if not errors:
            with connection() as conn:
                outcome = users.sign_in(conn, username[:200], password[:1000],
                                        address=client_address())
            if outcome.retry_after_s is not None:
                minutes = max(1, -(-outcome.retry_after_s // 60))
                errors["username"] = _("Too many failed sign-ins. Wait %(minutes)s minutes and try again.",
                                       minutes=minutes)
                status = 429
            elif outcome.user is None:
                errors["password"] = _("The user name or the password is wrong")
                status = 401
            else:
                session.clear()
                session["user_id"] = outcome.user["id"]
                session["tenant_id"] = outcome.user["tenant_id"]
                session["time_zone"] = outcome.user["time_zone"]
                session["seen"] = time.time()
                session.permanent = True
                return redirect(_safe_next(request.args.get("next")))
        elif status == 200:
            status = 422
    return render_template("login.html", errors=errors, username=username), status


@bp.route("/logout", methods=["POST"])
def logout():
    session.clear()
    flash(_("You are signed out."), "info")
    return redirect(url_for("console.login"))


@bp.route("/")
def home():
    entries = nav_entries()
    if not entries:
        return _error_page(403, _("Not allowed"), _("Your account holds no permission for any page."))
    return redirect(url_for(entries[0][1]))


# --- links -----------------------------------------------------------------------------------

def _all(list_function, **kwargs) -> list[dict]:
    """Every item of a domain list (for the pickers: the tree, the catalog's matches)."""
    page = list_function(limit=1000, offset=0, **kwargs)
    return list(page.items)


@bp.route("/links")
def links():
    need("links")
    q = request.args.get("q", "").strip()[:200]
    page = page_number()
    with connection() as conn:
        listed = catalog_links.list_links(conn, course_id=None, competence_id=None,
                                          limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
        courses = list(catalog_courses.list_courses(conn, q=q or None, limit=100, offset=0).items)
        leaves = _all(lambda **kw: catalog_competences.list_competences(conn, **kw),
                      parent_id=None, kind=catalog_competences.COMPETENCE)
    return render_template("links.html", links=list(listed.items), courses=courses, leaves=leaves,
                           q=q, paging=pages(listed.total, page), errors={},
                           live=BACKFILL_LIVE)


@bp.route("/links", methods=["POST"])
def create_links():
    need("links")
    course_ids = _ids(request.form.getlist("course_id"))
    competence_ids = _ids(request.form.getlist("competence_id"))
    errors = {}
    if not course_ids:
        errors["course_id"] = _("Choose at least one course")
    if not competence_ids:
        errors["competence_id"] = _("Choose at least one competence")
    if errors:
        return _links_again(errors)
    made, refused = 0, []
    with connection() as conn:
        for course_id in course_ids:
            for competence_id in competence_ids:
                try:
                    with conn.transaction():  # a savepoint: one refusal leaves the others
                        catalog_links.create_link(conn, course_id, competence_id, actor=actor())
                    made += 1
                except platform_errors.Conflict:
                    refused.append(_("Course %(course)s is already linked to competence %(competence)s.",
                                     course=course_id, competence=competence_id))
                except platform_errors.AdminError as exc:
                    refused.append(exc.message)
    if made:
        flash(_("%(n)s link(s) created; their backfills have started.", n=made), "success")
    for text in refused:
        flash(text, "error")
    return redirect(url_for("console.links"))


def _links_again(errors: dict):
    with connection() as conn:
        listed = catalog_links.list_links(conn, course_id=None, competence_id=None, limit=PAGE_SIZE, offset=0)
        courses = list(catalog_courses.list_courses(conn, q=None, limit=100, offset=0).items)
        leaves = _all(lambda **kw: catalog_competences.list_competences(conn, **kw),
                      parent_id=None, kind=catalog_competences.COMPETENCE)
    return render_template("links.html", links=list(listed.items), courses=courses, leaves=leaves,
                           q="", paging=pages(listed.total, 1), errors=errors, live=BACKFILL_LIVE), 422


def _ids(values: list[str]) -> list[int]:
    out = []
    for v in values:
        try:
            n = int(v)
        except ValueError:
            continue
        if 0 < n < 2**63 and n not in out:
            out.append(n)
    return out


def found_or_404(read, conn, *args):
    """What `read` finds, or the console's 404 (another tenant's ids are not found either)."""
    try:
        return read(conn, *args)
    except platform_errors.NotFound:
        abort(404)


@bp.route("/links/<int:link_id>/progress")
def link_progress(link_id: int):
    """The backfill of one link as a fragment, which the links page polls while it runs."""
    need("links")
    with connection() as conn:
        link = found_or_404(catalog_links.get_link, conn, link_id)
    return render_template("_progress.html", link=link, live=BACKFILL_LIVE)


@bp.route("/links/<int:link_id>/delete", methods=["GET", "POST"])
def delete_link(link_id: int):
    need("links")
    with connection() as conn:
        link = found_or_404(catalog_links.get_link, conn, link_id)
        if request.method == "POST":
            catalog_links.delete_link(conn, link_id, actor=actor())
            flash(_("The link between %(course)s and %(competence)s is deleted. The grants it made stay.",
                    course=link["course_name"], competence=link["competence_name"]), "success")
            return redirect(url_for("console.links"))
    return render_template("link_delete.html", link=link)


# --- the competence tree ---------------------------------------------------------------------

@bp.route("/competences", methods=["GET", "POST"])
def competences():
    need("competences")
    errors, values, status = {}, {}, 200
    if request.method == "POST":
        values = {k: request.form.get(k, "").strip() for k in
                  ("name", "kind", "parent_id", "default_valid_days", "renewal_window_days")}
        data = _competence_values(values, errors, creating=True)
        if not errors:
            try:
                with connection() as conn:
                    row = catalog_competences.create_competence(conn, data, actor=actor())
                flash(_("%(name)s is added.", name=row["name"]), "success")
                return redirect(url_for("console.competences"))
            except platform_errors.AdminError as exc:
                _field_errors(exc, errors)
        status = 422
    with connection() as conn:
        tree = _all(lambda **kw: catalog_competences.list_competences(conn, **kw), parent_id=None, kind=None)
    return render_template("competences.html", tree=tree, errors=errors, values=values), status


def _competence_values(values: dict, errors: dict, *, creating: bool) -> dict:
    data = {}
    name = values.get("name", "")
    if not name:
        errors["name"] = _("Enter a name")
    elif len(name) > 200:
        errors["name"] = _("The name can be at most 200 characters")
    data["name"] = name
    if creating:
        if values.get("kind") not in catalog_competences.KINDS:
            errors["kind"] = _("Choose what kind of node it is")
        data["kind"] = values.get("kind")
        parent = values.get("parent_id")
        data["parent_id"] = int(parent) if parent and parent.isdigit() else None
    for key, low in (("default_valid_days", 1), ("renewal_window_days", 0)):
        raw = values.get(key, "")
        if raw == "":
            data[key] = None
            continue
        if not raw.isdigit() or not low <= int(raw) <= 36600:
            errors[key] = _("Enter a whole number of days from %(low)s to 36600, or leave it empty", low=low)
            continue
        data[key] = int(raw)
    return data


FIELD_MESSAGES = {
    "parent_id": lambda: _("The parent is not right for this kind of node (main group, then group, then competence)"),
    "default_valid_days": lambda: _("Only a competence (a leaf) has a validity"),
    "renewal_window_days": lambda: _("Only a competence (a leaf) has a renewal window"),
    "email": lambda: _("This email is taken by another employee"),
    "existing": lambda: _("This email is taken by another employee"),
}


def _field_errors(exc: platform_errors.AdminError, errors: dict) -> None:
    """The domain's refusal as field errors of the form (its text is the API's, in English)."""
    for key in exc.errors or {"_form": None}:
        field = "email" if key == "existing" else key
        make = FIELD_MESSAGES.get(key)
        errors[field] = make() if make else exc.message


@bp.route("/competences/<int:competence_id>", methods=["GET", "POST"])
def edit_competence(competence_id: int):
    need("competences")
    errors, status = {}, 200
    with connection() as conn:
        node = found_or_404(catalog_competences.get_competence, conn, competence_id)
    values = {k: "" if node[k] is None else str(node[k]) for k in ("name", "default_valid_days", "renewal_window_days")}
    if request.method == "POST":
        values = {k: request.form.get(k, "").strip() for k in ("name", "default_valid_days", "renewal_window_days")}
        data = _competence_values(values, errors, creating=False)
        if node["kind"] != catalog_competences.COMPETENCE:
            data.pop("default_valid_days"), data.pop("renewal_window_days")
        if not errors:
            try:
                with connection() as conn:
                    catalog_competences.update_competence(conn, competence_id, data, actor=actor())
                flash(_("%(name)s is saved.", name=data["name"]), "success")
                return redirect(url_for("console.competences"))
            except platform_errors.AdminError as exc:
                _field_errors(exc, errors)
        status = 422
    return render_template("competence_edit.html", node=node, values=values, errors=errors), status


@bp.route("/competences/<int:competence_id>/delete", methods=["GET", "POST"])
def delete_competence(competence_id: int):
    need("competences")
    with connection() as conn:
        try:
            node = catalog_competences.get_competence(conn, competence_id)
            usage = catalog_competences.competence_usage(conn, competence_id)
        except platform_errors.NotFound:
            abort(404)
        if request.method == "POST":
            try:
                with conn.transaction():
                    out = catalog_competences.delete_competence(conn, competence_id, actor=actor())
            except platform_errors.Conflict:
                flash(_("%(name)s still has children: delete or move them first.", name=node["name"]), "error")
                return redirect(url_for("console.competences"))
            flash(_("%(name)s is deleted, with %(grants)s grant(s) and %(links)s link(s).",
                    name=node["name"], grants=out["deleted_grants"], links=out["deleted_links"]), "success")
            return redirect(url_for("console.competences"))
    return render_template("competence_delete.html", node=node, usage=usage)


# --- employees -------------------------------------------------------------------------------

@bp.route("/employees")
def employees():
    need("employees")
    q = request.args.get("q", "").strip()[:200]
    page = page_number()
    with connection() as conn:
        found = people_employees.search_employees(conn, q=q or None, limit=PAGE_SIZE,
                                                  offset=(page - 1) * PAGE_SIZE)
    return render_template("employees.html", employees=list(found.items), q=q,
                           paging=pages(found.total, page))


def grant_status(grant: dict, today: date) -> str:
    """active, expiring (soon), upcoming, expired or revoked: the API's status, with the
    coverage report's window for "expiring soon" (service/reports/reports.py)."""
    if grant["status"] == "active" and grant["valid_to"] is not None and \
            grant["valid_to"] <= today + timedelta(days=reports.COVERAGE_EXPIRING_DAYS):
        return "expiring"
    return grant["status"]


@bp.route("/employees/<int:employee_id>")
def employee(employee_id: int, errors: dict | None = None, status: int = 200):
    # Either permission opens a profile: settings shows (and corrects) the employee, as the
    # employees API does; integrations shows their grants and results, as the grants and
    # results APIs do (which name the employee too).
    if not (can(PAGE_PERMISSION["employees"]) or can(PERMISSION_BY_BLUEPRINT["grants"])):
        abort(403)
    page = page_number()
    grants, results, results_total = [], [], 0
    with connection() as conn:
        person = found_or_404(people_employees.get_employee, conn, employee_id)
        if can(PERMISSION_BY_BLUEPRINT["grants"]):
            grants = list(grants_grants.list_grants(conn, employee_id=employee_id, competence_id=None,
                                                    tz=tz(), limit=1000, offset=0).items)
        if can(PERMISSION_BY_BLUEPRINT["employee_results"]):
            found = reports.employee_results(conn, employee_id, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
            results, results_total = list(found.items), found.total
    today = grants_grants.today(tz())
    for grant in grants:
        grant["shown_status"] = grant_status(grant, today)
    current = [x for x in grants if x["shown_status"] in ("active", "expiring", "upcoming")]
    past = [x for x in grants if x not in current]
    return render_template("employee.html", person=person, current=current, past=past,
                           results=results, paging=pages(results_total, page),
                           errors=errors or {}, email_value=request.form.get("email", person["email"])), status


@bp.route("/employees/<int:employee_id>/grants/<int:grant_id>/revoke", methods=["POST"])
def revoke_grant(employee_id: int, grant_id: int):
    if not can(PERMISSION_BY_BLUEPRINT["grants"]):
        abort(403)
    reason = request.form.get("reason", "").strip()
    if not reason:
        return employee(employee_id, errors={f"reason-{grant_id}": _("Enter why the grant is revoked")}, status=422)
    if len(reason) > 2000:
        return employee(employee_id, errors={f"reason-{grant_id}": _("The reason can be at most 2000 characters")},
                        status=422)
    try:
        with connection() as conn:
            grant = grants_grants.revoke_grant(conn, grant_id, reason, actor=actor(), tz=tz())
    except platform_errors.Conflict:
        flash(_("The grant was revoked already."), "error")
        return redirect(url_for("console.employee", employee_id=employee_id))
    except platform_errors.NotFound:
        abort(404)
    flash(_("The grant of %(competence)s is revoked.", competence=grant["competence_name"]), "success")
    return redirect(url_for("console.employee", employee_id=employee_id))


def _email_problem(value: str) -> str | None:
    """The API's checks of an employee's email (service/people/email.py), in the page's words."""
    if not value:
        return _("Enter an email address")
    if len(value) > 320 or email_shape_problem(value):
        return _("Enter an email address in the form name@example.se")
    if unmatchable_reason(value):
        return _("This address can never match a course result")
    return None


@bp.route("/employees/<int:employee_id>/email", methods=["POST"])
def correct_email(employee_id: int):
    need("employees")
    email = request.form.get("email", "").strip()
    problem = _email_problem(email)
    if problem:
        return employee(employee_id, errors={"email": problem}, status=422)
    try:
        with connection() as conn:
            people_employees.update_employee(conn, employee_id, {"email": email}, actor=actor(), tz=tz())
    except platform_errors.NotFound:
        abort(404)
    except platform_errors.Conflict:
        return employee(employee_id, errors={"email": _("This email is taken by another employee")}, status=409)
    flash(_("The email is saved. Results kept for it are granted now."), "success")
    return redirect(url_for("console.employee", employee_id=employee_id))


# --- reports ---------------------------------------------------------------------------------

def _within_days() -> tuple[int, str | None]:
    raw = request.args.get("within_days", "90").strip()
    if not raw.isdigit() or int(raw) > MAX_WITHIN_DAYS:
        return 90, _("Enter a whole number of days from 0 to %(max)s", max=MAX_WITHIN_DAYS)
    return int(raw), None


def _today() -> date:
    return grants_grants.today(tz())


@bp.route("/reports/expiring")
def report_expiring():
    need("reports")
    within, problem = _within_days()
    page = page_number()
    kind = request.args.get("format")
    if kind in ("csv", "xlsx") and not problem:
        # The same file as GET /api/v1/reports/expiring?format=… (service/platform/export.py).
        return export.file_response(
            lambda conn: reports.expiring(conn, today=_today(), within_days=within, competence_id=None,
                                          limit=None, offset=0).items,
            export.columns_of(ExpiringSchema), kind, "expiring")
    with connection() as conn:
        found = reports.expiring(conn, today=_today(), within_days=within, competence_id=None,
                                 limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    return render_template("report_expiring.html", rows=list(found.items), within=within,
                           errors={"within_days": problem} if problem else {},
                           paging=pages(found.total, page)), (422 if problem else 200)


@bp.route("/reports/coverage")
def report_coverage():
    need("reports")
    page = page_number()
    kind = request.args.get("format")
    if kind in ("csv", "xlsx"):
        return export.file_response(
            lambda conn: reports.coverage(conn, today=_today(), limit=None, offset=0).items,
            export.columns_of(CoverageSchema), kind, "coverage")
    with connection() as conn:
        found = reports.coverage(conn, today=_today(), limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    return render_template("report_coverage.html", rows=list(found.items),
                           window=reports.COVERAGE_EXPIRING_DAYS, paging=pages(found.total, page))


# --- unmatched -------------------------------------------------------------------------------

@bp.route("/unmatched")
def unmatched(errors: dict | None = None, status: int = 200):
    need("unmatched")
    page = page_number()
    with connection() as conn:
        found = people_unmatched.unmatched_report(conn, email=None, limit=PAGE_SIZE,
                                                  offset=(page - 1) * PAGE_SIZE)
    return render_template("unmatched.html", rows=list(found.items), paging=pages(found.total, page),
                           errors=errors or {}, form=request.form), status


@bp.route("/unmatched/create", methods=["POST"])
def unmatched_create():
    need("unmatched")
    if not can(PERMISSION_BY_BLUEPRINT["employees"]):
        abort(403)
    email = request.form.get("email", "").strip()
    first = request.form.get("first_name", "").strip()[:200] or None
    last = request.form.get("last_name", "").strip()[:200] or None
    problem = _email_problem(email)
    if problem:
        return unmatched(errors={"email": problem}, status=422)
    try:
        with connection() as conn:
            created = people_employees.create_employees(
                conn, [{"email": email, "first_name": first, "last_name": last}], actor=actor(), tz=tz())
    except platform_errors.Conflict:
        return unmatched(errors={"email": _("This email is taken by another employee")}, status=409)
    flash(_("The employee is created; the results kept for %(email)s are granted.", email=email), "success")
    return redirect(url_for("console.employee", employee_id=created[0]["id"]))


@bp.route("/unmatched/correct", methods=["POST"])
def unmatched_correct():
    need("unmatched")
    if not can(PERMISSION_BY_BLUEPRINT["employees"]):
        abort(403)
    email = request.form.get("email", "").strip()
    current = request.form.get("current_email", "").strip()
    key = f"current-{email}"
    if not current:
        return unmatched(errors={key: _("Enter the employee's present email")}, status=422)
    problem = _email_problem(email)
    if problem:
        return unmatched(errors={key: problem}, status=422)
    with connection() as conn:
        found = list(people_employees.list_employees(conn, email=current[:320], limit=1, offset=0).items)
        if not found:
            return unmatched(errors={key: _("No employee has the email %(email)s", email=current)}, status=422)
        try:
            with conn.transaction():
                people_employees.update_employee(conn, found[0]["id"], {"email": email}, actor=actor(), tz=tz())
        except platform_errors.Conflict:
            return unmatched(errors={key: _("This email is taken by another employee")}, status=409)
    flash(_("The email is corrected; the results kept for %(email)s are granted.", email=email), "success")
    return redirect(url_for("console.employee", employee_id=found[0]["id"]))


# --- the log and operations ------------------------------------------------------------------

@bp.route("/audit")
def audit():
    need("audit")
    page = page_number()
    actor_q = request.args.get("actor", "").strip()[:200] or None
    with connection() as conn:
        found = ops_audit.audit_rows(conn, actor=actor_q, action=None, target=None, limit=PAGE_SIZE,
                                     offset=(page - 1) * PAGE_SIZE)
    return render_template("audit.html", rows=list(found.items), paging=pages(found.total, page),
                           actor_q=actor_q or "")


@bp.route("/ops")
def ops():
    need("ops")
    svc = services()
    overview, unavailable_text = None, None
    try:
        overview = ops_queues.queue_overview(svc.settings, svc.pool)
    except ops_queues.QueuesUnavailable:
        unavailable_text = _("The queue cannot be read right now; try again in a moment.")
    with connection() as conn:
        rejected = list(ingest_rejected.list_rejected_webhooks(conn, status=None, limit=PAGE_SIZE, offset=0).items)
    return render_template("ops.html", overview=overview, unavailable=unavailable_text, rejected=rejected)


@bp.route("/ops/replay", methods=["POST"])
def replay():
    need("ops")
    svc = services()
    out = ops_queues.replay(svc.pool, svc.publisher, None, actor=actor())
    if out.error:
        flash(_("The queue stopped the replay after %(n)s dead letter(s); try again for the rest.",
                n=len(out.replayed)), "error")
    else:
        flash(_("%(n)s dead letter(s) put back on their queue.", n=len(out.replayed)), "success")
    return redirect(url_for("console.ops"))
