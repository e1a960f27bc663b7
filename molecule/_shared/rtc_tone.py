"""A 440 Hz tone published as a participant's microphone track with the official rtc SDK.

The media checks of the edge and scale scenarios run inside a box with the
agents venv's python; each scenario ships this file next to its script
(molecule/edge/prepare.yml, run_in_box in molecule/scale/tests/test_scale.py),
so that `import rtc_tone` finds it in the script's own folder.
"""
import math

from livekit import rtc

SAMPLE_RATE = 48000
TONE_HZ = 440
SAMPLES_PER_FRAME = SAMPLE_RATE // 100  # 10 ms


async def publish_tone_track(room):
    """Publish a mono microphone track in `room`; returns the source to feed it with send_tone."""
    source = rtc.AudioSource(SAMPLE_RATE, 1)
    track = rtc.LocalAudioTrack.create_audio_track("tone", source)
    await room.local_participant.publish_track(track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE))
    return source


async def send_tone(source, stop, amplitude):
    """Feed `source` the tone, frame after frame, until `stop` is set; `amplitude` is the peak sample value."""
    phase = 0
    while not stop.is_set():
        frame = rtc.AudioFrame.create(SAMPLE_RATE, 1, SAMPLES_PER_FRAME)
        samples = frame.data
        for i in range(SAMPLES_PER_FRAME):
            samples[i] = int(amplitude * math.sin(2 * math.pi * TONE_HZ * (phase + i) / SAMPLE_RATE))
        phase += SAMPLES_PER_FRAME
        await source.capture_frame(frame)
