"""Screens pushed over the lab (help)."""
