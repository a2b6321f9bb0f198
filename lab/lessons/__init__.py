"""Lessons: loading and validating lesson files, their checks over events and state, progress."""
