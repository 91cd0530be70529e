"""Session names: the ``X-Session-Name`` header, else a name read from the User-Agent.

session_name("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
             "(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36")
# 'Chrome v120 on Windows v10'
session_name("python-requests/2.31.0")
# 'Python Requests v2 on an Unknown OS'

Source followed. The real service (AlekEagle/cumulonimbus-api) runs every request
through node-device-detector, the Node port of Matomo's device-detector
(``src/middleware/DeviceDetector.ts``), and names a login ``X-Session-Name ||
nameSession(req)`` (``src/routes/session.ts``), where ``nameSession``
(``src/utils/Token.ts``) gives

    <client.name>[ v<client major>] on <os.name>[ v<os major>]

a major being the version up to its first ".", and a part with no version having no
" v"; a client the detector did not find is "Unknown Browser", an OS "an Unknown OS".
(Its fallback to the raw User-Agent never fires: the detector always returns a device.)
The names are Matomo's (``regexes/client/browsers.yml``, ``regexes/client/libraries.yml``,
``regexes/oss.yml``), and every row of ``tests/test_useragent.py`` was checked against
node-device-detector 2.2.7 itself. Its quirks are kept: macOS is "Mac", Linux
"GNU/Linux", Windows NT 6.1 "Windows v7", and a client version needs two characters
("curl/8" is plain "curl": Matomo wants a digit, then one or more digits or dots).

This is a table of the common families, not the whole database. A brand it does not
know is named after what it is built on where that shows (Facebook's in-app browser on
an iPhone is "Mobile Safari" here, "Facebook" there), else as unknown. Client hints
(``Sec-CH-UA-*``), which the service also reads (its only way to tell Windows 11), are
not read. A request with no User-Agent at all is "Unknown Browser on an Unknown OS":
the detector throws on it, and the contract allows no 500.

Bounded work: only the first :data:`EXAMINED` characters are read, and every pattern is
a literal token after a lookbehind, followed at most by possessive runs, so none gives
back more than a character or two: naming costs time linear in :data:`EXAMINED`,
whatever the header's size.
(The detector itself took 23 s on the 40 KB ``"Version/1 " * 4000``.)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple

# Real User-Agents stay well under this; GitLab caps its device detector at the same.
EXAMINED = 1024

UNKNOWN_CLIENT = "Unknown Browser"
UNKNOWN_OS = "an Unknown OS"

# A version as Matomo captures it, digits and dots; possessive, so it never gives back.
_V = r"(\d[\d._]*+)"


def _token(pattern: str) -> re.Pattern[str]:
    # Matomo anchors every regex after a non-word character (its
    # "(?:^|[^A-Z0-9_-]|...)" prefix), so "Chrome" is not found in "HeadlessChrome".
    return re.compile(r"(?<![A-Za-z0-9_-])(?:" + pattern + ")", re.IGNORECASE)


class _Rule(NamedTuple):
    name: str
    needs: Sequence[re.Pattern[str]]  # all must be found
    versions: Sequence[re.Pattern[str]] = ()  # group 1 of the first found is the version


def _rule(name: str, *needs: str, version: str | Sequence[str] | None = None) -> _Rule:
    wanted = [version] if isinstance(version, str) else list(version or [])
    return _Rule(name, [_token(n) for n in needs], [_token(v) for v in wanted])


def _browser(name: str, token: str, *needs: str) -> _Rule:
    """A client known by ``token/version`` (and whatever else ``needs`` says)."""
    product = f"{token}/{_V}"
    return _rule(name, product, *needs, version=product)


def _library(name: str, token: str) -> _Rule:
    """A client known by its product token, with or without a ``/version``."""
    product = f"{token}(?:/{_V})?"
    return _rule(name, product, version=product)


_ANDROID = r"(?<!like )Android"
_IDEVICE = r"iPhone|iPad|iPod"
_VERSION = f"Version/{_V}"
_IPAD = _token("iPad")
_SEPARATOR = re.compile("[._]")

# First match wins, in Matomo's order: brands built on Chrome or Safari before them.
_CLIENTS: tuple[_Rule, ...] = (
    _browser("Microsoft Edge", "Edg(?:e|A|iOS)?"),
    _browser("Opera Mobile", "OPR", _ANDROID),
    _browser("Opera", "OPR"),
    _rule("Opera", f"Opera/{_V}", version=[_VERSION, f"Opera/{_V}"]),
    _browser("Samsung Browser", "SamsungBrowser"),
    _browser("Vivaldi", "Vivaldi"),
    _browser("Yandex Browser", "YaBrowser"),
    _browser("Headless Chrome", "HeadlessChrome"),
    _browser("Chromium", "Chromium"),
    _browser("Chrome Mobile iOS", "CriOS"),
    _browser("Chrome Webview", "Chrome", _ANDROID, r"wv\)"),
    _rule("Chrome Mobile", r"Chrome/[\d.]*+ Mobile", version=f"Chrome/{_V}"),
    _browser("Chrome", "Chrome"),
    _browser("Firefox Mobile iOS", "FxiOS"),
    # Matomo wants "Mobile;" before "Firefox/"; anywhere is close enough, and needs no ".+".
    _browser("Firefox Mobile", "Firefox", "(?:Mobile|Tablet);"),
    _browser("Firefox", "Firefox"),
    _rule("Internet Explorer", r"MSIE \d", version=f"MSIE {_V}"),
    _rule("Internet Explorer", r"Trident/\d", version=f"rv:{_V}"),
    _rule("Android Browser", _ANDROID, _VERSION, "Safari/"),
    _rule("Mobile Safari", _IDEVICE, "AppleWebKit/", version=_VERSION),
    _rule("Safari", "Safari/", version=_VERSION),
    _rule("Safari", "Macintosh", "AppleWebKit/", version=_VERSION),
    # Libraries come after every browser: Matomo's client parsers run in that order.
    _library("HTTPX", "python-httpx"),
    _library("Wget", "Wget"),
    _library("Guzzle (PHP HTTP Client)", "Guzzle(?:Http)?"),
    _library("curl", "(?:lib)?curl"),
    _library("Python Requests", "python-requests"),
    _rule("Python urllib", "Python-urllib3?", version=f"Python-urllib3?/?{_V}"),
    _library("Apache HTTP Client", "Apache-HttpClient"),
    _library("Java", "Java"),
    _browser("OkHttp", "okhttp"),
    _library("aiohttp", "aiohttp"),
    _library("Go-http-client", "Go-http-client"),
    _library("HTTPie", "HTTPie"),
    _library("Node Fetch", "node-fetch"),
    _library("Postman Desktop", "PostmanRuntime"),
    _library("Axios", "axios"),
    _browser("Deno", "^Deno"),
    _rule("undici", "^undici$"),
)

_WINDOWS_NT = {
    "11.0": "11",
    "10.0": "10",
    "6.4": "10",
    "6.3": "8.1",
    "6.2": "8",
    "6.1": "7",
    "6.0": "Vista",
    "5.2": "Server 2003",
    "5.1": "XP",
    "5.0": "2000",
}

_OSES: tuple[_Rule, ...] = (
    # OkHttp is Android's HTTP client: Matomo counts it as Android.
    _rule("Android", f"{_ANDROID}|okhttp/", version=f"{_ANDROID}[ /]?{_V}"),
    _rule("iOS", _IDEVICE, version=f"(?:CPU|iPhone) OS {_V}"),
    _rule("Chrome OS", "CrOS ", version=f"CrOS [a-z0-9_]++ {_V}"),
    _rule("Windows RT", r"Windows NT 6\.[23]; ARM;"),
    _rule("Windows", r"Windows NT \d", version=r"Windows NT (\d++\.\d++)"),
    _rule("Mac", "Macintosh|Mac OS X|Mac_PowerPC", version=f"Mac OS X[ _]?{_V}"),
    _rule("Ubuntu", "Ubuntu", version=f"Ubuntu[ /]{_V}"),
    _rule("Fedora", "Fedora", version=f"Fedora[ /]{_V}"),
    _rule("Debian", "Debian", version=f"Debian[ /]{_V}"),
    _rule("FreeBSD", "FreeBSD", version=f"FreeBSD[ /]{_V}"),
    _rule("GNU/Linux", "Linux"),
)


def session_name(user_agent: str | None, header_name: str | None = None) -> str:
    """The ``X-Session-Name`` header when given, else a name from the User-Agent."""
    if header_name and header_name.strip():
        return header_name.strip()
    # Cut before anything else reads it: the header may be hundreds of kilobytes.
    text = (user_agent or "")[:EXAMINED]
    return f"{_client(text)} on {_os(text)}"


def _client(text: str) -> str:
    found = _first(_CLIENTS, text)
    if found is None:
        return UNKNOWN_CLIENT
    name, version = found
    # Matomo reads client versions as (\d+[.\d]+): a lone digit is no version.
    return _named(name, version if len(version) > 1 else "")


def _os(text: str) -> str:
    found = _first(_OSES, text)
    if found is None:
        return UNKNOWN_OS
    name, version = found
    if name == "Windows":
        version = _WINDOWS_NT.get(version, "")
    elif name == "iOS" and _IPAD.search(text) and int(_major(version) or 0) >= 13:
        name = "iPadOS"
    return _named(name, version)


def _first(rules: Sequence[_Rule], text: str) -> tuple[str, str] | None:
    """The first rule whose patterns are all found, as (name, version or "")."""
    for rule in rules:
        if all(p.search(text) for p in rule.needs):
            found = (m.group(1) or "" for p in rule.versions if (m := p.search(text)))
            return rule.name, next(found, "")
    return None


def _major(version: str) -> str:
    return _SEPARATOR.split(version, maxsplit=1)[0]


def _named(name: str, version: str) -> str:
    major = _major(version)
    return f"{name} v{major}" if major else name
