"""The browser tool against real HTTP servers on loopback addresses. The guards
are what a public-internet deployment relies on, so each test here would pass
its attack if its guard were removed. DNS is the one part that leaves the
machine: where a test needs a name to resolve somewhere, a stand-in resolver
(named as one) answers instead of the system's."""

import json
import time

import pytest

from chatweb.testing.web import TEA_ARTICLE as ARTICLE
from chatweb.testing.web import TEA_TITLE, Site
from conversations.builtin import browser, fetching


@pytest.fixture
def site():
    # 127.0.0.2 stands for a public site: the tests allow it and nothing else.
    s = Site("127.0.0.2")
    yield s
    s.close()


@pytest.fixture
def internal():
    # 127.0.0.1 stands for the deployment's own network: never allowed.
    s = Site("127.0.0.1")
    s.html("/", "<html><title>admin</title><body>internal secret</body></html>")
    yield s
    s.close()


@pytest.fixture(autouse=True)
def allow_site(settings):
    settings.BROWSER_ALLOWED_NETWORKS = ["127.0.0.2/32"]


def open_url(url, seconds=5):
    return browser.call(browser.Browser(), "open", {"id": url}, seconds=seconds)


def test_a_page_becomes_numbered_lines_with_numbered_links(site):
    site.html("/tea", ARTICLE)
    shown = open_url(site.base + "/tea")
    assert shown.cursor == 0
    assert shown.title == TEA_TITLE
    assert shown.text.startswith(f"[0] {TEA_TITLE} ({site.base}/tea)\n**viewing lines [0 - ")
    assert "L0: # Tea" in shown.text
    assert "【0†region 0†127.0.0.2】" in shown.text
    assert "茶起源于中国" in shown.text
    assert "alert" not in shown.text


def test_open_a_link_by_number_then_find_on_it(site):
    site.html("/tea", ARTICLE)
    site.html("/region/3", "<html><title>Region 3</title><body><p>Oolong grows here.</p></body></html>")
    b = browser.Browser()
    browser.call(b, "open", {"id": site.base + "/tea"}, seconds=5)
    region = browser.call(b, "open", {"id": 3, "cursor": 0}, seconds=5)
    assert (region.cursor, region.title, region.url) == (1, "Region 3", site.base + "/region/3")
    found = browser.call(b, "find", {"pattern": "oolong"}, seconds=5)
    assert "match at L0: Oolong grows here." in found.text
    scrolled = browser.call(b, "open", {"cursor": 0, "loc": 4, "num_lines": 2}, seconds=5)
    assert "**viewing lines [4 - 5] of" in scrolled.text


def test_loopback_is_refused_before_any_connection(internal):
    with pytest.raises(browser.BrowserError, match="loopback"):
        open_url(internal.base + "/")
    assert internal.requests == []


def test_a_redirect_to_loopback_is_refused(site, internal):
    site.routes["/go"] = (302, {"Location": internal.base + "/"}, b"")
    with pytest.raises(browser.BrowserError, match="127.0.0.1 is a loopback address"):
        open_url(site.base + "/go")
    assert [r["path"] for r in site.requests] == ["/go"]
    assert internal.requests == []


@pytest.mark.parametrize(
    "url, why",
    [
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[::ffff:169.254.169.254]/", "link-local"),
        ("http://[::1]/", "loopback"),
        ("http://10.1.2.3/", "private"),
        ("http://100.100.100.200/", "private"),  # a cloud's metadata, in shared address space
        ("http://0.0.0.0/", "private"),
        ("http://224.0.0.1/", "multicast"),
    ],
)
def test_metadata_private_and_odd_addresses_are_refused(url, why):
    with pytest.raises(browser.BrowserError, match=why):
        open_url(url, seconds=2)


def test_a_name_that_resolves_to_a_private_address_is_refused(monkeypatch, internal):
    # Stand-in DNS: intranet.example -> the internal site's loopback address.
    monkeypatch.setattr(fetching, "resolve", _stand_in_dns({"intranet.example": ["127.0.0.1"]}))
    port = internal.server.server_port
    with pytest.raises(browser.BrowserError, match="intranet.example is a loopback address"):
        open_url(f"http://intranet.example:{port}/")
    assert internal.requests == []


def test_the_name_is_resolved_once_and_that_address_is_the_one_connected(monkeypatch, site, internal):
    # Stand-in DNS that rebinds: the first answer passes the check, later ones
    # point inside. A fetch that resolved again at connect time would reach it.
    answers = iter([["127.0.0.2"], ["127.0.0.1"], ["127.0.0.1"]])
    asked = []

    def rebinding(host, port):
        asked.append(host)
        return next(answers)

    monkeypatch.setattr(fetching, "resolve", rebinding)
    site.html("/", "<html><title>public</title><body><p>public page</p></body></html>")
    shown = open_url(f"http://rebind.example:{site.server.server_port}/")
    assert shown.title == "public"
    assert asked == ["rebind.example"]
    assert site.requests[0]["headers"]["Host"] == f"rebind.example:{site.server.server_port}"
    assert internal.requests == []


def test_a_name_with_any_private_answer_is_refused(monkeypatch, site):
    monkeypatch.setattr(fetching, "resolve", _stand_in_dns({"mixed.example": ["127.0.0.2", "169.254.169.254"]}))
    with pytest.raises(browser.BrowserError, match="link-local"):
        open_url(f"http://mixed.example:{site.server.server_port}/")
    assert site.requests == []


def test_no_cookies_or_credentials_are_sent(site):
    site.routes["/login"] = (302, {"Location": "/home", "Set-Cookie": "session=abc; Path=/"}, b"")
    site.html("/home", "<html><title>home</title><body><p>hello</p></body></html>")
    open_url(site.base + "/login")
    home = site.requests[1]
    assert home["path"] == "/home"
    assert "Cookie" not in home["headers"] and "Authorization" not in home["headers"]
    with pytest.raises(browser.BrowserError, match="user name or password"):
        open_url(site.base.replace("http://", "http://user:pw@") + "/home")
    assert len(site.requests) == 2


def test_other_schemes_are_refused():
    for url in ("file:///etc/passwd", "gopher://127.0.0.2/", "ftp://127.0.0.2/"):
        with pytest.raises(browser.BrowserError, match="only http and https"):
            open_url(url)


def test_size_type_and_time_are_limited(settings, site):
    settings.BROWSER_PAGE_BYTES = 50_000
    site.routes["/big"] = (200, {"Content-Type": "text/plain"}, b"word " * 1_000_000)
    big = open_url(site.base + "/big")
    assert big.text.count("word") < 11_000
    b = browser.Browser()
    browser.call(b, "open", {"id": site.base + "/big"}, seconds=5)
    assert b.pages[0].lines[-1] == "[the page was cut at 50000 bytes]"

    site.routes["/image"] = (200, {"Content-Type": "image/png"}, b"\x89PNG")
    with pytest.raises(browser.BrowserError, match="image/png, not text"):
        open_url(site.base + "/image")

    site.routes["/slow"] = (200, {"Content-Type": "text/html"}, lambda: time.sleep(3) or b"late")
    started = time.monotonic()
    with pytest.raises(browser.BrowserError, match="could not be reached|took too long|broke off"):
        open_url(site.base + "/slow", seconds=1)
    assert time.monotonic() - started < 2.5


def test_search_goes_to_the_configured_searxng_endpoint(settings, site):
    # The search engine leaves the machine: this local server is its stand-in,
    # answering SearXNG's JSON shape.
    engine = Site("127.0.0.3")
    results = {"results": [
        {"url": site.base + "/tea", "title": "Tea & its history", "content": "All about tea."},
        {"url": "https://example.org/coffee", "title": "Coffee", "content": "Not tea."},
    ]}  # fmt: skip
    engine.routes["/search?q=history+of+tea&format=json"] = (
        200, {"Content-Type": "application/json"}, json.dumps(results).encode(),
    )  # fmt: skip
    settings.BROWSER_SEARCH_URL = engine.base + "/"
    site.html("/tea", ARTICLE)
    b = browser.Browser()
    shown = browser.call(b, "search", {"query": "history of tea", "topn": 5}, seconds=5)
    assert shown.title == "Search results for `history of tea`"
    assert "【0†Tea & its history†127.0.0.2】" in shown.text
    assert "【1†Coffee†example.org】" in shown.text
    opened = browser.call(b, "open", {"id": 0}, seconds=5)
    assert opened.url == site.base + "/tea"
    engine.close()


def test_search_unconfigured_or_broken_is_said(settings):
    settings.BROWSER_SEARCH_URL = ""
    with pytest.raises(browser.BrowserError, match="search is not configured"):
        browser.call(browser.Browser(), "search", {"query": "x"}, seconds=2)
    settings.BROWSER_SEARCH_URL = "http://127.0.0.1:9"
    with pytest.raises(browser.BrowserError, match="could not be reached"):
        browser.call(browser.Browser(), "search", {"query": "x"}, seconds=2)


@pytest.mark.parametrize(
    "function, arguments, error",
    [
        ("open", {"id": 3}, "no page is open yet"),
        ("open", {"id": "3x", "cursor": "a"}, "only http and https"),
        ("find", {"pattern": ""}, "find needs a pattern"),
        ("search", {"query": ""}, "search needs a query"),
        ("fly", {}, "no function 'fly'"),
        ("open", {"cursor": 7}, "no page is open yet"),
    ],
)
def test_bad_calls_are_said_to_the_model(function, arguments, error):
    with pytest.raises(browser.BrowserError, match=error):
        browser.call(browser.Browser(), function, arguments, seconds=2)


def _stand_in_dns(table):
    """A stand-in for DNS, in place of fetching.resolve (the system's resolver)."""

    def resolve(host, port):
        return table[host]

    return resolve
