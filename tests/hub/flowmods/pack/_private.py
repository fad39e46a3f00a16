"""Skipped by the registry: modules starting with an underscore are not flow modules."""

raise RuntimeError("the registry must not import private modules")
