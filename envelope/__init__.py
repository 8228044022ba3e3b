"""The Valise envelope, format version 1: build, parse, seal and open. Pure: no I/O.

See ``envelope/SPEC.md`` for the format. The entry points are
:func:`envelope.seal.seal_bytes`, :func:`envelope.open.open_bytes` and, for
streaming, :class:`envelope.seal.Sealing` and :class:`envelope.open.Opening`.
"""
