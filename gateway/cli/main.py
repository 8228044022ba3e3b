"""The ``valise`` command: the root group (gateway/cli/app.py) with every command
module's commands registered here, explicitly. ``valise`` (pyproject.toml) and
``python -m gateway`` run ``main``.

A new command group is a new module under gateway/cli/ that defines its group without
importing the root group or another command module, and one line below.
"""

from __future__ import annotations

import click

from gateway.cli import (
    audit,
    directory,
    doctor,
    envelope,
    evidence,
    inbox,
    integrator,
    keys,
    message,
    organ,
    queue,
    site,
    timestamp,
)
from gateway.cli.app import make_root

# Every top-level command and group, by module (``valise --help`` lists them by name).
COMMANDS: tuple[click.Command, ...] = (
    # envelopes as files, offline
    envelope.seal,
    envelope.open_,
    envelope.inspect,
    keys.keys,
    # a site: made, joined, run; its directory and the sites in it
    site.init,
    site.join_cmd,
    site.serve_cmd,
    site.site_group,
    directory.directory_group,
    organ.organ_group,
    # mail: sent, where it stands, received, queued
    message.send,
    message.status,
    inbox.inbox_group,
    queue.queue_group,
    # integrators, proof, evidence, health
    integrator.integrator_group,
    audit.audit_group,
    timestamp.timestamp_group,
    evidence.evidence_group,
    doctor.doctor,
)


def build() -> click.Group:
    """A root group with every command registered."""
    root = make_root()
    for command in COMMANDS:
        root.add_command(command)
    return root


main = build()
