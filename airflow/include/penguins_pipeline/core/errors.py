"""The one rule for which pipeline failures fail a task at once: those a retry cannot fix."""


class PermanentError(Exception):
    """A failure that another attempt cannot fix (bad source or setting, missing data, a refused model).

    A DAG task raising one fails at once instead of spending its retries (`task_runner.run_step`). Mix it in
    ahead of the builtin base, `class SourceError(PermanentError, ValueError)`, so callers that catch the
    builtin still do.
    """
