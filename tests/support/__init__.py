"""Helpers shared by the test tiers that start real processes (not fixtures: those live in each conftest)."""
