"""Evaluation: CMC / mAP / mINP over a distance matrix or features, under the HITSZ-VCM, SYSU and RegDB rules;
k-reciprocal re-ranking."""

from cmft.evaluation.metrics import (
    QueryMetrics,
    cosine_distance,
    evaluate,
    evaluate_features,
    per_query_metrics,
    per_query_metrics_features,
)
from cmft.evaluation.protocols import PROTOCOLS, Protocol, get_protocol
from cmft.evaluation.reference import reference_evaluate, reference_per_query
from cmft.evaluation.reranking import rerank

__all__ = [
    "PROTOCOLS", "Protocol", "QueryMetrics", "cosine_distance", "evaluate", "evaluate_features", "get_protocol",
    "per_query_metrics", "per_query_metrics_features", "reference_evaluate", "reference_per_query", "rerank",
]
