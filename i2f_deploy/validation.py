"""pydantic's validation errors said the way the rest of the project says them: one phrase per
error, naming the field, the rule and the value given (``cache-mb must be at least 1, got 0``)."""

from __future__ import annotations

from pydantic_core import ErrorDetails

_PHRASES = {
    "int_type": "must be an integer", "int_parsing": "must be an integer", "int_from_float": "must be an integer",
    "float_type": "must be a number", "float_parsing": "must be a number", "finite_number": "must be finite",
    "bool_type": "must be true or false", "bool_parsing": "must be true or false",
    "string_type": "must be a string", "tuple_type": "must be a list", "too_short": "must not be empty",
    "string_too_short": "must not be empty",
    "model_type": "must be a table", "model_attributes_type": "must be a table", "missing": "is missing",
    "extra_forbidden": "is not a known field",
}


def field_path(error: ErrorDetails) -> tuple[int | str, ...]:
    """Where the error is, an item of a list named by its list."""
    loc = error["loc"]
    return loc[:-1] if loc and isinstance(loc[-1], int) else loc


def problem(error: ErrorDetails, where: str) -> str:
    """``error`` as ``"<where> <rule>, got <value>"``; a validator's own message as it is."""
    kind, context = error["type"], error.get("ctx", {})
    if kind in ("value_error", "assertion_error"):
        return str(context["error"])
    if kind == "greater_than_equal":
        phrase = f"must be at least {context['ge']}"
    elif kind == "greater_than":
        phrase = f"must be greater than {context['gt']}"
    elif kind == "less_than_equal":
        phrase = f"must be at most {context['le']}"
    elif kind == "multiple_of":
        phrase = f"must be a multiple of {context['multiple_of']}"
    elif kind == "literal_error":
        phrase = f"must be one of {context['expected']}"
    else:
        phrase = _PHRASES.get(kind, error["msg"][0].lower() + error["msg"][1:])
    return f"{where} {phrase}" if kind == "missing" else f"{where} {phrase}, got {error['input']!r}"
