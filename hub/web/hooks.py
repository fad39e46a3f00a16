"""Webhooks over HTTP: ``POST /hooks/{name}`` (the intake), the deliveries API and pages."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
