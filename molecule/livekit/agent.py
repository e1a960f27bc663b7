"""The smallest real worker: registers with the server and joins rooms it is sent to."""
import os

from livekit.agents import JobContext, WorkerOptions, cli


async def entrypoint(ctx: JobContext) -> None:
    await ctx.connect()


if __name__ == "__main__":
    cli.run_app(
        WorkerOptions(
            entrypoint_fnc=entrypoint,
            host=os.environ.get("LIVEKIT_AGENT_HOST", ""),
            port=int(os.environ.get("LIVEKIT_AGENT_PORT", "8081")),
        )
    )
