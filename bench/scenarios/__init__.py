"""The five scenarios, each a function of the run's context returning a `ScenarioResult`."""

from bench.scenarios.drain import drain
from bench.scenarios.http import http
from bench.scenarios.outage import outage
from bench.scenarios.steady import steady
from bench.scenarios.sustained import sustained

SCENARIOS = {
    "drain": drain,
    "sustained": sustained,
    "steady": steady,
    "http": http,
    "outage": outage,
}
