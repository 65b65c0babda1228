"""The foundations every layer of mcbench uses; they import nothing else of mcbench.

errors.py (UserError, the root of user errors, and UsageError), settings.py (the settings schema: setting(),
validation, to/from JSON; ConfigError), imports.py (optional packages: `require`, the extra that installs each;
`load_factory`), text.py (`first_line`, `clip`), files.py (the one reader and writer) and parsing.py (JSON and
TOML from outside into data). `tests/test_structure.py` checks that they stay a leaf.
"""
