"""``--decoders``, declared once for every command that decodes video files (tsn-prep's
extract-*, tsn-train's predict and stream): the video decoders to try, in order."""
from __future__ import annotations

import click

from .video import DECODERS, DECODERS_ENV, parse_decoders


class Decoders(click.ParamType):
    """``opencv,pyav``: the video decoders to try, in order, as a tuple of names."""

    name = "NAMES"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            return parse_decoders(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


decoders_option = click.option(
    "--decoders", type=Decoders(), default=",".join(DECODERS), show_default=True,
    envvar=DECODERS_ENV, show_envvar=True,
    help="Video decoders to try, in order: the next takes over when one cannot open a file or "
         "decodes no frame of it. 'pyav' alone skips OpenCV, e.g. for a codec your OpenCV build "
         "misreads. 'torchcodec' (an extra: pip install 'tsn[torchcodec]', with the system's "
         "FFmpeg) decodes MP4, MOV, MKV and WebM files when named. Each video records the one "
         "that decoded it.")
