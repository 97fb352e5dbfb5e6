"""The embedded nats-server's port is never one the process binds itself: the kernel may
hand out the API's port while it is still free (a fresh clone's run of test_up_interrupt
found ``inbox up``'s API port taken by its own nats-server)."""

from __future__ import annotations

from adapters.embedded import free_port


def test_a_port_the_process_binds_itself_is_passed_over() -> None:
    assert free_port(avoid={51599, 0}, ports=iter([51599, 51599, 0, 40001])) == 40001


def test_the_kernel_gives_a_port() -> None:
    assert 0 < free_port() < 65536
