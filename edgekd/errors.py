"""Errors that map to the exit codes of docs/report-contract.md.

Anything that is not an EdgeKDError is a bug: the CLI shows its traceback and exits 70.
"""


class EdgeKDError(Exception):
    """Base class; `exit_code` is what the CLI returns."""

    exit_code = 70


class InputError(EdgeKDError):
    """Bad input or usage (exit 2): the message is one line naming the file/field/option and the fix."""

    exit_code = 2


class StageFailed(EdgeKDError):
    """A stage could not produce a sound result (parity, diverged training); report written, exit 1."""

    exit_code = 1
    budgets: tuple = ()  # BudgetFailed: the budget results known when the stage stopped


class BudgetFailed(StageFailed):
    """A budget cannot be met; the stage fails early and the report is still written (exit 1).

    `budgets` holds the BudgetResult entries known at that point, so the report says by how much.
    """

    def __init__(self, message: str, budgets: list | None = None):
        super().__init__(message)
        self.budgets = budgets or []


class Inconclusive(EdgeKDError):
    """A measurement could not decide a budget (exit 3, check/gate only)."""

    exit_code = 3


class MissingDependency(InputError):
    """An optional SDK is not installed; names the extra to install."""

    def __init__(self, module: str, requirement: str, purpose: str):
        super().__init__(f"{purpose} needs the '{module}' package, which is not installed here; "
                         f"install it with: pip install '{requirement}'")
        self.module = module
