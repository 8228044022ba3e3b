"""System tests: real gateway processes on loopback, real PostgreSQL, kill -9 (marked slow)."""
