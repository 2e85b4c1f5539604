"""Benchmarks comparing trio_ftp with pyftpdlib, aioftp and vsftpd on loopback.

Run ``python3 -m benchmarks --quick`` (or ``python3 benchmarks/bench.py --quick``); see
``benchmarks/README.md`` for what each row measures and how.
"""
