"""The Redis Streams driver, on redis-py's asyncio client."""
