"""Per-protocol gallery removal rules (DESIGN.md §4): which gallery items a query must not see."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

# remove(same_pid, q_cams, g_cams) -> bool mask of removed items; the arguments broadcast against each
# other (``same_pid`` may be a Python bool when the caller already knows the answer).
RemovalRule = Callable[[Tensor | bool, Tensor, Tensor], Tensor]


def _remove_same_pid_same_cam(same_pid: Tensor | bool, q_cams: Tensor, g_cams: Tensor) -> Tensor:
    same_cam = q_cams == g_cams
    if isinstance(same_pid, Tensor):
        return same_cam & same_pid
    return same_cam if same_pid else torch.zeros_like(same_cam)


def _remove_cam2_for_cam3_queries(same_pid: Tensor | bool, q_cams: Tensor, g_cams: Tensor) -> Tensor:
    return (q_cams == 3) & (g_cams == 2)


@dataclass(frozen=True)
class Protocol:
    """A retrieval protocol: its removal rule and how CMC counts gallery identities."""

    name: str
    needs_camids: bool
    # True when the rule can remove gallery items of other identities (not only true matches).
    removes_non_matches: bool
    # True when CMC counts each gallery identity once (first occurrence in rank order).
    dedup_identities_in_cmc: bool
    remove: RemovalRule | None
    summary: str


PROTOCOLS: dict[str, Protocol] = {
    "hitsz_vcm": Protocol(
        name="hitsz_vcm",
        needs_camids=True,
        removes_non_matches=False,
        dedup_identities_in_cmc=False,
        remove=_remove_same_pid_same_cam,
        summary="remove gallery items with the same pid and the same camera as the query",
    ),
    "sysu": Protocol(
        name="sysu",
        needs_camids=True,
        removes_non_matches=True,
        dedup_identities_in_cmc=True,
        remove=_remove_cam2_for_cam3_queries,
        summary="for a camera-3 query remove every camera-2 gallery item; CMC counts each identity once",
    ),
    "regdb": Protocol(
        name="regdb",
        needs_camids=False,
        removes_non_matches=False,
        dedup_identities_in_cmc=False,
        remove=None,
        summary="remove nothing",
    ),
    "buptcampus": Protocol(
        name="buptcampus",
        needs_camids=False,
        removes_non_matches=False,
        dedup_identities_in_cmc=False,
        remove=None,
        summary="the BUPTCampus authors' rule: remove nothing (query and gallery are disjoint sets)",
    ),
    "buptcampus_m3reid": Protocol(
        name="buptcampus_m3reid",
        needs_camids=True,
        removes_non_matches=False,
        dedup_identities_in_cmc=False,
        remove=_remove_same_pid_same_cam,
        summary="M3-ReID's rule on BUPTCampus: remove gallery items with the same pid and camera as the query",
    ),
    "llcm": Protocol(
        name="llcm",
        needs_camids=True,
        removes_non_matches=False,
        dedup_identities_in_cmc=True,
        remove=_remove_same_pid_same_cam,
        summary="LLCM (eval_llcm): remove gallery items with the same pid and camera; CMC counts each identity once",
    ),
}


def get_protocol(name: str) -> Protocol:
    """Look up a protocol by name, with an error that lists the valid names."""
    try:
        return PROTOCOLS[name]
    except (KeyError, TypeError):
        valid = ", ".join(repr(k) for k in PROTOCOLS)
        raise ValueError(f"unknown protocol {name!r}; valid protocols: {valid}") from None
