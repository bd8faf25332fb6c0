"""The Flower app projects under tests/apps hold no tests: pytest skips them.

They are user-style apps (pyproject.toml + package) that tests run as apps.
"""

collect_ignore_glob = ["*"]
