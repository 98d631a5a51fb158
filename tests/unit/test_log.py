"""cd8exo.log.log_to: a user error is one plain message (no traceback anywhere), a bug keeps it."""

from __future__ import annotations

import logging

import pytest

from cd8exo.errors import ChecksumError, ConfigError, InputError
from cd8exo.log import log_to


@pytest.mark.parametrize(
    "error",
    [
        InputError("genes.gmt, line 3: gene set 'X' has no genes; add its genes"),
        ConfigError("unknown key(s) 'min_gene' under 'qc'"),
        ChecksumError("checksum mismatch for counts.csv.gz"),
        FileNotFoundError(2, "No such file or directory", "data/missing.h5ad"),
    ],
    ids=["InputError", "ConfigError", "DownloadError", "FileNotFoundError"],
)
def test_user_error_is_its_message_in_log_and_stderr_without_traceback(tmp_path, capsys, error):
    log = tmp_path / "logs" / "rule" / "x.log"
    with pytest.raises(SystemExit) as stopped, log_to(log):
        raise error
    assert stopped.value.code == 1
    stderr = capsys.readouterr().err
    assert stderr == f"cd8exo error: {error}\n(log: {log})\n"
    text = log.read_text()
    assert f"ERROR cd8exo: {error}" in text
    assert "Traceback" not in text + stderr
    assert text.count(str(error)) == 1


@pytest.mark.parametrize("error", [ValueError("x must be positive"), KeyError("signature")])
def test_a_bug_keeps_its_traceback_in_the_log_and_propagates(tmp_path, capsys, error):
    log = tmp_path / "x.log"
    with pytest.raises(type(error)), log_to(log):
        raise error
    text = log.read_text()
    assert "Traceback (most recent call last)" in text
    assert type(error).__name__ in text
    assert "cd8exo error" not in capsys.readouterr().err


def test_warnings_go_to_the_log_and_to_stderr(tmp_path, capsys):
    log = tmp_path / "x.log"
    with log_to(log):
        logging.getLogger("cd8exo.stats.testable").warning("dataset 'tiny': not testable")
        logging.getLogger("cd8exo.stats.testable").info("just so")
    assert capsys.readouterr().err == f"cd8exo warning ({log}): dataset 'tiny': not testable\n"
    text = log.read_text()
    assert "WARNING cd8exo.stats.testable: dataset 'tiny': not testable" in text
    assert "INFO cd8exo.stats.testable: just so" in text
    # the handlers are gone afterwards: nothing more reaches the file or stderr
    logging.getLogger("cd8exo").warning("after the rule")
    assert "after the rule" not in log.read_text()
    assert "after the rule" not in capsys.readouterr().err
