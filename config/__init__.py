"""Configuration: parsed once, from TOML and ``VALISE_*`` environment variables,
into frozen dataclasses. The only package that reads ``os.environ``; gateway/ hands
each part the values it needs."""
