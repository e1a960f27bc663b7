"""Audio through LiveKit the way a client sends it, run inside the stack box.

Two participants join one room through wss://<livekit domain> with the
official rtc SDK; one publishes a generated tone, the other counts the
decoded frames it receives. Reads a JSON document on stdin (url, key,
secret, room, relay, frames, wrong_secret) and prints one JSON document:
frames received, their peak level, and the ICE candidate each side's
selected pair uses (type, relay protocol, address). With "wrong_secret" it
only tries to join with a token signed by another secret.
"""
import asyncio
import json
import os
import sys

from livekit import api, rtc
from livekit.rtc._proto import stats_pb2
from rtc_tone import SAMPLE_RATE, publish_tone_track, send_tone

# Loud enough that the listener's peak level tells the tone from silence.
TONE_AMPLITUDE = 12000


def token(given, identity, secret):
    grants = api.VideoGrants(room_join=True, room=given["room"])
    return (api.AccessToken(given["key"], secret).with_identity(identity).with_name(identity)
            .with_grants(grants).to_jwt())


def room_options(relay):
    if not relay:
        return rtc.RoomOptions(auto_subscribe=True)
    return rtc.RoomOptions(auto_subscribe=True, rtc_config=rtc.RtcConfiguration(
        ice_transport_type=rtc.IceTransportType.TRANSPORT_RELAY))


def selected_local_candidates(stats):
    """The local candidate of every transport's selected pair."""
    by_kind = {}
    for entry in stats:
        kind = entry.WhichOneof("stats")
        by_kind.setdefault(kind, []).append(getattr(entry, kind))
    pairs = {p.rtc.id: p.candidate_pair for p in by_kind.get("candidate_pair", [])}
    locals_ = {c.rtc.id: c.candidate for c in by_kind.get("local_candidate", [])}
    chosen = []
    for transport in by_kind.get("transport", []):
        pair = pairs.get(transport.transport.selected_candidate_pair_id)
        if pair is None:
            continue
        candidate = locals_.get(pair.local_candidate_id)
        if candidate is None:
            continue
        chosen.append({
            "type": stats_pb2.IceCandidateType.Name(candidate.candidate_type),
            "relay_protocol": stats_pb2.IceServerTransportProtocol.Name(candidate.relay_protocol)
            if candidate.candidate_type == stats_pb2.RELAY else "",
            "address": f"{candidate.address}:{candidate.port}",
            "url": candidate.url,
            "bytes_sent": pair.bytes_sent,
            "bytes_received": pair.bytes_received,
        })
    return chosen


async def check_media(given):
    publisher, listener = rtc.Room(), rtc.Room()
    options = room_options(given["relay"])
    received = {"frames": 0, "peak": 0}
    enough = asyncio.Event()

    async def count(track):
        stream = rtc.AudioStream(track, sample_rate=SAMPLE_RATE, num_channels=1)
        async for event in stream:
            received["frames"] += 1
            received["peak"] = max(received["peak"], max(abs(s) for s in event.frame.data))
            if received["frames"] >= given["frames"]:
                enough.set()
        await stream.aclose()

    tasks = []

    @listener.on("track_subscribed")
    def on_track(track, publication, participant):
        if track.kind == rtc.TrackKind.KIND_AUDIO:
            tasks.append(asyncio.ensure_future(count(track)))

    await listener.connect(given["url"], token(given, "listener", given["secret"]), options)
    await publisher.connect(given["url"], token(given, "publisher", given["secret"]), options)
    source = await publish_tone_track(publisher)
    stop = asyncio.Event()
    tone = asyncio.ensure_future(send_tone(source, stop, TONE_AMPLITUDE))
    error = ""
    try:
        await asyncio.wait_for(enough.wait(), timeout=given.get("timeout", 45))
    except asyncio.TimeoutError:
        error = "timed out waiting for frames"
    publisher_stats = await publisher.get_rtc_stats()
    listener_stats = await listener.get_rtc_stats()
    stop.set()
    await tone
    for task in tasks:
        task.cancel()
    await publisher.disconnect()
    await listener.disconnect()
    return {
        "frames": received["frames"],
        "peak": received["peak"],
        "error": error,
        "publisher": selected_local_candidates(publisher_stats.publisher_stats),
        "listener": selected_local_candidates(listener_stats.subscriber_stats),
    }


async def check_wrong_secret(given):
    room = rtc.Room()
    try:
        await asyncio.wait_for(room.connect(given["url"], token(given, "intruder", given["wrong_secret"]),
                                            room_options(False)), timeout=30)
    except rtc.ConnectError as refused:
        return {"joined": False, "error": str(refused)}
    await room.disconnect()
    return {"joined": True, "error": ""}


def main():
    given = json.load(sys.stdin)
    check = check_wrong_secret if given.get("wrong_secret") else check_media
    print(json.dumps(asyncio.run(check(given))), flush=True)
    # The SDK's native threads may panic while the interpreter shuts down after
    # a refused connection (seen once: exit 134 right after the report). The
    # report is the result; leave without that teardown.
    os._exit(0)


if __name__ == "__main__":
    main()
