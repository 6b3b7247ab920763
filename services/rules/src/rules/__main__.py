"""`python -m rules` (or `tally-rules`): run the rules service until SIGTERM."""

from rules.app import build


def main() -> None:
    build().main()


if __name__ == "__main__":
    main()
