"""The API's errors: one class per error code, rendered as JSON by one handler.

Each class carries the status, the code and the exact message of the real service::

    raise InvalidSession()          # 401 {"code": "INVALID_SESSION_ERROR", ...}
    raise MissingFields(["ids"])    # 400 {..., "fields": ["ids"]}
"""

from __future__ import annotations

from typing import Any, ClassVar


class APIError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "INTERNAL_SERVER_ERROR"
    message: ClassVar[str] = "Internal Server Error"

    def __init__(self, **extra: Any) -> None:
        super().__init__(self.code)
        self.extra = extra
        self.headers: dict[str, str] = {}

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.extra}


class InternalServerError(APIError):
    pass


class InvalidSession(APIError):
    status, code, message = 401, "INVALID_SESSION_ERROR", "Invalid Session"


class SessionNotFound(InvalidSession):
    """An unknown session id answers with the same code as a bad token, but 404."""

    status = 404


class InvalidUser(APIError):
    status, code, message = 404, "INVALID_USER_ERROR", "Invalid User"


class InvalidPassword(APIError):
    status, code, message = 401, "INVALID_PASSWORD_ERROR", "Invalid Password"


class Banned(APIError):
    status, code, message = 403, "BANNED_ERROR", "Banned"


class InsufficientPermissions(APIError):
    status, code, message = 403, "INSUFFICIENT_PERMISSIONS_ERROR", "Insufficient Permissions"


class EndpointRequiresSecondFactor(APIError):
    status, code, message = (
        401,
        "ENDPOINT_REQUIRES_SECOND_FACTOR_ERROR",
        "Endpoint Requires Second Factor",
    )


class MissingFields(APIError):
    status, code, message = 400, "MISSING_FIELDS_ERROR", "Missing Fields"

    def __init__(self, fields: list[str]) -> None:
        super().__init__(fields=list(dict.fromkeys(fields)))


class BodyTooLarge(APIError):
    status, code, message = 400, "BODY_TOO_LARGE_ERROR", "Body Too Large"


class PayloadTooLarge(BodyTooLarge):
    """A request body over the size cap, refused before it is read."""

    status = 413


class InvalidSecondFactorResponse(APIError):
    status, code, message = (
        401,
        "INVALID_SECOND_FACTOR_RESPONSE_ERROR",
        "Invalid Second Factor Response",
    )


class MalformedSecondFactorResponse(InvalidSecondFactorResponse):
    """A challenge token that does not even parse is a bad request, not a wrong answer."""

    status = 400


class InvalidSecondFactorMethod(APIError):
    status, code, message = (
        400,
        "INVALID_SECOND_FACTOR_METHOD_ERROR",
        "Invalid Second Factor Method",
    )


class SecondFactorChallengeRequired(APIError):
    status, code, message = (
        401,
        "SECOND_FACTOR_CHALLENGE_REQUIRED_ERROR",
        "Second Factor Challenge Required",
    )


class RateLimited(APIError):
    status, code, message = (
        429,
        "RATELIMITED_ERROR",
        "You Have Been Ratelimited. Please Try Again Later.",
    )


class ServiceUnavailable(APIError):
    status, code, message = 503, "SERVICE_UNAVAILABLE_ERROR", "Service Unavailable"

    def __init__(self, feature: int) -> None:
        super().__init__(feature=feature)


class InvalidEndpoint(APIError):
    status, code, message = 404, "INVALID_ENDPOINT_ERROR", "Invalid Endpoint"


# Errors of the control API (outside /api), in the same shape.
class InvalidMockToken(APIError):
    status, code, message = 401, "INVALID_MOCK_TOKEN_ERROR", "Invalid Mock Token"


class ForeignHost(APIError):
    """A control request addressed to a name that is not this machine's loopback: what a
    page on another site sees after rebinding its DNS name to 127.0.0.1."""

    status, code, message = 403, "FORBIDDEN_HOST_ERROR", "Forbidden Host"


class ForeignOrigin(APIError):
    """A control request sent by a page of another origin (any website, or another port)."""

    status, code, message = 403, "FORBIDDEN_ORIGIN_ERROR", "Forbidden Origin"


class ControlBadRequest(APIError):
    status, code = 400, "INVALID_REQUEST_ERROR"

    def __init__(self, message: str) -> None:
        super().__init__()
        self.detail = message

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.detail}


class UserExists(APIError):
    status, code, message = 409, "USER_EXISTS_ERROR", "User Exists"


class UserNotFound(APIError):
    status, code, message = 404, "INVALID_USER_ERROR", "Invalid User"
