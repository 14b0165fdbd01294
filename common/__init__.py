"""What both packages share (docs/DESIGN.md section 3, Where things live): the clip's constants, the semantic classes and
their colours, atomic file writes, ffmpeg calls and the one preprocessing error type. Imports nothing of `nerf` or
`data_util`.
"""
