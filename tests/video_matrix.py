"""The encodings a user's copy of Kinetics-400 or Something-Something v2 may hold, written as real files.

Each ``Case`` is one encoding, written with PyAV (its bundled FFmpeg's encoders: x264, x265, libvpx,
SVT-AV1, FFmpeg's mpeg4), small and short so the whole matrix encodes and decodes in seconds, yet long
enough that the samplers' clips cross keyframes: a camera pans over a detailed scene with grain, so
the encoders make real P- and B-frames. ``how_common`` says how often the kind occurs in the real
datasets as users have them (YouTube downloads for Kinetics, the 20BN webm files for SSv2).
``decord`` records where decord 0.6 itself does not give the true frames; the test asserts it.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from bench.data.fixtures import scene

COMMON_K400 = "common in Kinetics (YouTube's h264 transcodes, usually with AAC audio)"
COMMON_SSV2 = "every Something-Something v2 video (VP9 webm, 240 px high, 427 wide, no audio)"


@dataclass(frozen=True)
class Case:
    """One encoding. ``options`` go to the encoder; ``audio`` names an audio encoder to add a track."""

    id: str
    how_common: str
    codec: str = "libx264"
    container: str = "mp4"
    options: tuple[tuple[str, str], ...] = ()
    pix_fmt: str = "yuv420p"
    fps: Fraction = Fraction(30)
    size: tuple[int, int] = (96, 64)  # width, height
    seconds: float = 4.0
    audio: str | None = None
    variable_rate: bool = False
    rotation: int = 0  # degrees clockwise, in the track's display matrix as phones write it
    preroll: int = 0  # frames before time zero, behind an mp4 edit list, as `ffmpeg -ss T -c copy` leaves them
    colorspace: str | None = None  # a colour matrix tag (with its primaries and transfer), e.g. "bt709"
    decord: str | None = None  # "fails: why" / "differs: why" where decord 0.6 does not return the true frames

    @property
    def frames(self) -> int:
        return round(self.seconds * self.fps)

    @property
    def suffix(self) -> str:
        return {"matroska": "mkv"}.get(self.container, self.container)


X264 = (("preset", "veryfast"), ("crf", "28"))
X265 = (("preset", "ultrafast"), ("x265-params", "log-level=error"))
VP9 = (("deadline", "good"), ("cpu-used", "8"), ("crf", "40"), ("b", "0"))  # hidden alt-ref frames, as in SSv2
VP8 = (("deadline", "good"), ("cpu-used", "8"), ("auto-alt-ref", "1"), ("crf", "30"), ("b", "1M"))
MPEG4 = (("bf", "2"), ("qscale", "5"))
SVT_AV1 = (("preset", "12"),)
NO_AV1 = "fails: decord 0.6's FFmpeg 4.1 has no AV1 decoder"
MISSEEKS = ("differs: after a seek decord returns a neighbouring frame where B-frames cross the keyframe "
            "(its keyframe positions are in decode order, its frame numbers in display order)")
PREROLL = ("differs: decord counts the frames before the edit list's start as the video's, and gives the i-th "
           "decoded frame as frame i after a seek but the (i + those)-th when it decodes on from the start")
ODD_HEIGHT = ("differs: decord 0.6's FFmpeg 4.1 converts 4:2:0 frames of odd height to RGB through swscale's "
              "scaling path, FFmpeg 8 (PyAV) like every other height; the pictures agree, the bytes do not")

CASES = (
    # h264 profiles and frame structures (x264 defaults: high profile, 3 B-frames in a pyramid, keyint 250)
    Case("h264_high_bpyramid", COMMON_K400, options=X264),
    Case("h264_main", COMMON_K400, options=(*X264, ("profile", "main"))),
    Case("h264_baseline", "uncommon: old uploads, webcams, some phones (no B-frames, CAVLC)",
         options=(*X264, ("profile", "baseline"))),
    Case("h264_bframes0", "uncommon: phones, webcams, re-encodes without B-frames",
         options=(*X264, ("x264-params", "bframes=0"))),
    Case("h264_bframes3_no_pyramid", "common in older YouTube transcodes",
         options=(*X264, ("x264-params", "bframes=3:b-pyramid=none"))),
    Case("h264_zerolatency", "uncommon: streaming and screen-capture re-encodes (sliced threads, no B-frames)",
         options=(*X264, ("tune", "zerolatency"))),
    Case("h264_gop12", "uncommon: broadcast-style short GOPs", options=(*X264, ("x264-params", "keyint=12"))),
    Case("h264_gop250", "common: x264's default keyframe spacing over a 10 s clip", seconds=10.0, options=X264),
    Case("h264_open_gop", "rare: open GOPs (x264 --open-gop, some broadcast encoders)",
         options=(*X264, ("x264-params", "keyint=30:open-gop=1")), decord=MISSEEKS),
    # frame rates
    *(Case(f"h264_{name}fps", how, fps=fps, options=X264) for name, fps, how in (
        ("23.976", Fraction(24000, 1001), "common (film-rate uploads)"),
        ("24", Fraction(24), "common"),
        ("25", Fraction(25), "common (PAL-region uploads)"),
        ("29.97", Fraction(30000, 1001), "common (NTSC-rate uploads)"),
        ("60", Fraction(60), "uncommon: 60 fps uploads"))),
    Case("h264_25fps_bframes0", "uncommon", fps=Fraction(25), options=(*X264, ("x264-params", "bframes=0"))),
    Case("h264_variable_rate", "uncommon: phone footage (frame intervals vary)", variable_rate=True, options=X264),
    # picture formats
    Case("h264_size_not_mod16", "common: scaled sizes are cropped from 16 px blocks", size=(90, 62), options=X264),
    Case("h264_bt709", "common: YouTube tags its transcodes BT.709", colorspace="bt709", options=X264),
    Case("h264_full_range_yuvj420p", "uncommon: phone and webcam footage (full-range luma)", pix_fmt="yuvj420p",
         options=X264),
    *(Case(f"h264_rotation_{degrees}", "rare: a phone's portrait video (YouTube applies rotation when it transcodes)",
           rotation=degrees, options=X264) for degrees in (90, 270)),
    Case("h264_with_audio", COMMON_K400, audio="aac", options=X264),
    Case("h264_cut_by_stream_copy", "uncommon: clips cut from the YouTube video with ffmpeg -ss -c copy (an edit "
         "list hides the frames from the keyframe before the cut)", preroll=7, audio="aac", options=X264,
         decord=PREROLL),
    Case("h264_mkv_opus", "common in Kinetics copies re-downloaded with yt-dlp (h264 + opus merged into mkv)",
         container="matroska", audio="libopus", options=X264),
    # other codecs, without and with audio
    Case("vp9_webm", COMMON_SSV2, codec="libvpx-vp9", container="webm", size=(107, 60), options=VP9),
    Case("vp9_webm_audio", "common in Kinetics copies downloaded as webm", codec="libvpx-vp9", container="webm",
         audio="libopus", options=VP9),
    Case("vp9_odd_height", "rare: neither dataset has 4:2:0 frames of odd height", codec="libvpx-vp9",
         container="webm", size=(96, 65), options=VP9, decord=ODD_HEIGHT),
    Case("vp8_webm", "rare: older webm downloads", codec="libvpx", container="webm", size=(97, 64), options=VP8),
    Case("vp8_webm_audio", "rare", codec="libvpx", container="webm", audio="libopus", options=VP8),
    Case("mpeg4_part2", "rare: old uploads and camera files (MPEG-4 part 2, B-frames across GOPs)", codec="mpeg4",
         options=MPEG4, decord=MISSEEKS),
    Case("mpeg4_part2_audio", "rare", codec="mpeg4", audio="aac", options=MPEG4, decord=MISSEEKS),
    Case("mpeg4_part2_no_bframes", "rare", codec="mpeg4", size=(97, 64), options=(("qscale", "5"),)),
    Case("hevc", "rare: YouTube serves no HEVC; re-encoded or phone copies", codec="libx265", options=X265),
    Case("hevc_audio", "rare", codec="libx265", audio="aac", options=X265),
    Case("av1", "rare: recent YouTube downloads of the Kinetics ids", codec="libsvtav1", options=SVT_AV1,
         decord=NO_AV1),
    Case("av1_webm_audio", "rare", codec="libsvtav1", container="webm", audio="libopus", options=SVT_AV1,
         decord=NO_AV1),
)


_TAGS = {"bt709": 1}  # AVColorSpace, AVColorPrimaries and AVColorTransferCharacteristic share this value


def _pictures(case: Case, seed: int) -> np.ndarray:
    """(frames, H, W, 3) uint8: a pan of one pixel per frame across and half down, with grain."""
    rng = np.random.default_rng(seed)
    width, height = case.size
    world = scene(height + case.frames, width + case.frames, rng)
    grain = rng.normal(0, 4, (case.frames, height, width, 1)).astype(np.float32)
    return np.stack([np.clip(world[t // 2:t // 2 + height, t:t + width] + grain[t], 0, 255).astype(np.uint8)
                     for t in range(case.frames)])


def _timestamps(case: Case) -> tuple[list[int], Fraction]:
    """Presentation times and their time base: every 1/fps, or for variable rate intervals of 1/3 to 2
    frame periods (as a phone drops and bunches frames)."""
    if not case.variable_rate:
        return list(range(case.frames)), 1 / Fraction(case.fps)
    base = Fraction(1, 90000)
    period = int(90000 / case.fps)
    steps = np.random.default_rng(1).choice([period // 3, period, period, 2 * period], case.frames - 1)
    return [0, *np.cumsum(steps).tolist()], base


def _audio_frames(stream, seconds: float):
    """A 440 Hz tone, in frames of the encoder's size."""
    rate, size = stream.codec_context.sample_rate, stream.codec_context.frame_size or 1024
    for start in range(0, int(seconds * rate), size):
        t = (start + np.arange(size)) / rate
        samples = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
        yield frame


def write_case(case: Case, path: Path, seed: int = 0) -> Path:
    """Encode ``case`` to ``path`` (its suffix should be ``case.suffix``)."""
    if case.preroll:
        encoded = write_case(replace(case, preroll=0), path.with_name(f"uncut-{path.name}"), seed)
        return _shift_before_zero(encoded, path, case.preroll)
    pictures = _pictures(case, seed)
    pts, time_base = _timestamps(case)
    with av.open(str(path), "w", format=case.container) as container:
        video = container.add_stream(case.codec, rate=case.fps)
        video.width, video.height, video.pix_fmt = *case.size, case.pix_fmt
        video.codec_context.time_base = time_base
        if case.colorspace:
            context = video.codec_context
            context.colorspace = context.color_primaries = context.color_trc = _TAGS[case.colorspace]
        video.options = dict(case.options)
        if case.rotation:
            video.set_display_rotation(-case.rotation)  # the display matrix's angle is counterclockwise
        audio = container.add_stream(case.audio, rate=48000, layout="mono") if case.audio else None
        tones = iter(_audio_frames(audio, case.seconds)) if audio else iter(())
        tone = next(tones, None)
        for picture, when in zip(pictures, pts):
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts, frame.time_base = when, time_base
            container.mux(video.encode(frame))
            while tone is not None and tone.pts / tone.sample_rate <= when * time_base:
                container.mux(audio.encode(tone))
                tone = next(tones, None)
        container.mux(video.encode())
        while tone is not None:
            container.mux(audio.encode(tone))
            tone = next(tones, None)
        if audio:
            container.mux(audio.encode())
    return path


def _shift_before_zero(source: Path, path: Path, frames: int) -> Path:
    """Remux ``source`` with its first ``frames`` frames before time zero: the mp4 muxer writes an edit
    list that starts the presentation there, and the demuxer marks the earlier packets discard."""
    with av.open(str(source)) as reader, av.open(str(path), "w", format="mp4") as writer:
        outputs = {stream.index: writer.add_stream_from_template(stream) for stream in reader.streams}
        video = reader.streams.video[0]
        for packet in reader.demux():
            if packet.dts is None:
                continue
            stream = reader.streams[packet.stream_index]
            shift = round(frames / video.average_rate / stream.time_base)
            packet.pts, packet.dts, packet.stream = packet.pts - shift, packet.dts - shift, outputs[stream.index]
            writer.mux(packet)
    return path
