# Copyright shmlink authors. SPDX-License-Identifier: MIT
"""asyncio support shared by Ring and Connection: wait until a receive would not block.

asyncio is imported on first use: `import shmlink` must not pay for it."""


async def wait_readable(obj, after_wake=None):
    """Returns once obj.poll(0) is true, waiting on obj.fileno() in the running event loop
    (add_reader), never blocking the loop. after_wake(fd), if given, runs after each
    wake-up and before the next poll(0) (a Ring's eventfd must be read there)."""
    import asyncio
    loop = asyncio.get_running_loop()
    while not obj.poll(0):
        fd = obj.fileno()
        fut = loop.create_future()

        def ready(fut=fut):
            if not fut.done():
                fut.set_result(None)

        loop.add_reader(fd, ready)
        try:
            await fut
        finally:
            loop.remove_reader(fd)
        if after_wake is not None:
            after_wake(fd)
