"""``python -m sentinel.cli`` (torchrun and accelerate launch need a module to run)."""

from sentinel.cli import main

main()
