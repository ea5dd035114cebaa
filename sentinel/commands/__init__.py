"""One module per CLI area; each exposes ``COMMANDS`` for sentinel.cli to register."""
