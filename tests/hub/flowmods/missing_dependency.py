"""Imports a package that is not installed (a missing extra, most often)."""

from __future__ import annotations

import hub_no_such_package  # noqa: F401
