"""A minimal named worker: takes jobs dispatched to AGENT_NAME and joins their room.

Replace the entrypoint with your agent; keep passing LIVEKIT_AGENT_HOST/PORT,
which the livekit_agents role sets for the worker's health server.
"""
import logging
import os
import socket

from livekit.agents import JobContext, WorkerOptions, cli

logger = logging.getLogger("scaled-agent")
MAX_JOBS = int(os.environ.get("AGENT_MAX_JOBS", "4"))


async def entrypoint(ctx: JobContext) -> None:
    await ctx.connect()
    logger.info("job %s joined room %s on %s", ctx.job.id, ctx.room.name, socket.gethostname())


def load(worker) -> float:
    # The worker shares its host with a Letta replica and a LiveKit node, so the
    # host's CPU load (livekit.agents' default measure) says little about the
    # worker itself: its load is its share of the jobs it is sized for. The
    # server sends no job to a worker above its target load (0.7 by default).
    return min(len(worker.active_jobs) / MAX_JOBS, 1.0)


if __name__ == "__main__":
    cli.run_app(
        WorkerOptions(
            entrypoint_fnc=entrypoint,
            agent_name=os.environ.get("AGENT_NAME", ""),
            load_fnc=load,
            host=os.environ.get("LIVEKIT_AGENT_HOST", ""),
            port=int(os.environ.get("LIVEKIT_AGENT_PORT", "8081")),
        )
    )
