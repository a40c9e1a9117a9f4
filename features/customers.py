"""The customer features: one entity, two views over the bundled Parquet sources, one service.

Sources are written by `make data` (mlops/local/bundled.py); paths are relative to this folder,
which Feast resolves against the repository path. TTLs say how old a value may be at the time
it is joined to a label: a profile stays valid for a year, monthly activity for about a month.

Each view's tag `mlops.max_staleness_minutes` is how long after its last materialization the online
store may go without another one (docs/features.md "Freshness"): materialize/hourly runs every hour,
so two hours tolerate one missed run; past that the monitor and the materialize flow emit
`mlops.features.stale`.
"""

from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource
from feast.types import Float64, Int64, String
from feast.value_type import ValueType

# The materialize/hourly schedule plus one missed run (the tag mlops.features.freshness reads).
HOURLY_WITH_ONE_MISS = {"mlops.max_staleness_minutes": "120"}

customer = Entity(
    name="customer",
    join_keys=["customer_id"],
    value_type=ValueType.INT64,
    description="A customer of the simulated population (mlops/local/simulate.py).",
)

customer_profile_source = FileSource(
    name="customer_profile_source",
    path="../data/features/customer_profile.parquet",
    timestamp_field="event_timestamp",
)

customer_activity_source = FileSource(
    name="customer_activity_source",
    path="../data/features/customer_activity.parquet",
    timestamp_field="event_timestamp",
)

customer_profile = FeatureView(
    name="customer_profile",
    entities=[customer],
    ttl=timedelta(days=365),
    schema=[
        Field(name="age", dtype=Int64),
        Field(name="contract", dtype=String),
        Field(name="plan", dtype=String),
        Field(name="payment_method", dtype=String),
        Field(name="region", dtype=String),
    ],
    source=customer_profile_source,
    online=True,
    tags=HOURLY_WITH_ONE_MISS,
)

customer_activity = FeatureView(
    name="customer_activity",
    entities=[customer],
    # Activity is a monthly snapshot: a value older than a month and a bit is stale, not current.
    ttl=timedelta(days=35),
    schema=[
        Field(name="tenure_months", dtype=Int64),
        Field(name="monthly_charges", dtype=Float64),
        Field(name="total_charges", dtype=Float64),
        Field(name="support_calls", dtype=Int64),
        Field(name="num_products", dtype=Int64),
    ],
    source=customer_activity_source,
    online=True,
    tags=HOURLY_WITH_ONE_MISS,
)

# The churn classifier's features: everything the flat churn file holds, looked up by customer.
churn_model = FeatureService(
    name="churn_model",
    features=[customer_profile, customer_activity],
)
