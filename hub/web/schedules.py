"""Schedules over HTTP: the schedules API and pages (next fire times, last fires, pause)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
