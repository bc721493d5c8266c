"""Ctrl-C in the CLI: one line on stderr, exit status 130, Dask clients closed quietly,
and LocalCluster workers that ignore the SIGINT the terminal sends the whole group."""

from __future__ import annotations

import signal

import pytest

from ogkit.cli import app


def test_ctrl_c_is_one_line_and_130(monkeypatch, capsys, home):
    closed = []

    class FakeClient:
        def close(self, timeout=None):
            closed.append(timeout)
            raise KeyboardInterrupt  # a second Ctrl-C while closing: still one line

    import distributed.client

    monkeypatch.setattr(distributed.client, "_global_clients", {0: FakeClient()})

    def interrupted(args, settings):
        raise KeyboardInterrupt

    parser = app.build_parser()
    real_parse = parser.parse_args

    def parse(argv=None):
        args = real_parse(argv)
        args.handler = interrupted
        return args

    monkeypatch.setattr(parser, "parse_args", parse)
    monkeypatch.setattr(app, "build_parser", lambda: parser)
    exits = []
    # With Dask loaded, main leaves at once (os._exit): an interrupted client's __del__
    # would hang the interpreter's exit.
    monkeypatch.setattr(app.os, "_exit", exits.append)
    try:
        assert app.main(["keys", "list"]) == 130
    finally:
        import logging

        logging.disable(logging.NOTSET)
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        "interrupted: finished work is kept; re-run the same command to resume"
    ]
    assert closed == [10] and exits == [130]


@pytest.mark.slow
def test_local_cluster_workers_ignore_sigint():
    from ogkit.compute import get_client

    before = signal.getsignal(signal.SIGINT)
    with get_client(n_workers=1) as client:
        assert signal.getsignal(signal.SIGINT) is before  # put back in this process
        handlers = client.run(lambda: int(signal.getsignal(signal.SIGINT)))
    assert list(handlers.values()) == [int(signal.SIG_IGN)]
