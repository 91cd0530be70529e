"""ES256 tokens: session tokens and second-factor challenge tokens.

A session token's claims are ``sub`` (user id), ``iat`` (the session id), ``exp`` and
``iss``; a challenge token carries ``purpose: "second-factor"`` on top, so neither kind
can stand in for the other::

    signer = TokenSigner.generate(issuer="localhost")
    token = signer.sign({"sub": "1647015028626", "iat": 1687067614, "exp": 1687154014})
    signer.verify(token)  # the claims, or None
"""

from __future__ import annotations

from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

HEADER = {"alg": "ES256", "typ": "JWT"}
SECOND_FACTOR_PURPOSE = "second-factor"
# Tokens are short; anything this long is junk and not worth parsing.
MAX_TOKEN_LENGTH = 4096
# Verified tokens remembered (an ES256 check costs ~0.3 ms); forgotten all at once when full.
VERIFIED_KEPT = 4096


class TokenSigner:
    def __init__(self, key: ECKey, issuer: str) -> None:
        self.key = key
        self.issuer = issuer
        # token -> its claims (or None): verification is a pure function of the token and
        # this signer's key. Expiry and revocation are not cached; the session store
        # decides them on every request.
        self._verified: dict[str, dict[str, Any] | None] = {}

    @classmethod
    def generate(cls, issuer: str) -> TokenSigner:
        return cls(ECKey.generate_key("P-256"), issuer)

    @classmethod
    def from_jwk(cls, data: dict[str, Any], issuer: str) -> TokenSigner:
        return cls(ECKey.import_key(data), issuer)

    def to_jwk(self) -> dict[str, Any]:
        return dict(self.key.as_dict(private=True))

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(dict(HEADER), {**claims, "iss": self.issuer}, self.key)

    def verify(self, token: str) -> dict[str, Any] | None:
        """The claims of a token this signer issued, or None for anything else.

        Expiry is not checked here: that needs the mock's clock and the session store.
        """
        if not token or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
            return None
        try:
            claims = self._verified[token]
        except KeyError:
            claims = self._verify(token)
            if len(self._verified) >= VERIFIED_KEPT:
                self._verified.clear()
            self._verified[token] = claims
        return None if claims is None else dict(claims)

    def _verify(self, token: str) -> dict[str, Any] | None:
        try:
            decoded = jwt.decode(token, self.key, algorithms=["ES256"])
        except (JoseError, ValueError, TypeError, KeyError):
            return None
        if decoded.header.get("alg") != "ES256":
            return None
        claims = decoded.claims
        if not isinstance(claims.get("sub"), str) or not _is_int(claims.get("iat")):
            return None
        if not _is_int(claims.get("exp")):
            return None
        return claims


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
