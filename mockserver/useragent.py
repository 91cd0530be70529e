"""Session names derived from the User-Agent, like the real service's ("Firefox v120 on Linux").

session_name("Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0")
# 'Firefox v120 on Linux'
"""

from __future__ import annotations

import re

# Order matters: Edge and Opera also say "Chrome", Chrome also says "Safari".
_BROWSERS = (
    ("Edge", r"Edg(?:e|A|iOS)?/(\d+)"),
    ("Opera", r"(?:OPR|Opera)/(\d+)"),
    ("Firefox", r"(?:Firefox|FxiOS)/(\d+)"),
    ("Chrome", r"(?:Chrome|CriOS)/(\d+)"),
    ("Safari", r"Version/(\d+).*Safari/"),
)
_SYSTEMS = (
    ("Android", r"Android"),
    ("iOS", r"iPhone|iPad|iPod"),
    ("Windows", r"Windows"),
    ("macOS", r"Mac OS X|Macintosh"),
    ("Chrome OS", r"CrOS"),
    ("Linux", r"Linux|X11"),
)


def session_name(user_agent: str | None, header_name: str | None = None) -> str:
    """The ``X-Session-Name`` header when given, else a name from the User-Agent."""
    if header_name and header_name.strip():
        return header_name.strip()
    agent = (user_agent or "").strip()
    if not agent:
        return "Unknown"
    browser = next(
        ((name, m.group(1)) for name, rx in _BROWSERS if (m := re.search(rx, agent))), None
    )
    system = next((name for name, rx in _SYSTEMS if re.search(rx, agent)), None)
    if browser is None:
        return agent
    name, version = browser
    return f"{name} v{version} on {system}" if system else f"{name} v{version}"
