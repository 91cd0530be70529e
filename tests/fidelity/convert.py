"""Turn the observed session (Markdown, as recorded against a live server) into replay data.

    python tests/fidelity/convert.py ../shared/observed/cumulonimbus-api-5.3.0.md \
        > tests/fidelity/observed-5.3.0.yaml

The Markdown is for people; the YAML it produces is what ``test_replay.py`` reads. Run
once when a new observation arrives, then review the diff: a few rows abbreviate their
request (``...``) and are completed by ``FIXES`` below.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

import yaml

USERS = ("alice", "bob", "carol", "dave", "erin")
# Rows whose Markdown abbreviates the request: the full bodies, as the observer sent them.
FIXES: dict[int, dict[str, Any]] = {
    n: {"json": {"name": f"p{n - 216}", "permissionFlags": 32, "password": "alice-password-1"}}
    for n in range(217, 221)
}
# What the groups' headings say about client addresses and pacing (seconds between rows).
SHARED_IP_GROUPS = {"G1", "G3", "G3b", "G4b"}
PER_CHECK_IP_GROUPS = {"G8b", "G13"}  # rows share an address with their check's prefix
RAPID_GROUPS = {"G13"}
CHROME_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)


def _json_prefix(text: str) -> tuple[Any, str]:
    """The JSON value at the start of ``text`` and what follows it."""
    value, end = json.JSONDecoder().raw_decode(text)
    return value, text[end:]


def parse_request(text: str) -> dict[str, Any]:
    text = text.strip().strip("`")
    method, rest = text.split(" ", 1)
    path, _, rest = rest.partition(" ")
    request: dict[str, Any] = {"method": method, "path": path}
    headers: dict[str, str] = {}
    rest = rest.strip()
    while rest:
        if rest.startswith("(no body)"):
            rest = rest[len("(no body)") :]
        elif rest.startswith("(preflight for "):
            wanted, _, rest = rest[len("(preflight for ") :].partition(")")
            headers["Origin"] = "http://localhost:5173"
            headers["Access-Control-Request-Method"] = wanted
            headers["Access-Control-Request-Headers"] = "authorization,content-type"
        elif rest.startswith("auth=raw:'"):
            raw, _, rest = rest[len("auth=raw:'") :].partition("'")
            request["auth"] = {"raw": raw}
        elif rest.startswith("auth="):
            value, _, rest = rest[len("auth=") :].partition(" ")
            forged = re.fullmatch(r"([a-z-]+)\(([\w-]+)\)", value)
            if forged:
                request["auth"] = {forged.group(1): forged.group(2)}
            else:
                request["auth"] = value
        elif rest.startswith("body("):
            ctype, _, rest = rest[len("body(") :].partition(")='")
            raw, _, rest = rest.partition("'")
            request["data"] = raw
            request["contentType"] = ctype
        elif rest.startswith("body="):
            body = rest[len("body=") :]
            if body.startswith('{"ids":[51 ids]}'):
                request["json"] = {"ids": "<51 ids>"}
                rest = body[len('{"ids":[51 ids]}') :]
            elif ",...}" in body.split(" ")[0]:
                request["json"] = "<abbreviated>"
                rest = body.split(" ", 1)[1] if " " in body else ""
            else:
                request["json"], rest = _json_prefix(body)
        elif rest.startswith("X-Session-Name="):
            value, _, rest = rest[len("X-Session-Name=") :].partition(" ")
            headers["X-Session-Name"] = value
        elif rest.startswith("UA=Chrome/120 Windows"):
            headers["User-Agent"] = CHROME_UA
            rest = rest[len("UA=Chrome/120 Windows") :]
        elif rest.startswith("Origin="):
            value, _, rest = rest[len("Origin=") :].partition(" ")
            headers["Origin"] = value
        else:
            raise ValueError(f"cannot read request part {rest!r} of {text!r}")
        rest = rest.strip()
    if headers:
        request["headers"] = headers
    return request


def parse_ratelimit(text: str) -> Any:
    text = text.strip()
    if text == "-":
        return "none"
    if text == "Skip":
        return "skipped"
    found: dict[str, Any] = {}
    for part in text.split():
        if part.startswith("L="):
            found["limit"] = int(part[2:])
        elif part.startswith("R="):
            found["remaining"] = int(part[2:])
        elif part == "Rst":
            found["reset"] = True
        elif part.startswith("Why="):
            found["reason"] = part[4:]
        elif part == "Skip":
            found["skipped"] = True
    return found


def parse_answer(text: str) -> dict[str, Any]:
    parts = [p.strip() for p in text.split(" · ")]
    head = parts[0]
    expect: dict[str, Any] = {}
    status, _, head = head.partition(" ")
    expect["status"] = int(status)
    if not head:
        expect["unrecorded"] = True  # the record kept the status only: no code, no body
    elif head == "HTML":
        expect["html"] = True
    elif head == "empty":
        expect["empty"] = True
    elif head != "JSON-no-code":
        match = re.match(r"([A-Z_]+) “([^”]*)”\s*(.*)", head)
        if not match:
            raise ValueError(f"cannot read answer {head!r}")
        expect["code"], expect["message"], extra = match.groups()
        for key, value in re.findall(r"(fields|types|feature|count)=(\[[^\]]*\]|\d+)", extra):
            expect[key] = json.loads(value)
        if "token ttl=300" in extra:
            expect["challenge"] = {"ttl": 300}
    rl = next((p[3:] for p in parts[1:] if p.startswith("RL ")), None)
    if rl is not None:
        expect["ratelimit"] = parse_ratelimit(rl)
    shape = next((p for p in parts[1:] if p.startswith("{")), None)
    if shape:
        try:
            expect["body"] = json.loads(shape.removesuffix("|").strip())
        except ValueError:
            # A few rows are cut short in the Markdown: keep what can be read.
            found: dict[str, str] = {}
            untyped = re.sub(r'"types":\{[^}]*\}', "", shape)
            for key, value in re.findall(r'"(id|name)":"([^"]*)"', untyped):
                found.setdefault(key, value)
            expect["body"] = found
            expect["body"]["truncated"] = True
    cors = next((p for p in parts[1:] if p.startswith("cors=")), None)
    if cors:
        expect["cors"] = {
            "allow-origin": json.loads(cors[5:].split(",", 1)[0] + "}")["allow-origin"]
        }
        expect["cors"]["exposed"] = json.loads(
            re.search(r'"exposed RateLimit-\*":(\[[^\]]*\])', cors).group(1)  # type: ignore[union-attr]
        )
    return expect


def _user_of(what: str, request: dict[str, Any]) -> str | None:
    """Whose second factor a row answers: the caller's, else (at login) the one named."""
    auth = request.get("auth")
    if isinstance(auth, str):
        return auth.split("-")[0]
    for word in re.findall(r"[a-z]+", what):
        if word in USERS:
            return word
    return None


def convert(markdown: str) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    pair_seen: dict[str, bool] = {}
    group = ""
    for line in markdown.splitlines():
        heading = re.match(r"## (G\d+[a-z]?) ", line)
        if heading:
            group = heading.group(1)
            continue
        match = re.match(r"\| (\d+) \| (.*?) \| `(.*)` \| (.*) \|$", line)
        if not match:
            continue
        number, what, request_text, answer = match.groups()
        n = int(number)
        requests = [parse_request(r) for r in request_text.split(" \\|\\| ")]
        for request in requests:
            request.update(FIXES.get(n, {}))
        row: dict[str, Any] = {"row": n, "group": group, "what": what}
        if group in SHARED_IP_GROUPS or (group == "G16" and n >= 213):
            row["ip"] = group
        elif group in PER_CHECK_IP_GROUPS:
            row["ip"] = f"{group}-{what.split()[0]}"
        else:
            row["ip"] = "own"
        if group in RAPID_GROUPS:
            row["advance"] = 0.1
        if "1.2 s later" in what:
            row["advance"] = 1.2
        request = requests[0]
        if len(requests) == 2:
            # A pair sent at once; its rows give the outcomes. Replayed as two requests in
            # the same second: the first row sends the first, the next row the second.
            request = requests[1] if pair_seen.get(request_text) else requests[0]
            if pair_seen.get(request_text):
                row["advance"] = 0
            pair_seen[request_text] = True
            request["user"] = request["headers"]["X-Session-Name"].split("-")[0]
        row["request"] = request
        user = request.get("user") or _user_of(what, request)
        if user:
            row["user"] = user
        row["expect"] = parse_answer(answer)
        rows.append(row)
    return {"rows": rows}


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as handle:
        data = convert(handle.read())
    yaml.safe_dump(
        data, sys.stdout, sort_keys=False, allow_unicode=True, width=100, default_flow_style=None
    )


if __name__ == "__main__":
    main()
