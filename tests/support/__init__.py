"""What the test tiers share: networks, CLI runs, SMTP and PostgreSQL helpers."""
