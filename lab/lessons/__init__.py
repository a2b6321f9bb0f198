"""Guided lessons: the lesson format, the check language, the tutor that follows a session, progress."""
