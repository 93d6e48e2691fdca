"""The French web consoles: regulation, front desk, and the monthly indicators page.

Pages are Jinja2 templates in ``templates/`` (every value escaped, undefined names
refused; see :mod:`regulator.web.console.render`) brought to life by plain
JavaScript in ``static/`` — the CSP forbids inline scripts and styles. The
scripts subscribe to ``/api/v1/events`` with ``EventSource`` (which resumes with
``Last-Event-ID`` by itself) and write through the JSON API with the session
cookie plus ``X-CSRF-Token`` (checked in :func:`regulator.web.access.authenticate`).
The report charts are SVG drawn on the server from :mod:`regulator.web.charts`:
no CDN, no chart library.

Where things are: ``console/session.py`` (sign-in, sign-out), ``console/pages.py``
(regulation, front desk, MMG state), ``console/quality.py`` (the regulation line's
figures of the day, pushed live), ``console/referral_form.py`` (the regulation
console's referral form, P0/P1 confirmed), ``console/reports.py`` (indicators),
``console/protocols.py`` (the plan, warnings and history of a protocol),
``console/render.py`` (templates, page frame, error pages, access to an MMG page).
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from regulator.web.console.pages import (
    desk_page,
    desk_summary,
    mmg_state,
    not_found,
    regulation_page,
    state_json,
)
from regulator.web.console.protocols import protocol_page
from regulator.web.console.quality import quality_json
from regulator.web.console.referral_form import referral_form
from regulator.web.console.render import TEMPLATES, TEMPLATES_DIR, environment, error_page, who
from regulator.web.console.reports import reports_page, reports_redirect
from regulator.web.console.session import (
    console_home,
    login,
    login_form,
    logout,
)

STATIC_DIR = Path(__file__).parent / "static"

__all__ = [
    "STATIC_DIR",
    "TEMPLATES",
    "console_home",
    "desk_page",
    "desk_summary",
    "error_response",
    "login",
    "login_form",
    "logout",
    "mmg_state",
    "not_found",
    "protocol_page",
    "quality_json",
    "referral_form",
    "regulation_page",
    "reports_page",
    "reports_redirect",
    "setup_consoles",
    "state_json",
]


def setup_consoles(app: web.Application) -> None:
    """The console sub-app's state: its templates (the routes are in :mod:`.routes`)."""
    app[TEMPLATES] = environment(TEMPLATES_DIR)


def error_response(request: web.Request, status: int, title: str, message: str) -> web.Response:
    """The French error page of the console sub-app's error middleware."""
    return error_page(request, who(request), status, title, message)
