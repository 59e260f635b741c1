"""The filter spec every store call takes, and its translation into each backend's objects.

Filters are a small dict spec::

    {"label": "kick"}                      exact match (str, int, bool; a float
                                           matches with an equality range)
    {"label": ["kick", "snare"]}           match any
    {"duration_s": {"gte": 0.5, "lt": 2}}  numeric range (gt, gte, lt, lte)
    {"label": None}                        field missing, null or empty
    several keys                           all must hold (AND)
    {"__not__": {...same spec...}}         the inner spec must not hold (NOT of its AND)
    {"__not__": [{...}, {...}]}            none of the inner specs may hold
    {"__ids__": ["<uuid>", ...]}           only these point ids (search inside a set)

:func:`translate_filter` walks the spec once; a :class:`FilterMaker` per backend builds the
objects (Qdrant Edge's ``qdrant_edge`` classes, qdrant-client's ``models``), which are handed
in as modules so that nothing here imports Qdrant.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

Filter = dict  # the dict spec described above

RANGE_KEYS = ("gt", "gte", "lt", "lte")


def jsonable(value: Any) -> Any:
    """Payload (and filter) values as plain JSON types (numpy scalars and arrays converted)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


class FilterMaker:
    """Builds one backend's filter objects (see :func:`translate_filter`)."""

    def match_value(self, key: str, value: Any) -> Any: ...
    def match_any(self, key: str, values: list) -> Any: ...
    def range(self, key: str, **bounds: float) -> Any: ...
    def is_empty(self, key: str) -> Any: ...
    def has_id(self, ids: Sequence[str]) -> Any: ...
    def filter(self, must: list | None, must_not: list | None) -> Any: ...

    def and_not_ids(self, flt: Any, ids: Sequence[str]) -> Any:
        """``flt`` AND NOT (id in ids)."""
        if not ids:
            return flt
        return self.filter([flt] if flt is not None else None, [self.has_id(ids)])

    def and_has_field(self, flt: Any, key: str) -> Any:
        """``flt`` AND (``key`` is not empty)."""
        return self.filter([flt] if flt is not None else None, [self.is_empty(key)])


def translate_filter(spec: Filter | None, make: FilterMaker) -> Any:
    """The backend filter object for a dict spec (None for no filter)."""
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise ValueError(f"a filter is a dict, got {type(spec).__name__}")
    must: list = []
    must_not: list = []
    for key, value in spec.items():
        if key == "__not__":
            for part in (value if isinstance(value, list) else [value]):
                inner = translate_filter(part, make)
                if inner is not None:
                    must_not.append(inner)
            continue
        if key == "__ids__":
            must.append(make.has_id([str(i) for i in value]))
            continue
        if not isinstance(key, str) or not key:
            raise ValueError(f"bad filter key {key!r}")
        if value is None:
            must.append(make.is_empty(key))
        elif isinstance(value, dict):
            unknown = set(value) - set(RANGE_KEYS)
            if unknown or not value:
                raise ValueError(f"filter range for {key!r} takes only {RANGE_KEYS}, got {sorted(value)}")
            must.append(make.range(key, **{k: float(v) for k, v in value.items() if v is not None}))
        elif isinstance(value, (list, tuple, set)):
            values = [jsonable(v) for v in value]
            if not all(type(v) is str for v in values) and not all(type(v) is int for v in values):
                raise ValueError(f"filter 'any' values for {key!r} must be all str or all int")
            must.append(make.match_any(key, values))
        else:
            value = jsonable(value)
            if isinstance(value, float):
                # Equality within a few ulps: Qdrant Edge may return stored payload floats
                # changed in the last bit (measured: ~1 in 9 values, relative error 2e-16).
                tol = abs(value) * 1e-12
                must.append(make.range(key, gte=value - tol, lte=value + tol))
            elif isinstance(value, (str, int, bool)):
                must.append(make.match_value(key, value))
            else:
                raise ValueError(f"cannot filter {key!r} on a {type(value).__name__}")
    if not must and not must_not:
        return None
    return make.filter(must or None, must_not or None)


class EdgeFilters(FilterMaker):
    """Filter objects of Qdrant Edge (``qdrant_edge`` passed in as ``qe``)."""

    def __init__(self, qe: Any):
        self.qe = qe

    def match_value(self, key, value):
        return self.qe.FieldCondition(key=key, match=self.qe.MatchValue(value))

    def match_any(self, key, values):
        return self.qe.FieldCondition(key=key, match=self.qe.MatchAny(values))

    def range(self, key, **bounds):
        return self.qe.FieldCondition(key=key, range=self.qe.RangeFloat(**bounds))

    def is_empty(self, key):
        return self.qe.IsEmptyCondition(key)

    def has_id(self, ids):
        return self.qe.HasIdCondition({str(i) for i in ids})

    def filter(self, must, must_not):
        return self.qe.Filter(must=must, must_not=must_not)


class ClientFilters(FilterMaker):
    """Filter objects of qdrant-client (``qdrant_client.models`` passed in as ``models``)."""

    def __init__(self, models: Any):
        self.m = models

    def match_value(self, key, value):
        return self.m.FieldCondition(key=key, match=self.m.MatchValue(value=value))

    def match_any(self, key, values):
        return self.m.FieldCondition(key=key, match=self.m.MatchAny(any=values))

    def range(self, key, **bounds):
        return self.m.FieldCondition(key=key, range=self.m.Range(**bounds))

    def is_empty(self, key):
        return self.m.IsEmptyCondition(is_empty=self.m.PayloadField(key=key))

    def has_id(self, ids):
        return self.m.HasIdCondition(has_id=[str(i) for i in ids])

    def filter(self, must, must_not):
        return self.m.Filter(must=must, must_not=must_not)
