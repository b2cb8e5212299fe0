"""``python -m hostbatch``."""

from hostbatch.cli.app import main

if __name__ == "__main__":
    main()
