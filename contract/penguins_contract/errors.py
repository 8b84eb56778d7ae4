"""The one exception of the contract; each side turns it into its own (the pipeline's `ArtifactError`, the
API's `LoadError`) with `translated`, so their callers and messages stay as they were."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager


class ContractError(Exception):
    """Artifacts on disk break the contract. `reason` is a short label (the API counts failures by it)."""

    def __init__(self, message: str, reason: str = "contract") -> None:
        super().__init__(message)
        self.reason = reason


@contextmanager
def translated(into: Callable[[ContractError], Exception]) -> Iterator[None]:
    """Raise `into(err)`, chained, for a ContractError raised in the block (re-raise if it returns `err`)."""
    try:
        yield
    except ContractError as err:
        wrapped = into(err)
        if wrapped is err:
            raise
        raise wrapped from err
