"""`python -m payments` (or `tally-payments`): run the payments service until SIGTERM."""

from payments.app import build


def main() -> None:
    build().main()


if __name__ == "__main__":
    main()
