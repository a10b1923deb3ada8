"""Classifying on the second core (``ndr_sweeper.offload``): the helper gives exactly the
answers this process gives, in the order the messages came, and a helper that cannot start,
dies, or is sent Ctrl-C leaves its work to this process; nothing is lost or answered twice."""

from __future__ import annotations

import json
import logging
import os
import signal
from pathlib import Path

import pytest
from test_classify_corpus import corpus_dir

from ndr_sweeper import offload
from ndr_sweeper.offload import Classifying, classify_one

FIXTURES = Path(__file__).parent / "fixtures" / "messages"


def messages() -> list[bytes]:
    """Every fixture, and every corpus message when the corpus is here."""
    out = [p.read_bytes() for p in sorted(FIXTURES.glob("*.eml"))]
    d = corpus_dir()
    if d is not None:
        for line in (d / "labels.jsonl").read_text().splitlines():
            out.append((d / json.loads(line)["path"]).read_bytes())
    return out


def expected(raws: list[bytes]) -> list[tuple[int, dict[str, object], tuple[str, ...]]]:
    out = []
    for i, raw in enumerate(raws):
        verdict, quoted = classify_one(raw)
        out.append((i, verdict.to_dict(), quoted))
    return out


def run(c: Classifying, raws: list[bytes]) -> list[tuple[int, dict[str, object], tuple[str, ...]]]:
    for i, raw in enumerate(raws):
        c.add(i, raw)
    return [(k, v.to_dict(), q) for k, v, q in c.results()]  # type: ignore[misc]


def helper_pid(c: Classifying) -> int:
    assert c._proc is not None
    return int(c._proc.pid)


def test_the_helper_answers_as_this_process_does_for_every_message():
    raws = messages()
    with Classifying(helper=True) as c:
        assert c.wait_until_up(60)
        got = run(c, raws)
        assert got == expected(raws)
        assert c.by_helper > 0  # it did take part


def test_without_a_helper_everything_is_classified_here():
    raws = messages()[:40]
    c = Classifying(helper=False)
    assert run(c, raws) == expected(raws)
    assert c.by_helper == 0


def test_a_helper_that_cannot_start_leaves_the_work_here(monkeypatch, caplog):
    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("no processes here")

    monkeypatch.setattr("multiprocessing.get_context", refuse)
    raws = messages()[:40]
    c = Classifying(helper=True)
    assert not c.wait_until_up(1)
    assert run(c, raws) == expected(raws)
    assert c.by_helper == 0


def test_a_helper_killed_mid_way_leaves_its_work_here(caplog):
    raws = messages()
    with Classifying(helper=True) as c:
        assert c.wait_until_up(60)
        for i, raw in enumerate(raws):
            c.add(i, raw)
        os.kill(helper_pid(c), signal.SIGKILL)
        with caplog.at_level(logging.WARNING, logger="ndr_sweeper.offload"):
            got = [(k, v.to_dict(), q) for k, v, q in c.results()]
    assert got == expected(raws)  # every message once, in order, with the same answer
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "one core" in warnings[0]


def test_ctrl_c_is_not_for_the_helper():
    raws = messages()[:200]
    with Classifying(helper=True) as c:
        assert c.wait_until_up(60)
        os.kill(helper_pid(c), signal.SIGINT)  # what a terminal's Ctrl-C sends the group
        got = run(c, raws)
        assert got == expected(raws)
        assert c.by_helper > 0  # it carried on


def test_what_waits_for_the_helper_is_bounded(monkeypatch):
    raws = messages()[:300]
    monkeypatch.setattr(offload, "MAX_WAITING_BYTES", 64 * 1024)
    with Classifying(helper=True) as c:
        assert c.wait_until_up(60)
        for i, raw in enumerate(raws):
            c.add(i, raw)
            assert c.waiting_bytes <= 64 * 1024
        got = [(k, v.to_dict(), q) for k, v, q in c.results()]  # type: ignore[misc]
    assert got == expected(raws)


def test_what_the_helper_has_not_started_on_is_taken_back():
    """Work sent before the helper is up waits for it; when the verdicts are due, this
    process takes back all it can (here: everything but the batches already handed over)."""
    raws = messages()[:400]
    with Classifying(helper=True) as c:  # no waiting for it to start
        got = run(c, raws)
        assert got == expected(raws)
        assert c.by_helper <= offload.AT_HELPER * offload.BATCH_MESSAGES


@pytest.mark.parametrize("n", [0, 1])
def test_nothing_or_one_message(n):
    raws = messages()[:n]
    with Classifying(helper=True) as c:
        assert run(c, raws) == expected(raws)


def test_ctrl_c_does_not_reach_a_helper_that_is_starting():
    """A Ctrl-C right as the helper starts (before its first line runs) must not kill it with
    a KeyboardInterrupt traceback: it is started with SIGINT ignored, and inherits that."""
    raws = messages()[:200]
    with Classifying(helper=True) as c:
        os.kill(helper_pid(c), signal.SIGINT)
        assert c.wait_until_up(60)
        c._take_back = False  # every batch to the helper: it must be alive to answer
        assert run(c, raws) == expected(raws)
        assert c.by_helper == len(raws)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # ours again


def test_a_helper_that_never_comes_up_holds_up_nothing():
    """Nothing is sent to a helper before it says it is up: a stuck one (stopped here before
    its first line) leaves every message to this process at once, not after a timeout."""
    import time

    raws = messages()[:120]
    with Classifying(helper=True) as c:
        os.kill(helper_pid(c), signal.SIGSTOP)
        started = time.monotonic()
        got = run(c, raws)
        assert time.monotonic() - started < 10
    assert got == expected(raws)
    assert c.by_helper == 0
