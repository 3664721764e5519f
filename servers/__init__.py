"""aiohttp servers of hookbench, each runnable as its own process: `producer` and `receiver`."""
