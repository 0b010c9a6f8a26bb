"""`python -m hubmetrics.panel`: how the hub starts the managed service."""

from .app import main

if __name__ == "__main__":
    main()
