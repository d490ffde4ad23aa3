"""`odibi test`: unit tests of a node's logic on inline fixtures (DESIGN.md §7)."""
