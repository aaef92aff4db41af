"""`add-service` at a terminal: what is missing is asked, with the flow shown and bad answers re-asked."""

from __future__ import annotations

import os
import sys

import pytest
import yaml

from tests.conftest import opea_new_command
from tests.update.helpers import head, porcelain

pexpect = pytest.importorskip("pexpect")


def spawn(tier, args: list, cwd) -> pexpect.spawn:
    command = opea_new_command()
    child = pexpect.spawn(command[0], [*command[1:], *map(str, args)], cwd=str(cwd), encoding="utf-8", timeout=60,
                          env={**os.environ, **tier.env(), "COLUMNS": "120", "TERM": "dumb"}, dimensions=(50, 120))
    child.logfile_read = sys.stdout if os.environ.get("OPEA_NEW_TEST_VERBOSE") else None
    return child


def test_missing_type_and_position_are_asked(tier, dag):
    child = spawn(tier, ["add-service", "audit", "--project", dag], dag)
    child.expect("Type of audit")
    child.sendline("undefined")
    child.expect("not a single chain")
    child.expect("Insert audit after")
    child.sendline("nope")  # unknown: asked again
    child.expect("Unknown service")
    child.expect("Insert audit after")
    child.sendline("source")
    child.expect("and before")
    child.sendline("left")
    child.expect(r"Port of audit")
    child.sendline("18802")  # taken by left: asked again
    child.expect("already used by left")
    child.expect(r"Port of audit")
    child.sendline("18806")
    child.expect("Endpoint of audit")
    child.sendline("")
    child.expect(pexpect.EOF)
    child.close()

    assert child.exitstatus == 0, child.before
    answers = yaml.safe_load((dag / ".copier-answers.yml").read_text())
    audit = next(s for s in answers["services"] if s["name"] == "audit")
    assert (audit["type"], audit["port"], audit["endpoint"]) == ("undefined", 18806, "/v1/process")
    flow = {(e["service"], t["service"]) for e in answers["flow"] for t in e["next"]}
    assert {("source", "audit"), ("audit", "left")} <= flow and ("source", "left") not in flow


def test_ctrl_c_at_a_question_changes_nothing(tier, dag):
    before = (head(dag), porcelain(dag))
    child = spawn(tier, ["add-service", "audit", "--project", dag], dag)
    child.expect("Type of audit")
    child.sendintr()
    child.expect(pexpect.EOF)
    child.close()

    assert child.exitstatus == 130 or child.signalstatus is not None
    assert (head(dag), porcelain(dag)) == before
