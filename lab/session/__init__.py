"""Sessions: building machines from files, time control, recording and replay."""
