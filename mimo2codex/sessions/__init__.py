"""Recorded sessions: record, show, replay, compare (flow files reach it through addon/flowfile.py)."""
