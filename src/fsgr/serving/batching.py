"""Dynamic batching for the server: concurrent requests are decoded together.

A request waits at most `window_s` for others to join it (up to `max_batch` images); requests with the same decoding
settings are stacked into one `captioner.generate` call, which runs in one worker thread so the event loop keeps
accepting uploads meanwhile. One image at a time gets no extra latency beyond the window (a few milliseconds).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import torch


@dataclass
class _Job:
    image: torch.Tensor                 # (3, S, S)
    settings: object                    # DecodeSettings (hashable: frozen dataclass)
    future: asyncio.Future = field(repr=False)


class Batcher:
    def __init__(self, captioner, max_batch: int = 16, window_s: float = 0.005):
        self.captioner = captioner
        self.max_batch = max_batch
        self.window_s = window_s
        self.queue: asyncio.Queue[_Job] | None = None
        self.task: asyncio.Task | None = None
        self.executor: ThreadPoolExecutor | None = None
        self.batch_sizes: Counter = Counter()   # images per generate() call -> how often (for /healthz)

    async def start(self) -> None:
        self.queue = asyncio.Queue()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fsgr-decode")
        self.task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        self.executor.shutdown(wait=True)

    async def caption(self, image: torch.Tensor, settings):
        """-> fsgr.inference.Caption of one preprocessed image."""
        future = asyncio.get_running_loop().create_future()
        await self.queue.put(_Job(image, settings, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self.queue.get()]
            deadline = loop.time() + self.window_s
            while len(jobs) < self.max_batch:
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    jobs.append(await asyncio.wait_for(self.queue.get(), timeout))
                except asyncio.TimeoutError:
                    break
            groups: dict[object, list[_Job]] = {}
            for job in jobs:
                groups.setdefault(job.settings, []).append(job)
            for settings, group in groups.items():
                images = torch.stack([j.image for j in group])
                try:
                    captions = await loop.run_in_executor(self.executor, self.captioner.generate, images, settings,
                                                          True)     # concept_map: the page draws it
                except Exception as exc:  # noqa: BLE001 - handed to each waiting request, which answers 500
                    for job in group:
                        if not job.future.done():
                            job.future.set_exception(exc)
                    continue
                self.batch_sizes[len(group)] += 1
                for job, caption in zip(group, captions):
                    if not job.future.done():           # the client may have gone away
                        job.future.set_result(caption)
