"""From camera video to tracklets (paper §3.1): video sources, person detectors, StrongSORT / ByteTrack
tracking, GSI smoothing, HITSZ-VCM export and MOTChallenge evaluation.

Needs the ``track`` extra (``pip install 'cmft[track]'``: OpenCV, boxmot, Ultralytics, TrackEval); every
heavy import happens inside the functions that need it.
"""
