"""The workers: threads with an engine session each, and the messages they exchange with
the scheduler. Nothing else is shared between them.

    scheduler -> a worker   its own inbox: a job to run (handed to a worker the scheduler
                            knows to be idle), the answer to its wait for a slot (`Slot`),
                            or None: stop
    workers -> scheduler    one outbox (`Message`): a Python node that builds says when
                            its inputs are loaded (`Prepared`: it then waits for a slot)
                            and when its function returned (`Computed`: the slot is free
                            while the worker commits); a job called off before it got a
                            slot says so (`Unstarted`); every other job ends with its
                            `StepResult`

`Pool`'s methods are called from the scheduler's thread only: it chose which worker runs
which job, so it knows, without asking the workers, which are idle and which session to
interrupt. The sessions are created in that thread too, before the workers start.
"""

from __future__ import annotations

import heapq
import queue
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from odibi.engines.base import Engine, Session
from odibi.ids import NodeId, Outcome
from odibi.jobs import Job, StepResult
from odibi.worker import Hooks, NotStarted, run_job

__all__ = ["Computed", "Message", "Pool", "Prepared", "Slot", "Unstarted"]


@dataclass(frozen=True, slots=True)
class Prepared:
    """A Python node has its inputs loaded and waits for a slot."""

    node: NodeId


@dataclass(frozen=True, slots=True)
class Computed:
    """A Python node's function returned: its slot is free (the worker goes on storing and
    committing the output, off the slot)."""

    node: NodeId


@dataclass(frozen=True, slots=True)
class Unstarted:
    """A job was called off before it got a slot: nothing of it ran."""

    node: NodeId


Message = StepResult | Prepared | Computed | Unstarted


@dataclass(frozen=True, slots=True)
class Slot:
    """The scheduler's answer to a worker whose job waits for a slot: take it, or stop."""

    granted: bool


Order = Job | Slot | None  # what a worker's inbox holds (None: stop)


@dataclass(frozen=True, slots=True)
class _Shared:
    """What every worker of a build shares: its outbox, and what `Hooks` tell each job."""

    outbox: queue.Queue[Message]
    modules: dict[Path, str]  # transform sources read in this build (load_function's lock)
    root: Path | None
    interrupt: bool


class Pool:
    """`size` workers, joined on `close`, whatever happened."""

    def __init__(self, engine: Engine, size: int, root: Path | None = None) -> None:
        self.interrupts = engine.capabilities.interrupt
        self.sessions = [engine.session() for _ in range(size)]
        self.inboxes: list[queue.Queue[Order]] = [queue.Queue() for _ in range(size)]
        self.outbox: queue.Queue[Message] = queue.Queue()
        self.idle = list(range(size))  # a heap: the lowest idle worker is chosen first
        self.running: dict[NodeId, int] = {}  # job key -> the worker it was handed to
        build = _Shared(self.outbox, {}, root, self.interrupts)
        self.threads = [threading.Thread(target=_work, args=(i, s, self.inboxes[i], build),
                                         daemon=True, name=f"odibi-worker-{i}")
                        for i, s in enumerate(self.sessions)]
        for t in self.threads:
            t.start()

    def start(self, job: Job) -> None:
        """Hand `job` to an idle worker (there must be one: `idle`)."""
        worker = heapq.heappop(self.idle)
        self.running[job.key] = worker
        self.inboxes[worker].put(job)

    def answer(self, node: NodeId, granted: bool) -> None:
        """Answer the worker whose job `node` waits for a slot (`Prepared`)."""
        self.inboxes[self.running[node]].put(Slot(granted))

    def next(self, timeout: float) -> Message | None:
        """The next message, if one comes within `timeout` seconds. A job's last message
        (its result, or Unstarted) makes its worker idle again."""
        try:
            message = self.outbox.get(timeout=timeout)
        except queue.Empty:
            return None
        if isinstance(message, (StepResult, Unstarted)):
            heapq.heappush(self.idle, self.running.pop(message.node))
        return message

    def interrupt(self, spare: frozenset[NodeId] = frozenset()) -> None:
        """Interrupt the running jobs, but for those in `spare`. An engine that cannot
        interrupt in place (`Capabilities.interrupt`) lets them finish."""
        if not self.interrupts:
            return
        for node, worker in self.running.items():
            if node not in spare:
                self.sessions[worker].interrupt()

    def close(self, grace: float = 30.0) -> None:
        for inbox in self.inboxes:
            inbox.put(None)
        deadline = time.time() + grace
        for t in self.threads:
            t.join(max(0.0, deadline - time.time()))
        for s in self.sessions:
            try:
                s.close()
            except Exception:  # noqa: BLE001 - a session still busy in an abandoned call
                pass


def _work(index: int, session: Session, inbox: queue.Queue[Order], build: _Shared) -> None:
    """A worker: run each job handed to it, send its result; stop on None."""
    while True:
        order = inbox.get()
        if order is None:
            return
        if isinstance(order, Slot):  # (never: a slot answers a job that waits for one)
            continue
        result: Message
        try:
            result = run_job(order, session, index, _SlotHooks(order.key, inbox, build))
        except NotStarted:
            result = Unstarted(order.key)
        except BaseException as e:  # noqa: BLE001 - never lose a result
            result = StepResult(order.key, Outcome.FAILED, time.time(), time.time(), index,
                                error=f"internal error: {e!r}",
                                internal="".join(traceback.format_exception(e)))
        build.outbox.put(result)


class _SlotHooks(Hooks):
    """A job's hooks inside a build: its slot comes from the scheduler, by message."""

    def __init__(self, node: NodeId, inbox: queue.Queue[Order], build: _Shared) -> None:
        super().__init__(build.modules, build.root, build.interrupt)
        self.node = node
        self.inbox = inbox
        self.outbox = build.outbox

    def wait_slot(self) -> None:
        self.outbox.put(Prepared(self.node))
        answer = self.inbox.get()
        if answer is None:  # the pool closes: stop (and let the worker see it too)
            self.inbox.put(None)
        if not isinstance(answer, Slot) or not answer.granted:
            raise NotStarted(self.node)
        if self.granted is None:
            self.granted = time.time()

    def computed(self) -> None:
        self.outbox.put(Computed(self.node))
