"""Requests that arrive together are answered together (dynamic batching, as in Triton or Ray Serve).

Answering one penguin is a few compiled and numpy calls, each costing about the same for one row as for many.
Under load many /predict requests are parsed in the same turn of the event loop: each waits on a future, and
at the next turn one vectorised call answers all of them. A lone request waits for nothing but that turn.
Measured with wrk (figures in INFORME_IMPLEMENTACION.md): more throughput under load, for a little latency
on a lone request.
"""

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Answer = TypeVar("Answer")


class MicroBatcher(Generic[Item, Answer]):
    """Collects the items submitted during one event-loop turn and answers them with one call."""

    def __init__(self, answer_many: Callable[[Sequence[Item]], list[Answer]]) -> None:
        self._answer_many = answer_many
        self._waiting: list[tuple[Item, asyncio.Future[Answer]]] = []

    async def submit(self, item: Item) -> Answer:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Answer] = loop.create_future()
        self._waiting.append((item, future))
        if len(self._waiting) == 1:
            loop.call_soon(self._answer_waiting)  # runs after every callback already due in this turn
        return await future

    def _answer_waiting(self) -> None:
        waiting, self._waiting = self._waiting, []
        self._answer(waiting)

    def _answer(self, waiting: list[tuple[Item, asyncio.Future[Answer]]]) -> None:
        try:
            answers = self._answer_many([item for item, _ in waiting])
        except Exception as error:
            # Callers check their items before they submit them: an error here is unexpected. Even so it must
            # fail only the request whose item caused it: the others are answered again, each on its own.
            if len(waiting) > 1:
                for one in waiting:
                    self._answer([one])
            elif not waiting[0][1].done():
                waiting[0][1].set_exception(error)
            return
        for (_, future), answer in zip(waiting, answers, strict=True):
            if not future.done():  # done: its request was cancelled (the client went away)
                future.set_result(answer)
