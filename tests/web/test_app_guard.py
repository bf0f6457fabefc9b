"""An action must come from the web view's own page: another site's page, which a browser lets
send a form or plain text anywhere without asking, is refused before anything is done."""
from __future__ import annotations

from starlette.requests import Request

from rmi_kv.web.app import _cross_site


def request(headers: dict) -> Request:
    return Request({"type": "http", "method": "POST", "path": "/action/crash",
                    "headers": [(name.lower().encode(), value.encode()) for name, value in headers.items()]})


def test_the_pages_own_json_action_passes():
    assert _cross_site(request({"Host": "127.0.0.1:8080", "Content-Type": "application/json",
                                "Origin": "http://127.0.0.1:8080"})) is None
    assert _cross_site(request({"Host": "127.0.0.1:8080", "Content-Type": "application/json; charset=utf-8"})) is None


def test_a_form_or_text_body_is_refused():
    for kind in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data", ""):
        refusal = _cross_site(request({"Host": "127.0.0.1:8080", "Content-Type": kind}))
        assert refusal is not None and "application/json" in refusal


def test_another_sites_page_is_refused():
    refusal = _cross_site(request({"Host": "127.0.0.1:8080", "Content-Type": "application/json",
                                   "Origin": "http://evil.example"}))
    assert refusal is not None and "evil.example" in refusal
