"""Two participants with the official rtc SDK: one publishes a tone, the other counts the frames it receives.

Runs inside a box with the agents venv's python. Reads one JSON document on
stdin: {"key", "secret", "room", "publisher_url", "subscriber_url", "frames"}.
Prints {"received": N, "publisher_url": ..., "subscriber_url": ...}.
"""
import asyncio
import json
import sys

from livekit import api, rtc
from rtc_tone import SAMPLE_RATE, publish_tone_track, send_tone

TONE_AMPLITUDE = 8000


def token(spec, identity):
    grants = api.VideoGrants(room_join=True, room=spec["room"])
    return api.AccessToken(spec["key"], spec["secret"]).with_identity(identity).with_grants(grants).to_jwt()


async def publish(room, stop):
    await send_tone(await publish_tone_track(room), stop, TONE_AMPLITUDE)


async def main():
    spec = json.load(sys.stdin)
    wanted = spec["frames"]
    publisher, subscriber = rtc.Room(), rtc.Room()
    received = 0
    enough, stop = asyncio.Event(), asyncio.Event()

    async def count(track):
        nonlocal received
        async for _event in rtc.AudioStream(track, sample_rate=SAMPLE_RATE, num_channels=1):
            received += 1
            if received >= wanted:
                enough.set()
                break

    @subscriber.on("track_subscribed")
    def on_track(track, publication, participant):
        if track.kind == rtc.TrackKind.KIND_AUDIO:
            asyncio.ensure_future(count(track))

    await subscriber.connect(spec["subscriber_url"], token(spec, "listener"))
    await publisher.connect(spec["publisher_url"], token(spec, "speaker"))
    sender = asyncio.ensure_future(publish(publisher, stop))
    try:
        await asyncio.wait_for(enough.wait(), timeout=spec.get("timeout", 30))
    except asyncio.TimeoutError:
        pass
    stop.set()
    await sender
    await publisher.disconnect()
    await subscriber.disconnect()
    print(json.dumps({"received": received, "publisher_url": spec["publisher_url"],
                      "subscriber_url": spec["subscriber_url"]}))


asyncio.run(main())
