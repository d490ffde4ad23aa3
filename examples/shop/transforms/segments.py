"""Customer segments, in pandas: a node's inputs arrive as DataFrames named after nodes."""

import pandas as pd

VIP_REVENUE = 500.0


def segment(customer_orders: pd.DataFrame) -> pd.DataFrame:
    df = customer_orders[["customer_id", "name", "country", "orders", "revenue"]].copy()
    df["segment"] = "regular"
    df.loc[df["revenue"] >= VIP_REVENUE, "segment"] = "vip"
    df.loc[df["orders"] == 0, "segment"] = "dormant"
    return df.sort_values("customer_id").reset_index(drop=True)
