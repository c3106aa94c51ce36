"""Schemathesis hooks for Veil: every 4xx and 5xx must carry the one error shape."""
import schemathesis


@schemathesis.check
def veil_error_shape(ctx, response, case):
    if response.status_code >= 400:
        try:
            body = response.json()
        except Exception:
            raise AssertionError("error response is not JSON")
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, dict) or not {"code", "message", "request_id"} <= set(error):
            raise AssertionError("error response lacks {error: {code, message, request_id}}")
