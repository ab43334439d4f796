"""Compare architectures: accuracy against operations against parameters, from measured numbers,
for the zoo's published results (`compare_published`) and for runs trained on the user's own data
(`compare_runs`; `convatlas.train.compare_models` trains them first); and the HTML atlas of every
network (`build_atlas`)."""

from convatlas.compare.atlas import build_atlas
from convatlas.compare.chart import Point, bubble_chart
from convatlas.compare.published import compare_published, published_points
from convatlas.compare.runs import Comparison, ComparisonRow, compare_runs, measure_latency

__all__ = [
    "Comparison",
    "ComparisonRow",
    "Point",
    "bubble_chart",
    "build_atlas",
    "compare_published",
    "compare_runs",
    "measure_latency",
    "published_points",
]
