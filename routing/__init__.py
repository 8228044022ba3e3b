"""Routing: the site directory model and route decisions. Pure.

Hub and spoke: a mission hands every envelope to the hub; the hub delivers to
itself or relays to the destination mission. ``route(...)`` says which.
"""
