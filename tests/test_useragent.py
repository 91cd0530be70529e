"""Session names (mockserver/useragent.py): the X-Session-Name header, else the name the
real service's device detector gives the User-Agent, read in bounded time.

Every name in NAMES is what node-device-detector 2.2.7 (the detector the service runs)
gives that User-Agent, put together as the service's ``nameSession`` does."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mockserver.useragent import EXAMINED, session_name

UNKNOWN = "Unknown Browser on an Unknown OS"
CHROME_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)
FIREFOX_LINUX = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"
WEBKIT = "AppleWebKit/537.36 (KHTML, like Gecko)"
IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15"
ANDROID = "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko)"
# issue 12 item 6: this took 5.4 s and blocked every other client.
HOSTILE = "Version/1 " * 40000

NAMES = [
    # Worked examples of session names, the first also observed live (row 79).
    pytest.param(CHROME_WINDOWS, "Chrome v120 on Windows v10", id="contract-chrome-windows"),
    pytest.param(
        "python-requests/2.31.0", "Python Requests v2 on an Unknown OS", id="contract-requests"
    ),
    # Nothing recognised, nothing there.
    pytest.param("Cumulonimbus-Wrapper/5.1.0", UNKNOWN, id="unrecognised-js-client"),
    pytest.param("My Weird Client 1.0", UNKNOWN, id="unrecognised-words"),
    pytest.param("Mozilla/5.0", UNKNOWN, id="bare-mozilla"),
    pytest.param("Werkzeug/3.0.1", UNKNOWN, id="flask-test-client"),
    # detect() runs no bot detection, so a bot is whatever else its User-Agent shows.
    pytest.param(
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        UNKNOWN,
        id="googlebot",
    ),
    pytest.param("", UNKNOWN, id="empty"),
    pytest.param("   ", UNKNOWN, id="blank"),
    pytest.param(None, UNKNOWN, id="missing"),
    pytest.param(HOSTILE, UNKNOWN, id="issue-12-400kb-of-version"),
    # Desktop browsers: macOS is "Mac", Linux "GNU/Linux", NT 6.x by its marketing name.
    pytest.param(FIREFOX_LINUX, "Firefox v120 on GNU/Linux", id="firefox-linux"),
    pytest.param(
        "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
        "Firefox v121 on Ubuntu",
        id="firefox-ubuntu",
    ),
    pytest.param(
        "Mozilla/5.0 (X11; Fedora; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
        "Firefox v121 on Fedora",
        id="firefox-fedora",
    ),
    pytest.param(
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0",
        "Firefox v121 on Windows v10",
        id="firefox-windows",
    ),
    pytest.param(
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:121.0) Gecko/20100101 Firefox/121.0",
        "Firefox v121 on Mac v10",
        id="firefox-mac",
    ),
    pytest.param(
        "Mozilla/5.0 (X11; Linux x86_64; rv:9) Gecko/20100101 Firefox/9",
        "Firefox on GNU/Linux",
        id="one-digit-client-version-is-none",
    ),
    pytest.param(
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.1 Safari/605.1.15",
        "Safari v17 on Mac v10",
        id="safari-mac",
    ),
    pytest.param(
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2_1) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.2 Safari/605.1.15",
        "Safari v17 on Mac v14",
        id="safari-mac-14",
    ),
    pytest.param(
        f"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) {WEBKIT} Chrome/120.0.0.0 Safari/537.36",
        "Chrome v120 on Mac v10",
        id="chrome-mac",
    ),
    pytest.param(
        f"Mozilla/5.0 (Macintosh) {WEBKIT} Chrome/120.0.0.0 Safari/537.36",
        "Chrome v120 on Mac",
        id="os-without-version",
    ),
    pytest.param(
        f"Mozilla/5.0 (X11; Linux x86_64) {WEBKIT} Chrome/120.0.0.0 Safari/537.36",
        "Chrome v120 on GNU/Linux",
        id="chrome-linux",
    ),
    pytest.param(
        f"Mozilla/5.0 (X11; Linux x86_64) {WEBKIT} HeadlessChrome/131.0.0.0 Safari/537.36",
        "Headless Chrome v131 on GNU/Linux",
        id="headless-chrome",
    ),
    pytest.param(
        f"Mozilla/5.0 (X11; Linux x86_64) {WEBKIT} Chromium/120.0.6099.71 "
        "Chrome/120.0.6099.71 Safari/537.36",
        "Chromium v120 on GNU/Linux",
        id="chromium",
    ),
    pytest.param(
        f"{CHROME_WINDOWS} Edg/120.0.2210.91", "Microsoft Edge v120 on Windows v10", id="edge"
    ),
    pytest.param(f"{CHROME_WINDOWS} OPR/106.0.0.0", "Opera v106 on Windows v10", id="opera"),
    pytest.param(
        f"{CHROME_WINDOWS} Vivaldi/6.5.3206.48", "Vivaldi v6 on Windows v10", id="vivaldi"
    ),
    pytest.param(
        f"Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) {WEBKIT} Chrome/120.0.0.0 Safari/537.36",
        "Chrome v120 on Chrome OS v14541",
        id="chrome-os",
    ),
    pytest.param(
        f"Mozilla/5.0 (Windows NT 6.1; Win64; x64) {WEBKIT} Chrome/109.0.0.0 Safari/537.36",
        "Chrome v109 on Windows v7",
        id="windows-7",
    ),
    pytest.param(
        f"Mozilla/5.0 (Windows NT 6.3; Win64; x64) {WEBKIT} Chrome/109.0.0.0 Safari/537.36",
        "Chrome v109 on Windows v8",
        id="windows-8.1",
    ),
    pytest.param(
        "Mozilla/5.0 (Windows NT 5.1; rv:52.0) Gecko/20100101 Firefox/52.0",
        "Firefox v52 on Windows vXP",
        id="windows-xp",
    ),
    pytest.param(
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; Trident/7.0; rv:11.0) like Gecko",
        "Internet Explorer v11 on Windows v10",
        id="ie-11",
    ),
    pytest.param(
        "Mozilla/5.0 (compatible; MSIE 10.0; Windows NT 6.2; Trident/6.0)",
        "Internet Explorer v10 on Windows v8",
        id="ie-10",
    ),
    pytest.param(
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64)",
        "Unknown Browser on Windows v10",
        id="os-but-no-client",
    ),
    # Phones and tablets.
    pytest.param(
        f"{ANDROID} Chrome/120.0.0.0 Mobile Safari/537.36",
        "Chrome Mobile v120 on Android v10",
        id="chrome-android",
    ),
    pytest.param(
        "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Safari/537.36",
        "Chrome v120 on Android v13",
        id="chrome-android-tablet",
    ),
    pytest.param(
        "Mozilla/5.0 (Linux; Android 13; SM-A515F Build/TP1A.220624.014; wv) "
        f"{WEBKIT} Version/4.0 Chrome/120.0.6099.144 Mobile Safari/537.36",
        "Chrome Webview v120 on Android v13",
        id="android-webview",
    ),
    pytest.param(
        f"{ANDROID} Chrome/120.0.0.0 Mobile Safari/537.36 EdgA/120.0.0.0",
        "Microsoft Edge v120 on Android v10",
        id="edge-android",
    ),
    pytest.param(
        f"{ANDROID} Chrome/120.0.0.0 Mobile Safari/537.36 OPR/79.0.4195.76560",
        "Opera Mobile v79 on Android v10",
        id="opera-android",
    ),
    pytest.param(
        "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
        "SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36",
        "Samsung Browser v23 on Android v14",
        id="samsung-browser",
    ),
    pytest.param(
        "Mozilla/5.0 (Android 14; Mobile; rv:121.0) Gecko/121.0 Firefox/121.0",
        "Firefox Mobile v121 on Android v14",
        id="firefox-android",
    ),
    pytest.param(
        f"{IPHONE} (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
        "Mobile Safari v17 on iOS v17",
        id="safari-iphone",
    ),
    pytest.param(
        "Mozilla/5.0 (iPad; CPU OS 17_1_2 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.1.2 Mobile/15E148 Safari/604.1",
        "Mobile Safari v17 on iPadOS v17",
        id="safari-ipad",
    ),
    pytest.param(
        "Mozilla/5.0 (iPad; CPU OS 12_5_7 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/12.1.2 Mobile/15E148 Safari/604.1",
        "Mobile Safari v12 on iOS v12",
        id="ipad-before-ipados",
    ),
    pytest.param(
        f"{IPHONE} (KHTML, like Gecko) CriOS/120.0.6099.119 Mobile/15E148 Safari/604.1",
        "Chrome Mobile iOS v120 on iOS v17",
        id="chrome-iphone",
    ),
    pytest.param(
        f"{IPHONE} (KHTML, like Gecko) FxiOS/121.0 Mobile/15E148 Safari/605.1.15",
        "Firefox Mobile iOS v121 on iOS v17",
        id="firefox-iphone",
    ),
    pytest.param(
        f"{IPHONE} (KHTML, like Gecko) Version/17.1 EdgiOS/120.0.2210.126 Mobile/15E148 "
        "Safari/605.1.15",
        "Microsoft Edge v120 on iOS v17",
        id="edge-iphone",
    ),
    # Libraries and tools: Matomo's names, and majors only.
    pytest.param("curl/8.5.0", "curl v8 on an Unknown OS", id="curl"),
    pytest.param("curl", "curl on an Unknown OS", id="curl-without-version"),
    pytest.param("curl/8", "curl on an Unknown OS", id="curl-one-digit-version"),
    pytest.param(
        "Mozilla/5.0 (X11; Linux x86_64) curl/8.5.0", "curl v8 on GNU/Linux", id="curl-with-os"
    ),
    pytest.param("Wget/1.21.4", "Wget v1 on an Unknown OS", id="wget"),
    pytest.param(
        "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
        "Node Fetch v1 on an Unknown OS",
        id="node-fetch",
    ),
    pytest.param("axios/1.6.2", "Axios v1 on an Unknown OS", id="axios"),
    pytest.param("undici", "undici on an Unknown OS", id="undici"),
    pytest.param("Deno/1.39.0", "Deno v1 on an Unknown OS", id="deno"),
    pytest.param("Python-urllib/3.11", "Python urllib v3 on an Unknown OS", id="urllib"),
    pytest.param("python-httpx/0.25.2", "HTTPX v0 on an Unknown OS", id="httpx"),
    pytest.param("aiohttp/3.9.1", "aiohttp v3 on an Unknown OS", id="aiohttp"),
    pytest.param("Go-http-client/1.1", "Go-http-client v1 on an Unknown OS", id="go"),
    pytest.param("okhttp/4.12.0", "OkHttp v4 on Android", id="okhttp-counts-as-android"),
    pytest.param(
        "Apache-HttpClient/4.5.14 (Java/17.0.9)",
        "Apache HTTP Client v4 on an Unknown OS",
        id="apache-httpclient",
    ),
    pytest.param("PostmanRuntime/7.36.0", "Postman Desktop v7 on an Unknown OS", id="postman"),
    pytest.param("HTTPie/3.2.2", "HTTPie v3 on an Unknown OS", id="httpie"),
]


@pytest.mark.parametrize(("user_agent", "name"), NAMES)
def test_the_name_is_the_detectors(user_agent: str | None, name: str) -> None:
    assert session_name(user_agent) == name


def test_x_session_name_wins_over_the_user_agent() -> None:
    assert session_name(CHROME_WINDOWS, "My laptop") == "My laptop"


def test_x_session_name_is_trimmed() -> None:
    assert session_name(CHROME_WINDOWS, "  My laptop \t") == "My laptop"


@pytest.mark.parametrize("header", ["", "   "], ids=["empty", "blank"])
def test_a_blank_x_session_name_falls_back_to_the_user_agent(header: str) -> None:
    assert session_name(CHROME_WINDOWS, header) == "Chrome v120 on Windows v10"


# A bound on the input, not a stopwatch: what lies past the first EXAMINED characters
# cannot change the name, so no header, however long, costs more than that much reading.
@pytest.mark.parametrize(
    "user_agent",
    [
        pytest.param(HOSTILE, id="issue-12-400kb-of-version"),
        pytest.param(FIREFOX_LINUX.ljust(EXAMINED) + " Edg/120.0.0.0", id="token-past-the-bound"),
        pytest.param("x" * EXAMINED + CHROME_WINDOWS, id="whole-agent-past-the-bound"),
    ],
)
def test_nothing_past_the_first_examined_characters_counts(user_agent: str) -> None:
    assert session_name(user_agent) == session_name(user_agent[:EXAMINED])


def test_real_user_agents_fit_well_within_the_bound() -> None:
    longest = max(len(p.values[0] or "") for p in NAMES if p.values[0] is not HOSTILE)
    assert longest * 4 < EXAMINED


# Only a guard, so that a pattern that backtracks catastrophically within the bound
# fails the run instead of hanging it: the limit is thousands of times what it needs.
def test_hostile_headers_do_not_hang_the_namer() -> None:
    script = (
        "from mockserver.useragent import session_name\n"
        "for unit in ['Version/1 ', 'Chrome/1', 'Mobile;', 'Android ', 'CrOS a', 'wv)', 'x']:\n"
        "    session_name(unit * (400_000 // len(unit)))\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=30)
