"""Prefect flows: composition of tasks, and the gates that end a run Failed."""
