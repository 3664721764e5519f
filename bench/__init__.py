"""hookbench core: scenario configuration, workload, protocol, records, analysis and the analytic model.

Servers, Locust scenarios and reports build on this package; it imports none of them (except the CLI,
`bench.cli`, the composition root).
"""

from .config import Scenario, load_scenario
from .errors import HookbenchError, ScenarioError

__all__ = ["Scenario", "load_scenario", "HookbenchError", "ScenarioError"]
__version__ = "0.1.0"
