"""Replayable scenarios: real hourly carbon intensity and prices, a daily load shape, a request mix.

A scenario file names the regions, the grid zone and data files behind each, the RTT matrix, the
user zones with their demand shape, the models and the period. Loading it yields hourly series
that the simulator turns into one placement problem per hour.
"""

from gridplace_placement.scenario.data import ScenarioData, load_scenario
from gridplace_placement.scenario.spec import ScenarioSpec

__all__ = ["ScenarioData", "ScenarioSpec", "load_scenario"]
