"""A Python node: each parameter is an upstream node, received as a pandas DataFrame."""

import pandas as pd


def score(clean_orders: pd.DataFrame, raw_customers: pd.DataFrame) -> pd.DataFrame:
    totals = clean_orders.groupby("customer_id", as_index=False)["amount"].sum()
    out = raw_customers.merge(totals, on="customer_id", how="left").fillna({"amount": 0.0})
    out["value"] = pd.cut(out["amount"], bins=[-1, 0, 100, float("inf")],
                          labels=["none", "low", "high"]).astype(str)
    return out[["customer_id", "name", "amount", "value"]].sort_values("customer_id")
