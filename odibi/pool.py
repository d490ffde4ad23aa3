"""The workers: threads with an engine session each, and the messages they exchange with
the scheduler. Nothing else is shared between them.

    scheduler -> workers    one queue of jobs (`todo`), handed out in the order they should
                            start and only while a worker is free: the first worker free
                            takes the next one, so the job that should start first does,
                            whichever thread happens to wake first; None: stop
    scheduler -> a worker   its own inbox: the answer to its job's wait for a slot (`Slot`)
    workers -> scheduler    one outbox (`Message`), each job's messages in order: `Taken`
                            (which worker runs it), then, for a Python node that builds,
                            `Prepared` (its inputs are loaded: it waits for a slot) and
                            `Computed` (its function returned: the slot is free while the
                            worker commits); last, `Unstarted` (called off before it got a
                            slot) or its `StepResult`

`Pool`'s methods are called from the scheduler's thread only. What workers run is known
there from their `Taken` messages (the pool takes them in itself): which session to
interrupt, and which worker to answer, is the scheduler's own knowledge. The sessions are
created in that thread too, before the workers start.
"""

from __future__ import annotations

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

__all__ = ["Computed", "Message", "Pool", "Prepared", "Slot", "Taken", "Unstarted"]


@dataclass(frozen=True, slots=True)
class Taken:
    """A worker took a job (the pool's own bookkeeping: `Pool.next` never returns it)."""

    node: NodeId
    worker: int


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


@dataclass(frozen=True, slots=True)
class _Shared:
    """What the workers of a build share: the jobs, their outbox, and what `Hooks` tell
    each job."""

    todo: queue.Queue[Job | None]
    outbox: queue.Queue[Message | Taken]
    modules: dict[Path, str]  # transform sources read in this build (load_function's lock)
    root: Path | None
    interrupt: bool
    stopped: threading.Event  # set by the scheduler: a job taken from now on is called off


class Pool:
    """`size` workers, joined on `close`, whatever happened."""

    def __init__(self, engine: Engine, size: int, root: Path | None = None) -> None:
        self.interrupts = engine.capabilities.interrupt
        self.sessions = [engine.session() for _ in range(size)]
        self.inboxes: list[queue.Queue[Slot]] = [queue.Queue() for _ in range(size)]
        self.handed: set[NodeId] = set()  # jobs handed out and not finished
        self.running: dict[NodeId, int] = {}  # of those, the worker that took each
        shared = _Shared(queue.Queue(), queue.Queue(), {}, root, self.interrupts,
                         threading.Event())
        self._stopped = shared.stopped
        self.todo, self.outbox = shared.todo, shared.outbox
        self.threads = [threading.Thread(target=_work, args=(i, s, self.inboxes[i], shared),
                                         daemon=True, name=f"odibi-worker-{i}")
                        for i, s in enumerate(self.sessions)]
        for t in self.threads:
            t.start()

    @property
    def idle(self) -> bool:
        """Whether a worker is free for one more job."""
        return len(self.handed) < len(self.threads)

    def start(self, job: Job) -> None:
        """Hand `job` out (to the first worker free: there must be one, `idle`)."""
        self.handed.add(job.key)
        self.todo.put(job)

    def answer(self, node: NodeId, granted: bool) -> None:
        """Answer the worker whose job `node` waits for a slot (`Prepared`)."""
        self.inboxes[self.running[node]].put(Slot(granted))

    def next(self, timeout: float) -> Message | None:
        """The next message for the scheduler, if one comes within `timeout` seconds (None
        also when the pool took one in itself). A job's last message (its result, or
        Unstarted) frees its worker."""
        try:
            message = self.outbox.get(timeout=timeout)
        except queue.Empty:
            return None
        match message:
            case Taken(node, worker):
                self.running[node] = worker
                if self._stopped.is_set() and self.interrupts:  # handed out before the stop
                    self.sessions[worker].interrupt()
                return None
            case StepResult() | Unstarted():
                self.handed.discard(message.node)
                self.running.pop(message.node, None)
        return message

    def stop(self, spare: frozenset[NodeId] = frozenset()) -> None:
        """Interrupt the running jobs, but for those in `spare`; a job handed out before
        that no worker has taken yet is called off (`Unstarted`), and one taken as the
        build stops is interrupted. An engine that cannot interrupt in place
        (`Capabilities.interrupt`) lets the running ones finish."""
        self._stopped.set()
        if not self.interrupts:
            return
        for node, worker in self.running.items():
            if node not in spare:
                self.sessions[worker].interrupt()

    def close(self, grace: float = 30.0) -> None:
        for inbox in self.inboxes:
            inbox.put(Slot(False))  # (a worker still waiting for a slot: it never gets one)
        for _ in self.threads:
            self.todo.put(None)
        deadline = time.time() + grace
        for t in self.threads:
            t.join(max(0.0, deadline - time.time()))
        for s in self.sessions:
            try:
                s.close()
            except Exception:  # noqa: BLE001 - a session still busy in an abandoned call
                pass


def _work(index: int, session: Session, inbox: queue.Queue[Slot], shared: _Shared) -> None:
    """A worker: take the next job, say so, run it, send its result; stop on None."""
    while True:
        job = shared.todo.get()
        if job is None:
            return
        if shared.stopped.is_set():  # handed out just before the build stopped: not run
            shared.outbox.put(Unstarted(job.key))
            continue
        shared.outbox.put(Taken(job.key, index))
        result: Message
        try:
            result = run_job(job, session, index, _SlotHooks(job.key, inbox, shared))
        except NotStarted:
            result = Unstarted(job.key)
        except BaseException as e:  # noqa: BLE001 - never lose a result
            result = StepResult(job.key, Outcome.FAILED, time.time(), time.time(), index,
                                error=f"internal error: {e!r}",
                                internal="".join(traceback.format_exception(e)))
        shared.outbox.put(result)


class _SlotHooks(Hooks):
    """A job's hooks inside a build: its slot comes from the scheduler, by message."""

    def __init__(self, node: NodeId, inbox: queue.Queue[Slot], shared: _Shared) -> None:
        super().__init__(shared.modules, shared.root, shared.interrupt)
        self.node = node
        self.inbox = inbox
        self.outbox = shared.outbox

    def wait_slot(self) -> None:
        self.outbox.put(Prepared(self.node))
        if not self.inbox.get().granted:
            raise NotStarted(self.node)
        if self.granted is None:
            self.granted = time.time()

    def computed(self) -> None:
        self.outbox.put(Computed(self.node))
