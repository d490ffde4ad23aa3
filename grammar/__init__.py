"""The lark grammars of odibi, shipped as package data (see odibi/grammars.py)."""
