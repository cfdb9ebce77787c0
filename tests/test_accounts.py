"""Sandbox accounts: names from the template (pure, collision-free), created for real with
useradd, and a child that drops to one cannot get root back."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub_ext.spawners.accounts import (
    NAME_RE,
    NOLOGIN,
    Account,
    account_name,
    check_template,
    drop_privileges,
    ensure_account,
    prepare_workspace,
    usable_by_others,
)

from .host import missing


@pytest.mark.parametrize(
    ("template", "user", "name"),
    [
        ("dsp-{username}", "alice", "dsp-alice"),
        ("dsp-{username}", "storm07", "dsp-storm07"),
        ("jupyter-{username}", "bob_2", "jupyter-bob_2"),
        ("{username}-sandbox", "carol", "carol-sandbox"),
    ],
)
def test_plain_names_map_as_they_are(template: str, user: str, name: str) -> None:
    assert account_name(template, user) == name


@pytest.mark.parametrize(
    ("user", "prefix"),
    [
        ("Bob.Smith", "dsp-bob-smith-"),
        ("alice@example.org", "dsp-alice-example-org-"),
        ("über", "dsp-ber-"),
        ("a" * 60, "dsp-" + "a" * 19 + "-"),
        ("...", "dsp-user-"),
    ],
)
def test_other_names_get_a_hash_so_they_never_collide(user: str, prefix: str) -> None:
    name = account_name("dsp-{username}", user)
    assert name.startswith(prefix) and len(name) <= 32 and NAME_RE.match(name)


@given(st.lists(st.text(min_size=1, max_size=80), min_size=2, max_size=30, unique=True))
def test_distinct_hub_users_get_distinct_valid_accounts(users: list[str]) -> None:
    names = [account_name("dsp-{username}", u) for u in users]
    assert len(set(names)) == len(names)
    assert all(NAME_RE.match(n) and len(n) <= 32 for n in names)


@pytest.mark.parametrize(
    ("template", "why"),
    [("dsp", "must contain {username}"), ("{username}" + "x" * 30, "leaves no room"),
     ("9-{username}", "not a valid unix account name")],
)  # fmt: skip
def test_bad_templates_are_refused(template: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        check_template(template)


def test_accounts_are_created_once_with_a_stable_uid_and_no_login(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        missing("creating accounts needs root")
    name = account_name("dsptest-{username}", f"t{os.getpid()}")
    home = tmp_path / "ws"
    try:
        first = ensure_account(name, home, "dsplatform test", (41000, 41999))
        entry = pwd.getpwnam(name)
        assert 41000 <= first.uid <= 41999 and first.gid == entry.pw_gid != 0
        assert (entry.pw_dir, entry.pw_shell) == (str(home), NOLOGIN)
        assert ensure_account(name, home, "again", (41000, 41999)) == first  # found, not new
        prepare_workspace(home, first)
        st_ = home.stat()
        assert (st_.st_uid, st_.st_gid, st_.st_mode & 0o777) == (first.uid, first.gid, 0o700)
        # a child that became the account cannot become root again, nor read /root
        code = "import os\ntry:\n    os.setuid(0)\nexcept OSError as e:\n    print('setuid', e.errno)\n"
        code += "try:\n    os.listdir('/root')\nexcept OSError as e:\n    print('root', e.errno)\n"
        out = subprocess.run([sys.executable, "-c", code], preexec_fn=lambda: drop_privileges(first),
                             capture_output=True, text=True, cwd="/")  # fmt: skip
        assert out.stdout.split() == ["setuid", "1", "root", "13"], out.stderr
        status = subprocess.run(["cat", "/proc/self/status"], preexec_fn=lambda: drop_privileges(first),
                                capture_output=True, text=True).stdout  # fmt: skip
        assert "NoNewPrivs:\t1" in status and f"Uid:\t{first.uid}\t{first.uid}" in status
    finally:
        subprocess.run(["userdel", name], capture_output=True)
    assert Account.lookup(name) is None


def test_usable_by_others_names_the_blocking_directory(tmp_path: Path) -> None:
    closed = tmp_path / "closed"
    (closed / "inner").mkdir(parents=True)
    closed.chmod(0o700)
    for parent in [*reversed(tmp_path.parents), tmp_path]:
        if not parent.stat().st_mode & 0o001:
            assert usable_by_others(closed / "inner") == parent
            return
    assert usable_by_others(closed / "inner") == closed
    closed.chmod(0o711)
    assert usable_by_others(closed / "inner") is None
