"""`python -m invoicing` (or `tally-invoicing`): run the invoicing service until SIGTERM."""

from invoicing.app import build


def main() -> None:
    build().main()


if __name__ == "__main__":
    main()
