"""nox sessions: tests, lint, typecheck, bench."""

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]


@nox.session
def tests(session: nox.Session) -> None:
    session.install("-e", ".[dev,service]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[dev,service]")
    session.run("mypy")


@nox.session
def bench(session: nox.Session) -> None:
    session.install("-e", ".[dev,service]")
    session.run("python", "benchmarks/bench_fsck.py", *session.posargs)
    session.run("pytest", "benchmarks", "--benchmark-enable", "-p", "no:cacheprovider")
