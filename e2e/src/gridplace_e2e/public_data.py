"""Where the public scenario data lives in the repository, named once.

The example scenarios, the tests, the benchmarks and the closed-loop scenario read the same real
data files (carbon intensity, prices, RTT, request traces, a load shape); they import their paths
from here so that a move of the folder is one edit. Sources and licences are in the folder's
README.md.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PUBLIC_DATA = ROOT / "examples" / "scenarios" / "data"

CARBON_INTENSITY = PUBLIC_DATA / "carbon_intensity_hourly_2022-2023.csv.gz"
POWER_PRICE = PUBLIC_DATA / "power_price_hourly_2022-2023.csv.gz"
RTT_MATRIX = PUBLIC_DATA / "aws_interregion_rtt_p50_ms.csv"
LOAD_SHAPE = PUBLIC_DATA / "servegen_aggregate_rate_10min.csv"
CODE_TRACE = PUBLIC_DATA / "AzureLLMInferenceTrace_code_2023-11-16.csv"
CONV_TRACE = PUBLIC_DATA / "AzureLLMInferenceTrace_conv_2023-11-16.csv"
