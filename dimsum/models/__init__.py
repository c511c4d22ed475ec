"""The DiMSUM network and its parts: one file per idea."""

from .dimsum import CombinedBlock, DiMSUM, FrequencyBranch, SpatialBranch
from .scan_orders import freq_scan_order, layer_scan, spatial_scan_order
from .wavelets import SUBBAND_MEANING, SUBBANDS_L1, SUBBANDS_L2

__all__ = [
    "DiMSUM",
    "CombinedBlock",
    "SpatialBranch",
    "FrequencyBranch",
    "spatial_scan_order",
    "freq_scan_order",
    "layer_scan",
    "SUBBANDS_L1",
    "SUBBANDS_L2",
    "SUBBAND_MEANING",
]
