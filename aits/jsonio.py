"""Strict JSON out: a non-finite float (NaN, inf), which strict parsers reject, is written as null."""

from __future__ import annotations

import json
import math
from typing import Any


def finite_or_null(obj: Any) -> Any:
    """``obj`` with every non-finite float inside dicts, lists and tuples replaced by None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_null(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_null(v) for v in obj]
    return obj


def dumps(obj: Any, **kwargs: Any) -> str:
    """``json.dumps`` that never writes a bare NaN or Infinity."""
    return json.dumps(finite_or_null(obj), allow_nan=False, **kwargs)
