"""The floor every package stands on: schema, database access, message bus, time frames,
markets and well-known paths.

It imports none of Candela's other packages (checked by import-linter), and importing it loads
nothing but this docstring.
"""
