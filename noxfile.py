"""nox sessions. They run in the environment the README's install command made (venv_backend none):
torch is a multi-GB local wheel, and a fresh virtualenv per session would reinstall it."""

import nox

nox.options.sessions = ["tests", "lint"]


@nox.session(venv_backend="none")
def tests(session: nox.Session) -> None:
    """The test suite (pass pytest arguments after --, e.g. nox -s tests -- -m 'not slow')."""
    session.run("python", "-m", "pytest", "-q", *session.posargs)


@nox.session(venv_backend="none")
def unit(session: nox.Session) -> None:
    """The fast tier: tests/unit (no CLI end to end; under a minute on 2 cores)."""
    session.run("python", "-m", "pytest", "-q", "tests/unit", *session.posargs)


@nox.session(venv_backend="none")
def lint(session: nox.Session) -> None:
    session.run("ruff", "check", "edgekd", "tests", "benchmarks", "noxfile.py")
