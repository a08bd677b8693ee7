"""Pipelines: their definitions, the catalog admins edit, and the engine that runs tasks."""
