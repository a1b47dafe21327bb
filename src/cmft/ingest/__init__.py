"""Camera archives into a searchable gallery: ``cmft ingest`` (a manifest of videos -> tracklets with capture times
-> embeddings -> one commit per video), in a plain loop or on Ray."""

from cmft.ingest.manifest import IngestManifestError, VideoRow, read_manifest
from cmft.ingest.runner import Ledger, ingest
from cmft.ingest.worker import IngestSettings, VideoProcessor

__all__ = ["IngestManifestError", "IngestSettings", "Ledger", "VideoProcessor", "VideoRow", "ingest", "read_manifest"]
