"""The rule language of contracts, validations and checks (DESIGN.md §6)."""
