"""A minimal named worker: takes jobs dispatched to AGENT_NAME and joins their room.

Replace the entrypoint with your agent; keep passing LIVEKIT_AGENT_HOST/PORT,
which the livekit_agents role sets for the worker's health server.
"""
import logging
import os
import socket

from livekit.agents import JobContext, WorkerOptions, cli

logger = logging.getLogger("scaled-agent")


async def entrypoint(ctx: JobContext) -> None:
    await ctx.connect()
    logger.info("job %s joined room %s on %s", ctx.job.id, ctx.room.name, socket.gethostname())


if __name__ == "__main__":
    cli.run_app(
        WorkerOptions(
            entrypoint_fnc=entrypoint,
            agent_name=os.environ.get("AGENT_NAME", ""),
            # The host's CPU load above which the worker takes no new job (livekit.agents' default).
            load_threshold=float(os.environ.get("AGENT_LOAD_THRESHOLD", "0.7")),
            host=os.environ.get("LIVEKIT_AGENT_HOST", ""),
            port=int(os.environ.get("LIVEKIT_AGENT_PORT", "8081")),
        )
    )
