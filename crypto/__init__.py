"""Keys and the crypto recipes of Valise.

This is the only package that imports ``cryptography``. The safe door is
:mod:`crypto.recipes` (wrap, unwrap, sign, verify, the payload stream); the
primitive calls live in :mod:`crypto._primitives`, whose underscore warns.
"""
