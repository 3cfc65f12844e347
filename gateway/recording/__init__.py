"""Recorded traffic: request/response pairs kept per route, for parity replays and schemas."""
