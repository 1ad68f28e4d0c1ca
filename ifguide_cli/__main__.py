"""`python -m ifguide_cli` (what `torchrun -m ifguide_cli ...` runs)."""

from .cli.app import main

if __name__ == "__main__":
    main()
