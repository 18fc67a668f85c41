"""Local open video models (Wan 2.x, LTX-Video) served through diffusers on this machine.

torch and diffusers are imported only inside this package's modules that need them, so an
installation without the `local` extra never loads them.
"""

PIPELINE_KINDS = ("wan-t2v", "wan-i2v", "ltx-t2v", "ltx-i2v")
