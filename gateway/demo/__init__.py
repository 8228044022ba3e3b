"""The loopback network the demo and the system tests run: HQ and missions as real processes."""
