"""The agents themselves: each is `async def run(scope, data) -> output` plus its tools."""
