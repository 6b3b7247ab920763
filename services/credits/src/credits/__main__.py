"""`python -m credits` (or `tally-credits`): run the credits service until SIGTERM."""

from credits.app import build


def main() -> None:
    build().main()


if __name__ == "__main__":
    main()
