"""Presence: a presence server for real-time applications, built on Twisted."""

__version__ = "0.1.0"
