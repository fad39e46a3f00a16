"""Flows the end-to-end tests run in real workers (``HUB_FLOWS=tests.flows.chain``)."""
