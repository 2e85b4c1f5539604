"""The per-address failed-login ledger (pure: times are passed in)."""

from __future__ import annotations

from trio_ftp.login_failures import LoginFailures


def test_address_is_blocked_at_the_limit_and_released_after_the_window() -> None:
    """The limit-th failure inside the window blocks; the window passing releases."""
    ledger = LoginFailures(3, 60.0)
    for second in (0.0, 1.0):
        ledger.record("127.0.0.1", second)
    assert not ledger.blocked("127.0.0.1", 2.0)
    ledger.record("127.0.0.1", 2.0)
    assert ledger.blocked("127.0.0.1", 3.0)
    assert not ledger.blocked("127.0.0.2", 3.0)
    assert ledger.blocked("127.0.0.1", 59.0)
    assert not ledger.blocked("127.0.0.1", 60.5)  # the first failure has expired


def test_old_failures_do_not_add_up() -> None:
    """Failures spread wider than the window never reach the limit."""
    ledger = LoginFailures(3, 10.0)
    for second in range(0, 100, 6):
        ledger.record("127.0.0.1", float(second))
        assert not ledger.blocked("127.0.0.1", float(second))


def test_memory_is_bounded_by_max_addresses() -> None:
    """A client spraying source addresses cannot grow the ledger without bound."""
    ledger = LoginFailures(1, 60.0, max_addresses=100)
    for n in range(1000):
        ledger.record(f"10.0.{n // 256}.{n % 256}", 0.0)
    assert len(ledger._failures) == 100
    assert ledger.blocked("10.0.3.231", 1.0)  # the most recent are the ones kept
    assert not ledger.blocked("10.0.0.0", 1.0)


def test_no_limit_records_nothing() -> None:
    """``None`` switches the ledger off."""
    ledger = LoginFailures(None, 60.0)
    for _ in range(100):
        ledger.record("127.0.0.1", 0.0)
    assert not ledger.blocked("127.0.0.1", 0.0)
    assert ledger._failures == {}
