"""gateway/site/running.py: the serving lock tells the admin CLI whether a gateway runs
on the folder (flock: released with the descriptor, as when the process dies)."""

from __future__ import annotations

from pathlib import Path

from gateway.site.running import NAME, gateway_running, serving


def test_no_gateway_until_the_lock_is_held_and_none_after(tmp_path: Path) -> None:
    assert not gateway_running(tmp_path)
    with serving(tmp_path):
        assert gateway_running(tmp_path)
        assert gateway_running(tmp_path)  # asking does not take it
    assert not gateway_running(tmp_path)
    assert (tmp_path / NAME).stat().st_mode & 0o077 == 0


def test_two_holders_and_the_last_one_out(tmp_path: Path) -> None:
    with serving(tmp_path):
        with serving(tmp_path):
            assert gateway_running(tmp_path)
        assert gateway_running(tmp_path)
    assert not gateway_running(tmp_path)


def test_a_lock_that_cannot_be_opened_leaves_the_pruning_to_the_gateway(tmp_path: Path) -> None:
    """Review adv13b: "cannot tell" must not mean "prune" (pruning later is harmless)."""
    assert gateway_running(tmp_path / "missing")
    (tmp_path / NAME).mkdir()  # a directory planted where the lock goes
    assert gateway_running(tmp_path)
